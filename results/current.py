"""A site's *current state* as every view shows it (dashboard, API, metrics, maps, site card).

- ``up``, ``degraded``, ``down``: the state the probes last left in ``site_status``, for sites the
  rounds probe (inventory status ``active`` or ``installed``);
- ``unknown``: a probed site with no result yet;
- ``unmonitored``: a site the rounds leave alone (``planned``, ``suspended`` or ``retired``).
  Its last probe state, if it ever had one, is history: a site suspended while down must not
  count as down for ever, and one suspended while up must not count as up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from sqlalchemy import Connection, text

PROBED_STATUSES: Final = ("active", "installed")
# Probing is *behind* when the oldest result of a probeable site is this many intervals old.
PROBES_LATE_INTERVALS: Final = 3
CURRENT_STATES: Final = ("up", "degraded", "down", "unknown", "unmonitored")
CurrentState = Literal["up", "degraded", "down", "unknown", "unmonitored"]

_PROBED_SQL: Final = ", ".join(f"'{s}'" for s in PROBED_STATUSES)


def probed_sql(site: str = "s") -> str:
    """SQL condition: the row ``site`` of ``sites`` is one the probe rounds probe."""
    return f"{site}.status IN ({_PROBED_SQL})"


def current_state_sql(site: str = "s", status: str = "st") -> str:
    """SQL expression of the current state of ``site`` (a ``sites`` row) LEFT JOINed to
    ``status`` (its ``site_status`` row): one of ``CURRENT_STATES``, never NULL."""
    return (
        f"CASE WHEN {probed_sql(site)} THEN coalesce({status}.state, 'unknown') "
        "ELSE 'unmonitored' END"
    )


@dataclass(frozen=True, slots=True)
class ProbeFreshness:
    """How current the probes are: is monitoring itself keeping up?"""

    probeable: int  # probed statuses with a management address or a probe URL
    no_probe_target: int  # probed statuses with neither: nothing to probe
    never_probed: int  # probeable sites with no result yet
    oldest_probe_at: datetime | None  # the oldest last probe among probeable sites
    last_batch_at: datetime | None
    last_batch_sites: int | None


def probe_freshness(conn: Connection) -> ProbeFreshness:
    """Return how many monitored sites can be probed, and how old their oldest result is."""
    counts = conn.execute(
        text(
            f"""
            SELECT count(*) FILTER (WHERE s.mgmt_ip IS NOT NULL OR s.http_url IS NOT NULL)
                       AS probeable,
                   count(*) FILTER (WHERE s.mgmt_ip IS NULL AND s.http_url IS NULL)
                       AS no_probe_target,
                   count(*) FILTER (WHERE (s.mgmt_ip IS NOT NULL OR s.http_url IS NOT NULL)
                                    AND st.last_probe_at IS NULL) AS never_probed,
                   min(st.last_probe_at) FILTER (WHERE s.mgmt_ip IS NOT NULL
                                                 OR s.http_url IS NOT NULL) AS oldest_probe_at
            FROM sites s
            LEFT JOIN site_status st ON st.site_id = s.id
            WHERE {probed_sql("s")}
            """
        )
    ).one()
    last = conn.execute(
        text("SELECT finished_at, sites FROM probe_rounds ORDER BY started_at DESC LIMIT 1")
    ).one_or_none()
    return ProbeFreshness(
        **counts._mapping,
        last_batch_at=None if last is None else last.finished_at,
        last_batch_sites=None if last is None else last.sites,
    )


def probes_behind(fresh: ProbeFreshness, interval_s: float, now: datetime | None = None) -> bool:
    """True when the oldest result of a probeable site is more than ``PROBES_LATE_INTERVALS``
    probe intervals old: probing stopped or cannot keep up."""
    if fresh.oldest_probe_at is None:
        return False
    age = ((now or datetime.now(UTC)) - fresh.oldest_probe_at).total_seconds()
    return age > PROBES_LATE_INTERVALS * interval_s
