"""Import an inventory file: validate rows, stage them with COPY, place and upsert in PostGIS.

One transaction does everything: rows are COPYed into a temporary table, municipalities and
states are assigned by a spatial join, and sites are upserted by ``site_key`` writing only
what differs, with one history row per inserted or changed site. In strict mode any error
means nothing is written; in skip-invalid mode the valid rows are written.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy import Connection, Engine, text

from core.errors import InvalidInput, SetupError
from core.progress import NullProgress, Progress
from sites.history import new_value_sql, update_changes_sql
from sites.readers import SourceTable, read_source
from sites.validation import (
    ISSUE_COLUMNS,
    STAGE_COLUMNS,
    Validated,
    map_headers,
    validate_rows,
)
from sites.vocabulary import PUBLIC_COLUMNS, SECRET_COLUMNS

ImportMode = Literal["strict", "skip-invalid"]
MODES: Final = ("strict", "skip-invalid")
SNAP_METRES: Final = 1000.0
IMPORT_LOCK: Final = 0x5173_0001  # pg_advisory_xact_lock key: one import at a time
# Writes this large (rows, and share of the table) rebuild indexes instead of maintaining them.
BULK_MIN_ROWS: Final = 20_000
BULK_SHARE: Final = 0.4
# Geometry columns of a staged row; municipality and state come from the spatial join.
DERIVED: Final = ("geom", "mun_cvegeo", "cve_ent")

STAGE_TYPES: Final = {
    "lat": "double precision",
    "lon": "double precision",
    "bw_down_mbps": "double precision",
    "bw_up_mbps": "double precision",
    "installed_on": "date",
    "mgmt_ip": "inet",
    "snmp_port": "integer",
    "wan_if_index": "integer",
}


@dataclass(frozen=True)
class ImportIssue:
    """One problem with one row: where it is, which column, the value and what to do."""

    row: int
    position: int
    locator: str
    site_key: str
    column: str
    value: str
    severity: Literal["error", "warning"]
    message: str

    @property
    def where(self) -> str:
        """Human place of the row, e.g. "line 12" or "feature 3"."""
        return f"{self.locator} {self.position}"


@dataclass
class ImportReport:
    """What an import read, wrote and rejected, and every issue it found."""

    path: Path
    format: str
    mode: ImportMode
    encoding: str | None = None
    delimiter: str | None = None
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    written: bool = False
    issues: list[ImportIssue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def errors(self) -> list[ImportIssue]:
        """Issues that reject their row."""
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[ImportIssue]:
        """Issues that do not reject their row (coastal snap, swapped coordinates fixed...)."""
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def changed(self) -> int:
        """Sites inserted or updated."""
        return self.inserted + self.updated


@dataclass(frozen=True)
class ImportOptions:
    """How to import: strict or skip-invalid, fix swapped coordinates, who is importing."""

    mode: ImportMode = "strict"
    fix_swapped: bool = False
    changed_by: str = "import"
    dry_run: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidInput(f"Unknown mode {self.mode!r}; use strict or skip-invalid.")
        if not self.changed_by.strip():
            raise InvalidInput("changed_by must name who is importing.")


def import_file(
    engine: Engine,
    path: Path,
    *,
    fmt: str = "auto",
    options: ImportOptions | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Read, validate and import ``path`` in one transaction; see :func:`import_table`."""
    progress = progress or NullProgress()
    task = progress.task(f"Reading {path.name}", total=1)
    table = read_source(path, fmt)
    task.finish()
    with engine.begin() as conn:
        return import_table(conn, table, options=options, progress=progress)


def refresh_statistics(conn: Connection, changed: int) -> None:
    """ANALYZE the inventory when an import changed ≥ 10 % of it (autovacuum's threshold).

    Autovacuum would do it a minute or so later; until then the planner keeps the old row
    counts and value statistics, and a name search right after a national import chose an
    id-ordered scan that filtered all 101,322 rows (0.9 s instead of 6 ms). It runs inside
    the import's transaction (imports are serialised by their advisory lock), so an import
    through the API gets it too; the size comes from pg_class, not a count of the table.
    """
    if not changed:
        return
    known = conn.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = 'sites'::regclass")
    ).scalar_one()
    if known < 0 or changed * 10 >= known:  # reltuples is -1 until the first ANALYZE
        conn.execute(text("ANALYZE sites"))


