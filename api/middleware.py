"""One ASGI middleware that times every request, counts it for /metrics and audits writes."""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import Principal
from api.cache import CHANNEL, EDIT_ANNOUNCEMENT
from api.metrics import record_request

log = logging.getLogger("conectado.api")

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NOT_AUDITED = frozenset({"/login", "/logout"})


def _write_audit(
    engine: Engine, principal: Principal | None, method: str, path: str, status: int, ms: float
) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO api_audit (key_id, key_name, role, method, path, status, "
                    "duration_ms) VALUES (:k, :n, :r, :m, :p, :s, :d)"
                ),
                {
                    "k": principal.key_id if principal else None,
                    "n": principal.name if principal else None,
                    "r": principal.role.value if principal else None,
                    "m": method,
                    "p": path[:500],
                    "s": status,
                    "d": ms,
                },
            )
    except SQLAlchemyError:
        log.warning("could not write the audit row for %s %s (%s)", method, path, status)


def _announce_edit(engine: Engine) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": EDIT_ANNOUNCEMENT})
    except SQLAlchemyError:
        log.warning("could not announce an API write to the other workers' read caches")


class RequestRecorder:
    """Record method, route template, status and duration of each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on and record it once the response has started."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        writes = scope["method"] in _WRITE_METHODS

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if writes:
                    # The write has committed (routes commit before responding): this worker's
                    # next read must see it at once, and the other workers' too, even where it
                    # touched only tables they treat as routine probe data (api/cache.py).
                    state = scope["app"].state
                    state.read_cache.invalidate()
                    if status < 400 and scope["path"] not in _NOT_AUDITED:
                        await run_in_threadpool(_announce_edit, state.engine)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            seconds = time.perf_counter() - start
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            record_request(method, template, status, seconds)
            path = scope["path"]
            if method in _WRITE_METHODS and path not in _NOT_AUDITED:
                app_state = scope["app"].state
                principal = scope.get("state", {}).get("principal")
                await run_in_threadpool(
                    _write_audit, app_state.engine, principal, method, path, status, seconds * 1e3
                )
