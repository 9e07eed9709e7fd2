from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.auth import Role
from api.schemas import SiteCard
from tests.api.conftest import auth
from tests.api.seed import SECRETS
from tests.api.test_pages import login


def test_card_of_a_site_with_history(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    r = client.get("/api/sites/TST00001/card", headers=auth(role_keys[Role.VIEWER]))
    assert r.status_code == 200, r.text
    card = SiteCard.model_validate(r.json())
    assert card.site.site_key == "TST00001"
    assert card.site.snmp_credentials is True
    assert card.site.municipality and card.site.state
    assert not any(secret in r.text for secret in SECRETS)
    assert card.status is not None and card.status.state == "up"

    # 24 h: 288 raw rounds, 6 of them down (seed) → 282/288; everything hourly is rolled up
    # except the raw rounds after the last rolled-up hour, so compute the expectation in SQL.
    with seeded.connect() as conn:
        expected = conn.execute(
            text(
                """
                WITH until AS (SELECT max(hour) + interval '1 hour' AS t
                               FROM rollup_site_hourly WHERE site_id = 1),
                h AS (SELECT sum(rounds) r, sum(up_rounds) u FROM rollup_site_hourly
                      WHERE site_id = 1 AND hour >= date_trunc('hour', now() - interval '24h')),
                raw AS (SELECT count(DISTINCT round_id) r,
                               count(DISTINCT round_id) FILTER (WHERE state = 'up') u
                        FROM probe_results, until WHERE site_id = 1 AND ts >= until.t)
                SELECT round(100.0 * (h.u + raw.u) / (h.r + raw.r), 2)::float8 FROM h, raw
                """
            )
        ).scalar_one()
    assert card.uptime["24h"].uptime_pct == expected
    assert card.uptime["30d"].rounds > card.uptime["7d"].rounds > card.uptime["24h"].rounds

    assert card.series.source == "raw"
    assert 280 <= len(card.series.points) <= 288
    times = [p.t for p in card.series.points]
    assert times == sorted(times)
    assert any(p.state == "down" for p in card.series.points)
    assert any(p.in_bps and p.snmp_ms and p.http_ms for p in card.series.points)

    assert [i.status for i in card.incidents] == ["closed"]
    assert [b.reason for b in card.reboots] == ["uptime_decreased", "counter_decreased"]
    assert card.nearby, "the most populated locality has other seeded sites within 10 km"
    distances = [n.distance_m for n in card.nearby]
    assert distances == sorted(distances) and distances[-1] <= 10_000
    assert all(n.site_key != "TST00001" for n in card.nearby)


def test_card_periods_use_rollups(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    headers = auth(role_keys[Role.VIEWER])
    week = client.get("/api/sites/TST00001/card?period=7d", headers=headers).json()
    assert week["series"]["source"] == "hourly"
    assert 167 <= len(week["series"]["points"]) <= 169
    assert week["series"]["points"][0]["uptime_pct"] is not None
    year = client.get("/api/sites/TST00001/card?period=365d", headers=headers).json()
    assert year["series"]["source"] == "daily" and len(year["series"]["points"]) == 60
    r = client.get("/api/sites/TST00001/card?period=2w", headers=headers)
    assert r.status_code == 422 and "period" in r.json()["detail"]


def test_card_of_never_probed_site_and_missing_site(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    headers = auth(role_keys[Role.VIEWER])
    with seeded.connect() as conn:
        key = conn.execute(
            text(
                "SELECT site_key FROM sites s WHERE NOT EXISTS "
                "(SELECT 1 FROM site_status WHERE site_id = s.id) ORDER BY id LIMIT 1"
            )
        ).scalar_one()
    card = client.get(f"/api/sites/{key}/card", headers=headers).json()
    assert card["status"] is None and card["series"]["points"] == []
    assert card["uptime"]["24h"] == {"rounds": 0, "uptime_pct": None}
    r = client.get("/api/sites/NOPE/card", headers=headers)
    assert r.status_code == 404 and "NOPE" in r.json()["detail"]
    assert client.get("/api/sites/TST00001/card").status_code == 401


def test_a_suspended_site_is_unmonitored_with_its_last_probes_as_history(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    """A site suspended while down is not down now: card, page, neighbours' lists and metrics
    say unmonitored, and the card still shows what the probes saw before."""
    with seeded.begin() as conn:
        key = conn.execute(
            text(
                "SELECT s.site_key FROM sites s JOIN site_status st ON st.site_id = s.id "
                "WHERE s.status = 'suspended' AND st.state = 'down' ORDER BY s.id LIMIT 1"
            )
        ).scalar_one()
        neighbour = "TST00001"  # moved next to it (the seeded sites are far apart)
        conn.execute(
            text(
                "UPDATE sites SET geom = (SELECT ST_Translate(geom, 0.001, 0) FROM sites "
                "WHERE site_key = :n) WHERE site_key = :k"
            ),
            {"n": neighbour, "k": key},
        )
    headers = auth(role_keys[Role.VIEWER])
    card = SiteCard.model_validate(client.get(f"/api/sites/{key}/card", headers=headers).json())
    assert card.state == "unmonitored"
    assert card.status is not None and card.status.state == "down"  # history, kept
    near = client.get(f"/api/sites/{neighbour}/card", headers=headers).json()
    assert {n["site_key"]: n["state"] for n in near["nearby"]}[key] == "unmonitored"

    login(client, role_keys[Role.OPERATOR], f"/sites/{key}")
    page = client.get(f"/sites/{key}").text
    assert '<span class="badge unmonitored" id="site-state">unmonitored</span>' in page
    assert "Not monitored: this site is\n  <strong>suspended</strong>" in page
    assert "<dt>Last probe state</dt><dd>down since" in page
    assert 'id="probe-now"' not in page  # an operator could probe an active site
    dashboard = client.get("/").text
    assert 'data-state="unmonitored"' in dashboard

    metrics = client.get("/metrics").text
    with seeded.connect() as conn:
        resting = conn.execute(
            text("SELECT count(*) FROM sites WHERE status IN ('planned', 'suspended')")
        ).scalar_one()
    assert f'conectado_sites_probe_state{{state="unmonitored"}} {float(resting)}' in metrics
