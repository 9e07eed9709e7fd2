"""Maintenance windows: periods in which a site, a municipality or a provider opens no incidents."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import Connection, text

from core.errors import InvalidInput, NotFound

Scope = Literal["site", "municipality", "provider"]
SCOPES: tuple[str, ...] = get_args(Scope)

# The ids of sites covered by a window that is active at :now (index-friendly: one join per
# scope instead of one OR-join). Other modules embed it as a CTE.
SITES_IN_MAINTENANCE_SQL = """
    SELECT w.site_id AS site_id FROM maintenance_windows w
    WHERE w.scope = 'site' AND w.starts_at <= :now AND w.ends_at > :now
    UNION
    SELECT s.id FROM maintenance_windows w JOIN sites s ON s.mun_cvegeo = w.mun_cvegeo
    WHERE w.scope = 'municipality' AND w.starts_at <= :now AND w.ends_at > :now
    UNION
    SELECT s.id FROM maintenance_windows w JOIN sites s ON s.provider = w.provider
    WHERE w.scope = 'provider' AND w.starts_at <= :now AND w.ends_at > :now
"""

_SELECT = """
    SELECT w.id, w.scope, w.site_id, s.site_key, w.mun_cvegeo, m.name AS municipality,
           w.provider, w.starts_at, w.ends_at, w.reason, w.created_by, w.created_at,
           (SELECT count(*) FROM sites x WHERE
                (w.scope = 'site' AND x.id = w.site_id)
                OR (w.scope = 'municipality' AND x.mun_cvegeo = w.mun_cvegeo)
                OR (w.scope = 'provider' AND x.provider = w.provider)) AS sites
    FROM maintenance_windows w
    LEFT JOIN sites s ON s.id = w.site_id
    LEFT JOIN municipalities m ON m.cvegeo = w.mun_cvegeo
