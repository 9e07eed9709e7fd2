"""Load the INEGI geography (states, municipalities, localities) into PostGIS, idempotently."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyogrio
import shapely
from sqlalchemy import Engine, text

from core.errors import DataFileError
from core.progress import NullProgress, Progress

MUNICIPALITY_COLUMNS = ["CVEGEO", "CVE_ENT", "CVE_MUN", "NOMGEO", "POB2020", "VIV2020"]
LOCALITY_COLUMNS = [
    "CVEGEO",
    "CVE_ENT",
    "CVE_MUN",
    "CVE_LOC",
    "NOMGEO",
    "AMBITO",
    "LAT",
    "LON",
    "ALTITUD",
    "POB2020",
    "VIV2020",
]
STATE_COLUMNS = ["CVE_ENT", "NOMGEO", "NOM_ABR"]


@dataclass
class TableCounts:
    """What an upsert did to one table."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass
class SkippedRow:
    """A source row that was not loaded, and why."""

    line: int
    key: str
    name: str
    reason: str


@dataclass
class GeoLoadReport:
    """Counts and totals after a geography load, as the CLI prints them."""

    states: TableCounts = field(default_factory=TableCounts)
    municipalities: TableCounts = field(default_factory=TableCounts)
    localities: TableCounts = field(default_factory=TableCounts)
    skipped: list[SkippedRow] = field(default_factory=list)
    municipality_count: int = 0
    municipality_population: int = 0
    municipalities_without_population: list[str] = field(default_factory=list)
    locality_count: int = 0
    locality_population: int = 0
    state_count: int = 0

    @property
    def changed(self) -> int:
        """Rows inserted or updated across all tables."""
        return sum(
            t.inserted + t.updated for t in (self.states, self.municipalities, self.localities)
        )

    def skipped_by_reason(self) -> dict[str, int]:
        """Number of skipped localities per reason (a row may have several reasons)."""
        counts: dict[str, int] = {}
        for row in self.skipped:
            for reason in row.reason.split("; "):
                counts[reason] = counts.get(reason, 0) + 1
        return counts


def _require(path: Path) -> Path:
    if not path.is_file():
        raise DataFileError(
            f"Geography file {path} is missing. Copy data/inegi/ from a clean clone or pass "
            "--dir pointing at a folder with municipios.gpkg, localidades.csv and entidades.csv."
        )
    return path


def read_states(path: Path) -> pd.DataFrame:
    """Read entidades.csv; raise DataFileError naming the file and column on problems."""
    try:
        frame = pd.read_csv(_require(path), dtype=str, keep_default_na=False, encoding="utf-8")
    except (UnicodeDecodeError, pd.errors.ParserError, csv.Error) as exc:
        raise DataFileError(f"{path} is not a readable UTF-8 CSV: {exc}") from exc
    _check_columns(frame, STATE_COLUMNS, path)
    bad = frame[~frame["CVE_ENT"].str.fullmatch(r"\d{2}")]
    if len(bad):
        line = int(bad.index[0]) + 2
        raise DataFileError(
            f"{path} line {line}: CVE_ENT {bad.iloc[0]['CVE_ENT']!r} is not 2 digits."
        )
    return frame


def _check_columns(frame: pd.DataFrame, wanted: list[str], path: Path) -> None:
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataFileError(
            f"{path} lacks column(s) {', '.join(missing)}; "
            f"found {', '.join(map(str, frame.columns))}."
        )


def read_municipalities(path: Path) -> pd.DataFrame:
    """Read municipios.gpkg into a frame with WKB geometry; DataFileError if unreadable."""
    try:
        table = pyogrio.read_dataframe(_require(path), layer="municipios")
    except Exception as exc:  # pyogrio raises several GDAL-derived types
        raise DataFileError(
            f"{path} could not be read as a GeoPackage with layer 'municipios' ({exc}). "
            "The file may be corrupt: copy it again from data/inegi in a clean clone."
        ) from exc
    _check_columns(table, MUNICIPALITY_COLUMNS, path)
    if table.crs is None or table.crs.to_epsg() != 4326:
        raise DataFileError(f"{path}: expected EPSG:4326, found {table.crs}.")
    if table.geometry.isna().any():
        rows = table.index[table.geometry.isna()].tolist()[:5]
        raise DataFileError(f"{path}: features {rows} have no geometry.")
    frame = pd.DataFrame(table.drop(columns="geometry"))
    frame["wkb"] = shapely.to_wkb(table.geometry.values, hex=True, include_srid=False)
    return frame


