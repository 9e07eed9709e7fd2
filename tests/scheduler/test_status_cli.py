"""``conectado scheduler status``: how current the probes are, told from the real database."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from cli.app import app
from core.settings import Settings
from results.incidents import evaluate_incidents
from tests.api.seed import probe_coverage, seed_all


@pytest.fixture
def cli(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("CONECTADO_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def _status(cli: CliRunner) -> str:
    result = cli.invoke(app, ["scheduler", "status"])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_status_tells_how_current_probes_are_and_counts_every_open_incident(
    cli: CliRunner, engine: Engine
) -> None:
    with engine.begin() as conn:
        seed_all(conn, count=1300)
        probeable, never, _ = probe_coverage(conn)
        # more open incidents than any page of them: the count must not stop at a page size
        conn.execute(
            text(
                "INSERT INTO incidents (kind, site_id, status, cause, started_at, opened_at) "
                "SELECT 'site', s.id, 'open', 'failures', now(), now() FROM sites s "
                "WHERE NOT EXISTS (SELECT 1 FROM incidents i WHERE i.site_id = s.id "
                "AND i.status = 'open')"
            )
        )
        opened = conn.execute(
            text("SELECT count(*) FROM incidents WHERE status = 'open' AND parent_id IS NULL")
        ).scalar_one()
    out = _status(cli)
    assert f"{probeable:,} probeable sites, {never:,} with no result yet" in out
    assert "the oldest result is 2m0" in out  # the seed probed them 2 minutes ago
    assert "Probing is behind" not in out
    assert f"open incidents: {opened:,} ({opened:,} of sites, 0 municipal)" in out
    assert opened > 1200
    assert "incidents: not evaluated yet" in out
    with engine.begin() as conn:
        ago = datetime.now(UTC) - timedelta(seconds=65)
        changes = evaluate_incidents(conn, Settings(), now=ago)
    assert changes.closed > 900  # the seed's sites are up: the inserted incidents close
    said = rf"{changes.opened:,} opened, {changes.closed:,} closed"
    assert re.search(
        r"incidents last evaluated 1m0[5-9]s ago, in \d+\.\d\d s: " + said, _status(cli)
    )

    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE site_status SET last_probe_at = now() - interval '20 minutes' "
                "WHERE site_id = (SELECT min(site_id) FROM site_status)"
            )
        )
    out = _status(cli)
    # no stored jobs: the interval is this shell's setting, 300 s by default
    assert "Probing is behind: " in out and "the oldest result is 20m0" in out
    assert "more than 3 probe intervals (15m00s)" in out


def test_incidents_list_filters_by_provider_state_and_acknowledgement(
    cli: CliRunner, engine: Engine
) -> None:
    with engine.begin() as conn:
        seed_all(conn)
        rows = conn.execute(
            text(
                "SELECT i.id, i.provider, i.cve_ent, s.site_key FROM incidents i "
                "JOIN sites s ON s.id = i.site_id WHERE i.status = 'open' ORDER BY i.id"
            )
        ).all()
        conn.execute(
            text(
                "UPDATE incidents SET acknowledged_by = 'ana', acknowledged_at = now() "
                "WHERE id = :id"
            ),
            {"id": rows[0].id},
        )
    provider = rows[0].provider
    theirs = {r.site_key for r in rows if r.provider == provider}
    result = cli.invoke(app, ["incidents", "list", "--provider", provider])
    assert result.exit_code == 0, result.output
    assert {r.site_key for r in rows if r.site_key in result.output} == theirs
    result = cli.invoke(app, ["incidents", "list", "--unacked"])
    assert rows[0].site_key not in result.output
    assert all(r.site_key in result.output for r in rows[1:])
    ent = rows[1].cve_ent
    result = cli.invoke(app, ["incidents", "list", "--state", ent])
    assert {r.site_key for r in rows if r.site_key in result.output} == {
        r.site_key for r in rows if r.cve_ent == ent
    }
    bad = cli.invoke(app, ["incidents", "list", "--state", "9"])
    assert bad.exit_code == 1 and "INEGI state code" in bad.output


def test_sites_show_tells_what_the_probes_saw(cli: CliRunner, engine: Engine) -> None:
    """A technician's check from a terminal: state now, each probe kind in words, the open
    incident; a suspended site's last probes as history; a site never probed says so."""
    with engine.begin() as conn:
        seed_all(conn)
        conn.execute(
            text(
                "UPDATE site_status SET http_ok = false, http_status = 503, state = 'degraded', "
                "http_error = 'http_status: HTTP status 503', tls_days_left = 20, "
                "oper_status = 2 WHERE site_id = (SELECT id FROM sites WHERE site_key = :k)"
            ),
            {"k": "TST00002"},
        )
        conn.execute(
            text(
                "INSERT INTO incidents (kind, site_id, status, cause, started_at, opened_at) "
                "SELECT 'site', id, 'open', 'failures', now(), now() FROM sites "
                "WHERE site_key = 'TST00002'"
            )
        )
        suspended = conn.execute(
            text(
                "SELECT s.site_key FROM sites s JOIN site_status st ON st.site_id = s.id "
                "WHERE s.status = 'suspended' AND st.state = 'down' LIMIT 1"
            )
        ).scalar_one()
        never = conn.execute(
            text(
                "SELECT site_key FROM sites s WHERE status = 'active' AND NOT EXISTS "
                "(SELECT 1 FROM site_status WHERE site_id = s.id) LIMIT 1"
            )
        ).scalar_one()

    def show(key: str) -> str:
        result = cli.invoke(app, ["sites", "show", key, "--history", "0"])
        assert result.exit_code == 0, result.output
        return " ".join(result.output.replace("│", " ").split())

    out = show("TST00002")
    assert "state now degraded" in out
    assert "snmp answered; WAN interface down" in out
    assert "http http_status: HTTP status 503; TLS certificate expires in 20 days" in out
    assert "open incident #" in out and "failures since" in out
    out = show(suspended)
    assert "state now unmonitored" in out
    assert "last probe state down (history: the site is not probed now)" in out
    assert "state now unknown last probe never probed" in show(never)