"""


@dataclass(frozen=True)
class MaintenanceWindow:
    """One maintenance window, with what it covers named for people."""

    id: int
    scope: str
    site_id: int | None
    site_key: str | None
    mun_cvegeo: str | None
    municipality: str | None
    provider: str | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime
    sites: int

    @property
    def target(self) -> str:
        """The site key, municipality code or provider the window covers."""
        return str(self.site_key or self.mun_cvegeo or self.provider)

    def active_at(self, when: datetime) -> bool:
        """True when ``when`` falls inside the window."""
        return self.starts_at <= when < self.ends_at


def _window(row: Any) -> MaintenanceWindow:
    return MaintenanceWindow(**dict(row._mapping))


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None:
        raise InvalidInput(
            f"{name} {value.isoformat()} has no time zone; give it with an offset, e.g. "
            f"{value.isoformat()}-06:00 or {value.isoformat()}Z."
        )
    return value


def add_window(
    conn: Connection,
    *,
    scope: str,
    target: str,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    created_by: str,
) -> MaintenanceWindow:
    """Create a window for a site (by key), a municipality (CVEGEO) or a provider (by name)."""
    if scope not in SCOPES:
        raise InvalidInput(f"scope '{scope}' is not one of {', '.join(SCOPES)}.")
    _aware("starts_at", starts_at)
    _aware("ends_at", ends_at)
    if ends_at <= starts_at:
        raise InvalidInput(
            f"ends_at ({ends_at.isoformat()}) must be after starts_at ({starts_at.isoformat()})."
        )
    if not reason.strip():
        raise InvalidInput("reason is empty; say why the window exists (e.g. 'fibre works').")
    if not created_by.strip():
        raise InvalidInput("created_by is empty; name who creates the window.")
    target = target.strip()
    site_id: int | None = None
    mun: str | None = None
    provider: str | None = None
    if scope == "site":
        site_id = conn.execute(
            text("SELECT id FROM sites WHERE site_key = :k"), {"k": target}
        ).scalar()
        if site_id is None:
            raise NotFound(f"No site has the key '{target}'; check it with `conectado sites`.")
    elif scope == "municipality":
        mun = conn.execute(
            text("SELECT cvegeo FROM municipalities WHERE cvegeo = :c"), {"c": target}
        ).scalar()
        if mun is None:
            raise NotFound(
                f"No municipality has the CVEGEO '{target}' (5 digits: state + municipality, "
                "e.g. 09015)."
            )
    else:
        found = conn.execute(
            text("SELECT provider FROM sites WHERE lower(provider) = lower(:p) LIMIT 1"),
            {"p": target},
        ).scalar()
        if found is None:
            raise NotFound(
                f"No site has the provider '{target}'; a window for it would cover nothing."
            )
        provider = str(found)
    new_id = conn.execute(
        text(
            "INSERT INTO maintenance_windows (scope, site_id, mun_cvegeo, provider, starts_at, "
            "ends_at, reason, created_by) VALUES (:scope, :site, :mun, :prov, :a, :b, :r, :by) "
            "RETURNING id"
        ),
        {
            "scope": scope,
            "site": site_id,
            "mun": mun,
            "prov": provider,
            "a": starts_at,
            "b": ends_at,
            "r": reason.strip(),
            "by": created_by.strip(),
        },
    ).scalar_one()
    return get_window(conn, int(new_id))


def get_window(conn: Connection, window_id: int) -> MaintenanceWindow:
    """Return one window or raise NotFound."""
    row = conn.execute(text(_SELECT + " WHERE w.id = :id"), {"id": window_id}).one_or_none()
    if row is None:
        raise NotFound(f"No maintenance window has the id {window_id}.")
    return _window(row)


def list_windows(
    conn: Connection,
    *,
    now: datetime,
    include_past: bool = False,
    site_key: str | None = None,
    limit: int = 1000,
) -> list[MaintenanceWindow]:
    """Windows that are active or upcoming at ``now`` (or all), soonest first."""
    where = ["TRUE"]
    params: dict[str, object] = {"now": now, "limit": limit}
    if not include_past:
        where.append("w.ends_at > :now")
    if site_key is not None:
        where.append(
            "EXISTS (SELECT 1 FROM sites x WHERE x.site_key = :key AND ("
            "x.id = w.site_id OR x.mun_cvegeo = w.mun_cvegeo OR x.provider = w.provider))"
        )
        params["key"] = site_key
    sql = _SELECT + " WHERE " + " AND ".join(where) + " ORDER BY w.starts_at, w.id LIMIT :limit"
    return [_window(r) for r in conn.execute(text(sql), params)]


def update_window(
    conn: Connection,
    window_id: int,
    *,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    reason: str | None = None,
) -> MaintenanceWindow:
    """Change a window's period or reason (e.g. end it early); returns the new window."""
    current = get_window(conn, window_id)
    new_start = _aware("starts_at", starts_at) if starts_at else current.starts_at
    new_end = _aware("ends_at", ends_at) if ends_at else current.ends_at
    if new_end <= new_start:
        raise InvalidInput(
            f"ends_at ({new_end.isoformat()}) must be after starts_at ({new_start.isoformat()})."
        )
    if reason is not None and not reason.strip():
        raise InvalidInput("reason is empty; say why the window exists.")
    conn.execute(
        text(
            "UPDATE maintenance_windows SET starts_at = :a, ends_at = :b, "
            "reason = coalesce(:r, reason) WHERE id = :id"
        ),
        {"a": new_start, "b": new_end, "r": reason.strip() if reason else None, "id": window_id},
    )
    return get_window(conn, window_id)


def remove_window(conn: Connection, window_id: int) -> MaintenanceWindow:
    """Delete a window and return what it was."""
    window = get_window(conn, window_id)
    conn.execute(text("DELETE FROM maintenance_windows WHERE id = :id"), {"id": window_id})
    return window


def sites_in_maintenance(conn: Connection, now: datetime) -> int:
    """How many sites an active window covers at ``now``."""
    sql = f"SELECT count(*) FROM ({SITES_IN_MAINTENANCE_SQL}) m"
    return int(conn.execute(text(sql), {"now": now}).scalar_one())
