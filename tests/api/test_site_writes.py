from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.auth import Role
from tests.api.conftest import auth

NEW_SITE = {
    "site_key": "API-0001",
    "name": "Escuela Primaria Benito Juárez",
    "category": "school",
    "lat": 19.4326,
    "lon": -99.1332,
    "provider": "Telmex",
    "technology": "fiber",
    "bw_down_mbps": 50,
    "status": "active",
    "mgmt_ip": "127.0.0.9",
    "snmp_version": "2c",
    "wan_if_index": 1,
    "snmp_community": "api-secret-community",
}


def test_create_update_retire_and_history(
    client: TestClient, engine: Engine, role_keys: dict[Role, str]
) -> None:
    op = auth(role_keys[Role.OPERATOR])
    r = client.post("/api/sites", json=NEW_SITE, headers=op)
    assert r.status_code == 201, r.text
    site = r.json()
    assert site["mun_cvegeo"] == "09015" and site["state"] == "Ciudad de México"
    assert site["snmp_credentials"] is True
    assert "api-secret-community" not in r.text
    with engine.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT k.snmp_community FROM site_secrets k JOIN sites s ON s.id = k.site_id "
                "WHERE s.site_key = 'API-0001'"
            )
        ).scalar_one()
    assert stored == "api-secret-community"

    assert client.post("/api/sites", json=NEW_SITE, headers=op).status_code == 409
    bad = dict(NEW_SITE, site_key="API-0002", lat=40.7, lon=-74.0)  # New York
    r = client.post("/api/sites", json=bad, headers=op)
    assert r.status_code == 422 and "API-0002" in r.json()["detail"]
    r = client.post(
        "/api/sites", json=dict(NEW_SITE, site_key="API-3", category="castle"), headers=op
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.category"
    r = client.post("/api/sites", json=dict(NEW_SITE, site_key="API-4", colour="red"), headers=op)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.colour"

    r = client.patch("/api/sites/API-0001", json={"provider": "Megacable"}, headers=op)
    assert r.status_code == 200 and r.json()["provider"] == "Megacable"
    assert r.json()["name"] == NEW_SITE["name"]
    r = client.patch(
        "/api/sites/API-0001", json={"lat": 20.6736, "lon": -103.344}, headers=op
    )  # Guadalajara
    assert r.json()["cve_ent"] == "14"
    r = client.patch("/api/sites/API-0001", json={"name": None}, headers=op)
    assert r.status_code == 422 and "name" in r.json()["detail"]

    r = client.delete("/api/sites/API-0001", headers=op)
    assert r.status_code == 200 and r.json()["status"] == "retired"
    assert client.get("/api/sites/API-0001", headers=op).json()["status"] == "retired"

    history = client.get("/api/sites/API-0001/history", headers=op).json()
    assert len(history) >= 4
    assert all(h["changed_by"] == "api:test-operator" for h in history)
    assert "api-secret-community" not in str(history)
    assert client.get("/api/sites/NOPE/history", headers=op).status_code == 404
    assert client.patch("/api/sites/NOPE", json={}, headers=op).status_code == 404


def test_import_upload_strict_and_skip_invalid(
    client: TestClient, engine: Engine, role_keys: dict[Role, str]
) -> None:
    op = auth(role_keys[Role.OPERATOR])
    csv_text = (
        "clave;nombre;categoria;latitud;longitud;proveedor;snmp_community\n"
        "IMP-1;Clínica Centro;salud;19.43;-99.13;Telmex;s3cr3t-one\n"
        "IMP-2;Escuela Norte;escuela;not-a-number;-99.10;Telmex;s3cr3t-two\n"
        "IMP-3;Biblioteca;espacio público;20.97;-89.62;Bestel;\n"
    ).encode("cp1252")
    files = {"file": ("sitios.csv", csv_text, "text/csv")}
    r = client.post("/api/sites/import", files=files, data={"mode": "strict"}, headers=op)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["report"]["written"] is False and body["report"]["rejected"] == 1
    issue = body["report"]["issues"][0]
    assert issue["column"] == "latitud" and issue["where"] == "line 3"
    assert "s3cr3t" not in r.text

    r = client.post("/api/sites/import", files=files, data={"mode": "skip-invalid"}, headers=op)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["inserted"] == 2 and report["rejected"] == 1 and report["written"]
    assert report["encoding"] and report["delimiter"] == ";"
    again = client.post(
        "/api/sites/import", files=files, data={"mode": "skip-invalid"}, headers=op
    ).json()
    assert again["inserted"] == 0 and again["unchanged"] == 2

    r = client.post(
        "/api/sites/import", files={"file": ("x.pdf", b"%PDF", "application/pdf")}, headers=op
    )
    assert r.status_code == 422 and "format" in r.json()["detail"]
    r = client.post(
        "/api/sites/import", files={"file": ("x.csv", b"a,b\n1,2\n", "text/csv")}, headers=op
    )
    assert r.status_code == 422 and "required column" in r.json()["detail"]
    r = client.post("/api/sites/import", files=files, headers=auth(role_keys[Role.TECHNICIAN]))
    assert r.status_code == 403


def test_a_large_upload_refreshes_the_planner_statistics(
    client: TestClient, engine: Engine, role_keys: dict[Role, str]
) -> None:
    count_analyzes = text("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'sites'")
    with engine.connect() as conn:
        have = int(conn.execute(text("SELECT count(*) FROM sites")).scalar_one())
        before = int(conn.execute(count_analyzes).scalar_one())
    n = have // 5 + 1  # well over the 10 % that makes an import refresh the statistics
    rows = "".join(
        f"STAT-{i};Escuela {i};escuela;19.43;{-99.13 + i * 1e-4:.4f}\n" for i in range(n)
    )
    files = {"file": ("sitios.csv", ("clave;nombre;categoria;latitud;longitud\n" + rows).encode())}
    r = client.post("/api/sites/import", files=files, headers=auth(role_keys[Role.OPERATOR]))
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == n
    with engine.connect() as conn:
        assert int(conn.execute(count_analyzes).scalar_one()) == before + 1
