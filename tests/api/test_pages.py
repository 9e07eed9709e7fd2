from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.auth import Role
from tests.api.seed import SECRETS


def login(client: TestClient, token: str, next_: str = "/") -> None:
    r = client.post("/login", data={"key": token, "next": next_}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == next_
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")


def test_pages_need_a_session(client: TestClient) -> None:
    r = client.get("/sites/TST00001", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fsites%2FTST00001"
    login_page = client.get("/login").text
    assert "API key" in login_page and "logged in for 12 hours" in login_page
    r = client.post("/login", data={"key": "cnk_nope"})
    assert r.status_code == 401 and "not valid" in r.text


def test_dashboard_site_and_coverage_pages(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    login(client, role_keys[Role.VIEWER], "/sites/TST00001")
    page = client.get("/").text
    assert "Open incidents" in page and "/maps/health" in page
    assert "failed rounds in a row" in page  # the seeded down sites' incidents, in words
    assert re.search(r"Last probe round [\d-]+ [\d:]+ UTC \([^)]+\):|No probe round yet", page)
    assert "Acknowledge" not in page  # a viewer cannot acknowledge
    site = client.get("/sites/TST00001").text
    assert "TST00001" in site and "<svg" in site and "Nearby sites" in site
    assert "cannot run live probes" in site
    # times read to the minute with how long ago (seeded: state 3 h ago, last probe 2 min ago)
    since = r"(up|degraded|down) since \d{4}-\d\d-\d\d \d\d:\d\d UTC \(3\.\d h ago\)"
    assert re.search(since, site)
    assert re.search(r"<dt>Last probe</dt><dd>[\d-]+ [\d:]+ UTC \(\d+ min ago\)</dd>", site)
    assert not re.search(r"\d\dT\d\d:\d\d", site), "a raw ISO timestamp on the page"
    assert re.search(r"Mbit/s\s*<div class=\"muted\">measured [\d-]+ [\d:]+ UTC \(", site)
    assert not any(secret in site for secret in SECRETS)
    assert client.get("/sites/NOPE").status_code == 404
    assert client.get("/coverage").status_code == 403

    # writes with the session cookie need the CSRF header
    r = client.post("/api/incidents/1/acknowledge", json={})
    assert r.status_code == 403
    client.post("/logout")
    assert client.get("/", follow_redirects=False).status_code == 303

    login(client, role_keys[Role.PLANNER])
    assert "has not been computed" in client.get("/coverage").text
    client.post("/api/coverage/runs", headers={"X-Requested-With": "conectado"})
    cov = client.get("/coverage").text
    assert "Uncovered municipalities" in cov and "/maps/coverage" in cov
    assert "population within 5 km of a working site" in cov

    login(client, role_keys[Role.TECHNICIAN])
    assert "Acknowledge" in client.get("/").text
    assert 'data-probe="TST00001"' in client.get("/sites/TST00001").text
