from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.auth import Role
from tests.api.conftest import auth
from tests.api.seed import probe_coverage


def test_status_counts_match_the_database(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    """Down means down now: a suspended site's last probe state (down, in the seed) is history
    and counts as unmonitored, with the planned sites; unknown is a probed site not yet seen."""
    body = client.get("/api/status/counts", headers=auth(role_keys[Role.VIEWER])).json()
    with seeded.connect() as conn:
        down, stale = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE s.status IN ('active', 'installed')), "
                "count(*) FILTER (WHERE s.status = 'suspended') "
                "FROM site_status st JOIN sites s ON s.id = st.site_id WHERE st.state = 'down'"
            )
        ).one()
        never, resting, total = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE s.status IN ('active', 'installed') "
                "AND st.site_id IS NULL), "
                "count(*) FILTER (WHERE s.status IN ('planned', 'suspended')), count(*) "
                "FROM sites s LEFT JOIN site_status st ON st.site_id = s.id "
                "WHERE s.status <> 'retired'"
            )
        ).one()
    assert stale > 0  # the seed has suspended sites whose last probes saw them down
    assert body["down"] == down > 0
    assert body["unknown"] == never > 0
    assert body["unmonitored"] == resting > stale
    assert body["total"] == total == 119
    assert sum(body[k] for k in ("up", "degraded", "down", "unknown", "unmonitored")) == 119


