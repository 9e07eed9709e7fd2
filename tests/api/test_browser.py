"""The pages in Debian chromium (Playwright) against a real uvicorn server and real PostGIS.

A technician logs in, opens a site whose agents are the real lab agents on loopback, clicks
"Probe now" and sees the live result; the dashboard and the coverage page render on a phone
and a desktop viewport. Screenshots go to var/screenshots/. No request may leave 127.0.0.1.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from playwright.sync_api import Page, sync_playwright
from sqlalchemy import Engine

from api.app import create_app
from api.auth import Role, create_key
from core.settings import PROJECT_ROOT, Settings
from tests.api.conftest import ApiLab, scanned
from tests.api.seed import seed_all
from tests.ports import free_port
from tests.results.lab_sites import insert_sites

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = PROJECT_ROOT / "var" / "screenshots"


@pytest.fixture
def server(engine: Engine, lab_settings: Settings, api_lab: ApiLab) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1 serving the API on this test's database."""
    with engine.begin() as conn:
        seed_all(conn)
    insert_sites(engine, api_lab.rows)
    cfg = lab_settings.model_copy(update={"tile_url": ""})
    port = free_port()
    config = uvicorn.Config(
        scanned(create_app(cfg, engine=engine)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def _login(page: Page, base: str, token: str, path: str) -> None:
    page.goto(base + path)
    assert "/login" in page.url
    page.fill("#key", token)
    page.click("button[type=submit]")
    page.wait_for_url(base + path)


def test_technician_probes_a_lab_site_from_a_phone(
    server: str, engine: Engine, api_lab: ApiLab
) -> None:
    with engine.begin() as conn:
        tech = create_key(conn, name="Ana (technician)", role=Role.TECHNICIAN, created_by="t")
        planner = create_key(conn, name="Luis (planner)", role=Role.PLANNER, created_by="t")
    SHOTS.mkdir(parents=True, exist_ok=True)
    key = api_lab.healthy[0]
    hosts: set[str] = set()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            page = phone.new_page()
            page.on("request", lambda r: hosts.add(urlsplit(r.url).hostname or r.url))
            _login(page, server, tech.token, f"/sites/{key}")
            assert page.locator("h1").inner_text().startswith(key)
            page.click("#probe-now")
            page.wait_for_selector("#probe-state", timeout=15_000)
            assert page.inner_text("#probe-state") == "up"
            result = page.inner_text("#probe-result")
            assert "SNMP" in result and "ok" in result and "HTTP" in result and "200" in result
            assert re.search(r"at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", result), result
            page.screenshot(path=str(SHOTS / "api-site-probe-phone.png"), full_page=True)

            page.goto(server + "/")
            page.wait_for_selector("#state-counts")
            down = int(page.inner_text("[data-state=down]").replace(",", ""))
            assert down > 0
            assert page.locator("#incidents button[data-ack]").count() > 0
            page.screenshot(path=str(SHOTS / "api-dashboard-phone.png"), full_page=True)

            desktop = browser.new_context(viewport={"width": 1366, "height": 900})
            page = desktop.new_page()
            page.on("request", lambda r: hosts.add(urlsplit(r.url).hostname or r.url))
            _login(page, server, planner.token, "/")
            page.wait_for_selector("iframe.map")
            # every state's tile on one row; the open incidents scroll inside their card
            tops = page.eval_on_selector_all(
                "#state-counts .tile", "els => els.map(e => e.getBoundingClientRect().top)"
            )
            assert len(tops) == 5 and len(set(tops)) == 1, tops
            box = page.locator("#incidents").bounding_box()
            scroller = page.locator("div.scroll").bounding_box()
            assert box is not None and scroller is not None
            assert scroller["height"] <= 36 * 16 + 1 < box["height"]  # 50+ rows, seeded
            frame = page.frame_locator("iframe.map")
            frame.locator(".leaflet-container").wait_for(timeout=20_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(SHOTS / "api-dashboard-desktop.png"))
            page.request.post(
                server + "/api/coverage/runs", headers={"X-Requested-With": "conectado"}
            )
            page.goto(server + "/coverage")
            page.wait_for_selector("#uncovered tbody tr")
            assert page.locator("#uncovered tbody tr").count() == 50
            coverage_map = page.frame_locator("iframe.map")
            coverage_map.locator(".leaflet-container").wait_for(timeout=30_000)
            page.wait_for_timeout(1500)
            # the coverage frame is tall enough for its legend to be open at first
            assert coverage_map.locator(".cx-legend-section").first.is_visible()
            page.screenshot(path=str(SHOTS / "api-coverage-desktop.png"), full_page=True)
        finally:
            browser.close()
    assert hosts <= {"127.0.0.1"}, f"requests left the machine: {hosts}"
    assert Path(SHOTS / "api-site-probe-phone.png").stat().st_size > 10_000
