"""Sites: search (JSON or GeoJSON), one site, its card, writes, import, export, live probe."""

# No `from __future__ import annotations`: route signatures use the settings-dependent
# page-size cap, a closure variable that string annotations could not resolve.

import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import Connection, Engine, text
from starlette.concurrency import run_in_threadpool

from api.cache import cached_or_built
from api.deps import Conn, EngineDep, Prober, Reader, SettingsDep, SiteWriter
from api.errors import PROBLEM_JSON
from api.openapi import ref
from api.params import ProviderNames, parse_floats, split_list
from api.queries.card import Period, site_card_json
from api.queries.probe_filter import ProbedSiteFilter
from api.queries.sites_json import page_json
from api.schemas import SiteCard
from api.site_writes import create_site, import_report_json, retire_site, update_site
from core.errors import Conflict, DataFileError, InvalidInput, NotFound
from core.settings import Settings
from results.current import PROBED_STATUSES, CurrentState
from results.rounds import run_round
from sites.filters import SiteFilter
from sites.history import site_history
from sites.importer import ImportOptions, ImportReport, import_table
from sites.readers import read_source
from sites.schemas import SiteChangePublic, SiteCreate, SitePublic, SiteUpdate
from sites.search import get_site

GEOJSON = "application/geo+json"

SiteKey = Annotated[str, PathParam(min_length=1, max_length=100, description="The site's key.")]


class SiteListItem(SitePublic):
    """A site in a search result, with its current probe state."""

    probe_state: CurrentState = Field(
        description="Current state from the probes; unknown: probed but no result yet; "
        "unmonitored: planned, suspended or retired (not probed)."
    )
    probe_state_since: datetime | None = Field(
        description="Since when the site has been in probe_state; null if never probed or "
        "unmonitored."
    )


class SitesPage(BaseModel):
    """One page of sites in a stable order (by id, or by distance for nearest N)."""

    data: list[SiteListItem]
    count: int = Field(description="Sites on this page.")
    next_after: int | None = Field(description="after_id of the next page; null on the last.")
    next: str | None = Field(description="URL of the next page; null on the last.")


class PointGeometry(BaseModel):
    """A GeoJSON point, longitude then latitude (EPSG:4326)."""

    type: Literal["Point"]
    coordinates: tuple[float, float]


class SiteFeature(BaseModel):
    """A site as a GeoJSON feature; its id is the site key."""

    type: Literal["Feature"]
    id: str
    geometry: PointGeometry
    properties: SiteListItem


class SitesFeatureCollection(BaseModel):
    """A page of sites as GeoJSON."""

    type: Literal["FeatureCollection"]
    features: list[SiteFeature]
    numberReturned: int  # noqa: N815 - OGC / GeoJSON member name
    next: str | None


class SnmpSeen(BaseModel):
    """What the live SNMP GET of the site's WAN interface saw."""

    ok: bool
    latency_ms: float | None
    error: str | None
    error_detail: str | None
    if_index: int | None
    sys_uptime: int | None = Field(description="Hundredths of a second since the agent started.")
    in_octets: int | None
    out_octets: int | None
    counter_bits: int | None
    oper_status: int | None = Field(description="IF-MIB ifOperStatus: 1 up, 2 down, ...")
    high_speed_mbps: int | None
    in_bps: float | None = Field(description="Rate since the previous stored poll, if any.")
    out_bps: float | None


class HttpSeen(BaseModel):
    """What the live HTTP probe of the site's URL saw."""

    ok: bool
    latency_ms: float | None
    error: str | None
    error_detail: str | None
    status_code: int | None
    connect_ms: float | None
    ttfb_ms: float | None
    total_ms: float | None
    tls_days_left: float | None
    keyword_found: bool | None
    throughput_mbps: float | None
    bytes_read: int | None


class LiveProbe(BaseModel):
    """The result of probing a site now; it is stored like any round's result."""

    site_key: str
    round_id: str
    state: Literal["up", "degraded", "down"]
    probed_at: datetime
    duration_ms: float
    stored: Literal["written", "spooled", "lost"]
    snmp: SnmpSeen | None = Field(description="null: the site has no SNMP target.")
    http: HttpSeen | None = Field(description="null: the site has no probe URL.")


class ImportIssuePublic(BaseModel):
    """One problem with one row of an import (secret values are never echoed)."""

    where: str = Field(examples=["line 12"])
    row: int
    site_key: str
    column: str
    value: str
    severity: Literal["error", "warning"]
    message: str


class ImportReportPublic(BaseModel):
    """What an import read, wrote and rejected, and its issues (first 1,000)."""

    format: str
    mode: Literal["strict", "skip-invalid"]
    encoding: str | None
    delimiter: str | None
    rows: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    written: bool
    errors: int
    warnings: int
    issues: list[ImportIssuePublic]
    issues_listed: int
    notes: list[str]
    seconds: float


