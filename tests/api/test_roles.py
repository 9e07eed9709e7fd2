"""Role matrix: every role × every write endpoint → allowed, 403, or 401 without a key."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.auth import Role, create_key
from tests.api.conftest import auth

ALL = set(Role)
ALLOWED: dict[tuple[str, str], set[Role]] = {
    ("POST", "/keys"): {Role.ADMIN},
    ("DELETE", "/keys/{key_id}"): {Role.ADMIN},
    ("POST", "/api/incidents/{incident_id}/acknowledge"): {
        Role.TECHNICIAN,
        Role.OPERATOR,
        Role.ADMIN,
    },
    ("POST", "/api/maintenance"): {Role.OPERATOR, Role.ADMIN},
    ("PATCH", "/api/maintenance/{window_id}"): {Role.OPERATOR, Role.ADMIN},
    ("DELETE", "/api/maintenance/{window_id}"): {Role.OPERATOR, Role.ADMIN},
    ("POST", "/api/sites"): {Role.OPERATOR, Role.ADMIN},
    ("POST", "/api/sites/import"): {Role.OPERATOR, Role.ADMIN},
    ("PATCH", "/api/sites/{site_key}"): {Role.OPERATOR, Role.ADMIN},
    ("DELETE", "/api/sites/{site_key}"): {Role.OPERATOR, Role.ADMIN},
    ("POST", "/api/sites/{site_key}/probe"): {Role.TECHNICIAN, Role.OPERATOR, Role.ADMIN},
    ("POST", "/api/coverage/runs"): {Role.PLANNER, Role.OPERATOR, Role.ADMIN},
}


def _now(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


def _requests(engine: Engine) -> dict[tuple[str, str], Callable[[], dict[str, Any]]]:
    """A factory per endpoint making a fresh, valid request (so allowed roles get a 2xx)."""

    def new_key_id() -> int:
        with engine.begin() as conn:
            return create_key(
                conn, name=f"victim-{uuid.uuid4().hex[:8]}", role=Role.VIEWER, created_by="t"
            ).info.id

    def new_window() -> int:
        with engine.begin() as conn:
            return int(
                conn.execute(
                    text(
                        "INSERT INTO maintenance_windows (scope, provider, starts_at, ends_at, "
                        "reason, created_by) VALUES ('provider', 'Telmex', now(), "
                        "now() + interval '1 hour', 'matrix', 't') RETURNING id"
                    )
                ).scalar_one()
            )

    def new_site_key() -> str:
        key = f"RM-{uuid.uuid4().hex[:8]}"
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO sites (site_key, name, category, geom, mun_cvegeo, cve_ent, "
                    "status, mgmt_ip, snmp_version, snmp_port, wan_if_index, http_url) VALUES "
                    "(:k, 'Matrix site', 'school', ST_SetSRID(ST_MakePoint(-99.13, 19.43), 4326),"
                    " '09015', '09', 'active', '127.0.0.1', '2c', 9, 1, 'http://127.0.0.1:9/')"
                ),
                {"k": key},
            )
        return key

    def open_incident() -> int:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT min(id) FROM incidents WHERE status = 'open'")
                ).scalar_one()
            )

    csv_body = b"site_key,name,category,lat,lon\nRM-IMP,Imported,school,19.43,-99.13\n"
    return {
        ("POST", "/keys"): lambda: {
            "url": "/keys",
            "json": {"name": f"k-{uuid.uuid4().hex[:8]}", "role": "viewer"},
        },
        ("DELETE", "/keys/{key_id}"): lambda: {"url": f"/keys/{new_key_id()}"},
        ("POST", "/api/incidents/{incident_id}/acknowledge"): lambda: {
            "url": f"/api/incidents/{open_incident()}/acknowledge",
            "json": {"comment": "matrix"},
        },
        ("POST", "/api/maintenance"): lambda: {
            "url": "/api/maintenance",
            "json": {
                "scope": "municipality",
                "target": "09015",
                "starts_at": _now(1),
                "ends_at": _now(2),
                "reason": "matrix",
            },
        },
        ("PATCH", "/api/maintenance/{window_id}"): lambda: {
            "url": f"/api/maintenance/{new_window()}",
            "json": {"reason": "changed"},
        },
        ("DELETE", "/api/maintenance/{window_id}"): lambda: {
            "url": f"/api/maintenance/{new_window()}"
        },
        ("POST", "/api/sites"): lambda: {
            "url": "/api/sites",
            "json": {
                "site_key": f"RM-{uuid.uuid4().hex[:8]}",
                "name": "New",
                "category": "health",
                "lat": 19.43,
                "lon": -99.13,
            },
        },
        ("POST", "/api/sites/import"): lambda: {
            "url": "/api/sites/import",
            "files": {"file": ("s.csv", csv_body, "text/csv")},
        },
        ("PATCH", "/api/sites/{site_key}"): lambda: {
            "url": f"/api/sites/{new_site_key()}",
            "json": {"provider": "Bestel"},
        },
        ("DELETE", "/api/sites/{site_key}"): lambda: {"url": f"/api/sites/{new_site_key()}"},
        ("POST", "/api/sites/{site_key}/probe"): lambda: {
            "url": f"/api/sites/{new_site_key()}/probe"
        },
        ("POST", "/api/coverage/runs"): lambda: {"url": "/api/coverage/runs"},
    }


def test_every_write_endpoint_is_in_the_matrix(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    writes = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in ("post", "put", "patch", "delete")
    }
    assert writes == set(ALLOWED), "a write endpoint was added or removed: update ALLOWED"


def test_role_matrix(client: TestClient, seeded: Engine, role_keys: dict[Role, str]) -> None:
    requests = _requests(seeded)
    outcomes: dict[tuple[str, str], dict[str, int]] = {}
    for endpoint, allowed in ALLOWED.items():
        method = endpoint[0]
        row: dict[str, int] = {}
        r = client.request(method, **requests[endpoint]())
        row["none"] = r.status_code
        assert r.status_code == 401, (endpoint, "no key", r.text)
        for role in Role:
            r = client.request(method, headers=auth(role_keys[role]), **requests[endpoint]())
            row[role.value] = r.status_code
            if role in allowed:
                assert 200 <= r.status_code < 300, (endpoint, role, r.text)
            else:
                assert r.status_code == 403, (endpoint, role, r.text)
                assert r.headers["content-type"].startswith("application/problem+json")
        outcomes[endpoint] = row
    assert len(outcomes) == len(ALLOWED)
