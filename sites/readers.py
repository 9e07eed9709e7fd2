"""Read inventory files (CSV, GeoJSON, GeoPackage, Shapefile) into a frame of text cells.

Every cell comes back as text ("" when empty) so validation sees exactly what the file says;
each row keeps where it came from (file line for CSV, feature number for the others).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyogrio

from core.errors import DataFileError, InvalidInput

FileFormat = Literal["csv", "geojson", "gpkg", "shp"]
FORMATS: Final = ("auto", "csv", "geojson", "gpkg", "shp")
SUFFIXES: Final[dict[str, FileFormat]] = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "csv",
    ".geojson": "geojson",
    ".json": "geojson",
    ".gpkg": "gpkg",
    ".shp": "shp",
    ".zip": "shp",
}
DELIMITERS: Final = (",", ";", "\t", "|")
BOM: Final = b"\xef\xbb\xbf"


@dataclass
class SourceTable:
    """The rows of an inventory file as text, and where each row is in the file."""

    path: Path
    format: FileFormat
    frame: pd.DataFrame  # one column per file header (as written), every cell a str
    positions: npt.NDArray[np.int64]  # CSV: file line the row starts on; else feature number
    encoding: str | None = None
    delimiter: str | None = None
    notes: list[str] = field(default_factory=list)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # (line, text) not read

    @property
    def locator(self) -> str:
        """What ``positions`` count: "line" for CSV, "feature" for spatial formats."""
        return "line" if self.format == "csv" else "feature"


def detect_format(path: Path, fmt: str = "auto") -> FileFormat:
    """Return the format of ``path``: ``fmt`` if given, else from the file name suffix."""
    if fmt != "auto":
        if fmt not in FORMATS:
            raise InvalidInput(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
        return fmt  # type: ignore[return-value]
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise InvalidInput(
            f"Cannot tell the format of {path.name} from its suffix; pass --format "
            "csv, geojson, gpkg or shp."
        )
    return found


def read_source(path: Path, fmt: str = "auto") -> SourceTable:
    """Read ``path`` into text cells; DataFileError says what is wrong with the file itself."""
    if not path.is_file():
        raise DataFileError(f"{path} does not exist or is not a file.")
    kind = detect_format(path, fmt)
    if kind == "csv":
        return read_csv(path)
    return read_spatial(path, kind)


def decode(data: bytes) -> tuple[str, str]:
    """Return the text of ``data`` and its encoding: UTF-8 (with or without BOM), else CP1252.

    Mexican government files are often saved by Excel as Windows-1252 (Latin-1 plus curly
    quotes); the few bytes undefined in CP1252 fall back to Latin-1, which never fails.
    """
    try:
        text = data.decode("utf-8-sig")
        return text, "utf-8-sig" if data.startswith(BOM) else "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def sniff_delimiter(header: str) -> str:
    """Return the delimiter of a CSV from its header line: the most frequent of , ; tab |."""
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _header(text: str, delimiter: str) -> list[str]:
    """Header cells, stripped, with blank or repeated names made unique (for the reader)."""
    first_line = text[: text.find("\n")] if "\n" in text else text
    cells = next(csv.reader(io.StringIO(first_line), delimiter=delimiter), [])
    names: list[str] = []
    for i, cell in enumerate(cells, start=1):
        name = cell.strip().strip("\ufeff") or f"column_{i}"
        while name in names:
            name += "_"
        names.append(name)
    return names


def read_csv(path: Path) -> SourceTable:
    """Read a CSV in UTF-8/BOM/CP1252 with comma, semicolon, tab or pipe delimiters.

    Lines whose number of fields differs from the header are not read; they are listed in
    ``bad_lines`` with their line number so the import reports them as errors.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataFileError(f"Cannot read {path}: {exc.strerror}.") from exc
    text, encoding = decode(data)
    first_line = text[: text.find("\n")] if "\n" in text else text
    if not first_line.strip():
        raise DataFileError(
            f"{path} has no header on line 1; the first line must name the columns "
            "(site_key/clave, name/nombre, category/categoria, lat/latitud, lon/longitud...)."
        )
    delimiter = sniff_delimiter(first_line)
    names = _header(text, delimiter)
    utf8 = data[len(BOM) :] if encoding == "utf-8-sig" else data
    if encoding not in ("utf-8", "utf-8-sig"):
        utf8 = text.encode("utf-8")
    invalid: list[str] = []

    def skip_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append(str(row.text))
        return "skip"

    try:
        arrow = pacsv.read_csv(
            io.BytesIO(utf8),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                newlines_in_values=b'"' in utf8,
                invalid_row_handler=skip_invalid,
                ignore_empty_lines=True,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, ValueError) as exc:
        raise DataFileError(f"{path} is not a readable CSV file: {exc}.") from exc
    frame = arrow.to_pandas()
    positions = _record_lines(text, delimiter, len(frame), len(names))
    empty = frame.eq("").all(axis=1).to_numpy()
    table = SourceTable(
        path=path,
        format="csv",
        frame=frame[~empty].reset_index(drop=True) if empty.any() else frame,
        positions=positions[~empty],
        encoding=encoding,
        delimiter=delimiter,
        bad_lines=[(_line_of(text, row), row) for row in invalid],
    )
    if empty.any():
        table.notes.append(f"{int(empty.sum())} empty row(s) skipped.")
    return table