EXTRA_MODELS: list[type[BaseModel]] = [SitesFeatureCollection]
UPLOAD_SUFFIXES = {".csv", ".txt", ".geojson", ".json", ".gpkg", ".zip"}

_SNMP_COLUMNS = (
    "ok, latency_ms, error, error_detail, if_index, sys_uptime, in_octets::text AS in_octets, "
    "out_octets::text AS out_octets, counter_bits, oper_status, high_speed_mbps, in_bps, out_bps"
)
_HTTP_ONLY_COLUMNS = (
    "status_code, connect_ms, ttfb_ms, total_ms, tls_days_left, keyword_found, "
    "throughput_mbps, bytes_read"
)


def _probe_eligibility(conn: Connection, site_key: str) -> int:
    row = conn.execute(
        text(
            "SELECT id, status, mgmt_ip IS NOT NULL OR http_url IS NOT NULL AS reachable "
            "FROM sites WHERE site_key = :k"
        ),
        {"k": site_key},
    ).one_or_none()
    if row is None:
        raise NotFound(f"site {site_key!r}: no site has that key.")
    if row.status not in PROBED_STATUSES:
        raise Conflict(
            f"site {site_key!r} has status {row.status}; only {' and '.join(PROBED_STATUSES)} "
            "sites are probed. Change its status first."
        )
    if not row.reachable:
        raise Conflict(
            f"site {site_key!r} has neither a management address nor a probe URL; add one."
        )
    return int(row.id)


def _import(conn: Connection, path: Path, options: ImportOptions) -> ImportReport:
    return import_table(conn, read_source(path), options=options)


def live_probe(engine: Engine, settings: Settings, site_key: str) -> LiveProbe:
    """Probe one site now over SNMP and HTTP (as a one-site round) and return what was seen."""
    with engine.connect() as conn:
        site_id = _probe_eligibility(conn, site_key)
    start = time.perf_counter()
    summary = run_round(engine, settings, site_keys=[site_key])
    duration_ms = (time.perf_counter() - start) * 1e3
    snmp = http = None
    if summary.written or summary.already_written:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    f"SELECT kind, {_SNMP_COLUMNS}, {_HTTP_ONLY_COLUMNS} "
                    "FROM probe_results WHERE round_id = CAST(:r AS uuid) AND site_id = :s"
                ),
                {"r": summary.round_id, "s": site_id},
            ).mappings()
            for row in rows:
                if row["kind"] == "snmp":
                    snmp = SnmpSeen(**{k: row[k] for k in SnmpSeen.model_fields})
                else:
                    http = HttpSeen(**{k: row[k] for k in HttpSeen.model_fields})
    state = "up" if summary.up else "degraded" if summary.degraded else "down"
    return LiveProbe(
        site_key=site_key,
        round_id=summary.round_id,
        state=state,
        probed_at=summary.finished_at,
        duration_ms=round(duration_ms, 1),
        stored="written"
        if summary.written or summary.already_written
        else "spooled"
        if summary.spooled
        else "lost",
        snmp=snmp,
        http=http,
    )


