"""Export sites to CSV, GeoJSON or GeoPackage: filtered like a search, never with secrets.

An exported file imports back with zero changes: the columns are the inventory's own names,
floats are written exactly and the derived columns (id, state, timestamps) are ignored by the
importer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import geopandas as gpd
import pandas as pd
import pyogrio
import shapely
from sqlalchemy import Connection, Select

from core.errors import DataFileError, InvalidInput
from core.progress import NullProgress, Progress
from sites.filters import SiteFilter
from sites.search import ordered_sites

ExportFormat = Literal["csv", "geojson", "gpkg"]
EXPORT_FORMATS: Final = ("csv", "geojson", "gpkg")
SUFFIX_FORMATS: Final[dict[str, ExportFormat]] = {
    ".csv": "csv",
    ".geojson": "geojson",
    ".json": "geojson",
    ".gpkg": "gpkg",
}
GPKG_LAYER: Final = "sites"


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote."""

    path: Path
    format: ExportFormat
    sites: int


def export_format(path: Path, fmt: str = "auto") -> ExportFormat:
    """Return the export format: ``fmt`` if given, else from the suffix of ``path``."""
    if fmt != "auto":
        if fmt not in EXPORT_FORMATS:
            raise InvalidInput(f"Unknown export format {fmt!r}; use csv, geojson or gpkg.")
        return fmt  # type: ignore[return-value]
    found = SUFFIX_FORMATS.get(path.suffix.lower())
    if found is None:
        raise InvalidInput(
            f"Cannot tell the export format from {path.name}; name it .csv, .geojson or "
            ".gpkg, or pass --format."
        )
    return found


def export_sites(
    conn: Connection,
    flt: SiteFilter,
    path: Path,
    *,
    fmt: str = "auto",
    progress: Progress | None = None,
) -> ExportReport:
    """Write the sites matching ``flt`` (ordered by id) to ``path``; secrets are never read."""
    kind = export_format(path, fmt)
    progress = progress or NullProgress()
    if not path.parent.is_dir():
        raise DataFileError(f"Folder {path.parent} does not exist; create it or pick another.")
    task = progress.task(f"Exporting to {path.name}", total=None)
    query = ordered_sites(flt)
    if kind == "csv":
        count = _copy_csv(conn, query, path)
    else:
        frame = pd.DataFrame(conn.execute(query).mappings().all())
        count = len(frame)
        _write_spatial(frame, path, kind)
    task.advance(count)
    task.finish()
    return ExportReport(path=path, format=kind, sites=count)


def _copy_csv(conn: Connection, query: Select[Any], path: Path) -> int:
    """Let PostgreSQL write the CSV (shortest exact floats, ISO dates) straight to the file."""
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    driver = conn.connection.driver_connection
    assert driver is not None
    sql = f"COPY ({compiled.string}) TO STDOUT (FORMAT csv, HEADER true)"
    try:
        with path.open("wb") as handle, driver.cursor() as cur:
            with cur.copy(sql, compiled.params) as copy:
                for chunk in copy:
                    handle.write(chunk)
            return max(int(cur.rowcount), 0)
    except OSError as exc:
        raise DataFileError(f"Cannot write {path}: {exc.strerror}.") from exc


def _write_spatial(frame: pd.DataFrame, path: Path, kind: ExportFormat) -> None:
    """Write points with every public column as attributes (GeoJSON or GeoPackage)."""
    if frame.empty:
        frame = pd.DataFrame(columns=["id", "site_key", "lon", "lat"])
    geometry = shapely.points(frame["lon"].astype(float), frame["lat"].astype(float))
    attributes = frame.copy()
    for column in ("created_at", "updated_at"):
        if column in attributes:
            attributes[column] = attributes[column].map(
                lambda v: None if v is None or pd.isna(v) else v.isoformat()
            )
    if "installed_on" in attributes:
        attributes["installed_on"] = attributes["installed_on"].map(
            lambda v: None if v is None or pd.isna(v) else v.isoformat()
        )
    for column in ("wan_if_index", "snmp_port"):
        if column in attributes:
            attributes[column] = attributes[column].astype("Int64")
    gdf = gpd.GeoDataFrame(attributes, geometry=geometry, crs="EPSG:4326")
    if path.exists():
        path.unlink()
    try:
        if kind == "geojson":
            pyogrio.write_dataframe(gdf, path, driver="GeoJSON", layer_options={"RFC7946": "NO"})
        else:
            pyogrio.write_dataframe(gdf, path, driver="GPKG", layer=GPKG_LAYER)
    except Exception as exc:  # pyogrio raises several GDAL-derived types
        raise DataFileError(f"Cannot write {path}: {exc}.") from exc
