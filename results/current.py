"""A site's *current state* as every view shows it (dashboard, API, metrics, maps, site card).

- ``up``, ``degraded``, ``down``: the state the probes last left in ``site_status``, for sites the
  rounds probe (inventory status ``active`` or ``installed``);
- ``unknown``: a probed site with no result yet;
- ``unmonitored``: a site the rounds leave alone (``planned``, ``suspended`` or ``retired``).
  Its last probe state, if it ever had one, is history: a site suspended while down must not
  count as down for ever, and one suspended while up must not count as up.
"""

from __future__ import annotations

from typing import Final, Literal

PROBED_STATUSES: Final = ("active", "installed")
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
