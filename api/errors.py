"""Every error leaves the API as ``application/problem+json`` (RFC 9457), never internal text.

One table maps our error hierarchy to statuses (the classes carry ``status_code``); the
``message`` of a ConectadoError becomes ``detail``; its logged ``detail`` never leaves the
server. Unexpected errors get a 500 whose detail carries an id to find the logged traceback.
"""

from __future__ import annotations

import logging
import uuid
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import ConectadoError, Unauthorized

log = logging.getLogger("conectado.api")

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://conectado.mx/problems/"


class ProblemResponse(JSONResponse):
    """A JSON response with the problem+json media type."""

    media_type = PROBLEM_JSON


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> ProblemResponse:
    """Build a problem+json response with a type URI named for the status."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + phrase.lower().replace(" ", "-").replace("'", ""),
        "title": title or phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    return ProblemResponse(body, status_code=status, headers=headers)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


def validation_errors(errors: Any) -> list[dict[str, Any]]:
    """Return pydantic/FastAPI errors as ``{field, message, type}`` without the input values.

    The input is left out on purpose: it may be a secret (a community string in a bad body).
    """
    out = []
    for err in errors:
        loc = err.get("loc", ())
        out.append(
            {"field": _location(loc), "message": str(err.get("msg", "")), "type": err.get("type")}
        )
    return out


async def _conectado_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, ConectadoError)
    if exc.status_code >= 500:
        log.error("%s on %s: %s (%s)", exc.title, request.url.path, exc.message, exc.detail)
    headers = (
        {"WWW-Authenticate": 'ApiKey header="X-API-Key"'} if isinstance(exc, Unauthorized) else None
    )
    return problem(
        exc.status_code,
        exc.message,
        title=exc.title,
        instance=request.url.path,
        headers=headers,
    )


async def _request_validation(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc.errors())
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return problem(
        422,
        f"Invalid request — {summary}{more}. Fix the named fields and retry.",
        title="Invalid input",
        instance=request.url.path,
        errors=errors,
    )


async def _http_exception(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No such resource: {request.url.path}. See /docs for the endpoints."
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}."
    return problem(
        exc.status_code, detail, instance=request.url.path, headers=getattr(exc, "headers", None)
    )


async def _database_error(request: Request, exc: Exception) -> ProblemResponse:
    if isinstance(exc, OperationalError):
        log.error("database unavailable on %s: %s", request.url.path, exc)
        return problem(
            503,
            "The database cannot be reached right now; retry in a moment.",
            title="Database unavailable",
            instance=request.url.path,
            headers={"Retry-After": "5"},
        )
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> ProblemResponse:
    error_id = uuid.uuid4().hex[:12]
    log.exception("unexpected error %s on %s %s", error_id, request.method, request.url.path)
    return problem(
        500,
        f"Something went wrong on our side (error id {error_id}); it was logged. "
        "Retry later or report the id.",
        instance=request.url.path,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json."""
    app.add_exception_handler(ConectadoError, _conectado_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
