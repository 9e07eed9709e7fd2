"""Writing sites through the API with the inventory's own importer.

A create, a change or a retirement is a one-row import (``sites.importer.import_table``), so
the API applies exactly the validation, municipality assignment from coordinates, secret
handling and change history of ``conectado sites import``; the change is recorded under the
API key's name.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import SecretStr
from sqlalchemy import Connection, text

from core.errors import Conflict, InvalidInput
from sites.importer import ImportIssue, ImportOptions, ImportReport, import_table
from sites.readers import SourceTable
from sites.schemas import SiteCreate, SitePublic, SiteUpdate
from sites.search import get_site
from sites.vocabulary import PUBLIC_COLUMNS, SECRET_COLUMNS


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _one_row(values: dict[str, Any], origin: str) -> SourceTable:
    frame = pd.DataFrame({k: [_cell(v)] for k, v in values.items()}, dtype=object)
    return SourceTable(
        path=Path(origin), format="csv", frame=frame, positions=np.array([1], dtype=np.int64)
    )


def issues_detail(issues: list[ImportIssue]) -> str:
    """One sentence naming each problem's field and what is wrong."""
    return "; ".join(f"{i.column}: {i.message}" for i in issues[:10])


def _write_one(conn: Connection, values: dict[str, Any], changed_by: str, origin: str) -> None:
    report = import_table(
        conn, _one_row(values, origin), options=ImportOptions(changed_by=changed_by)
    )
    if report.errors or not report.written:
        raise InvalidInput(
            f"site {values.get('site_key')!r} was not written — {issues_detail(report.errors)}."
        )


def _exists(conn: Connection, site_key: str) -> bool:
    return (
        conn.execute(text("SELECT 1 FROM sites WHERE site_key = :k"), {"k": site_key}).first()
        is not None
    )


def create_site(conn: Connection, body: SiteCreate, *, changed_by: str) -> SitePublic:
    """Insert a new site (409 if the key exists) and return it as stored."""
    if _exists(conn, body.site_key):
        raise Conflict(
            f"site_key: {body.site_key!r} already exists; change it with PATCH /api/sites/"
            f"{body.site_key}."
        )
    values = {c: getattr(body, c) for c in (*PUBLIC_COLUMNS, *SECRET_COLUMNS)}
    _write_one(conn, values, changed_by, "api:create")
    return get_site(conn, body.site_key)


def update_site(
    conn: Connection, site_key: str, body: SiteUpdate, *, changed_by: str
) -> SitePublic:
    """Change only the fields given in ``body`` (null clears one); return the site as stored."""
    current = get_site(conn, site_key)
    given = body.model_fields_set
    if not given:
        return current
    values: dict[str, Any] = {
        "site_key": site_key,
        "name": current.name,
        "category": current.category,
        "lat": current.lat,
        "lon": current.lon,
    }
    for column in given:
        values[column] = getattr(body, column)
    for column in ("name", "category", "lat", "lon"):
        if values[column] is None:
            raise InvalidInput(f"{column}: cannot be cleared; every site needs one.")
    _write_one(conn, values, changed_by, "api:update")
    return get_site(conn, site_key)


def retire_site(conn: Connection, site_key: str, *, changed_by: str) -> SitePublic:
    """Set the site's status to retired (it stays in the inventory and its history)."""
    current = get_site(conn, site_key)
    if current.status == "retired":
        return current
    return update_site(conn, site_key, SiteUpdate(status="retired"), changed_by=changed_by)


def import_report_json(report: ImportReport, *, max_issues: int = 1000) -> dict[str, Any]:
    """The import report as JSON-ready data (at most ``max_issues`` issues listed)."""
    return {
        "format": report.format,
        "mode": report.mode,
        "encoding": report.encoding,
        "delimiter": report.delimiter,
        "rows": report.rows,
        "inserted": report.inserted,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "rejected": report.rejected,
        "written": report.written,
        "errors": len(report.errors),
        "warnings": len(report.warnings),
        "issues": [
            {
                "where": i.where,
                "row": i.row,
                "site_key": i.site_key,
                "column": i.column,
                "value": "(hidden)" if i.column in SECRET_COLUMNS else i.value,
                "severity": i.severity,
                "message": i.message,
            }
            for i in report.issues[:max_issues]
        ],
        "issues_listed": min(len(report.issues), max_issues),
        "notes": report.notes,
        "seconds": round(report.seconds, 3),
    }