def filter_from_query(
    *,
    bbox: str | None,
    near: str | None,
    radius_km: float | None,
    nearest: int | None,
    municipality: list[str] | None,
    state: list[str] | None,
    category: list[str] | None,
    status: list[str] | None,
    technology: list[str] | None,
    provider: list[str] | None,
    text: str | None,
    probe_state: list[str] | None = None,
) -> SiteFilter:
    """Build the inventory's SiteFilter (with ``probe_state``, the search's ProbedSiteFilter)
    from query parameters; bad values raise a 422."""
    fields: dict[str, Any] = {
        "bbox": parse_floats("bbox", bbox, 4, "min_lon,min_lat,max_lon,max_lat"),
        "near": parse_floats("near", near, 2, "lon,lat"),
        "radius_km": radius_km,
        "nearest": nearest,
        "municipality": split_list("municipality", municipality),
        "state": split_list("state", state),
        "category": split_list("category", category),
        "status": split_list("status", status),
        "technology": split_list("technology", technology),
        "provider": split_list("provider", provider),
        "text": text,
        "probe_state": split_list("probe_state", probe_state),
    }
    try:
        return ProbedSiteFilter(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise RequestValidationError(
            [
                {
                    "type": e["type"],
                    "loc": ("query", *(e["loc"][:1] or ("filter",))),
                    "msg": e["msg"].removeprefix("Value error, "),
                    "input": None,
                }
                for e in exc.errors()
            ]
        ) from None


def wants_geojson(request: Request, f: str | None) -> bool:
    """Say whether the client asked for GeoJSON (``f=geojson`` or an Accept header)."""
    if f is not None:
        return f == "geojson"
    return GEOJSON in request.headers.get("accept", "")


def build_router(settings: Settings) -> APIRouter:
    """The /api/sites routes, with the page-size cap taken from ``settings``."""
    router = APIRouter(prefix="/api/sites", tags=["sites"])
    cap = settings.page_size_max

    @router.get(
        "",
        response_model=SitesPage,
        summary="Search sites (JSON or GeoJSON)",
        responses={200: {"content": {GEOJSON: {"schema": ref(SitesFeatureCollection)}}}},
    )
    async def search(
        request: Request,
        caller: Reader,
        bbox: Annotated[
            str | None,
            Query(
                description="min_lon,min_lat,max_lon,max_lat (EPSG:4326).",
                examples=["-99.2,19.3,-99.0,19.5"],
            ),
        ] = None,
        near: Annotated[str | None, Query(description="lon,lat for radius_km or nearest.")] = None,
        radius_km: Annotated[
            float | None, Query(description="Sites within this distance of near (km).")
        ] = None,
        nearest: Annotated[
            int | None, Query(description="The N sites closest to near, by distance.")
        ] = None,
        municipality: Annotated[
            list[str] | None, Query(description="CVEGEO codes; repeat or comma-separate.")
        ] = None,
        state: Annotated[list[str] | None, Query(description="CVE_ENT codes.")] = None,
        category: Annotated[list[str] | None, Query()] = None,
        status: Annotated[list[str] | None, Query(description="Inventory status.")] = None,
        technology: Annotated[list[str] | None, Query()] = None,
        provider: ProviderNames = None,
        text: Annotated[
            str | None, Query(description="Part of the name or key (near misses match).")
        ] = None,
        probe_state: Annotated[
            list[str] | None,
            Query(
                description="Current probe state: up, degraded, down, unknown (probed, no "
                "result yet) or unmonitored (planned, suspended, retired); repeat or "
                "comma-separate.",
                examples=["down"],
            ),
        ] = None,
        after_id: Annotated[
            int | None, Query(ge=0, le=2**63 - 1, description="Continue after this id.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=cap, description=f"Page size (≤ {cap}).")] = 100,
        f: Annotated[
            Literal["json", "geojson"] | None,
            Query(description="Output format; or send Accept: application/geo+json."),
        ] = None,
    ) -> Response:
        """Return one page of matching sites ordered by id (nearest N: by distance), each with
        its current probe state; follow ``next`` for the next page."""
        flt = filter_from_query(
            bbox=bbox,
            near=near,
            radius_km=radius_km,
            nearest=nearest,
            municipality=municipality,
            state=state,
            category=category,
            status=status,
            technology=technology,
            provider=provider,
            text=text,
            probe_state=probe_state,
        )
        geojson = wants_geojson(request, f)
        engine: Engine = request.app.state.engine
        url = request.url

        def build() -> tuple[str, str]:
            with engine.begin() as conn:
                page = page_json(
                    conn,
                    flt,
                    after_id=after_id,
                    limit=min(limit, nearest) if nearest else limit,
                    geojson=geojson,
                )
            nxt = "null"
            if page.more and page.last_id is not None and not flt.by_distance:
                nxt = '"' + str(url.include_query_params(after_id=page.last_id)) + '"'
            if geojson:
                return (
                    f'{{"type":"FeatureCollection","numberReturned":{page.returned},'
                    f'"next":{nxt},"features":[{page.items}]}}',
                    GEOJSON,
                )
            after = page.last_id if nxt != "null" else None
            return (
                f'{{"count":{page.returned},"next_after":{"null" if after is None else after},'
                f'"next":{nxt},"data":[{page.items}]}}',
                "application/json",
            )

        response = await cached_or_built(request, ("search", str(url), geojson), build)
        assert response is not None  # build always answers
        return response

    @router.post(
        "",
        response_model=SitePublic,
        status_code=201,
        summary="Create a site",
        responses={409: {"description": "The key exists."}},
    )
    def post_site(body: SiteCreate, conn: Conn, caller: SiteWriter) -> SitePublic:
        """Create a site; its municipality and state come from the coordinates. SNMP
        credentials are accepted here and never returned."""
        return create_site(conn, body, changed_by=f"api:{caller.name}")

    @router.post(
        "/import",
        response_model=ImportReportPublic,
        summary="Import a file of sites (CSV, GeoJSON, GeoPackage, zipped Shapefile)",
        responses={422: {"description": "Unreadable file, or strict mode found errors."}},
    )
    async def post_import(
        conn: Conn,
        caller: SiteWriter,
        file: Annotated[UploadFile, File(description="The inventory file.")],
        mode: Annotated[Literal["strict", "skip-invalid"], Form()] = "strict",
        fix_swapped: Annotated[bool, Form()] = False,
        dry_run: Annotated[bool, Form()] = False,
    ) -> Response:
        """Validate and import the file in one transaction, as `conectado sites import`
        does: strict writes nothing when any row is invalid; skip-invalid writes the valid
        rows. The answer is the validation report (422 when strict mode rejected the file)."""
        suffix = Path(file.filename or "upload.csv").suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise InvalidInput(
                f"file: {file.filename!r} is not a known inventory format; send .csv, "
                ".geojson, .gpkg or a zipped Shapefile (.zip)."
            )
        with tempfile.TemporaryDirectory(prefix="conectado-import-") as folder:
            path = Path(folder) / f"upload{suffix}"
            path.write_bytes(await file.read())
            options = ImportOptions(
                mode=mode,
                fix_swapped=fix_swapped,
                dry_run=dry_run,
                changed_by=f"api:{caller.name}",
            )
            try:
                report = await run_in_threadpool(_import, conn, path, options)
            except DataFileError as exc:
                raise InvalidInput(f"file: {exc.message}") from None
        body = import_report_json(report)
        if mode == "strict" and report.errors:
            problem_body = {
                "type": "https://conectado.mx/problems/unprocessable-content",
                "title": "Invalid input",
                "status": 422,
                "detail": f"{len(report.errors)} row(s) have errors, so nothing was written "
                "(strict mode): fix them or import with mode=skip-invalid.",
                "report": body,
            }
            return JSONResponse(problem_body, status_code=422, media_type=PROBLEM_JSON)
        return JSONResponse(body)

    @router.get(
        "/{site_key}",
        response_model=SitePublic,
        summary="One site's inventory record",
        responses={404: {"description": "No site has that key."}},
    )
    def get_one(site_key: SiteKey, conn: Conn, caller: Reader) -> SitePublic:
        """Return the site's inventory fields (never its SNMP secrets)."""
        return get_site(conn, site_key)

    @router.get(
        "/{site_key}/card",
        response_model=SiteCard,
        summary="A site's card",
        responses={404: {"description": "No site has that key."}},
    )
    async def get_card(
        request: Request, site_key: SiteKey, caller: Reader, period: Period = Period.H24
    ) -> Response:
        """Return inventory (no secrets), current status, uptime 24 h / 7 d / 30 d, the series
        of the period (raw results up to 48 h, hourly rollups up to 30 d, daily beyond),
        recent incidents, reboots and the nearest sites."""
        engine: Engine = request.app.state.engine

        def build() -> tuple[str, str] | None:
            with engine.begin() as conn:
                body = site_card_json(conn, site_key, period=period)
            return None if body is None else (body, "application/json")

        response = await cached_or_built(request, ("card", site_key, period.value), build)
        if response is None:
            raise NotFound(f"site {site_key!r}: no site has that key.")
        return response

    @router.patch("/{site_key}", response_model=SitePublic, summary="Change a site")
    def patch_site(
        site_key: SiteKey, body: SiteUpdate, conn: Conn, caller: SiteWriter
    ) -> SitePublic:
        """Change only the fields given (null clears a field); moving the site re-assigns
        its municipality. The change is recorded in the site's history."""
        return update_site(conn, site_key, body, changed_by=f"api:{caller.name}")

    @router.delete("/{site_key}", response_model=SitePublic, summary="Retire a site (soft delete)")
    def delete_site(site_key: SiteKey, conn: Conn, caller: SiteWriter) -> SitePublic:
        """Set the site's status to retired; it stays in the inventory and its history and is
        no longer probed or counted."""
        return retire_site(conn, site_key, changed_by=f"api:{caller.name}")

    @router.get(
        "/{site_key}/history",
        response_model=list[SiteChangePublic],
        summary="A site's change history",
    )
    def get_history(
        site_key: SiteKey,
        conn: Conn,
        caller: Reader,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[SiteChangePublic]:
        """Return the newest changes first (secrets appear only as "changed")."""
        get_site(conn, site_key)
        return site_history(conn, site_key, limit=limit)

    @router.post(
        "/{site_key}/probe",
        response_model=LiveProbe,
        summary="Probe a site now (SNMP + HTTP)",
        responses={
            404: {"description": "No site has that key."},
            409: {"description": "The site is not probed (status or no address)."},
        },
    )
    def post_probe(
        site_key: SiteKey, engine: EngineDep, cfg: SettingsDep, caller: Prober
    ) -> LiveProbe:
        """Run a live SNMP and HTTP probe of the site and return what it saw, within the probe
        timeouts (CONECTADO_SNMP_TIMEOUT × retries, CONECTADO_HTTP_TIMEOUT). The result is
        stored like any round's, so the site's status and history include it."""
        return live_probe(engine, cfg, site_key)

    return router
