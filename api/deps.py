"""What routes receive: the settings, a database connection, and the authenticated caller.

Routes ask for ``Conn`` (a connection inside a transaction that commits when the route
returns, before the response is sent, and rolls back on error) and for ``Caller`` or a
``require(Permission.X)`` dependency. Keys come in the ``X-API-Key`` header (or
``Authorization: Bearer``); pages use the session cookie set by the login form.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, Engine
from starlette.concurrency import run_in_threadpool

from api.auth import (
    Permission,
    Principal,
    authenticate_token,
    roles_allowed,
    session_principal,
    token_sha256,
    touch_key,
)
from core.errors import Forbidden, Unauthorized
from core.settings import Settings

SESSION_COOKIE = "conectado_session"
CSRF_HEADER = "X-Requested-With"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_TOUCH_EVERY_S = 60.0

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="An API key made with `conectado keys create` (or POST /keys).",
)
bearer = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")
session_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="Page session set by POST /login; unsafe methods also need the header "
    f"{CSRF_HEADER}: conectado.",
)


async def get_settings(request: Request) -> Settings:
    """Return the settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> Engine:
    """Return the engine opened in the app's lifespan."""
    engine: Engine = request.app.state.engine
    return engine


def _connection(request: Request) -> Iterator[Connection]:
    engine: Engine = request.app.state.engine
    with engine.begin() as conn:
        yield conn


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
Conn = Annotated[Connection, Depends(_connection, scope="function")]


@dataclass(slots=True)
class _Cached:
    principal: Principal | None
    checked_at: float


class PrincipalCache:
    """Per-worker memory of checked tokens, so most requests skip the key lookup."""

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[bytes, _Cached] = {}
        self._touched: dict[int, float] = {}
        self._lock = threading.Lock()

    def get(self, digest: bytes) -> _Cached | None:
        """Return a fresh entry for ``digest`` or None."""
        if self.ttl <= 0:
            return None
        entry = self._entries.get(digest)
        if entry is None or time.monotonic() - entry.checked_at > self.ttl:
            return None
        return entry

    def put(self, digest: bytes, principal: Principal | None) -> None:
        """Remember the outcome of checking ``digest``."""
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[digest] = _Cached(principal, time.monotonic())

    def clear(self) -> None:
        """Forget everything (after a key is revoked through this worker)."""
        with self._lock:
            self._entries.clear()

    def due_for_touch(self, key_id: int) -> bool:
        """Say whether ``last_used_at`` of ``key_id`` should be written now (once a minute)."""
        now = time.monotonic()
        with self._lock:
            if now - self._touched.get(key_id, -1e9) < _TOUCH_EVERY_S:
                return False
            self._touched[key_id] = now
            return True


def _check_token(
    engine: Engine, check: Callable[[Connection, str], Principal | None], secret: str
) -> Principal | None:
    with engine.begin() as conn:
        return check(conn, secret)


def _touch(engine: Engine, key_id: int) -> None:
    with engine.begin() as conn:
        touch_key(conn, key_id)


async def _resolve(
    request: Request, kind: str, secret: str, check: Callable[[Connection, str], Principal | None]
) -> Principal | None:
    # Async so that a cached token costs no thread hop; only the database work goes to a thread.
    cache: PrincipalCache = request.app.state.principal_cache
    engine: Engine = request.app.state.engine
    digest = token_sha256(kind + ":" + secret)
    cached = cache.get(digest)
    if cached is not None:
        principal = cached.principal
    else:
        principal = await run_in_threadpool(_check_token, engine, check, secret)
        cache.put(digest, principal)
    if principal is not None and cache.due_for_touch(principal.key_id):
        await run_in_threadpool(_touch, engine, principal.key_id)
    return principal


async def optional_caller(
    request: Request,
    x_api_key: Annotated[str | None, Security(api_key_header)] = None,
    authorization: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
    session: Annotated[str | None, Security(session_cookie)] = None,
) -> Principal | None:
    """Return the caller if a valid key or session came with the request, else None."""
    token = x_api_key or (authorization.credentials if authorization else None)
    if token:
        principal = await _resolve(request, "key", token, authenticate_token)
        if principal is None:
            raise Unauthorized(
                "The API key is not valid (unknown, revoked or expired). Ask an admin for a "
                "key (`conectado keys create`) and send it in the X-API-Key header."
            )
    elif session:
        principal = await _resolve(request, "session", session, session_principal)
        if (
            principal is not None
            and request.method not in _SAFE_METHODS
            and request.headers.get(CSRF_HEADER) != "conectado"
        ):
            raise Forbidden(
                f"Requests that change things with a page session need the header "
                f"{CSRF_HEADER}: conectado (protection against cross-site requests)."
            )
    else:
        principal = None
    request.state.principal = principal
    return principal


async def current_caller(
    principal: Annotated[Principal | None, Depends(optional_caller)],
) -> Principal:
    """Return the authenticated caller or raise 401."""
    if principal is None:
        raise Unauthorized(
            "An API key is needed: send it in the X-API-Key header (or log in on the pages). "
            "An admin makes keys with `conectado keys create --role ROLE --name NAME`."
        )
    return principal


Caller = Annotated[Principal, Depends(current_caller)]


def require(permission: Permission) -> Callable[[Principal], Awaitable[Principal]]:
    """Return a dependency that lets through callers whose role holds ``permission``."""

    async def dependency(principal: Caller) -> Principal:
        if not principal.can(permission):
            allowed = ", ".join(r.value for r in roles_allowed(permission))
            raise Forbidden(
                f"Your key '{principal.name}' has role {principal.role.value}; "
                f"{permission.value.replace('_', ' ')} needs one of: {allowed}."
            )
        return principal

    dependency.__name__ = f"require_{permission.value}"
    return dependency


Reader = Annotated[Principal, Depends(require(Permission.READ))]
Prober = Annotated[Principal, Depends(require(Permission.PROBE))]
Acknowledger = Annotated[Principal, Depends(require(Permission.ACKNOWLEDGE))]
CoverageReader = Annotated[Principal, Depends(require(Permission.COVERAGE))]
Exporter = Annotated[Principal, Depends(require(Permission.EXPORT))]
CoverageComputer = Annotated[Principal, Depends(require(Permission.COMPUTE_COVERAGE))]
SiteWriter = Annotated[Principal, Depends(require(Permission.WRITE_SITES))]
MaintenanceWriter = Annotated[Principal, Depends(require(Permission.MAINTENANCE))]
KeyManager = Annotated[Principal, Depends(require(Permission.MANAGE_KEYS))]
