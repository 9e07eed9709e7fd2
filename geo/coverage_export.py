"""Export a coverage run by state, municipality or locality as CSV, GeoJSON or GeoPackage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import pandas as pd
from sqlalchemy import Engine, text

from core.errors import InvalidInput
from geo.coverage_queries import get_run

FORMATS = {"csv": ".csv", "geojson": ".geojson", "gpkg": ".gpkg"}
LEVELS = ("municipality", "locality", "state")

_SQL = {
    "state": """
        SELECT c.*, s.geom
        FROM coverage_state c JOIN states s ON s.cve_ent = c.cve_ent
        WHERE c.run_id = :run_id
        ORDER BY c.cve_ent
    """,
    "municipality": """
        SELECT c.run_id, c.cvegeo, c.cve_ent, s.name AS state_name, c.name, c.uncovered,
               c.pop_2020, c.locality_count, c.locality_pop, c.sites, c.sites_school,
               c.sites_health, c.sites_public_space, c.sites_community, c.sites_government,
               c.sites_research, c.active_sites, c.working_sites, c.sites_per_10k,
               c.working_per_10k, c.covered_localities, c.covered_pop, c.covered_pct_census,
               c.covered_pct_localities, c.uncovered_pop, c.unlocated_pop, c.priority_score,
               m.geom
        FROM coverage_municipality c
        JOIN municipalities m ON m.cvegeo = c.cvegeo
        JOIN states s ON s.cve_ent = c.cve_ent
        WHERE c.run_id = :run_id AND (NOT :uncovered_only OR c.uncovered)
        ORDER BY c.priority_score DESC, c.cvegeo
    """,
    "locality": """
        SELECT c.run_id, c.cvegeo, l.name, c.mun_cvegeo, m.name AS municipality, c.cve_ent,
               s.name AS state_name, l.ambito, c.pop_2020, c.covered,
               round(c.nearest_distance_m::numeric, 1)::double precision AS nearest_distance_m,
               ws.site_key AS nearest_site_key, ST_X(l.geom) AS lon, ST_Y(l.geom) AS lat, l.geom
        FROM coverage_locality c
        JOIN localities l ON l.cvegeo = c.cvegeo
        JOIN municipalities m ON m.cvegeo = c.mun_cvegeo
        JOIN states s ON s.cve_ent = c.cve_ent
        LEFT JOIN sites ws ON ws.id = c.nearest_site_id
        WHERE c.run_id = :run_id AND (NOT :uncovered_only OR NOT c.covered)
        ORDER BY c.pop_2020 DESC, c.cvegeo
    """,
}


@dataclass(frozen=True)
class CoverageExport:
    """What an export wrote."""

    path: Path
    fmt: str
    level: str
    run_id: int
    rows: int


def export_format(path: Path, fmt: str | None) -> str:
    """The format asked for, or the one the file's suffix names; InvalidInput otherwise."""
    if fmt is None:
        by_suffix = {suffix: name for name, suffix in FORMATS.items()}
        by_suffix[".json"] = "geojson"
        guessed = by_suffix.get(path.suffix.lower())
        if guessed is None:
            raise InvalidInput(
                f"Cannot tell the format of {path.name!r} from its suffix; pass --format "
                f"({' | '.join(FORMATS)})."
            )
        return guessed
    if fmt not in FORMATS:
        raise InvalidInput(f"--format {fmt!r} is not supported; use one of {', '.join(FORMATS)}.")
    return fmt


def export_coverage(
    engine: Engine,
    path: Path,
    *,
    level: str = "municipality",
    fmt: str | None = None,
    run_id: int | None = None,
    uncovered_only: bool = False,
) -> CoverageExport:
    """Write one level of a coverage run (default: the newest) to ``path``.

    Rows carry the run's id; CSV has no geometry (localities get lon/lat columns); GeoJSON
    and GeoPackage carry boundaries or points in EPSG:4326.
    """
    if level not in LEVELS:
        raise InvalidInput(f"--level {level!r} is not known; use one of {', '.join(LEVELS)}.")
    fmt = export_format(path, fmt)
    if not path.parent.exists():
        raise InvalidInput(
            f"Cannot write {path}: folder {path.parent} does not exist. Create it first."
        )
    with engine.connect() as conn:
        run = get_run(conn, run_id)
        frame = gpd.read_postgis(
            text(_SQL[level]),
            conn,
            geom_col="geom",
            params={"run_id": run.id, "uncovered_only": uncovered_only},
        )
    frame.insert(1, "radius_km", run.radius_km)
    frame.insert(2, "basis", run.basis)
    if fmt == "csv":
        pd.DataFrame(frame.drop(columns="geom")).to_csv(path, index=False)
    else:
        if path.exists():
            path.unlink()
        driver = "GeoJSON" if fmt == "geojson" else "GPKG"
        extra = {"layer": f"coverage_{level}"} if fmt == "gpkg" else {}
        frame.to_file(path, driver=driver, **extra)
    return CoverageExport(path=path, fmt=fmt, level=level, run_id=run.id, rows=len(frame))
