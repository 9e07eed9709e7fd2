"""Read materialised coverage: runs, national/state/municipality figures, uncovered localities.

Every list is ordered and pages by keyset (the key of the last row seen), as the API needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from core.errors import InvalidInput, NotFound
from geo.coverage import CATEGORIES, CoverageRun

RUN_COLUMNS = (
    "id, computed_at, as_of, radius_km, basis, working_hours, duration_s, sites, active_sites, "
    "working_sites, localities"
)


@dataclass(frozen=True)
class CoverageFigures:
    """Aggregates shared by a municipality, a state and the nation (see geo.coverage)."""

    pop_2020: int | None
    locality_count: int
    locality_pop: int
    sites: int
    sites_school: int
    sites_health: int
    sites_public_space: int
    sites_community: int
    sites_government: int
    sites_research: int
    active_sites: int
    working_sites: int
    sites_per_10k: float | None
    working_per_10k: float | None
    covered_localities: int
    covered_pop: int
    covered_pct_census: float | None
    covered_pct_localities: float | None
    uncovered_pop: int
    unlocated_pop: int
    priority_score: float

    def sites_by_category(self) -> dict[str, int]:
        """Counted sites per category, in the inventory's category order."""
        return {c: int(getattr(self, f"sites_{c}")) for c in CATEGORIES}


@dataclass(frozen=True)
class NationalCoverage(CoverageFigures):
    """The whole country's figures for one run."""

    run_id: int
    municipalities: int
    uncovered_municipalities: int


@dataclass(frozen=True)
class StateCoverage(CoverageFigures):
    """One state's figures for one run."""

    run_id: int
    cve_ent: str
    name: str
    municipalities: int
    uncovered_municipalities: int


@dataclass(frozen=True)
class MunicipalityCoverage(CoverageFigures):
    """One municipality's figures for one run."""

    run_id: int
    cvegeo: str
    cve_ent: str
    name: str
    uncovered: bool
    state_name: str


@dataclass(frozen=True)
class LocalityCoverage:
    """One locality's distance to the nearest working site in one run."""

    run_id: int
    cvegeo: str
    name: str
    mun_cvegeo: str
    municipality: str
    cve_ent: str
    state_name: str
    pop_2020: int
    lon: float
    lat: float
    covered: bool
    nearest_distance_m: float | None
    nearest_site_key: str | None


def _run(row: Any) -> CoverageRun:
    return CoverageRun(**row._mapping)


def latest_run(conn: Connection, *, radius_km: float | None = None) -> CoverageRun | None:
    """The newest run (optionally with that radius), or None when coverage was never computed."""
    where = "" if radius_km is None else "WHERE radius_km = :radius"
    row = conn.execute(
        text(f"SELECT {RUN_COLUMNS} FROM coverage_runs {where} ORDER BY id DESC LIMIT 1"),
        {"radius": radius_km},
    ).one_or_none()
    return None if row is None else _run(row)


def get_run(conn: Connection, run_id: int | None = None) -> CoverageRun:
    """Run ``run_id``, or the newest; NotFound says what to do when there is none."""
    if run_id is None:
        run = latest_run(conn)
        if run is None:
            raise NotFound(
                "Coverage has not been computed yet. Run `conectado coverage compute` first."
            )
        return run
    row = conn.execute(
        text(f"SELECT {RUN_COLUMNS} FROM coverage_runs WHERE id = :id"), {"id": run_id}
    ).one_or_none()
    if row is None:
        raise NotFound(
            f"Coverage run {run_id} does not exist (runs are pruned after "
            "CONECTADO_COVERAGE_KEEP_RUNS); `conectado coverage runs` lists the kept ones."
        )
    return _run(row)


def list_runs(conn: Connection, *, limit: int = 20) -> list[CoverageRun]:
    """The newest runs first."""
    rows = conn.execute(
        text(f"SELECT {RUN_COLUMNS} FROM coverage_runs ORDER BY id DESC LIMIT :limit"),
        {"limit": limit},
    )
    return [_run(r) for r in rows]


def national_coverage(conn: Connection, run_id: int) -> NationalCoverage:
    """The national figures of a run."""
    row = conn.execute(
        text("SELECT * FROM coverage_national WHERE run_id = :id"), {"id": run_id}
    ).one_or_none()
    if row is None:
        raise NotFound(f"Coverage run {run_id} has no national figures.")
    return NationalCoverage(**row._mapping)


def state_coverage(
    conn: Connection, run_id: int, *, cve_ent: str | None = None
) -> list[StateCoverage]:
    """Figures of every state (or one), ordered by state key."""
    rows = conn.execute(
        text(
            "SELECT * FROM coverage_state WHERE run_id = :id "
            "AND (CAST(:ent AS text) IS NULL OR cve_ent = :ent) ORDER BY cve_ent"
        ),
        {"id": run_id, "ent": cve_ent},
    )
    return [StateCoverage(**r._mapping) for r in rows]


# Sort expressions over the alias ``c``; none is NULL, so keyset comparisons are plain.
MUNICIPALITY_ORDERS = {
    "priority": ("c.priority_score", "DESC"),
    "uncovered_pop": ("c.uncovered_pop::double precision", "DESC"),
    "covered_pct": ("COALESCE(c.covered_pct_census, 'Infinity'::float8)", "ASC"),
    "cvegeo": ("0::float8", "ASC"),
}


