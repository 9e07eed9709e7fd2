from __future__ import annotations

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
    assert "API key" in client.get("/login").text
    r = client.post("/login", data={"key": "cnk_nope"})
    assert r.status_code == 401 and "not valid" in r.text


def test_dashboard_site_and_coverage_pages(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    login(client, role_keys[Role.VIEWER], "/sites/TST00001")
    page = client.get("/").text
    assert "Open incidents" in page and "/maps/health" in page
    assert "Acknowledge" not in page  # a viewer cannot acknowledge
    site = client.get("/sites/TST00001").text
    assert "TST00001" in site and "<svg" in site and "Nearby sites" in site
    assert "cannot run live probes" in site
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

    login(client, role_keys[Role.TECHNICIAN])
    assert "Acknowledge" in client.get("/").text
    assert 'data-probe="TST00001"' in client.get("/sites/TST00001").text
