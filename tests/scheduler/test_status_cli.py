"""``conectado scheduler status``: how current the probes are, told from the real database."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from cli.app import app
from tests.api.seed import seed_all


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
        probeable, never = conn.execute(
            text(
                "SELECT count(*), count(*) FILTER (WHERE st.site_id IS NULL) FROM sites s "
                "LEFT JOIN site_status st ON st.site_id = s.id "
                "WHERE s.status IN ('active', 'installed')"
            )
        ).one()
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
