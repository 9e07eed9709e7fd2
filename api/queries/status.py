"""Current status counts and the operators' summary by state, provider, category or technology.

"Current state" is results.current's: up, degraded or down as the probes last saw a probed site,
``unknown`` for a probed site with no result yet, ``unmonitored`` for planned and suspended sites;
retired sites are left out of every count.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, text

from results.current import CURRENT_STATES, current_state_sql

STATES = CURRENT_STATES
_STATE = current_state_sql("s", "st")


class SummaryDimension(StrEnum):
    """What the status summary groups by."""

    STATE = "state"
    MUNICIPALITY = "municipality"
    PROVIDER = "provider"
    CATEGORY = "category"
    TECHNOLOGY = "technology"


@dataclass(frozen=True, slots=True)
class StatusGroup:
    """Site counts by current state for one group (a state, a provider, ...)."""

    key: str | None
    name: str | None
    sites: int
    up: int
    degraded: int
    down: int
    unknown: int
    unmonitored: int

    @property
    def up_pct(self) -> float | None:
        """Share of probed sites that are up, in percent (None when none was probed)."""
        probed = self.up + self.degraded + self.down
        return None if probed == 0 else round(100.0 * self.up / probed, 2)


_GROUP_SQL = {
    SummaryDimension.STATE: ("s.cve_ent", "e.name", "LEFT JOIN states e ON e.cve_ent = s.cve_ent"),
    SummaryDimension.MUNICIPALITY: (
        "s.mun_cvegeo",
        "m.name || ', ' || e.abbrev",
        "LEFT JOIN municipalities m ON m.cvegeo = s.mun_cvegeo "
        "LEFT JOIN states e ON e.cve_ent = m.cve_ent",
    ),
    SummaryDimension.PROVIDER: ("s.provider", "s.provider", ""),
    SummaryDimension.CATEGORY: ("s.category", "s.category", ""),
    SummaryDimension.TECHNOLOGY: ("s.technology", "s.technology", ""),
}


def status_summary(
    conn: Connection, by: SummaryDimension, *, cve_ent: str | None = None
) -> list[StatusGroup]:
    """Return counts by current state per group, most sites down first, then by key."""
    key, name, join = _GROUP_SQL[by]
    rows = conn.execute(
        text(
            f"""
            SELECT {key} AS key, min({name}) AS name, count(*) AS sites,
                   count(*) FILTER (WHERE {_STATE} = 'up') AS up,
                   count(*) FILTER (WHERE {_STATE} = 'degraded') AS degraded,
                   count(*) FILTER (WHERE {_STATE} = 'down') AS down,
                   count(*) FILTER (WHERE {_STATE} = 'unknown') AS unknown,
                   count(*) FILTER (WHERE {_STATE} = 'unmonitored') AS unmonitored
            FROM sites s
            LEFT JOIN site_status st ON st.site_id = s.id
            {join}
            WHERE s.status <> 'retired' AND (CAST(:ent AS text) IS NULL OR s.cve_ent = :ent)
            GROUP BY {key}
            ORDER BY down DESC, sites DESC, key NULLS LAST
            """
        ),
        {"ent": cve_ent},
    )
    return [StatusGroup(**r._mapping) for r in rows]


def state_counts(conn: Connection) -> dict[str, int]:
    """Return how many non-retired sites are in each current state (every state present)."""
    counts = dict.fromkeys(STATES, 0)
    rows = conn.execute(
        text(
            f"SELECT {_STATE} AS state, count(*) AS n FROM sites s "
            "LEFT JOIN site_status st ON st.site_id = s.id WHERE s.status <> 'retired' "
            "GROUP BY 1"
        )
    )
    for state, n in rows:
        counts[state] = n
    return counts
