"""Response and request bodies of the API that are not the inventory's own schemas."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.queries.status import SummaryDimension
from results.current import CurrentState
from sites.schemas import SitePublic


class WindowScope(StrEnum):
    """What a maintenance window covers."""

    SITE = "site"
    MUNICIPALITY = "municipality"
    PROVIDER = "provider"


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("give a time zone, e.g. 2025-03-01T08:00:00-06:00 or a trailing Z")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
StateCode = Annotated[str, Field(pattern=r"^\d{2}$", description="INEGI state code, 01–32.")]
MunicipalityCode = Annotated[
    str, Field(pattern=r"^\d{5}$", description="INEGI municipality code (CVEGEO, 5 digits).")
]


class StateCounts(BaseModel):
    """Non-retired sites by current state (results.current)."""

    up: int
    degraded: int
    down: int
    unknown: int = Field(description="Probed sites (active, installed) with no result yet.")
    unmonitored: int = Field(description="Planned and suspended sites: not probed.")
    total: int


class StatusGroupPublic(BaseModel):
    """Counts by current state for one group."""

    key: str | None = Field(description="Group key (state code, provider, ...); null: not set.")
    name: str | None
    sites: int
    up: int
    degraded: int
    down: int
    unknown: int
    unmonitored: int
    up_pct: float | None = Field(description="Up share of probed sites, percent.")


class ProbeFreshnessPublic(BaseModel):
    """How current the probes are: is monitoring itself keeping up?"""

    probeable: int = Field(
        description="Active or installed sites with a management address or a probe URL."
    )
    never_probed: int = Field(description="Probeable sites with no result yet.")
    no_probe_target: int = Field(
        description="Active or installed sites with neither: nothing to probe."
    )
    oldest_probe_at: datetime | None = Field(
        description="The oldest last probe among probeable sites."
    )
    last_batch_at: datetime | None = Field(description="When the last probe batch finished.")
    last_batch_sites: int | None
    probe_interval_s: int = Field(description="This server's CONECTADO_PROBE_INTERVAL.")
    behind: bool = Field(
        description="True when oldest_probe_at is more than 3 probe intervals ago: probing "
        "stopped or cannot keep up."
    )


class StatusSummary(BaseModel):
    """The operators' status summary."""

    by: SummaryDimension
    totals: StateCounts
    groups: list[StatusGroupPublic]


class IncidentPublic(BaseModel):
    """An incident: a failing site, or a municipality where most sites failed together."""

    id: int
    kind: Literal["site", "municipality"]
    status: Literal["open", "closed"]
    cause: str = Field(description="failures, flapping or municipal_outage.")
    site_id: int | None
    site_key: str | None
    site_name: str | None
    mun_cvegeo: str | None
    municipality: str | None
    cve_ent: str | None
    state_name: str | None
    provider: str | None
    started_at: datetime
    opened_at: datetime
    closed_at: datetime | None
    close_reason: str | None = Field(
        description="recovered, stable (flapping ended), site_inactive or outage_over."
    )
    duration_s: float | None = Field(description="Length of a closed incident, seconds.")
    flapping: bool
    flap_changes: int | None
    failures_at_open: int | None
    last_error: str | None
    sites_total: int | None
    sites_down: int | None
    members: int = Field(description="Member sites of a municipal incident.")
    parent_id: int | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    comment: str | None


class IncidentsPage(BaseModel):
    """A page of incidents, newest first; follow ``next`` for older ones."""

    items: list[IncidentPublic]
    next: str | None


class Acknowledge(BaseModel):
    """An acknowledgement, optionally with a comment for the other operators."""

    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(default=None, max_length=2000)


class WindowPublic(BaseModel):
    """A maintenance window: incidents of its target are suppressed while it lasts."""

    id: int
    scope: WindowScope
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
    sites: int = Field(description="Sites the window covers.")
    active: bool


class WindowCreate(BaseModel):
    """A new window for a site (its key), a municipality (CVEGEO) or a provider (name)."""

    model_config = ConfigDict(extra="forbid")

    scope: WindowScope
    target: str = Field(min_length=1, max_length=200, examples=["09015"])
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: str = Field(min_length=1, max_length=1000)


class WindowUpdate(BaseModel):
    """Changes to a window's period or reason."""

    model_config = ConfigDict(extra="forbid")

    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    reason: str | None = Field(default=None, min_length=1, max_length=1000)


class CardStatus(BaseModel):
    """What the last probes saw (``site_status``). For a site no longer probed (suspended) this
    is history: the site's current state is ``SiteCard.state``."""

    state: Literal["up", "degraded", "down", "unknown"]
    state_since: datetime | None
    last_probe_at: datetime | None
    last_ok_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    latency_ms: float | None
    in_bps: float | None
    out_bps: float | None
    rates_at: datetime | None
    snmp_ok: bool | None
    snmp_error: str | None
    http_ok: bool | None
    http_error: str | None
    http_status: int | None
    oper_status: int | None
    tls_days_left: float | None


class Uptime(BaseModel):
    """Uptime over a window: up rounds / rounds with a result."""

    rounds: int
    uptime_pct: float | None


class SeriesPoint(BaseModel):
    """One point: a probe round (raw) or an hour/day (rollups: averages, p50 latency)."""

    t: datetime
    state: str | None
    uptime_pct: float | None
    in_bps: float | None
    out_bps: float | None
    in_bps_max: float | None
    out_bps_max: float | None
    snmp_ms: float | None
    http_ms: float | None


class Series(BaseModel):
    """Bandwidth and latency over the period, oldest first."""

    period: str
    source: Literal["raw", "hourly", "daily"]
    points: list[SeriesPoint]


class CardIncident(BaseModel):
    """An incident of the site (or a municipal one it belonged to)."""

    id: int
    kind: str
    status: str
    cause: str
    started_at: datetime
    closed_at: datetime | None
    duration_s: float | None
    last_error: str | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    comment: str | None


class Reboot(BaseModel):
    """A reboot seen by the probes."""

    detected_at: datetime
    reason: str
    prev_uptime: int | None
    new_uptime: int | None


class NearbySite(BaseModel):
    """A site near this one, with its current state."""

    site_key: str
    name: str
    category: str
    provider: str | None
    technology: str | None
    state: CurrentState
    distance_m: float
    lon: float
    lat: float


class SiteCard(BaseModel):
    """Everything a technician or operator wants to know about one site."""

    site: SitePublic
    state: CurrentState = Field(
        description="Current state: up, degraded, down, unknown (probed, no result yet) or "
        "unmonitored (planned, suspended or retired: not probed)."
    )
    status: CardStatus | None = Field(description="null: never probed.")
    in_maintenance: bool
    uptime: dict[Literal["24h", "7d", "30d"], Uptime]
    series: Series
    incidents: list[CardIncident]
    reboots: list[Reboot]
    nearby: list[NearbySite]