def read_localities(path: Path) -> tuple[pd.DataFrame, list[SkippedRow]]:
    """Read localidades.csv, returning loadable rows and the rows skipped with reasons.

    A row without coordinates or without population is skipped and reported, never invented.
    """
    try:
        frame = pd.read_csv(_require(path), dtype=str, keep_default_na=False, encoding="utf-8")
    except (UnicodeDecodeError, pd.errors.ParserError, csv.Error) as exc:
        raise DataFileError(f"{path} is not a readable UTF-8 CSV: {exc}") from exc
    _check_columns(frame, LOCALITY_COLUMNS, path)
    lat = pd.to_numeric(frame["LAT"], errors="coerce")
    lon = pd.to_numeric(frame["LON"], errors="coerce")
    pop = pd.to_numeric(frame["POB2020"], errors="coerce")
    reasons = pd.Series("", index=frame.index)

    def flag(mask: pd.Series, reason: str) -> None:
        reasons.loc[mask] = (
            reasons.loc[mask].where(reasons.loc[mask] == "", reasons.loc[mask] + "; ") + reason
        )

    flag(lat.isna() | lon.isna(), "no coordinates")
    flag(
        lat.notna() & lon.notna() & ~(lat.between(14, 33.5) & lon.between(-119, -86)),
        "coordinates outside Mexico",
    )
    flag(pop.isna(), "no population")
    flag(~frame["CVEGEO"].str.fullmatch(r"\d{9}"), "CVEGEO is not 9 digits")
    bad = reasons != ""
    skipped = [
        SkippedRow(
            line=int(i) + 2,
            key=frame.at[i, "CVEGEO"],
            name=frame.at[i, "NOMGEO"],
            reason=reasons.at[i],
        )
        for i in frame.index[bad]
    ]
    good = frame.loc[~bad].copy()
    good["lat"] = lat[~bad]
    good["lon"] = lon[~bad]
    good["pop"] = pop[~bad].astype("int64")
    good["alt"] = pd.to_numeric(good["ALTITUD"], errors="coerce").astype("Int64")
    good["viv"] = pd.to_numeric(good["VIV2020"], errors="coerce").astype("Int64")
    return good, skipped


def _copy_rows(raw_conn: object, sql: str, rows: Iterable[Sequence[object]]) -> None:
    cursor = raw_conn.cursor()  # type: ignore[attr-defined]
    with cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(row)


def _count_upsert(result_rows: list[tuple[bool]], total: int) -> TableCounts:
    inserted = sum(1 for (is_insert,) in result_rows if is_insert)
    updated = len(result_rows) - inserted
    return TableCounts(inserted=inserted, updated=updated, unchanged=total - len(result_rows))


