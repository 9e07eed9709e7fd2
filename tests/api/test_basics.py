from __future__ import annotations

import re
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.auth import Role
from core.settings import Settings
from results.incidents import evaluate_incidents
from tests.api.conftest import auth


def test_healthz_reports_database(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["schema_revision"] == "0010_incident_evaluation"


def test_unknown_query_parameter_is_422(client: TestClient) -> None:
    r = client.get("/healthz", params={"catgory": "school"})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["errors"][0]["field"] == "query.catgory"
    assert "catgory" in body["detail"]


def test_missing_key_is_401_problem(client: TestClient) -> None:
    r = client.get("/keys")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "X-API-Key" in r.json()["detail"]


def test_bad_key_is_401(client: TestClient) -> None:
    r = client.get("/keys", headers=auth("cnk_000000000000_" + "x" * 43))
    assert r.status_code == 401


def test_role_without_permission_is_403(client: TestClient, role_keys: dict[Role, str]) -> None:
    r = client.get("/keys", headers=auth(role_keys[Role.OPERATOR]))
    assert r.status_code == 403
    assert "admin" in r.json()["detail"]


def test_admin_creates_lists_and_revokes_keys(
    client: TestClient, role_keys: dict[Role, str]
) -> None:
    admin = auth(role_keys[Role.ADMIN])
    r = client.post("/keys", json={"name": "qgis", "role": "viewer"}, headers=admin)
    assert r.status_code == 201, r.text
    created = r.json()
    token = created["token"]
    assert client.get("/keys", headers=auth(token)).status_code == 403  # viewer
    listed = client.get("/keys", headers=admin).json()
    assert all("token" not in k for k in listed)
    assert "qgis" in {k["name"] for k in listed}
    r = client.post("/keys", json={"name": "qgis", "role": "viewer"}, headers=admin)
    assert r.status_code == 409
    assert client.delete(f"/keys/{created['id']}", headers=admin).status_code == 200
    assert client.get("/healthz", headers=auth(token)).status_code == 200  # no auth needed
    assert client.get("/keys", headers=auth(token)).status_code == 401


def test_metrics_text_format(client: TestClient) -> None:
    client.get("/healthz")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert 'conectado_http_requests_total{method="GET",route="/healthz",status="200"}' in r.text
    assert "conectado_database_up 1.0" in r.text
    assert "conectado_probe_rounds_total 0.0" in r.text
    assert "conectado_incidents_evaluated_timestamp_seconds" not in r.text  # none yet


def test_metrics_tell_when_incidents_were_last_evaluated(
    client: TestClient, engine: Engine
) -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with engine.begin() as conn:
        evaluate_incidents(conn, Settings(), now=at)
    text = client.get("/metrics").text
    shown = re.search(r"^conectado_incidents_evaluated_timestamp_seconds (\S+)$", text, re.M)
    assert shown is not None and float(shown.group(1)) == at.timestamp()
    took = re.search(r"^conectado_incidents_evaluation_duration_seconds (\S+)$", text, re.M)
    assert took is not None and 0 < float(took.group(1)) < 30


def test_docs_are_served_locally(client: TestClient) -> None:
    html = client.get("/docs").text
    assert "/static/docs/swagger-ui-bundle.js" in html
    assert "cdn.jsdelivr" not in html
    assert client.get("/static/docs/swagger-ui-bundle.js").status_code == 200
    redoc = client.get("/redoc").text
    assert "/static/docs/redoc.standalone.js" in redoc and "fonts.googleapis" not in redoc
    assert client.get("/openapi.json").json()["info"]["title"] == "Conectado API"


def test_secret_scanner_catches_a_leak() -> None:
    from fastapi import FastAPI as _FastAPI

    from tests.api.conftest import SecretScanner, scanned
    from tests.api.seed import SECRET_COMMUNITY

    leaky = _FastAPI()

    @leaky.get("/leak")
    def leak() -> dict[str, str]:
        return {"community": SECRET_COMMUNITY}

    before = len(SecretScanner.violations)
    with TestClient(scanned(leaky)) as c:
        c.get("/leak")
    caught = SecretScanner.violations[before:]
    del SecretScanner.violations[before:]
    assert caught == [f"GET /leak: {SECRET_COMMUNITY}"]
