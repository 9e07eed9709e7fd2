"""API keys, roles and what each role may do; page sessions bound to a key.

A key reads ``cnk_<prefix>_<secret>``: the 12-hex-digit prefix is public and finds the row,
the whole token is stored only as its SHA-256. A 32-byte random secret has nothing to guess,
so a fast hash is enough and keeps the per-request check well under a millisecond.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from core.errors import Conflict, InvalidInput, NotFound

TOKEN_PREFIX = "cnk"
_TOKEN_RE = re.compile(r"^cnk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


class Role(StrEnum):
    """The five roles of the issue, from least to most powerful."""

    VIEWER = "viewer"
    TECHNICIAN = "technician"
    PLANNER = "planner"
    OPERATOR = "operator"
    ADMIN = "admin"


class Permission(StrEnum):
    """One thing a request may need to be allowed to do."""

    READ = "read"  # inventory, status, incidents, maintenance, site cards, health map
    PROBE = "probe"  # run a live probe of a site
    ACKNOWLEDGE = "acknowledge"  # acknowledge an incident
    COVERAGE = "coverage"  # coverage results, uncovered lists, coverage map
    EXPORT = "export"  # bulk exports of inventory and coverage
    COMPUTE_COVERAGE = "compute_coverage"  # recompute the materialised coverage
    WRITE_SITES = "write_sites"  # create, update, retire, import sites
    MAINTENANCE = "maintenance"  # create, change, delete maintenance windows
    MANAGE_KEYS = "manage_keys"  # create, list, revoke API keys


_VIEWER = frozenset({Permission.READ})
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: _VIEWER,
    Role.TECHNICIAN: _VIEWER | {Permission.PROBE, Permission.ACKNOWLEDGE},
    Role.PLANNER: _VIEWER | {Permission.COVERAGE, Permission.EXPORT, Permission.COMPUTE_COVERAGE},
    Role.OPERATOR: frozenset(Permission) - {Permission.MANAGE_KEYS},
    Role.ADMIN: frozenset(Permission),
}


def roles_allowed(permission: Permission) -> list[Role]:
    """Return the roles that hold ``permission``, weakest first."""
    return [role for role in Role if permission in ROLE_PERMISSIONS[role]]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, name and role."""

    key_id: int
    name: str
    role: Role

    def can(self, permission: Permission) -> bool:
        """Say whether this caller's role holds ``permission``."""
        return permission in ROLE_PERMISSIONS[self.role]


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """A stored key as listed (never the token)."""

    id: int
    prefix: str
    name: str
    role: Role
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A key just created: the only moment its token is known."""

    info: ApiKeyInfo
    token: str


def token_sha256(token: str) -> bytes:
    """Return the SHA-256 of ``token`` as stored."""
    return hashlib.sha256(token.encode()).digest()


def new_token() -> tuple[str, str]:
    """Return a fresh ``(prefix, token)``."""
    prefix = secrets.token_hex(6)
    return prefix, f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"


def parse_role(value: str) -> Role:
    """Return the role named ``value`` or raise InvalidInput listing the roles."""
    try:
        return Role(value.strip().lower())
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise InvalidInput(f"role: unknown role {value!r}; use one of {allowed}.") from None


_KEY_COLUMNS = (
    "id, prefix, name, role, created_at, created_by, expires_at, last_used_at, revoked_at"
)


def _info(row: object) -> ApiKeyInfo:
    r = row._mapping  # type: ignore[attr-defined]
    return ApiKeyInfo(
        id=r["id"],
        prefix=r["prefix"],
        name=r["name"],
        role=Role(r["role"]),
        created_at=r["created_at"],
        created_by=r["created_by"],
        expires_at=r["expires_at"],
        last_used_at=r["last_used_at"],
        revoked_at=r["revoked_at"],
    )


def create_key(
    conn: Connection,
    *,
    name: str,
    role: Role,
    created_by: str,
    expires_at: datetime | None = None,
) -> CreatedKey:
    """Store a new key for ``name`` with ``role`` and return it with its token (shown once)."""
    name = name.strip()
    if not name:
        raise InvalidInput("name: a key needs a name saying who or what uses it.")
    if len(name) > 200:
        raise InvalidInput("name: at most 200 characters.")
    prefix, token = new_token()
    try:
        with conn.begin_nested():
            row = conn.execute(
                text(
                    "INSERT INTO api_keys (prefix, token_sha256, name, role, created_by, "
                    f"expires_at) VALUES (:p, :h, :n, :r, :by, :exp) RETURNING {_KEY_COLUMNS}"
                ),
                {
                    "p": prefix,
                    "h": token_sha256(token),
                    "n": name,
                    "r": role.value,
                    "by": created_by,
                    "exp": expires_at,
                },
            ).one()
    except IntegrityError:
        raise Conflict(
            f"name: an active key named {name!r} exists; revoke it first or pick another name."
        ) from None
    return CreatedKey(info=_info(row), token=token)


def list_keys(conn: Connection, *, include_revoked: bool = False) -> list[ApiKeyInfo]:
    """Return the keys ordered by id (active ones only unless ``include_revoked``)."""
    where = "" if include_revoked else "WHERE revoked_at IS NULL"
    rows = conn.execute(text(f"SELECT {_KEY_COLUMNS} FROM api_keys {where} ORDER BY id"))
    return [_info(r) for r in rows]


def revoke_key(conn: Connection, *, ref: str | int, revoked_by: str) -> ApiKeyInfo:
    """Revoke the active key with id ``ref`` (an int), or id, prefix or name (a str).

    Its page sessions end too.
    """
    params: dict[str, object]
    if isinstance(ref, int):
        where, params = "id = :id", {"id": ref}
    else:
        ref = ref.strip()
        where = "(id = :id OR prefix = :ref OR name = :ref)"
        params = {"id": int(ref) if ref.isdigit() and len(ref) < 19 else None, "ref": ref}
    rows = conn.execute(
        text(
            "UPDATE api_keys SET revoked_at = now(), revoked_by = :by "
            f"WHERE revoked_at IS NULL AND {where} RETURNING {_KEY_COLUMNS}"
        ),
        {"by": revoked_by, **params},
    ).all()
    if not rows:
        raise NotFound(f"key {ref!r}: no active key has that id, prefix or name.")
    if len(rows) > 1:  # a name that is also another key's id: refuse rather than guess
        raise Conflict(f"key {ref!r} matches several keys; give the id.")
    info = _info(rows[0])
    conn.execute(text("DELETE FROM api_sessions WHERE key_id = :id"), {"id": info.id})
    return info


def authenticate_token(conn: Connection, token: str) -> Principal | None:
    """Return the caller of an API key token, or None if it is unknown, revoked or expired."""
    match = _TOKEN_RE.match(token.strip())
    if match is None:
        return None
    row = conn.execute(
        text(
            "SELECT id, name, role, token_sha256 FROM api_keys WHERE prefix = :p "
            "AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
        ),
        {"p": match.group(1)},
    ).one_or_none()
    if row is None or not hmac.compare_digest(bytes(row.token_sha256), token_sha256(token)):
        return None
    return Principal(key_id=row.id, name=row.name, role=Role(row.role))


def touch_key(conn: Connection, key_id: int) -> None:
    """Record that the key was used now (callers throttle this; it is a write)."""
    conn.execute(text("UPDATE api_keys SET last_used_at = now() WHERE id = :id"), {"id": key_id})


def create_session(conn: Connection, *, key_id: int, lifetime: timedelta) -> str:
    """Open a page session for ``key_id`` and return its cookie token (stored hashed)."""
    token = secrets.token_urlsafe(32)
    conn.execute(
        text(
            "INSERT INTO api_sessions (token_sha256, key_id, expires_at) "
            "VALUES (:h, :k, now() + :life)"
        ),
        {"h": token_sha256(token), "k": key_id, "life": lifetime},
    )
    conn.execute(text("DELETE FROM api_sessions WHERE expires_at < now()"))
    return token


def session_principal(conn: Connection, token: str) -> Principal | None:
    """Return the caller of a page session token, or None if it ended or its key did."""
    if not token or len(token) > 100:
        return None
    row = conn.execute(
        text(
            "SELECT k.id, k.name, k.role FROM api_sessions s JOIN api_keys k ON k.id = s.key_id "
            "WHERE s.token_sha256 = :h AND s.expires_at > now() AND k.revoked_at IS NULL "
            "AND (k.expires_at IS NULL OR k.expires_at > now())"
        ),
        {"h": token_sha256(token)},
    ).one_or_none()
    return None if row is None else Principal(key_id=row.id, name=row.name, role=Role(row.role))


def end_session(conn: Connection, token: str) -> None:
    """Forget a page session (logout)."""
    conn.execute(
        text("DELETE FROM api_sessions WHERE token_sha256 = :h"), {"h": token_sha256(token)}
    )