def load_geography(
    engine: Engine,
    inegi_dir: Path,
    *,
    progress: Progress | None = None,
) -> GeoLoadReport:
    """Load states, municipalities and localities from ``inegi_dir`` in one transaction.

    Upserts by key and writes only what differs, so a second run changes nothing. States'
    outlines and totals are derived in PostGIS from the municipalities (union by CVE_ENT).
    """
    progress = progress or NullProgress()
    report = GeoLoadReport()
    task = progress.task("Reading INEGI files", total=3)
    states = read_states(inegi_dir / "entidades.csv")
    task.advance()
    municipalities = read_municipalities(inegi_dir / "municipios.gpkg")
    task.advance()
    localities, report.skipped = read_localities(inegi_dir / "localidades.csv")
    task.advance()
    task.finish()

    unknown_states = sorted(set(municipalities["CVE_ENT"]) - set(states["CVE_ENT"]))
    if unknown_states:
        raise DataFileError(
            f"municipios.gpkg uses state keys {unknown_states} that entidades.csv does not list."
        )

    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        assert dbapi is not None
        with dbapi.transaction():
            cur = dbapi.cursor()
            task = progress.task("Writing states", total=len(states))
            cur.execute(
                "CREATE TEMP TABLE stage_states (cve_ent text, name text, abbrev text) "
                "ON COMMIT DROP"
            )
            _copy_rows(
                dbapi,
                "COPY stage_states FROM STDIN",
                list(states[STATE_COLUMNS].itertuples(index=False, name=None)),
            )
            cur.execute(
                """INSERT INTO states (cve_ent, name, abbrev)
                   SELECT cve_ent, name, abbrev FROM stage_states
                   ON CONFLICT (cve_ent) DO UPDATE SET name = excluded.name,
                       abbrev = excluded.abbrev
                   WHERE (states.name, states.abbrev) IS DISTINCT FROM
                         (excluded.name, excluded.abbrev)
                   RETURNING (xmax = 0)"""
            )
            report.states = _count_upsert(cur.fetchall(), len(states))
            task.advance(len(states))
            task.finish()

            task = progress.task("Writing municipalities", total=len(municipalities))
            cur.execute(
                "CREATE TEMP TABLE stage_mun (cvegeo text, cve_ent text, cve_mun text, name text,"
                " pop bigint, viv bigint, wkb text) ON COMMIT DROP"
            )
            rows = [
                (
                    r.CVEGEO,
                    r.CVE_ENT,
                    r.CVE_MUN,
                    r.NOMGEO,
                    None if pd.isna(r.POB2020) else int(r.POB2020),
                    None if pd.isna(r.VIV2020) else int(r.VIV2020),
                    r.wkb,
                )
                for r in municipalities.itertuples(index=False)
            ]
            _copy_rows(dbapi, "COPY stage_mun FROM STDIN", rows)
            cur.execute(
                """
                WITH src AS (
                    SELECT cvegeo, cve_ent, cve_mun, name, pop, viv,
                           CASE WHEN ST_IsValid(g) THEN g
                                ELSE ST_Multi(ST_CollectionExtract(ST_MakeValid(g), 3)) END AS geom
                    FROM (SELECT *, ST_SetSRID(ST_GeomFromWKB(decode(wkb, 'hex')), 4326) AS g
                          FROM stage_mun) s
                )
                INSERT INTO municipalities AS m
                    (cvegeo, cve_ent, cve_mun, name, pop_2020, dwellings_2020, area_km2, geom)
                SELECT cvegeo, cve_ent, cve_mun, name, pop, viv,
                       ST_Area(geom::geography) / 1e6, geom
                FROM src
                ON CONFLICT (cvegeo) DO UPDATE SET
                    cve_ent = excluded.cve_ent, cve_mun = excluded.cve_mun, name = excluded.name,
                    pop_2020 = excluded.pop_2020, dwellings_2020 = excluded.dwellings_2020,
                    area_km2 = excluded.area_km2, geom = excluded.geom
                WHERE (m.cve_ent, m.cve_mun, m.name, m.pop_2020, m.dwellings_2020)
                      IS DISTINCT FROM (excluded.cve_ent, excluded.cve_mun, excluded.name,
                                        excluded.pop_2020, excluded.dwellings_2020)
                   OR NOT ST_Equals(m.geom, excluded.geom)
                RETURNING (xmax = 0)
                """
            )
            report.municipalities = _count_upsert(cur.fetchall(), len(municipalities))
            task.advance(len(municipalities))
            task.finish()

            task = progress.task("Deriving state outlines", total=1)
            changed_states = report.municipalities.inserted + report.municipalities.updated
            cur.execute(
                """
                UPDATE states s SET geom = u.geom, pop_2020 = u.pop, area_km2 = u.area
                FROM (
                    SELECT cve_ent, ST_Multi(ST_Union(geom)) AS geom,
                           sum(pop_2020) AS pop, sum(area_km2) AS area
                    FROM municipalities GROUP BY cve_ent
                ) u
                WHERE s.cve_ent = u.cve_ent AND (%(all)s OR s.geom IS NULL
                      OR s.pop_2020 IS DISTINCT FROM u.pop)
                """,
                {"all": changed_states > 0},
            )
            task.advance()
            task.finish()

            task = progress.task("Writing localities", total=len(localities))
            cur.execute(
                "CREATE TEMP TABLE stage_loc (cvegeo text, mun text, cve_ent text, name text,"
                " ambito text, alt integer, pop integer, viv integer, lon double precision,"
                " lat double precision) ON COMMIT DROP"
            )
            loc_rows = list(
                zip(
                    localities["CVEGEO"],
                    localities["CVEGEO"].str[:5],
                    localities["CVE_ENT"],
                    localities["NOMGEO"],
                    localities["AMBITO"],
                    [None if pd.isna(v) else int(v) for v in localities["alt"]],
                    localities["pop"].astype(int).tolist(),
                    [None if pd.isna(v) else int(v) for v in localities["viv"]],
                    localities["lon"].tolist(),
                    localities["lat"].tolist(),
                    strict=True,
                )
            )
            _copy_rows(dbapi, "COPY stage_loc FROM STDIN", loc_rows)
            cur.execute(
                "SELECT s.cvegeo FROM stage_loc s LEFT JOIN municipalities m ON m.cvegeo = s.mun "
                "WHERE m.cvegeo IS NULL LIMIT 5"
            )
            orphans = [r[0] for r in cur.fetchall()]
            if orphans:
                raise DataFileError(
                    f"localidades.csv: localities {orphans} belong to "
                    "municipalities that municipios.gpkg does not have."
                )
            cur.execute(
                """
                INSERT INTO localities AS l (cvegeo, mun_cvegeo, cve_ent, name, ambito,
                    altitude_m, pop_2020, dwellings_2020, geom)
                SELECT cvegeo, mun, cve_ent, name, ambito, alt, pop, viv,
                       ST_SetSRID(ST_MakePoint(lon, lat), 4326)
                FROM stage_loc
                ON CONFLICT (cvegeo) DO UPDATE SET
                    mun_cvegeo = excluded.mun_cvegeo, cve_ent = excluded.cve_ent,
                    name = excluded.name, ambito = excluded.ambito,
                    altitude_m = excluded.altitude_m, pop_2020 = excluded.pop_2020,
                    dwellings_2020 = excluded.dwellings_2020, geom = excluded.geom
                WHERE (l.mun_cvegeo, l.cve_ent, l.name, l.ambito, l.altitude_m, l.pop_2020,
                       l.dwellings_2020, ST_X(l.geom), ST_Y(l.geom))
                      IS DISTINCT FROM (excluded.mun_cvegeo, excluded.cve_ent, excluded.name,
                       excluded.ambito, excluded.altitude_m, excluded.pop_2020,
                       excluded.dwellings_2020, ST_X(excluded.geom), ST_Y(excluded.geom))
                RETURNING (xmax = 0)
                """
            )
            report.localities = _count_upsert(cur.fetchall(), len(localities))
            task.advance(len(localities))
            task.finish()

            if report.changed:
                # Fresh statistics arrive with the commit: an import right after a first load
                # would otherwise be planned for empty tables (autovacuum is a minute away).
                cur.execute("ANALYZE states, municipalities, localities")
                cur.execute(
                    "INSERT INTO geo_loads (source_dir, inserted, updated, unchanged, skipped) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    (
                        str(inegi_dir),
                        report.states.inserted
                        + report.municipalities.inserted
                        + report.localities.inserted,
                        report.states.updated
                        + report.municipalities.updated
                        + report.localities.updated,
                        report.states.unchanged
                        + report.municipalities.unchanged
                        + report.localities.unchanged,
                        len(report.skipped),
                    ),
                )
    finally:
        raw.close()
    _fill_totals(engine, report)
    return report


def _fill_totals(engine: Engine, report: GeoLoadReport) -> None:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT count(*), coalesce(sum(pop_2020), 0) FROM municipalities")
        ).one()
        report.municipality_count, report.municipality_population = int(row[0]), int(row[1])
        report.municipalities_without_population = [
            f"{r[0]} {r[1]}"
            for r in conn.execute(
                text(
                    "SELECT cvegeo, name FROM municipalities WHERE pop_2020 IS NULL ORDER BY cvegeo"
                )
            )
        ]
        row = conn.execute(
            text("SELECT count(*), coalesce(sum(pop_2020), 0) FROM localities")
        ).one()
        report.locality_count, report.locality_population = int(row[0]), int(row[1])
        report.state_count = int(
            conn.execute(text("SELECT count(*) FROM states WHERE geom IS NOT NULL")).scalar_one()
        )
