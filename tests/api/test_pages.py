from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.auth import Role
from tests.api.seed import SECRETS, probe_coverage


def login(client: TestClient, token: str, next_: str = "/") -> None:
    r = client.post("/login", data={"key": token, "next": next_}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == next_
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")


def test_pages_need_a_session(client: TestClient) -> None:
    r = client.get("/sites/TST00001", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fsites%2FTST00001"
    login_page = client.get("/login").text
    assert "API key" in login_page and "logged in for 12 hours" in login_page
    r = client.post("/login", data={"key": "cnk_nope"})
    assert r.status_code == 401 and "not valid" in r.text


def test_dashboard_site_and_coverage_pages(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    login(client, role_keys[Role.VIEWER], "/sites/TST00001")
    page = client.get("/").text
    assert "Open incidents" in page and "/maps/health" in page
    assert "failed rounds in a row" in page  # the seeded down sites' incidents, in words
    with seeded.connect() as conn:
        opened = conn.execute(
            text("SELECT count(*) FROM incidents WHERE status = 'open' AND parent_id IS NULL")
        ).scalar_one()
    assert f'<h2 id="open-incidents">Open incidents: {opened:,}' in page
    assert re.search(r"Last probe round [\d-]+ [\d:]+ UTC \([^)]+\):|No probe round yet", page)
    assert "Acknowledge" not in page  # a viewer cannot acknowledge
    site = client.get("/sites/TST00001").text
    assert "TST00001" in site and "<svg" in site and "Nearby sites" in site
    assert "cannot run live probes" in site
    # what the probes saw, in words: each kind, the WAN interface
    words = " ".join(site.split())
    assert '<dd id="last-snmp">answered <div class="muted">WAN interface up</div>' in words
    assert '<dd id="last-http">status 200</dd>' in words
    # where it is, for the technician's phone: a geo: link to the site's coordinates
    geo = re.search(r'id="geo-link" href="geo:(-?[\d.]+),(-?[\d.]+)\?q=', site)
    assert geo is not None
    with seeded.connect() as conn:
        lat, lon = conn.execute(
            text("SELECT ST_Y(geom), ST_X(geom) FROM sites WHERE site_key = 'TST00001'")
        ).one()
    assert (float(geo.group(1)), float(geo.group(2))) == (round(lat, 5), round(lon, 5))
    # times read to the minute with how long ago (seeded: state 3 h ago, last probe 2 min ago)
    since = r"(up|degraded|down) since \d{4}-\d\d-\d\d \d\d:\d\d UTC \(3\.\d h ago\)"
    assert re.search(since, site)
    assert re.search(r"<dt>Last probe</dt><dd>[\d-]+ [\d:]+ UTC \(\d+ min ago\)</dd>", site)
    assert not re.search(r"\d\dT\d\d:\d\d", site), "a raw ISO timestamp on the page"
    assert re.search(r"Mbit/s\s*<div class=\"muted\">measured [\d-]+ [\d:]+ UTC \(", site)
    assert not any(secret in site for secret in SECRETS)
    assert client.get("/sites/NOPE").status_code == 404
    assert client.get("/coverage").status_code == 403

    # writes with the session cookie need the CSRF header
    r = client.post("/api/incidents/1/acknowledge", json={})
    assert r.status_code == 403
    client.post("/logout")
    assert client.get("/", follow_redirects=False).status_code == 303

    login(client, role_keys[Role.PLANNER])
    assert "has not been computed" in client.get("/coverage").text
    client.post("/api/coverage/runs", headers={"X-Requested-With": "conectado"})
    cov = client.get("/coverage").text
    assert "Uncovered municipalities" in cov and "/maps/coverage" in cov
    assert "population within 5 km of a working site" in cov

    login(client, role_keys[Role.TECHNICIAN])
    assert "Acknowledge" in client.get("/").text
    assert 'data-probe="TST00001"' in client.get("/sites/TST00001").text


def test_site_page_tells_a_failing_https_probe_and_its_certificate(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    with seeded.begin() as conn:
        conn.execute(
            text(
                "UPDATE site_status SET http_ok = false, http_status = 503, "
                "http_error = 'http_status: HTTP status 503', tls_days_left = -3, "
                "oper_status = 7 WHERE site_id = (SELECT id FROM sites WHERE site_key = 'TST00002')"
            )
        )
    login(client, role_keys[Role.VIEWER], "/sites/TST00002")
    words = " ".join(client.get("/sites/TST00002").text.split())
    assert "WAN interface lower layer down" in words
    assert (
        '<dd id="last-http">http_status: HTTP status 503 '
        '<div class="muted">TLS certificate expired 3 days ago</div>' in words
    )


def test_dashboard_says_how_current_the_probes_are(
    client: TestClient, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    """Operators see whether monitoring keeps up: how many probeable sites have a result, the
    oldest result, sites with nothing to probe, and a warning when probing is behind."""
    with seeded.connect() as conn:
        probeable, never, _ = probe_coverage(conn)
    login(client, role_keys[Role.VIEWER])
    page = client.get("/").text
    fresh = re.search(r'<p class="muted" id="freshness">(.*?)</p>', page, re.S)
    assert fresh is not None
    text_ = " ".join(fresh.group(1).split())
    assert f"{never:,} of {probeable:,} probeable sites have no result yet" in text_
    assert re.search(r"the oldest is from [\d-]+ [\d:]+ UTC \(2 min ago\)", text_)
    assert "nothing to probe" not in text_ and "probes-behind" not in page

    with seeded.begin() as conn:
        conn.execute(
            text(
                "UPDATE site_status SET last_probe_at = now() - interval '40 minutes' "
                "WHERE site_id = (SELECT min(site_id) FROM site_status st JOIN sites s "
                "ON s.id = st.site_id AND s.status = 'active')"
            )
        )
        conn.execute(
            text(
                "UPDATE sites SET mgmt_ip = NULL, http_url = NULL WHERE id = "
                "(SELECT max(id) FROM sites WHERE status = 'active')"
            )
        )
    page = client.get("/").text
    # the default interval is 300 s: 40 minutes is more than three of them
    behind = re.search(r'<p class="error-box" id="probes-behind">(.*?)</p>', page, re.S)
    assert behind is not None
    assert "(40 min ago), more than 15 min ago" in " ".join(behind.group(1).split())
    words = " ".join(page.split())
    assert "1 active or installed sites have neither a management address nor a probe URL" in words
    metrics = client.get("/metrics").text
    assert "conectado_sites_without_probe_target 1.0" in metrics
    assert f"conectado_sites_never_probed {float(never)}" in metrics
    with seeded.connect() as conn:
        oldest = conn.execute(
            text(
                "SELECT extract(epoch FROM min(st.last_probe_at)) FROM site_status st "
                "JOIN sites s ON s.id = st.site_id AND s.status IN ('active', 'installed')"
            )
        ).scalar_one()
    shown = re.search(r"^conectado_oldest_probe_timestamp_seconds (\S+)$", metrics, re.M)
    assert shown is not None and abs(float(shown.group(1)) - float(oldest)) < 1e-3
