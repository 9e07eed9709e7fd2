"""Planners: coverage by state, municipality and locality, the uncovered lists, exports."""

# No `from __future__ import annotations`: the page-size cap comes from the settings.

import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import CoverageComputer, CoverageReader, EngineDep, Exporter, SettingsDep
from api.schemas import MunicipalityCode, StateCode
from core.settings import Settings
from geo.coverage import CoverageRun, compute_coverage
from geo.coverage_export import export_coverage
from geo.coverage_queries import (
    LocalityCoverage,
    MunicipalityCoverage,
    NationalCoverage,
    StateCoverage,
    get_run,
    list_runs,
    municipality_coverage,
    national_coverage,
    state_coverage,
    uncovered_localities,
)

RunId = Annotated[
    int | None, Query(ge=1, le=2**63 - 1, description="A coverage run; default the newest.")
]
MEDIA = {
    "csv": "text/csv",
    "geojson": "application/geo+json",
    "gpkg": "application/geopackage+sqlite3",
}


class NationalReport(BaseModel):
    """The run (when, radius, basis) and the national figures."""

    run: CoverageRun
    national: NationalCoverage


class MunicipalitiesPage(BaseModel):
    """Municipality figures in the asked order; ``next_after`` continues the list."""

    run: CoverageRun
    data: list[MunicipalityCoverage]
    next_after: str | None


class LocalitiesPage(BaseModel):
    """Localities, largest population first; ``next_after`` continues the list."""

    run: CoverageRun
    data: list[LocalityCoverage]
    next_after: str | None


def build_router(settings: Settings) -> APIRouter:
    """The /api/coverage routes."""
    router = APIRouter(prefix="/api/coverage", tags=["coverage"])
    cap = settings.page_size_max
    Limit = Annotated[int, Query(ge=1, le=cap, description=f"Page size (≤ {cap}).")]  # noqa: N806

    @router.get("/runs", response_model=list[CoverageRun], summary="Coverage runs, newest first")
    def get_runs(
        engine: EngineDep, caller: CoverageReader, limit: Annotated[int, Query(ge=1, le=100)] = 20
    ) -> list[CoverageRun]:
        """Return the kept coverage runs, newest first."""
        with engine.connect() as conn:
            return list_runs(conn, limit=limit)

    @router.post(
        "/runs",
        response_model=CoverageRun,
        status_code=201,
        summary="Compute coverage now (takes seconds)",
    )
    async def post_run(
        engine: EngineDep,
        cfg: SettingsDep,
        caller: CoverageComputer,
        radius_km: Annotated[float | None, Query(gt=0, le=200)] = None,
    ) -> CoverageRun:
        """Compute coverage for the whole country and store it as a new run."""
        return await run_in_threadpool(compute_coverage, engine, cfg, radius_km=radius_km)

    @router.get("/national", response_model=NationalReport, summary="National coverage")
    def get_national(
        engine: EngineDep, caller: CoverageReader, run_id: RunId = None
    ) -> NationalReport:
        """Return the national figures of a run (default the newest)."""
        with engine.connect() as conn:
            run = get_run(conn, run_id)
            return NationalReport(run=run, national=national_coverage(conn, run.id))

    @router.get("/states", response_model=list[StateCoverage], summary="Coverage by state")
    def get_states(
        engine: EngineDep,
        caller: CoverageReader,
        run_id: RunId = None,
        state: StateCode | None = None,
    ) -> list[StateCoverage]:
        """Return every state's figures (or one state's), ordered by state code."""
        with engine.connect() as conn:
            run = get_run(conn, run_id)
            return state_coverage(conn, run.id, cve_ent=state)

    @router.get(
        "/municipalities", response_model=MunicipalitiesPage, summary="Coverage by municipality"
    )
    def get_municipalities(
        engine: EngineDep,
        caller: CoverageReader,
        run_id: RunId = None,
        state: StateCode | None = None,
        municipality: MunicipalityCode | None = None,
        uncovered_only: bool = False,
        order: Literal["priority", "uncovered_pop", "covered_pct", "cvegeo"] = "priority",
        after: MunicipalityCode | None = None,
        limit: Limit = 100,
    ) -> MunicipalitiesPage:
        """Return municipality figures, highest priority first by default (uncovered_only: the
        municipalities with no working site within the radius of any locality)."""
        with engine.connect() as conn:
            run = get_run(conn, run_id)
            rows = municipality_coverage(
                conn,
                run.id,
                cve_ent=state,
                cvegeo=municipality,
                uncovered_only=uncovered_only,
                order=order,
                after=after,
                limit=limit + 1,
            )
        more = len(rows) > limit
        rows = rows[:limit]
        return MunicipalitiesPage(
            run=run, data=rows, next_after=rows[-1].cvegeo if more and rows else None
        )

    @router.get("/localities", response_model=LocalitiesPage, summary="Uncovered localities")
    def get_localities(
        engine: EngineDep,
        caller: CoverageReader,
        run_id: RunId = None,
        state: StateCode | None = None,
        municipality: MunicipalityCode | None = None,
        include_covered: bool = False,
        after: Annotated[str | None, Query(pattern=r"^\d{9}$")] = None,
        limit: Limit = 100,
    ) -> LocalitiesPage:
        """Return localities with no working site within the radius, largest first."""
        with engine.connect() as conn:
            run = get_run(conn, run_id)
            rows = uncovered_localities(
                conn,
                run.id,
                cve_ent=state,
                mun_cvegeo=municipality,
                include_covered=include_covered,
                after=after,
                limit=limit + 1,
            )
        more = len(rows) > limit
        rows = rows[:limit]
        return LocalitiesPage(
            run=run, data=rows, next_after=rows[-1].cvegeo if more and rows else None
        )

    @router.get(
        "/export",
        response_class=FileResponse,
        summary="Download coverage as CSV, GeoJSON or GeoPackage",
        responses={200: {"content": {m: {} for m in MEDIA.values()}, "description": "The file."}},
    )
    async def get_export(
        engine: EngineDep,
        caller: Exporter,
        background: BackgroundTasks,
        level: Literal["municipality", "locality", "state"] = "municipality",
        format: Literal["csv", "geojson", "gpkg"] = "csv",
        run_id: RunId = None,
        uncovered_only: bool = False,
    ) -> FileResponse:
        """Return one level of a coverage run as a file (boundaries or points in EPSG:4326)."""
        folder = Path(tempfile.mkdtemp(prefix="conectado-export-"))
        path = folder / f"coverage_{level}.{format}"
        result = await run_in_threadpool(
            export_coverage,
            engine,
            path,
            level=level,
            fmt=format,
            run_id=run_id,
            uncovered_only=uncovered_only,
        )
        background.add_task(_remove, folder)
        return FileResponse(
            path,
            media_type=MEDIA[format],
            filename=f"coverage_{level}_run{result.run_id}.{format}",
        )

    return router


def _remove(folder: Path) -> None:
    for child in folder.iterdir():
        child.unlink(missing_ok=True)
    folder.rmdir()
