"""Test fixtures on a real PostgreSQL 15 + PostGIS 3 cluster that the test session starts.

The cluster lives in var/pg-test (fsync off). A template database is migrated and loaded with
the real INEGI geography once; each test that writes gets its own database cloned from it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from core.db import libpq_url, make_engine
from core.settings import PROJECT_ROOT, Settings
from db.cluster import DB_USER, EmbeddedCluster
from db.migrate import current_revision, head_revision, upgrade
from geo.loader import load_geography

TEMPLATE = "conectado_tpl"
TEST_DATA_DIR = Path(os.environ.get("CONECTADO_TEST_PG_DIR", PROJECT_ROOT / "var" / "pg-test"))


def _admin(cluster: EmbeddedCluster) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host="127.0.0.1", port=cluster.port, user=DB_USER, dbname="postgres", autocommit=True
    )


def _db_url(cluster: EmbeddedCluster, name: str) -> str:
    return f"postgresql+psycopg://{DB_USER}@127.0.0.1:{cluster.port}/{name}"


@pytest.fixture(scope="session")
def test_cluster() -> Iterator[EmbeddedCluster]:
    """The session's own PostGIS cluster (created on first use, reused by later runs)."""
    cfg = Settings(pg_data_dir=TEST_DATA_DIR, pg_port=56432)
    cluster = EmbeddedCluster(cfg, data_dir=TEST_DATA_DIR, unsafe_fast=True)
    cluster.start()
    yield cluster


@pytest.fixture(scope="session")
def template_db(test_cluster: EmbeddedCluster) -> str:
    """Name of a template database at the newest migration with the INEGI geography loaded."""
    url = _db_url(test_cluster, TEMPLATE)
    with _admin(test_cluster) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (TEMPLATE,)
        ).fetchone()
        fresh = False
        if exists:
            conn.execute(f'ALTER DATABASE "{TEMPLATE}" WITH ALLOW_CONNECTIONS true')
            fresh = (
                _fingerprint_of(conn) == schema_fingerprint()
                and current_revision(url) == head_revision()
                and _geo_loaded(url)
            )
        if not fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
            upgrade(url)
            engine = make_engine(url)
            try:
                load_geography(engine, PROJECT_ROOT / "data" / "inegi")
            finally:
                engine.dispose()
            with psycopg.connect(libpq_url(url), autocommit=True) as c2:
                c2.execute("VACUUM ANALYZE")
            conn.execute(f"COMMENT ON DATABASE \"{TEMPLATE}\" IS '{schema_fingerprint()}'")
        conn.execute(f'ALTER DATABASE "{TEMPLATE}" WITH ALLOW_CONNECTIONS false')
    return TEMPLATE


def schema_fingerprint() -> str:
    """Hash of every migration and the geography files: the template is rebuilt when it changes."""
    digest = hashlib.sha256()
    sources = sorted((PROJECT_ROOT / "db" / "migrations" / "versions").glob("*.py"))
    sources += sorted((PROJECT_ROOT / "data" / "inegi").iterdir())
    sources.append(PROJECT_ROOT / "geo" / "loader.py")
    for path in sources:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _fingerprint_of(conn: psycopg.Connection[tuple[object, ...]]) -> str | None:
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        (TEMPLATE,),
    ).fetchone()
    return None if row is None else str(row[0])


def _geo_loaded(url: str) -> bool:
    try:
        with psycopg.connect(libpq_url(url)) as conn:
            row = conn.execute("SELECT count(*) FROM municipalities").fetchone()
            return row is not None and row[0] == 2475
    except psycopg.Error:
        return False


def clone_database(cluster: EmbeddedCluster, template: str) -> str:
    """Create a new database from ``template`` and return its name."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with _admin(cluster) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
    return name


def drop_database(cluster: EmbeddedCluster, name: str) -> None:
    """Drop ``name`` even if connections remain."""
    with _admin(cluster) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(test_cluster: EmbeddedCluster, template_db: str) -> Iterator[str]:
    """URL of a database of this test's own, cloned from the loaded template."""
    name = clone_database(test_cluster, template_db)
    yield _db_url(test_cluster, name)
    drop_database(test_cluster, name)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on this test's own database."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """Settings pointing at this test's database, with runtime files in tmp_path."""
    return Settings(database_url=db_url, var_dir=tmp_path / "var")


@pytest.fixture(scope="session")
def shared_db_url(test_cluster: EmbeddedCluster, template_db: str) -> Iterator[str]:
    """One read-only clone shared by a whole session, for tests that only read geography."""
    name = clone_database(test_cluster, template_db)
    yield _db_url(test_cluster, name)
    drop_database(test_cluster, name)


@pytest.fixture(scope="session")
def shared_engine(shared_db_url: str) -> Iterator[Engine]:
    """Engine on the session's shared read-only clone."""
    eng = make_engine(shared_db_url)
    yield eng
    eng.dispose()
