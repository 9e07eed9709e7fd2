from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.auth import Role
from tests.api.conftest import auth


def test_maps_are_served_with_local_assets(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    viewer, planner = auth(role_keys[Role.VIEWER]), auth(role_keys[Role.PLANNER])
    health = client.get("/maps/health", headers=viewer)
    assert health.status_code == 200 and health.headers["content-type"].startswith("text/html")
    assert "/static/maps/leaflet.js" in health.text
    assert "cdn.jsdelivr" not in health.text and "unpkg.com" not in health.text
    assert "TST00002" in health.text
    assert client.get("/static/maps/leaflet.js").status_code == 200
    one_state = client.get("/maps/health", params={"state": "15"}, headers=viewer).text
    assert "TST00001" in health.text and "TST00001" not in one_state  # TST00001 is in 09

    site = client.get("/maps/sites/TST00001", headers=viewer)
    assert site.status_code == 200 and "TST00001" in site.text
    assert client.get("/maps/sites/NOPE", headers=viewer).status_code == 404

    assert client.get("/maps/coverage", headers=viewer).status_code == 403
    assert client.get("/maps/coverage", headers=planner).status_code == 404
    client.post("/api/coverage/runs", headers=planner)
    coverage = client.get("/maps/coverage", headers=planner)
    assert coverage.status_code == 200 and "Cuauhtémoc" in coverage.text
