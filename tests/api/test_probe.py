from __future__ import annotations

import time

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import create_app
from api.auth import Role, create_key
from core.settings import Settings
from tests.api.conftest import ApiLab, auth, scanned
from tests.results.lab_sites import insert_sites


def _client(settings: Settings, engine: Engine) -> TestClient:
    return TestClient(scanned(create_app(settings, engine=engine)), raise_server_exceptions=False)


def test_live_probe_of_a_lab_site(engine: Engine, lab_settings: Settings, api_lab: ApiLab) -> None:
    insert_sites(engine, api_lab.rows)
    with engine.begin() as conn:
        tech = create_key(conn, name="tech", role=Role.TECHNICIAN, created_by="t").token
        viewer = create_key(conn, name="viewer", role=Role.VIEWER, created_by="t").token
    key = api_lab.healthy[0]
    with _client(lab_settings, engine) as client:
        assert client.post(f"/api/sites/{key}/probe", headers=auth(viewer)).status_code == 403
        start = time.perf_counter()
        r = client.post(f"/api/sites/{key}/probe", headers=auth(tech))
        elapsed = time.perf_counter() - start
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["state"] == "up" and body["stored"] == "written"
        assert body["snmp"]["ok"] and body["snmp"]["sys_uptime"] > 0
        assert body["snmp"]["in_octets"] > 0 and body["snmp"]["oper_status"] == 1
        assert body["http"]["ok"] and body["http"]["status_code"] == 200
        assert elapsed < 1.0 * 2 + 2.0 + 2.0  # within the probe timeouts plus slack

        # the second probe has a previous counter: a rate appears, and the card shows it
        time.sleep(1.1)
        second = client.post(f"/api/sites/{key}/probe", headers=auth(tech)).json()
        assert second["snmp"]["in_bps"] is not None and second["snmp"]["in_bps"] > 0
        card = client.get(f"/api/sites/{key}/card", headers=auth(tech)).json()
        assert card["status"]["state"] == "up"
        assert len(card["series"]["points"]) == 2

        dead = api_lab.down[0]
        start = time.perf_counter()
        r = client.post(f"/api/sites/{dead}/probe", headers=auth(tech))
        elapsed = time.perf_counter() - start
        assert r.status_code == 200 and r.json()["state"] == "down"
        assert r.json()["snmp"]["error"] == "timeout"
        assert elapsed < 1.0 * 2 + 2.0 + 3.0

        with engine.begin() as conn:
            conn.execute(
                text("UPDATE sites SET status = 'planned' WHERE site_key = :k"), {"k": key}
            )
        r = client.post(f"/api/sites/{key}/probe", headers=auth(tech))
        assert r.status_code == 409 and "planned" in r.json()["detail"]
        assert client.post("/api/sites/NOPE/probe", headers=auth(tech)).status_code == 404


def test_a_live_probe_shows_on_cards_cached_by_other_workers(
    engine: Engine, lab_settings: Settings, api_lab: ApiLab
) -> None:
    # Two apps on one database stand for two uvicorn workers. Worker A caches the card with a
    # long probe lag; the technician's probe goes to worker B; A must drop its copy at once
    # (the probe is announced as an edit), not after the lag routine probe data gets.
    insert_sites(engine, api_lab.rows)
    with engine.begin() as conn:
        tech = create_key(conn, name="tech", role=Role.TECHNICIAN, created_by="t").token
    key = api_lab.healthy[1]
    cached = lab_settings.model_copy(
        update={"api_cache_seconds": 300.0, "api_cache_probe_lag_seconds": 300.0}
    )
    app_a = create_app(cached, engine=engine)
    with _client(cached, engine) as worker_b, TestClient(app_a) as worker_a:
        deadline = time.monotonic() + 10
        while not app_a.state.read_cache.live:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        card = f"/api/sites/{key}/card"
        assert worker_a.get(card, headers=auth(tech)).json()["status"] is None  # never probed
        assert worker_a.get(card, headers=auth(tech)).headers["cache-status"] == "conectado; hit"
        r = worker_b.post(f"/api/sites/{key}/probe", headers=auth(tech))
        assert r.status_code == 200 and r.json()["state"] == "up", r.text
        deadline = time.monotonic() + 3
        while (status := worker_a.get(card, headers=auth(tech)).json()["status"]) is None:
            assert time.monotonic() < deadline, "worker A still shows the card from before"
            time.sleep(0.05)
        assert status["state"] == "up"