def _line_of(text: str, row_text: str) -> int:
    """File line where ``row_text`` (a record the reader could not use) starts, 0 if unknown."""
    at = text.find(row_text)
    return 0 if at < 0 else text.count("\n", 0, at) + 1


def _record_lines(text: str, delimiter: str, rows: int, width: int) -> npt.NDArray[np.int64]:
    """File line on which each data row starts (header is line 1)."""
    physical = text.count("\n") + (0 if text.endswith("\n") else 1)
    if physical == rows + 1:
        return np.arange(2, rows + 2, dtype=np.int64)
    # Quoted line breaks, blank or malformed lines: follow the csv module's line counter.
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    next(reader, None)
    starts: list[int] = []
    last = reader.line_num
    for record in reader:
        start = last + 1
        last = reader.line_num
        if record and len(record) == width:
            starts.append(start)
    if len(starts) != rows:  # the two parsers disagree on an odd file: number rows in order
        return np.arange(2, rows + 2, dtype=np.int64)
    return np.asarray(starts, dtype=np.int64)


def read_spatial(path: Path, kind: FileFormat) -> SourceTable:
    """Read GeoJSON, GeoPackage or Shapefile; point geometry becomes ``lon``/``lat`` text."""
    try:
        layers = pyogrio.list_layers(path)
        gdf = pyogrio.read_dataframe(path, layer=str(layers[0][0]) if len(layers) else None)
    except Exception as exc:  # pyogrio raises several GDAL-derived types
        raise DataFileError(
            f"{path} could not be read as {kind} ({str(exc).strip()}). Check that the file is "
            "complete (a shapefile needs its .shx and .dbf beside it)."
        ) from exc
    table = SourceTable(
        path=path,
        format=kind,
        frame=pd.DataFrame(),
        positions=np.arange(1, len(gdf) + 1, dtype=np.int64),
    )
    if len(layers) > 1:
        table.notes.append(f"{path.name} has {len(layers)} layers; read the first, {layers[0][0]}.")
    geometry = gdf.geometry if "geometry" in gdf.columns else None
    attributes = pd.DataFrame(gdf.drop(columns="geometry")) if geometry is not None else gdf
    frame = pd.DataFrame({str(c): _as_text(attributes[c]) for c in attributes.columns})
    if geometry is not None:
        if gdf.crs is None:
            table.notes.append(f"{path.name} declares no CRS; coordinates taken as EPSG:4326.")
        elif gdf.crs.to_epsg() != 4326:
            table.notes.append(f"{path.name} is in {gdf.crs.to_string()}; converted to EPSG:4326.")
            geometry = geometry.to_crs(4326)
        lon, lat, kinds = _point_columns(geometry)
        frame = frame.drop(
            columns=[c for c in frame.columns if _is_coordinate_header(c)], errors="ignore"
        )
        frame["lon"] = lon
        frame["lat"] = lat
        frame["__geometry_type"] = kinds
    table.frame = frame
    return table


def _is_coordinate_header(name: str) -> bool:
    return re.sub(r"[^a-z]", "", name.lower()) in {
        "lat",
        "lon",
        "lng",
        "long",
        "latitud",
        "longitud",
        "latitude",
        "longitude",
        "x",
        "y",
    }


def _point_columns(geometry: pd.Series) -> tuple[list[str], list[str], list[str]]:
    import shapely  # local: only spatial files need it

    values = np.asarray(geometry.values, dtype=object)
    kinds = shapely.get_type_id(values)
    is_point = kinds == 0
    x = np.full(len(values), np.nan)
    y = np.full(len(values), np.nan)
    if is_point.any():
        x[is_point] = shapely.get_x(values[is_point])
        y[is_point] = shapely.get_y(values[is_point])
    names = {-1: "", 0: "Point", 1: "LineString", 3: "Polygon", 4: "MultiPoint", 6: "MultiPolygon"}
    return (
        [repr(float(v)) if not np.isnan(v) else "" for v in x],
        [repr(float(v)) if not np.isnan(v) else "" for v in y],
        [names.get(int(k), "other geometry") for k in kinds],
    )


def _as_text(column: pd.Series) -> pd.Series:
    """Cells of one attribute column as text: integers without ".0", floats exactly, dates ISO."""
    if pd.api.types.is_bool_dtype(column):
        return column.map(lambda v: "" if pd.isna(v) else ("true" if v else "false"))
    if pd.api.types.is_integer_dtype(column):
        return column.map(lambda v: "" if pd.isna(v) else str(int(v)))
    if pd.api.types.is_float_dtype(column):
        return column.map(lambda v: "" if pd.isna(v) else _float_text(float(v)))
    if pd.api.types.is_datetime64_any_dtype(column):
        return column.map(lambda v: "" if pd.isna(v) else _date_text(v))
    return column.map(
        lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
    )


def _float_text(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _date_text(value: pd.Timestamp) -> str:
    if value.hour == value.minute == value.second == 0:
        return str(value.date())
    return str(value.isoformat())
