"""Site search by current probe state: the inventory's SiteFilter plus ``site_status``.

The inventory (sites/) knows nothing of probes, so the condition on the probes' current state
is added here, on the API's side of the one-way flow, by extending the filter's WHERE.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field
from sqlalchemy import ColumnElement, and_, column, exists, or_, table

from results.current import PROBED_STATUSES, CurrentState
from sites.filters import SiteFilter, as_list
from sites.models import sites_table

_site_status = table("site_status", column("site_id"), column("state"))


class ProbedSiteFilter(SiteFilter):
    """A SiteFilter that can also ask for sites by current state (results.current: the same
    states as everywhere else in the API)."""

    probe_state: Annotated[list[CurrentState], BeforeValidator(as_list)] = Field(
        default_factory=list
    )

    def where(self) -> ColumnElement[bool]:
        """The inventory's condition AND the site's current state is one of ``probe_state``."""
        base = super().where()
        if not self.probe_state:
            return base
        st = _site_status.c
        probed = sites_table.c.status.in_(PROBED_STATUSES)
        known = [s for s in self.probe_state if s in ("up", "degraded", "down")]
        wanted: list[ColumnElement[bool]] = []
        if known:
            wanted.append(
                and_(probed, exists().where(st.site_id == sites_table.c.id, st.state.in_(known)))
            )
        if "unknown" in self.probe_state:
            wanted.append(
                and_(
                    probed,
                    ~exists().where(
                        st.site_id == sites_table.c.id, st.state.in_(["up", "degraded", "down"])
                    ),
                )
            )
        if "unmonitored" in self.probe_state:
            wanted.append(~probed)
        return and_(base, or_(*wanted))