def import_table(
    conn: Connection,
    table: SourceTable,
    *,
    options: ImportOptions | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Validate ``table`` and upsert its sites inside the caller's transaction on ``conn``.

    Nothing is written when any row has an error in strict mode (or with ``dry_run``); in
    skip-invalid mode every valid row is written and the invalid ones are listed. Columns
    the file does not have are left as stored, so a partial file changes only what it gives.
    """
    options = options or ImportOptions()
    progress = progress or NullProgress()
    started = time.perf_counter()
    report = ImportReport(
        path=table.path,
        format=table.format,
        mode=options.mode,
        encoding=table.encoding,
        delimiter=table.delimiter,
        rows=len(table.frame),
        notes=list(table.notes),
    )
    mapped = map_headers(table)
    if mapped.unknown:
        report.notes.append("columns not used: " + ", ".join(mapped.unknown))
    task = progress.task("Validating rows", total=len(table.frame))
    checked = validate_rows(mapped, fix_swapped=options.fix_swapped)
    task.advance(len(table.frame))
    task.finish()

    if not conn.execute(text("SELECT EXISTS (SELECT 1 FROM municipalities)")).scalar_one():
        raise SetupError(
            "The geography is not loaded, so sites cannot be placed in municipalities. "
            "Run `conectado geo load` first."
        )
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": IMPORT_LOCK})
    task = progress.task("Staging rows in PostGIS", total=int((~checked.rejected).sum()))
    _stage(conn, checked)
    task.finish()
    task = progress.task("Assigning municipalities", total=1)
    db_issues = _assign_municipalities(conn)
    db_issues = pd.concat(
        [db_issues, _check_against_database(conn, checked.present)], ignore_index=True
    )
    task.finish()

    issues = pd.concat([checked.issues, db_issues], ignore_index=True)
    rejected = checked.rejected.copy()
    db_errors = db_issues.loc[db_issues["severity"] == "error", "row"].to_numpy(dtype=np.int64)
    rejected[db_errors - 1] = True
    report.issues = _unread_lines(table) + _issue_list(issues, table, mapped.headers, checked)
    report.rejected = int(rejected.sum()) + len(table.bad_lines)
    report.rows += len(table.bad_lines)

    if (report.rejected and options.mode == "strict") or options.dry_run:
        report.seconds = time.perf_counter() - started
        _drop_stage(conn)
        return report
    if len(db_errors):
        conn.execute(
            text("DELETE FROM site_import WHERE row = ANY(:rows)"), {"rows": db_errors.tolist()}
        )
    task = progress.task("Writing sites and history", total=1)
    counts = _write(conn, checked.present, options.changed_by, table.path.name)
    task.finish()
    report.inserted, report.updated = counts
    report.unchanged = report.rows - report.rejected - report.inserted - report.updated
    report.written = True
    refresh_statistics(conn, report.changed)
    _drop_stage(conn)
    report.seconds = time.perf_counter() - started
    return report


def _copy_csv(clean: pd.DataFrame) -> bytes:
    """Rows as COPY CSV (Arrow's C++ writer): strings quoted, NULL unquoted-empty, floats in
    their shortest exact form, so PostgreSQL reads back the very same doubles."""
    arrays = {"row": pa.array(clean["row"].to_numpy(dtype=np.int64))}
    for name in STAGE_COLUMNS:
        column = clean[name]
        if name in STAGE_TYPES and STAGE_TYPES[name] in ("double precision", "integer"):
            arrays[name] = pa.array(column, from_pandas=True)
        else:
            arrays[name] = pa.array(column, type=pa.string(), from_pandas=True)
    sink = io.BytesIO()
    pacsv.write_csv(
        pa.table(arrays),
        sink,
        pacsv.WriteOptions(include_header=False, quoting_style="needed"),
    )
    return sink.getvalue()


def _stage(conn: Connection, checked: Validated) -> None:
    """COPY the rows that passed validation into a temp table and index their points."""
    _drop_stage(conn)
    definition = ", ".join(f"{c} {STAGE_TYPES.get(c, 'text')}" for c in STAGE_COLUMNS)
    conn.execute(
        text(
            f"CREATE TEMP TABLE site_import (row integer, {definition}, geom geometry(Point, 4326)"
            " GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(lon, lat), 4326)) STORED)"
        )
    )
    payload = _copy_csv(checked.clean[~checked.rejected])
    driver = conn.connection.driver_connection
    assert driver is not None
    columns = ", ".join(("row", *STAGE_COLUMNS))
    with (
        driver.cursor() as cur,
        cur.copy(f"COPY site_import ({columns}) FROM STDIN (FORMAT csv)") as copy,
    ):
        step = 1 << 20
        for start in range(0, len(payload), step):
            copy.write(payload[start : start + step])
    conn.execute(text("CREATE INDEX ON site_import USING gist (geom)"))
    conn.execute(text("ANALYZE site_import (row)"))


def _drop_stage(conn: Connection) -> None:
    conn.execute(
        text(
            "DROP TABLE IF EXISTS site_import_stage, site_import, site_import_mun, site_import_diff"
        )
    )


def _empty_issues() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in ISSUE_COLUMNS})


ASSIGN_MUNICIPALITIES = """
SELECT DISTINCT ON (i.row) i.row, m.cvegeo AS mun_cvegeo, m.cve_ent
FROM municipalities m
CROSS JOIN LATERAL (
    SELECT p.row FROM site_import p WHERE ST_Intersects(m.geom, p.geom) OFFSET 0
) i
ORDER BY i.row, m.cvegeo
"""


def _assign_municipalities(conn: Connection) -> pd.DataFrame:
    """Assign each staged point its municipality and state in PostGIS (set-wise).

    Municipalities drive the join so each polygon is prepared once and tested against the
    points its box covers. A point in no municipality but within 1 km of one (the coast, with
    boundaries simplified to ~100 m) goes to the nearest and is reported as a warning; farther
    points are errors naming the nearest municipality and its distance.

    ``OFFSET 0`` keeps the points in a subquery run once per municipality, so the planner
    cannot turn the join around: driven by the points, each test meets a different polygon,
    PostGIS cannot reuse a prepared one, and 101,322 points took 4.4 s instead of 0.6 s.
    """
    conn.execute(text(f"CREATE TEMP TABLE site_import_mun AS {ASSIGN_MUNICIPALITIES}"))
    outside = conn.execute(
        text(
            """
            SELECT i.row, i.lat, i.lon, near.cvegeo, near.cve_ent, near.name, near.metres
            FROM site_import i
            LEFT JOIN site_import_mun a ON a.row = i.row
            CROSS JOIN LATERAL (
                SELECT c.cvegeo, c.cve_ent, c.name,
                       ST_Distance(c.geom::geography, i.geom::geography) AS metres
                FROM (SELECT m.cvegeo, m.cve_ent, m.name, m.geom FROM municipalities m
                      ORDER BY m.geom <-> i.geom LIMIT 3) c
                ORDER BY metres LIMIT 1
            ) near
            WHERE a.row IS NULL
            ORDER BY i.row
            """
        )
    ).all()
    if not outside:
        return _empty_issues()
    snapped = [r for r in outside if r.metres <= SNAP_METRES]
    if snapped:
        conn.execute(
            text("INSERT INTO site_import_mun (row, mun_cvegeo, cve_ent) VALUES (:r, :m, :e)"),
            [{"r": r.row, "m": r.cvegeo, "e": r.cve_ent} for r in snapped],
        )
    return pd.DataFrame(
        {
            "row": [r.row for r in outside],
            "column": "lat",
            "value": [f"{r.lat}, {r.lon}" for r in outside],
            "severity": ["warning" if r.metres <= SNAP_METRES else "error" for r in outside],
            "message": [
                f"is {r.metres:,.0f} m outside the boundary of {r.name} ({r.cvegeo}), on the "
                "coast or a border; assigned to it"
                if r.metres <= SNAP_METRES
                else f"is not within any Mexican municipality; the nearest, {r.name} "
                f"({r.cvegeo}), is {r.metres / 1000:,.1f} km away. Check the coordinates"
                for r in outside
            ],
        }
    )


def _check_against_database(conn: Connection, present: tuple[str, ...]) -> pd.DataFrame:
    """Rules that need stored data or the geography: municipality named in the file, v3 user."""
    parts: list[pd.DataFrame] = []
    if "mun_cvegeo_hint" in present or "municipality_hint" in present:
        rows = conn.execute(
            text(
                """
                SELECT i.row, coalesce(i.mun_cvegeo_hint, i.municipality_hint) AS given,
                       a.mun_cvegeo, m.name
                FROM site_import i
                JOIN site_import_mun a ON a.row = i.row
                JOIN municipalities m ON m.cvegeo = a.mun_cvegeo
                WHERE coalesce(i.mun_cvegeo_hint, i.municipality_hint) IS NOT NULL
                  AND NOT (
                    (coalesce(i.mun_cvegeo_hint, i.municipality_hint) ~ '^[0-9]{4,5}$'
                     AND lpad(coalesce(i.mun_cvegeo_hint, i.municipality_hint), 5, '0')
                         = a.mun_cvegeo)
                    OR (coalesce(i.mun_cvegeo_hint, i.municipality_hint) ~ '^[0-9]{1,3}$'
                        AND lpad(coalesce(i.mun_cvegeo_hint, i.municipality_hint), 3, '0')
                            = substr(a.mun_cvegeo, 3))
                    OR translate(lower(i.municipality_hint), 'áéíóúüñ', 'aeiouun')
                       = translate(lower(m.name), 'áéíóúüñ', 'aeiouun'))
                ORDER BY i.row
                """
            )
        ).all()
        if rows:
            parts.append(
                pd.DataFrame(
                    {
                        "row": [r.row for r in rows],
                        "column": "mun_cvegeo_hint"
                        if "mun_cvegeo_hint" in present
                        else "municipality_hint",
                        "value": [r.given for r in rows],
                        "severity": "warning",
                        "message": [
                            f"differs from where the coordinates are: {r.name} "
                            f"({r.mun_cvegeo}); the coordinates win"
                            for r in rows
                        ],
                    }
                )
            )
    if "snmp_version" in present and "v3_user" not in present:
        rows = conn.execute(
            text(
                """
                SELECT i.row FROM site_import i
                LEFT JOIN sites s ON s.site_key = i.site_key
                LEFT JOIN site_secrets sec ON sec.site_id = s.id
                WHERE i.snmp_version = '3' AND sec.v3_user IS NULL
                ORDER BY i.row
                """
            )
        ).all()
        if rows:
            parts.append(
                pd.DataFrame(
                    {
                        "row": [r.row for r in rows],
                        "column": "snmp_version",
                        "value": "3",
                        "severity": "error",
                        "message": "is 3 but the site has no v3_user stored and the file has no "
                        "v3_user column; add the column with the SNMPv3 user",
                    }
                )
            )
    return pd.concat(parts, ignore_index=True) if parts else _empty_issues()


def _unread_lines(table: SourceTable) -> list[ImportIssue]:
    """Errors for CSV lines whose number of fields does not match the header."""
    width = len(table.frame.columns)
    issues = []
    for line, raw in table.bad_lines:
        fields = len(next(csv.reader([raw], delimiter=table.delimiter or ","), []))
        issues.append(
            ImportIssue(
                row=0,
                position=line,
                locator="line",
                site_key="",
                column="",
                value=raw[:200],
                severity="error",
                message=f"has {fields} fields but the header has {width}; the row could not be "
                "read. Quote values that contain the delimiter, or fill the missing fields",
            )
        )
    return issues


def _issue_list(
    issues: pd.DataFrame,
    table: SourceTable,
    headers: dict[str, str],
    checked: Validated,
) -> list[ImportIssue]:
    if issues.empty:
        return []
    issues = issues.sort_values(["row", "severity"], kind="stable")
    rows = issues["row"].to_numpy(dtype=np.int64)
    keys = checked.clean["site_key"].to_numpy(dtype=object)[rows - 1]
    positions = table.positions[rows - 1]
    return [
        ImportIssue(
            row=int(row),
            position=int(pos),
            locator=table.locator,
            site_key="" if key is None else str(key),
            column=headers.get(column, "geometry" if column == "geometry" else column),
            value=str(value),
            severity=severity,
            message=message,
        )
        for row, pos, key, column, value, severity, message in zip(
            rows,
            positions,
            keys,
            issues["column"],
            issues["value"],
            issues["severity"],
            issues["message"],
            strict=True,
        )
    ]


def _written_columns(present: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Site columns and secret columns the file gives (lat/lon become geom, mun, state)."""
    site = [c for c in PUBLIC_COLUMNS if c in present and c not in ("site_key", "lat", "lon")]
    return [*site, *DERIVED], [c for c in SECRET_COLUMNS if c in present]


def _differs(column: str) -> str:
    if column == "geom":
        # Coordinates that round-trip through text formats may differ in the last bit.
        return "NOT ST_DWithin(s.geom, n.geom, 1e-9)"
    return f"s.{column} IS DISTINCT FROM {new_value_sql(column, f's.{column}')}"


def _write(
    conn: Connection, present: tuple[str, ...], changed_by: str, source: str
) -> tuple[int, int]:
    """Upsert staged rows into sites and site_secrets, writing history; (inserted, updated)."""
    site_cols, secret_cols = _written_columns(present)
    secret_differs = [f"sec.{c} IS DISTINCT FROM n.{c}" for c in secret_cols]
    differs = " OR ".join([_differs(c) for c in site_cols] + secret_differs)
    conn.execute(
        text(
            f"""
            CREATE TEMP TABLE site_import_diff AS
            SELECT n.row, s.id AS site_id,
                   CASE WHEN s.id IS NULL THEN NULL
                        ELSE {update_changes_sql(site_cols, secret_cols)} END AS changes
            FROM site_import n
            JOIN site_import_mun a ON a.row = n.row
            LEFT JOIN sites s ON s.site_key = n.site_key
            LEFT JOIN site_secrets sec ON sec.site_id = s.id
            WHERE s.id IS NULL OR {differs}
            """
        )
    )
    counts = conn.execute(
        text(
            "SELECT count(*) FILTER (WHERE site_id IS NULL), "
            "count(*) FILTER (WHERE site_id IS NOT NULL), "
            "(SELECT reltuples FROM pg_class WHERE oid = 'sites'::regclass) "
            "FROM site_import_diff"
        )
    ).one()
    inserted, updated = int(counts[0]), int(counts[1])
    rebuild = _bulk_indexes(conn, inserted + updated, max(float(counts[2]), 0.0) + inserted)
    params: dict[str, Any] = {"by": changed_by, "source": json.dumps({"source": source})}
    if updated:
        assignments = ", ".join(f"{c} = {new_value_sql(c, f's.{c}')}" for c in site_cols)
        conn.execute(
            text(
                f"""
                UPDATE sites s SET {assignments}, updated_at = now()
                FROM site_import n
                JOIN site_import_mun a ON a.row = n.row
                JOIN site_import_diff d ON d.row = n.row
                WHERE d.site_id IS NOT NULL AND s.id = d.site_id
                """
            )
        )
        if secret_cols:
            conn.execute(text(secret_upsert_sql(secret_cols, "update")))
        conn.execute(
            text(
                """
                INSERT INTO site_changes (site_id, site_key, changed_by, action, changes)
                SELECT d.site_id, n.site_key, :by, 'update', d.changes
                FROM site_import_diff d JOIN site_import n ON n.row = d.row
                WHERE d.site_id IS NOT NULL
                """
            ),
            params,
        )
    if inserted:
        values = ", ".join(new_value_sql(c) for c in site_cols)
        secrets_cte = ""
        if secret_cols:
            secrets_cte = f", secrets AS ({secret_upsert_sql(secret_cols, 'insert')})"
        # Creation history holds where the site came from; its values are the row itself,
        # and every later update records [old, new], so any past state can be rebuilt.
        conn.execute(
            text(
                f"""
                WITH ins AS (
                    INSERT INTO sites (site_key, {", ".join(site_cols)})
                    SELECT n.site_key, {values}
                    FROM site_import n
                    JOIN site_import_mun a ON a.row = n.row
                    JOIN site_import_diff d ON d.row = n.row
                    WHERE d.site_id IS NULL
                    ORDER BY n.row
                    RETURNING id, site_key
                ){secrets_cte}
                INSERT INTO site_changes (site_id, site_key, changed_by, action, changes)
                SELECT ins.id, ins.site_key, :by, 'insert', CAST(:source AS jsonb) FROM ins
                """
            ),
            params,
        )
    for statement in rebuild:
        conn.execute(text(statement))
    return inserted, updated


def _bulk_indexes(conn: Connection, written: int, total_after: float) -> list[str]:
    """Before a bulk write, drop the secondary indexes of sites and the foreign keys of sites
    and site_secrets; return the SQL that puts them back (run before commit).

    Maintaining nine indexes and three row-by-row foreign-key checks costs several times a
    rebuild and one set-wise validation once a write touches a large share of the table
    (bench/import_sites.py). The drop holds an exclusive lock on sites until commit, so it is
    kept for bulk loads; small imports maintain indexes as usual.
    """
    if written < BULK_MIN_ROWS or written < BULK_SHARE * total_after:
        return []
    rows = conn.execute(
        text(
            """
            SELECT 'DROP INDEX ' || i.indexrelid::regclass::text AS drop_sql,
                   pg_get_indexdef(i.indexrelid) AS restore_sql
            FROM pg_index i
            WHERE i.indrelid = 'sites'::regclass
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
            UNION ALL
            SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname),
                   format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname,
                          pg_get_constraintdef(c.oid))
            FROM pg_constraint c
            WHERE c.contype = 'f'
              AND c.conrelid IN ('sites'::regclass, 'site_secrets'::regclass)
            ORDER BY 1
            """
        )
    ).all()
    for row in rows:
        conn.execute(text(row.drop_sql))
    return [row.restore_sql for row in rows]


def secret_upsert_sql(secret_cols: list[str], action: Literal["insert", "update"]) -> str:
    """SQL writing the given secret columns of staged rows (only what differs)."""
    columns = ", ".join(secret_cols)
    values = ", ".join(f"n.{c}" for c in secret_cols)
    if action == "insert":
        any_given = " OR ".join(f"n.{c} IS NOT NULL" for c in secret_cols)
        return (
            f"INSERT INTO site_secrets (site_id, {columns}) SELECT ins.id, {values} "
            f"FROM ins JOIN site_import n ON n.site_key = ins.site_key WHERE {any_given}"
        )
    updates = ", ".join(f"{c} = excluded.{c}" for c in secret_cols)
    old = ", ".join(f"site_secrets.{c}" for c in secret_cols)
    new = ", ".join(f"excluded.{c}" for c in secret_cols)
    return (
        f"INSERT INTO site_secrets (site_id, {columns}) SELECT d.site_id, {values} "
        "FROM site_import_diff d JOIN site_import n ON n.row = d.row "
        f"WHERE d.site_id IS NOT NULL ON CONFLICT (site_id) DO UPDATE SET {updates} "
        f"WHERE ({old}) IS DISTINCT FROM ({new})"
    )


def write_issue_report(report: ImportReport, path: Path) -> None:
    """Write every issue of ``report`` as CSV (UTF-8 with BOM so Excel shows accents)."""
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["row", "locator", "position", "site_key", "column", "value", "severity", "message"]
        )
        for issue in report.issues:
            writer.writerow(
                [
                    issue.row,
                    issue.locator,
                    issue.position,
                    issue.site_key,
                    issue.column,
                    issue.value,
                    issue.severity,
                    issue.message,
                ]
            )
