"""Query-parameter strictness: an unknown parameter is an error, not silently ignored.

FastAPI ignores query parameters it does not know; a typo such as ``?catgory=school`` would
then return every site. The app-wide dependency here answers 422 naming the parameter and
listing the ones the endpoint accepts.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, StringConstraints

_allowed_cache: dict[int, frozenset[str]] = {}


def _field_names(field: Any) -> list[str]:
    annotation = getattr(field.field_info, "annotation", None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [info.alias or name for name, info in annotation.model_fields.items()]
    return [field.alias]


def _query_names(dependant: Dependant) -> frozenset[str]:
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        for field in current.query_params:
            names.update(_field_names(field))
        stack.extend(current.dependencies)
    return frozenset(names)


def allowed_query_names(route: APIRoute) -> frozenset[str]:
    """Return the query parameter names ``route`` declares (cached per route)."""
    key = id(route)
    names = _allowed_cache.get(key)
    if names is None:
        names = _allowed_cache[key] = _query_names(route.dependant)
    return names


async def reject_unknown_query(request: Request) -> None:
    """Raise a 422 validation error for each query parameter the route does not declare."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = allowed_query_names(route)
    unknown = [name for name in request.query_params if name not in allowed]
    if unknown:
        listing = ", ".join(sorted(allowed)) or "none"
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", name),
                    "msg": f"unknown query parameter; this endpoint accepts: {listing}",
                    "input": None,
                }
                for name in dict.fromkeys(unknown)
            ]
        )


def query_error(name: str, message: str) -> RequestValidationError:
    """A 422 for query parameter ``name`` with ``message``."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", name), "msg": message, "input": None}]
    )


def parse_floats(name: str, value: str | None, count: int, shape: str) -> tuple[float, ...] | None:
    """Parse ``value`` as ``count`` comma-separated numbers or raise a 422 naming ``name``."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    try:
        numbers = tuple(float(p) for p in parts)
    except ValueError:
        numbers = ()
    if len(numbers) != count or any(n != n or n in (float("inf"), float("-inf")) for n in numbers):
        raise query_error(name, f"expected {shape} ({count} comma-separated numbers)")
    return numbers


def split_list(name: str, values: list[str] | None) -> list[str]:
    """Flatten repeated and comma-separated values (``?state=09&state=15`` or ``09,15``).

    An empty value (``?state=``) is an error naming the parameter, not "no filter".
    """
    out: list[str] = []
    for value in values or []:
        parts = [part.strip() for part in value.split(",")]
        if not all(parts):
            raise query_error(name, "empty value; give a value or leave the parameter out")
        out.extend(parts)
    return out


ProviderName = Annotated[
    str, StringConstraints(min_length=1, max_length=120, pattern=r"^[^\x00-\x1f]+$")
]
ProviderNames = Annotated[
    list[ProviderName] | None,
    Query(description="Provider names (case-insensitive); repeat or comma-separate."),
]
"""The ``provider`` query parameter: printable names, at most 120 characters each."""
