from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.auth import Role
from tests.api.conftest import auth


def test_landing_and_conformance_need_no_key(client: TestClient) -> None:
    landing = client.get("/ogc").json()
    rels = {link["rel"]: link["href"] for link in landing["links"]}
    assert rels["data"].endswith("/ogc/collections")
    assert rels["service-desc"].endswith("/openapi.json")
    conf = client.get("/ogc/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson" in conf


def test_collections_and_site_items_paging(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    headers = auth(role_keys[Role.VIEWER])
    assert client.get("/ogc/collections").status_code == 401
    cols = client.get("/ogc/collections", headers=headers).json()["collections"]
    assert [c["id"] for c in cols] == ["sites", "municipalities"]
    assert client.get("/ogc/collections/sites", headers=headers).json()["id"] == "sites"
    assert client.get("/ogc/collections/roads", headers=headers).status_code == 404

    bbox = "-99.4,19.0,-98.9,19.7"
    first = client.get(
        "/ogc/collections/sites/items", params={"bbox": bbox, "limit": 7}, headers=headers
    )
    assert first.headers["content-type"] == "application/geo+json"
    page = first.json()
    assert page["numberReturned"] == 7 and page["numberMatched"] > 7
    links = {link["rel"]: link["href"] for link in page["links"]}
    assert "next" in links and "prev" not in links
    seen = [f["id"] for f in page["features"]]
    while "next" in links:
        page = client.get(links["next"], headers=headers).json()
        seen += [f["id"] for f in page["features"]]
        links = {link["rel"]: link["href"] for link in page["links"]}
    assert len(seen) == len(set(seen)) == first.json()["numberMatched"]

    one = client.get(f"/ogc/collections/sites/items/{seen[0]}", headers=headers).json()
    assert one["type"] == "Feature" and one["id"] == seen[0]
    assert client.get("/ogc/collections/sites/items/NOPE", headers=headers).status_code == 404
    r = client.get("/ogc/collections/sites/items", params={"limit": 5000}, headers=headers)
    assert r.status_code == 422


def test_municipalities_with_coverage(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    planner = auth(role_keys[Role.PLANNER])
    assert (
        client.get(
            "/ogc/collections/municipalities/items", headers=auth(role_keys[Role.VIEWER])
        ).status_code
        == 403
    )
    before = client.get("/ogc/collections/municipalities/items", headers=planner).json()
    assert before["numberMatched"] == 2475 and before["features"][0]["properties"]["run_id"] is None
    client.post("/api/coverage/runs", headers=planner)
    page = client.get(
        "/ogc/collections/municipalities/items",
        params={"bbox": "-99.2,19.4,-99.1,19.45", "limit": 50},
        headers=planner,
    ).json()
    keys = {f["id"] for f in page["features"]}
    assert "09015" in keys and all(k.startswith(("09", "15")) for k in keys)
    cuauhtemoc = next(f for f in page["features"] if f["id"] == "09015")
    assert cuauhtemoc["geometry"]["type"] == "MultiPolygon"
    assert cuauhtemoc["properties"]["name"] == "Cuauhtémoc"
    assert cuauhtemoc["properties"]["sites"] >= 1
    one = client.get("/ogc/collections/municipalities/items/09015", headers=planner).json()
    assert one["properties"]["covered_pct_census"] is not None
