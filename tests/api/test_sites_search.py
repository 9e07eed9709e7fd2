from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.auth import Role
from api.queries.sites_json import refresh_site_docs
from tests.api.conftest import auth
from tests.api.seed import SECRETS


def test_search_pages_by_id_without_repeats(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    headers = auth(role_keys[Role.VIEWER])
    seen: list[int] = []
    url: str | None = "/api/sites?limit=25"
    while url:
        r = client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [s["id"] for s in page["data"]]
        assert page["count"] == len(page["data"])
        url = page["next"]
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 120
    assert not any(secret in r.text for secret in SECRETS)


def test_search_filters_and_probe_state(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    headers = auth(role_keys[Role.VIEWER])
    body = client.get(
        "/api/sites", params={"state": "09", "category": "escuela,salud"}, headers=headers
    ).json()
    assert body["data"]
    assert {s["cve_ent"] for s in body["data"]} == {"09"}
    assert {s["category"] for s in body["data"]} <= {"school", "health"}
    with seeded.connect() as conn:
        expected = conn.execute(
            text(
                "SELECT count(*) FROM sites WHERE cve_ent = '09' "
                "AND category IN ('school', 'health')"
            )
        ).scalar_one()
    assert body["count"] == expected
    states = {s["site_key"]: s["probe_state"] for s in body["data"]}
    assert set(states.values()) <= {"up", "degraded", "down", "unknown", "unmonitored"}

    near = client.get(
        "/api/sites", params={"near": "-99.13,19.43", "nearest": 5}, headers=headers
    ).json()
    distances = [s["distance_m"] for s in near["data"]]
    assert len(distances) == 5 and distances == sorted(distances) and near["next"] is None


def test_bbox_geojson_by_param_and_accept(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    headers = auth(role_keys[Role.VIEWER])
    bbox = "-99.4,19.0,-98.9,19.7"  # Mexico City
    r = client.get("/api/sites", params={"bbox": bbox, "f": "geojson"}, headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/geo+json"
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and fc["numberReturned"] == len(fc["features"]) > 0
    for feature in fc["features"]:
        lon, lat = feature["geometry"]["coordinates"]
        assert -99.4 <= lon <= -98.9 and 19.0 <= lat <= 19.7
        assert feature["id"] == feature["properties"]["site_key"]
    r2 = client.get(
        "/api/sites", params={"bbox": bbox}, headers=headers | {"Accept": "application/geo+json"}
    )
    assert r2.headers["content-type"] == "application/geo+json"
    assert json.loads(r2.text)["features"] == fc["features"]


def test_invalid_search_parameters_are_422(client: TestClient, role_keys: dict[Role, str]) -> None:
    headers = auth(role_keys[Role.VIEWER])
    cases = {
        "bbox": {"bbox": "-99,19,-98"},
        "bbox ": {"bbox": "-99,19,-100,20"},
        "bbox  ": {"bbox": "-190,19,-98,20"},
        "radius_km": {"near": "-99,19", "radius_km": 50000},
        "near": {"near": "-99,100", "radius_km": 5},
        "limit": {"limit": 1001},
        "category": {"category": "castle"},
        "catgory": {"catgory": "school"},
        "nearest": {"nearest": 5},
        "text": {"text": "a"},
    }
    for name, params in cases.items():
        r = client.get("/api/sites", params=params, headers=headers)
        assert r.status_code == 422, (name, r.text)
        body = r.json()
        assert r.headers["content-type"].startswith("application/problem+json")
        fields = [e["field"] for e in body["errors"]]
        assert any(name.strip() in f or "filter" in f for f in fields), (name, body)


def test_one_site_and_missing(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    headers = auth(role_keys[Role.VIEWER])
    r = client.get("/api/sites/TST00002", headers=headers)
    assert r.status_code == 200 and r.json()["site_key"] == "TST00002"
    assert r.json()["snmp_credentials"] is True
    assert "snmp_community" not in r.text and SECRETS[0] not in r.text
    assert client.get("/api/sites/NOPE", headers=headers).status_code == 404


def test_cached_documents_give_the_same_answer_and_follow_changes(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    headers = auth(role_keys[Role.VIEWER])
    params = {"bbox": "-99.4,19.0,-98.9,19.7", "limit": 50}
    inline = client.get("/api/sites", params=params, headers=headers).json()
    near_inline = client.get(
        "/api/sites", params={"near": "-99.13,19.43", "radius_km": 30}, headers=headers
    ).json()
    with seeded.begin() as conn:
        written = refresh_site_docs(conn)
        assert written == 120
        assert refresh_site_docs(conn) == 0
    cached = client.get("/api/sites", params=params, headers=headers).json()
    assert cached == inline
    near_cached = client.get(
        "/api/sites", params={"near": "-99.13,19.43", "radius_km": 30}, headers=headers
    ).json()
    assert near_cached == near_inline

    key = inline["data"][0]["site_key"]
    with seeded.begin() as conn:
        conn.execute(text("UPDATE sites SET name = 'Renamed' WHERE site_key = :k"), {"k": key})
    changed = client.get("/api/sites", params=params, headers=headers).json()
    assert changed["data"][0]["name"] == "Renamed"  # stale document not used
    with seeded.begin() as conn:
        assert refresh_site_docs(conn) == 1
    assert client.get("/api/sites", params=params, headers=headers).json() == changed


def test_search_by_current_probe_state_pages_through_exactly_those_sites(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    """Operators list what is down now (by provider, state...): the same sites PostGIS has in
    that state, across pages, each with since when; unknown means probed but no result yet,
    and a suspended site is unmonitored whatever its last probes saw."""
    headers = auth(role_keys[Role.VIEWER])
    with seeded.connect() as conn:
        expected = {
            state: set(
                conn.execute(
                    text(
                        "SELECT s.site_key FROM sites s LEFT JOIN site_status st "
                        "ON st.site_id = s.id WHERE CASE WHEN s.status IN "
                        "('active', 'installed') THEN coalesce(st.state, 'unknown') "
                        "ELSE 'unmonitored' END = :state"
                    ),
                    {"state": state},
                ).scalars()
            )
            for state in ("up", "degraded", "down", "unknown", "unmonitored")
        }
        stale_down = set(
            conn.execute(
                text(
                    "SELECT s.site_key FROM sites s JOIN site_status st ON st.site_id = s.id "
                    "WHERE s.status = 'suspended' AND st.state = 'down'"
                )
            ).scalars()
        )
    assert all(expected.values()), expected  # the seed has sites in every state
    assert stale_down and stale_down <= expected["unmonitored"]

    def keys(params: dict[str, str]) -> list[dict[str, object]]:
        found: list[dict[str, object]] = []
        url: str | None = "/api/sites"
        while url:
            r = client.get(url, params=params if url == "/api/sites" else None, headers=headers)
            assert r.status_code == 200, r.text
            found += r.json()["data"]
            url = r.json()["next"]
        return found

    down = keys({"probe_state": "down", "limit": "3"})
    assert {s["site_key"] for s in down} == expected["down"]
    assert all(s["probe_state"] == "down" and s["probe_state_since"] for s in down)
    never = keys({"probe_state": "unknown"})
    assert {s["site_key"] for s in never} == expected["unknown"]
    assert all(s["probe_state_since"] is None for s in never)
    assert not stale_down & {str(s["site_key"]) for s in down}
    unmonitored = keys({"probe_state": "unmonitored"})
    assert {s["site_key"] for s in unmonitored} == expected["unmonitored"]
    assert all(s["probe_state_since"] is None for s in unmonitored)
    assert {s["status"] for s in unmonitored} == {"planned", "suspended", "retired"}
    both = keys({"probe_state": "degraded,down"})
    assert {s["site_key"] for s in both} == expected["degraded"] | expected["down"]

    provider = str(down[0]["provider"])
    of_one = keys({"probe_state": "down", "provider": provider})
    assert of_one and {s["provider"] for s in of_one} == {provider}

    r = client.get("/api/sites", params={"probe_state": "sideways"}, headers=headers)
    assert r.status_code == 422 and "probe_state" in r.text
