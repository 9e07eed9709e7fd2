"""Fixtures for the map tests: one database with Querétaro's sites, status, history, coverage.

The database is cloned from the migrated template once per module (setting it up takes
seconds), and is only read by the tests. Browsers are Debian's chromium, headless.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from core.db import make_engine
from core.settings import PROJECT_ROOT, Settings
from db.cluster import EmbeddedCluster
from geo.coverage import compute_coverage
from results.rollups import rollup_hour, utc_hour
from tests.conftest import _db_url, clone_database, drop_database
from tests.maps.sitedata import insert_generated_sites, plant_history, plant_status

STATE = "22"
SCREENSHOTS = PROJECT_ROOT / "var" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def as_of() -> datetime:
    """The moment the planted status and history are relative to (now, to the second)."""
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def maps_engine(
    test_cluster: EmbeddedCluster, template_db: str, as_of: datetime
) -> Iterator[Engine]:
    """A database with Querétaro's generated sites, planted status, 24 h of results for one
    site in ten (rolled up but for the last two hours), and a coverage run."""
    name = clone_database(test_cluster, template_db)
    engine = make_engine(_db_url(test_cluster, name))
    try:
        insert_generated_sites(engine, count=101_322, seed=11, states=(STATE,))
        plant_status(engine, as_of=as_of)
        plant_history(engine, as_of=as_of, where="id % 10 = 0")
        hour = utc_hour(as_of - timedelta(hours=24))
        with engine.begin() as conn:
            while hour < utc_hour(as_of) - timedelta(hours=1):
                rollup_hour(conn, hour)
                hour += timedelta(hours=1)
            conn.execute(text("ANALYZE"))
        compute_coverage(engine, Settings(), as_of=as_of)
        yield engine
    finally:
        engine.dispose()
        drop_database(test_cluster, name)


@pytest.fixture
def map_settings(tmp_path: Path) -> Settings:
    """Settings for rendering: no tile layer (nothing may leave the machine)."""
    return Settings(tile_url="", var_dir=tmp_path / "var")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian chromium driven by Playwright (never a downloaded browser).

    Module scope, not session: Playwright's sync API keeps an event loop running in the main
    thread while it is open, and later tests call ``asyncio.run``.
    """
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
