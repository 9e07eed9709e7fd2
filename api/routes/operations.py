"""Operators: status summary, open incidents (acknowledge), maintenance windows (CRUD)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel

from api.deps import Acknowledger, Conn, MaintenanceWriter, Reader, SettingsDep
from api.queries.status import SummaryDimension, state_counts, status_summary
from api.schemas import (
    Acknowledge,
    IncidentPublic,
    IncidentsPage,
    MunicipalityCode,
    ProbeFreshnessPublic,
    StateCode,
    StateCounts,
    StatusGroupPublic,
    StatusSummary,
    WindowCreate,
    WindowPublic,
    WindowUpdate,
)
from core.errors import InvalidInput, NotFound
from results.current import probe_freshness, probes_behind
from results.incidents import (
    Incident,
    acknowledge_incident,
    get_incident,
    incident_members,
    list_incidents,
)
from results.maintenance import (
    MaintenanceWindow,
    add_window,
    get_window,
    list_windows,
    remove_window,
    update_window,
)

router = APIRouter(prefix="/api", tags=["operations"])

Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (≤ 1000).")]


@router.get("/status/counts", response_model=StateCounts, summary="Sites by current state")
def get_state_counts(conn: Conn, caller: Reader) -> StateCounts:
    """Return how many non-retired sites are up, degraded, down, not yet probed (unknown) or
    not probed at all (unmonitored: planned or suspended)."""
    counts = state_counts(conn)
    return StateCounts(**counts, total=sum(counts.values()))


@router.get(
    "/status/probes", response_model=ProbeFreshnessPublic, summary="How current the probes are"
)
def get_probe_freshness(conn: Conn, caller: Reader, cfg: SettingsDep) -> ProbeFreshnessPublic:
    """Return how many sites can be probed, how many have no result yet, and how old the oldest
    result is; ``behind`` flags probing that stopped or cannot keep up."""
    fresh = probe_freshness(conn)
    return ProbeFreshnessPublic(
        **asdict(fresh),
        probe_interval_s=cfg.probe_interval,
        behind=probes_behind(fresh, cfg.probe_interval),
    )


@router.get("/status/summary", response_model=StatusSummary, summary="Status summary by group")
def get_status_summary(
    conn: Conn,
    caller: Reader,
    by: SummaryDimension = SummaryDimension.STATE,
    state: Annotated[StateCode | None, Query(description="Only this state's sites.")] = None,
) -> StatusSummary:
    """Return counts by current state grouped by state, municipality, provider, category or
    technology; groups with most sites down first."""
    groups = status_summary(conn, by, cve_ent=state)
    totals = {
        "up": sum(g.up for g in groups),
        "degraded": sum(g.degraded for g in groups),
        "down": sum(g.down for g in groups),
        "unknown": sum(g.unknown for g in groups),
        "unmonitored": sum(g.unmonitored for g in groups),
    }
    return StatusSummary(
        by=by,
        totals=StateCounts(**totals, total=sum(totals.values())),
        groups=[
            StatusGroupPublic(
                key=g.key,
                name=g.name,
                sites=g.sites,
                up=g.up,
                degraded=g.degraded,
                down=g.down,
                unknown=g.unknown,
                unmonitored=g.unmonitored,
                up_pct=g.up_pct,
            )
            for g in groups
        ],
    )


class IncidentStatus(StrEnum):
    """Which incidents to list."""

    OPEN = "open"
    CLOSED = "closed"
    ALL = "all"


class IncidentMemberPublic(BaseModel):
    """A site in a grouped municipal incident."""

    site_id: int
    site_key: str
    name: str
    joined_at: datetime
    down_since: datetime | None
    recovered_at: datetime | None


class IncidentDetail(IncidentPublic):
    """An incident with its member sites (municipal incidents)."""

    member_sites: list[IncidentMemberPublic]


def _incident(incident: Incident) -> IncidentPublic:
    return IncidentPublic(**asdict(incident))


@router.get("/incidents", response_model=IncidentsPage, summary="List incidents")
def get_incidents(
    conn: Conn,
    caller: Reader,
    status_: Annotated[IncidentStatus, Query(alias="status")] = IncidentStatus.OPEN,
    kind: Literal["site", "municipality"] | None = None,
    site_key: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    municipality: MunicipalityCode | None = None,
    state: Annotated[StateCode | None, Query(description="Only this state's incidents.")] = None,
    provider: Annotated[
        str | None, Query(min_length=1, max_length=200, description="Exact provider name.")
    ] = None,
    acknowledged: Annotated[
        bool | None, Query(description="false: only those nobody has acknowledged yet.")
    ] = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Limit = 100,
) -> IncidentsPage:
    """Return incidents newest first (open ones by default); ``next`` continues the list.

    A municipal outage is one incident; its member sites are listed by GET /incidents/{id}.
    """
    rows = list_incidents(
        conn,
        status=status_.value,
        kind=kind,
        site_key=site_key,
        mun_cvegeo=municipality,
        cve_ent=state,
        provider=provider,
        acknowledged=acknowledged,
        before_id=before_id,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = None
    if more:
        query: dict[str, object] = {
            "status": status_.value,
            "kind": kind,
            "site_key": site_key,
            "municipality": municipality,
            "state": state,
            "provider": provider,
            "acknowledged": None if acknowledged is None else str(acknowledged).lower(),
            "limit": limit,
            "before_id": rows[-1].id,
        }
        nxt = "/api/incidents?" + urlencode({k: v for k, v in query.items() if v is not None})
    return IncidentsPage(items=[_incident(r) for r in rows], next=nxt)


@router.get("/incidents/{incident_id}", response_model=IncidentDetail, summary="One incident")
def get_one_incident(incident_id: Id, conn: Conn, caller: Reader) -> IncidentDetail:
    """Return the incident with its member sites."""
    incident = get_incident(conn, incident_id)
    members = [IncidentMemberPublic(**asdict(m)) for m in incident_members(conn, incident_id)]
    return IncidentDetail(**asdict(incident), member_sites=members)


@router.post(
    "/incidents/{incident_id}/acknowledge",
    response_model=IncidentPublic,
    summary="Acknowledge an incident",
)
def post_acknowledge(
    incident_id: Id, body: Acknowledge, conn: Conn, caller: Acknowledger
) -> IncidentPublic:
    """Record that the caller is on it, with an optional comment (the first ack is kept)."""
    return _incident(
        acknowledge_incident(
            conn, incident_id, by=caller.name, now=datetime.now(UTC), comment=body.comment
        )
    )


def _window(window: MaintenanceWindow, now: datetime) -> WindowPublic:
    return WindowPublic(**asdict(window), active=window.active_at(now))


@router.get("/maintenance", response_model=list[WindowPublic], summary="List maintenance windows")
def get_windows(
    conn: Conn,
    caller: Reader,
    include_past: bool = False,
    site_key: Annotated[
        str | None, Query(min_length=1, max_length=100, description="Windows covering it.")
    ] = None,
    limit: Limit = 1000,
) -> list[WindowPublic]:
    """Return active and upcoming windows (past ones too if asked), soonest first."""
    now = datetime.now(UTC)
    windows = list_windows(conn, now=now, include_past=include_past, site_key=site_key, limit=limit)
    return [_window(w, now) for w in windows]


@router.post(
    "/maintenance",
    response_model=WindowPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Create a maintenance window",
)
def post_window(body: WindowCreate, conn: Conn, caller: MaintenanceWriter) -> WindowPublic:
    """Create a window for a site (key), a municipality (CVEGEO) or a provider (name)."""
    try:
        window = add_window(
            conn,
            scope=body.scope.value,
            target=body.target,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            reason=body.reason,
            created_by=caller.name,
        )
    except NotFound as exc:  # the target named in the body does not exist: a body error
        raise InvalidInput(f"target: {exc.message}") from None
    return _window(window, datetime.now(UTC))


@router.get("/maintenance/{window_id}", response_model=WindowPublic, summary="One window")
def get_one_window(window_id: Id, conn: Conn, caller: Reader) -> WindowPublic:
    """Return the window."""
    return _window(get_window(conn, window_id), datetime.now(UTC))


@router.patch("/maintenance/{window_id}", response_model=WindowPublic, summary="Change a window")
def patch_window(
    window_id: Id, body: WindowUpdate, conn: Conn, caller: MaintenanceWriter
) -> WindowPublic:
    """Change the period or reason of a window (e.g. end it early)."""
    window = update_window(
        conn, window_id, starts_at=body.starts_at, ends_at=body.ends_at, reason=body.reason
    )
    return _window(window, datetime.now(UTC))


@router.delete(
    "/maintenance/{window_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a window",
)
def delete_window(window_id: Id, conn: Conn, caller: MaintenanceWriter) -> Response:
    """Delete the window."""
    remove_window(conn, window_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