def test_status_summary_by_each_dimension(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    headers = auth(role_keys[Role.VIEWER])
    for by in ("state", "municipality", "provider", "category", "technology"):
        r = client.get("/api/status/summary", params={"by": by}, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert sum(g["sites"] for g in body["groups"]) == body["totals"]["total"] == 119
        for g in body["groups"]:
            states = ("up", "degraded", "down", "unknown", "unmonitored")
            assert sum(g[k] for k in states) == g["sites"], g
        assert body["totals"] == client.get("/api/status/counts", headers=headers).json()
        downs = [g["down"] for g in body["groups"]]
        assert downs == sorted(downs, reverse=True)
    by_provider = client.get(
        "/api/status/summary", params={"by": "provider"}, headers=headers
    ).json()
    assert {g["key"] for g in by_provider["groups"]} == {
        "Telmex",
        "Altán Redes",
        "Eutelsat",
        "Megacable",
    }
    by_state = client.get(
        "/api/status/summary", params={"by": "state", "state": "09"}, headers=headers
    ).json()
    assert [g["key"] for g in by_state["groups"]] == ["09"]
    assert by_state["groups"][0]["name"] == "Ciudad de México"


def test_status_summary_rejects_bad_dimension(
    client: TestClient, role_keys: dict[Role, str]
) -> None:
    r = client.get(
        "/api/status/summary", params={"by": "colour"}, headers=auth(role_keys[Role.VIEWER])
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "query.by"


def test_incidents_list_and_acknowledge(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    viewer = auth(role_keys[Role.VIEWER])
    page = client.get("/api/incidents", params={"limit": 5}, headers=viewer).json()
    assert len(page["items"]) == 5 and page["next"]
    ids = [i["id"] for i in page["items"]]
    assert ids == sorted(ids, reverse=True)
    rest = client.get(page["next"], headers=viewer).json()
    assert rest["items"] and not set(ids) & {i["id"] for i in rest["items"]}
    first = page["items"][0]
    assert first["status"] == "open" and first["site_key"].startswith("TST")
    assert first["acknowledged_by"] is None

    r = client.post(
        f"/api/incidents/{first['id']}/acknowledge",
        json={"comment": "crew on the way"},
        headers=viewer,
    )
    assert r.status_code == 403
    r = client.post(
        f"/api/incidents/{first['id']}/acknowledge",
        json={"comment": "crew on the way"},
        headers=auth(role_keys[Role.TECHNICIAN]),
    )
    assert r.status_code == 200, r.text
    acked = r.json()
    assert acked["acknowledged_by"] == "test-technician"
    assert acked["comment"] == "crew on the way"
    detail = client.get(f"/api/incidents/{first['id']}", headers=viewer).json()
    assert detail["acknowledged_at"] and detail["member_sites"] == []

    closed = client.get("/api/incidents", params={"status": "closed"}, headers=viewer).json()
    assert [i["site_key"] for i in closed["items"]] == ["TST00001"]
    by_site = client.get(
        "/api/incidents", params={"status": "all", "site_key": "TST00001"}, headers=viewer
    ).json()
    assert len(by_site["items"]) == 1
    assert (
        client.post(
            "/api/incidents/999999/acknowledge", json={}, headers=auth(role_keys[Role.OPERATOR])
        ).status_code
        == 404
    )
    r = client.get("/api/incidents", params={"municipality": "9015"}, headers=viewer)
    assert r.status_code == 422


def test_incidents_by_provider_state_and_acknowledgement_page_through_exactly_those(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    """Operators list one provider's open incidents in one state, or those nobody has taken
    yet; every page keeps the filters (and the provider's name is sent encoded)."""
    viewer = auth(role_keys[Role.VIEWER])
    with seeded.begin() as conn:
        provider = conn.execute(
            text(
                "SELECT provider FROM incidents WHERE status = 'open' "
                "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
            )
        ).scalar_one()
        ent = conn.execute(
            text("SELECT min(cve_ent) FROM incidents WHERE status = 'open' AND provider = :p"),
            {"p": provider},
        ).scalar_one()
        acked = conn.execute(
            text(
                "UPDATE incidents SET acknowledged_by = 'ana', acknowledged_at = now() "
                "WHERE id = (SELECT min(id) FROM incidents WHERE status = 'open') RETURNING id"
            )
        ).scalar_one()
        of_provider = {
            r.id: r.cve_ent
            for r in conn.execute(
                text("SELECT id, cve_ent FROM incidents WHERE status = 'open' AND provider = :p"),
                {"p": provider},
            )
        }
        unacked = set(
            conn.execute(
                text(
                    "SELECT id FROM incidents WHERE status = 'open' AND parent_id IS NULL "
                    "AND acknowledged_by IS NULL"
                )
            ).scalars()
        )

    def ids(params: dict[str, str]) -> list[int]:
        found: list[int] = []
        url: str | None = "/api/incidents"
        while url:
            r = client.get(url, params=params if url == "/api/incidents" else None, headers=viewer)
            assert r.status_code == 200, r.text
            found += [i["id"] for i in r.json()["items"]]
            url = r.json()["next"]
        return found

    assert len(of_provider) >= 2 and len(set(of_provider.values())) >= 2
    assert set(ids({"provider": provider, "limit": "1"})) == set(of_provider)
    in_state = {i for i, e in of_provider.items() if e == ent}
    assert set(ids({"provider": provider, "state": ent, "limit": "1"})) == in_state
    not_taken = ids({"acknowledged": "false", "limit": "2"})
    assert set(not_taken) == unacked and acked not in not_taken
    assert ids({"acknowledged": "true"}) == [acked]
    assert ids({"provider": "Nobody S.A."}) == []
    r = client.get("/api/incidents", params={"state": "9"}, headers=viewer)
    assert r.status_code == 422 and "state" in r.text


def test_maintenance_crud(client: TestClient, seeded: Engine, role_keys: dict[Role, str]) -> None:
    op = auth(role_keys[Role.OPERATOR])
    now = datetime.now(UTC)
    body = {
        "scope": "site",
        "target": "TST00003",
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(hours=2)).isoformat(),
        "reason": "tower replacement",
    }
    r = client.post("/api/maintenance", json=body, headers=op)
    assert r.status_code == 201, r.text
    window = r.json()
    assert window["active"] is True and window["created_by"] == "test-operator"
    assert window["sites"] == 1 and window["site_key"] == "TST00003"

    current = client.get("/api/maintenance", headers=op).json()
    assert [w["id"] for w in current] == [window["id"]]

    r = client.patch(
        f"/api/maintenance/{window['id']}",
        json={"ends_at": (now - timedelta(minutes=1)).isoformat()},
        headers=op,
    )
    assert r.status_code == 200 and r.json()["active"] is False
    assert client.get("/api/maintenance", headers=op).json() == []
    past = client.get("/api/maintenance", params={"include_past": "true"}, headers=op).json()
    assert [w["id"] for w in past] == [window["id"]]
    r = client.patch(
        f"/api/maintenance/{window['id']}",
        json={"ends_at": (now - timedelta(hours=5)).isoformat()},
        headers=op,
    )
    assert r.status_code == 422 and "ends_at" in r.json()["detail"]

    r = client.post("/api/maintenance", json=dict(body, target="NOPE"), headers=op)
    assert r.status_code == 422 and "NOPE" in r.json()["detail"]
    naive = dict(body, starts_at="2025-01-01T00:00:00")
    assert client.post("/api/maintenance", json=naive, headers=op).status_code == 422
    mun = dict(body, scope="municipality", target="09015")
    r = client.post("/api/maintenance", json=mun, headers=op)
    assert r.status_code == 201 and r.json()["municipality"] == "Cuauhtémoc"
    assert (
        client.post(
            "/api/maintenance", json=mun, headers=auth(role_keys[Role.TECHNICIAN])
        ).status_code
        == 403
    )

    assert client.delete(f"/api/maintenance/{window['id']}", headers=op).status_code == 204
    assert client.get(f"/api/maintenance/{window['id']}", headers=op).status_code == 404
    assert client.delete(f"/api/maintenance/{window['id']}", headers=op).status_code == 404


def test_probe_freshness_for_a_noc(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    """GET /api/status/probes: the figures a NOC polls to know monitoring itself works."""
    viewer = auth(role_keys[Role.VIEWER])
    body = client.get("/api/status/probes", headers=viewer).json()
    with seeded.connect() as conn:
        probeable, never, oldest = probe_coverage(conn)
    assert (body["probeable"], body["never_probed"], body["no_probe_target"]) == (
        probeable,
        never,
        0,
    )
    assert datetime.fromisoformat(body["oldest_probe_at"]) == oldest
    assert body["probe_interval_s"] == 300 and body["behind"] is False
    with seeded.begin() as conn:
        conn.execute(
            text(
                "UPDATE site_status SET last_probe_at = now() - interval '16 minutes' "
                "WHERE site_id = (SELECT min(site_id) FROM site_status)"
            )
        )
    assert client.get("/api/status/probes", headers=viewer).json()["behind"] is True
    assert client.get("/api/status/probes").status_code == 401
