from __future__ import annotations

import csv
import io
import json

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.auth import Role
from tests.api.conftest import auth


def test_planner_computes_reads_and_exports_coverage(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    planner = auth(role_keys[Role.PLANNER])
    r = client.get("/api/coverage/national", headers=planner)
    assert r.status_code == 404 and "coverage compute" in r.json()["detail"]
    assert (
        client.get("/api/coverage/national", headers=auth(role_keys[Role.VIEWER])).status_code
        == 403
    )

    r = client.post("/api/coverage/runs", params={"radius_km": 5}, headers=planner)
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["radius_km"] == 5 and run["basis"] == "probes"

    national = client.get("/api/coverage/national", headers=planner).json()
    assert national["run"]["id"] == run["id"]
    assert national["national"]["pop_2020"] == 126_014_024
    assert 0 < national["national"]["covered_pop"] < national["national"]["locality_pop"]

    states = client.get("/api/coverage/states", headers=planner).json()
    assert len(states) == 32 and states[8]["cve_ent"] == "09"
    one = client.get("/api/coverage/states", params={"state": "09"}, headers=planner).json()
    assert [s["name"] for s in one] == ["Ciudad de México"]

    page = client.get(
        "/api/coverage/municipalities",
        params={"uncovered_only": "true", "limit": 10},
        headers=planner,
    ).json()
    assert len(page["data"]) == 10 and page["next_after"]
    scores = [m["priority_score"] for m in page["data"]]
    assert scores == sorted(scores, reverse=True) and all(m["uncovered"] for m in page["data"])
    nxt = client.get(
        "/api/coverage/municipalities",
        params={"uncovered_only": "true", "limit": 10, "after": page["next_after"]},
        headers=planner,
    ).json()
    assert not {m["cvegeo"] for m in page["data"]} & {m["cvegeo"] for m in nxt["data"]}

    localities = client.get(
        "/api/coverage/localities", params={"state": "07", "limit": 5}, headers=planner
    ).json()
    pops = [loc["pop_2020"] for loc in localities["data"]]
    assert pops == sorted(pops, reverse=True) and not any(x["covered"] for x in localities["data"])

    r = client.get("/api/coverage/export", params={"level": "state"}, headers=planner)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 32
    r = client.get(
        "/api/coverage/export",
        params={"level": "municipality", "format": "geojson", "uncovered_only": "true"},
        headers=planner,
    )
    assert r.status_code == 200
    features = json.loads(r.content)["features"]
    assert features and all(f["properties"]["uncovered"] for f in features)
    assert (
        client.get("/api/coverage/export", params={"format": "shp"}, headers=planner).status_code
        == 422
    )