def _check_after(conn: Connection, table: str, run_id: int, after: str | None) -> None:
    if after is None:
        return
    found = conn.execute(
        text(f"SELECT 1 FROM {table} WHERE run_id = :id AND cvegeo = :after"),
        {"id": run_id, "after": after},
    ).one_or_none()
    if found is None:
        raise InvalidInput(
            f"after={after!r}: no such key in coverage run {run_id}; pass the cvegeo of the "
            "last row of the previous page."
        )


def municipality_coverage(
    conn: Connection,
    run_id: int,
    *,
    cve_ent: str | None = None,
    cvegeo: str | None = None,
    uncovered_only: bool = False,
    order: str = "priority",
    after: str | None = None,
    limit: int | None = None,
) -> list[MunicipalityCoverage]:
    """Municipality figures, highest priority first by default.

    ``order`` is one of priority, uncovered_pop, covered_pct (lowest first, unknown last) or
    cvegeo; ties and pages go by cvegeo. ``after`` is the cvegeo of the last row of the
    previous page.
    """
    if order not in MUNICIPALITY_ORDERS:
        raise InvalidInput(
            f"order={order!r} is not a known order; use one of {', '.join(MUNICIPALITY_ORDERS)}."
        )
    _check_after(conn, "coverage_municipality", run_id, after)
    expr, direction = MUNICIPALITY_ORDERS[order]
    where = [
        "c.run_id = :id",
        "(CAST(:ent AS text) IS NULL OR c.cve_ent = :ent)",
        "(CAST(:mun AS text) IS NULL OR c.cvegeo = :mun)",
    ]
    if uncovered_only:
        where.append("c.uncovered")
    if after is not None:
        cmp = "<" if direction == "DESC" else ">"
        last = (
            f"(SELECT {expr} FROM coverage_municipality c "
            "WHERE c.run_id = :id AND c.cvegeo = :after)"
        )
        where.append(f"({expr} {cmp} {last} OR {expr} = {last} AND c.cvegeo > :after)")
    rows = conn.execute(
        text(
            f"""
            SELECT c.*, s.name AS state_name FROM coverage_municipality c
            JOIN states s ON s.cve_ent = c.cve_ent
            WHERE {" AND ".join(where)}
            ORDER BY {expr} {direction}, c.cvegeo
            LIMIT :limit
            """
        ),
        {"id": run_id, "ent": cve_ent, "mun": cvegeo, "after": after, "limit": limit},
    )
    return [MunicipalityCoverage(**r._mapping) for r in rows]


def uncovered_localities(
    conn: Connection,
    run_id: int,
    *,
    cve_ent: str | None = None,
    mun_cvegeo: str | None = None,
    include_covered: bool = False,
    after: str | None = None,
    limit: int | None = 100,
) -> list[LocalityCoverage]:
    """Localities with no working site within R, largest population first (then by cvegeo).

    ``include_covered`` lists every locality in the same order; ``after`` is the cvegeo of the
    last row of the previous page.
    """
    where = [
        "c.run_id = :id",
        "(CAST(:ent AS text) IS NULL OR c.cve_ent = :ent)",
        "(CAST(:mun AS text) IS NULL OR c.mun_cvegeo = :mun)",
    ]
    if not include_covered:
        where.append("NOT c.covered")
    _check_after(conn, "coverage_locality", run_id, after)
    if after is not None:
        where.append(
            "(c.pop_2020 < (SELECT pop_2020 FROM coverage_locality "
            "WHERE run_id = :id AND cvegeo = :after) OR c.pop_2020 = (SELECT pop_2020 FROM "
            "coverage_locality WHERE run_id = :id AND cvegeo = :after) AND c.cvegeo > :after)"
        )
    rows = conn.execute(
        text(
            f"""
            SELECT c.run_id, c.cvegeo, l.name, c.mun_cvegeo, m.name AS municipality, c.cve_ent,
                   s.name AS state_name, c.pop_2020, ST_X(l.geom) AS lon, ST_Y(l.geom) AS lat,
                   c.covered, c.nearest_distance_m, ws.site_key AS nearest_site_key
            FROM coverage_locality c
            JOIN localities l ON l.cvegeo = c.cvegeo
            JOIN municipalities m ON m.cvegeo = c.mun_cvegeo
            JOIN states s ON s.cve_ent = c.cve_ent
            LEFT JOIN sites ws ON ws.id = c.nearest_site_id
            WHERE {" AND ".join(where)}
            ORDER BY c.pop_2020 DESC, c.cvegeo
            LIMIT :limit
            """
        ),
        {"id": run_id, "ent": cve_ent, "mun": mun_cvegeo, "after": after, "limit": limit},
    )
    return [LocalityCoverage(**r._mapping) for r in rows]


def run_summary(run: CoverageRun) -> dict[str, Any]:
    """A run as plain JSON-friendly data (for the API and exports)."""
    out: dict[str, Any] = dict(run.__dict__)
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
    return out
