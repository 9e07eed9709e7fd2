"""Fixtures of the inventory tests: a database of this module's own, emptied for each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.db import make_engine
from db.cluster import EmbeddedCluster
from sites.importer import ImportOptions, ImportReport, import_file
from tests.conftest import _db_url, clone_database, drop_database

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def module_engine(test_cluster: EmbeddedCluster, template_db: str) -> Iterator[Engine]:
    """An engine on a database cloned once per test module."""
    name = clone_database(test_cluster, template_db)
    eng = make_engine(_db_url(test_cluster, name))
    yield eng
    eng.dispose()
    drop_database(test_cluster, name)


@pytest.fixture
def db(module_engine: Engine) -> Engine:
    """The module's database with an empty inventory (sites, secrets, history)."""
    with module_engine.begin() as conn:
        conn.execute(text("TRUNCATE sites, site_changes RESTART IDENTITY CASCADE"))
    return module_engine


def run_import(engine: Engine, path: Path, *, fmt: str = "auto", **options: object) -> ImportReport:
    """Import ``path`` with ImportOptions(**options) (changed_by "test" by default)."""
    options.setdefault("changed_by", "test")
    return import_file(engine, path, fmt=fmt, options=ImportOptions(**options))  # type: ignore[arg-type]


def site_rows(engine: Engine, columns: str = "*") -> list[dict[str, Any]]:
    """Every site as a dict, ordered by site_key."""
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(text(f"SELECT {columns} FROM sites ORDER BY site_key")).mappings()
        ]
