"""``conectado sites``: exit codes, reports, tables and files, on the real database."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from cli.app import app
from tests.sites.conftest import DATA, site_rows


@pytest.fixture
def cli(db: Engine, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("CONECTADO_DATABASE_URL", db.url.render_as_string(hide_password=False))
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def test_strict_import_with_errors_exits_non_zero_and_writes_the_report(
    cli: CliRunner, db: Engine, tmp_path: Path
) -> None:
    report = tmp_path / "errors.csv"
    result = cli.invoke(
        app, ["sites", "import", str(DATA / "invalid_rows.csv"), "--report", str(report)]
    )
    assert result.exit_code == 1, result.output
    assert "Nothing was written" in result.output
    assert "rejected" in result.output and "13" in result.output
    assert site_rows(db) == []
    with report.open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 15  # 14 errors (VAL-002 twice) and the coastal warning
    assert {r["severity"] for r in rows} == {"error", "warning"}
    swapped = next(r for r in rows if r["site_key"] == "VAL-004")
    assert (swapped["locator"], swapped["position"], swapped["column"]) == ("line", "5", "lat")


def test_skip_invalid_import_prints_counts_and_errors(cli: CliRunner, db: Engine) -> None:
    result = cli.invoke(
        app,
        [
            "sites",
            "import",
            str(DATA / "invalid_rows.csv"),
            "--mode",
            "skip-invalid",
            "--by",
            "carla",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "inserted" in result.output and "Errors (14; first 14)" in result.output
    assert "line 13" in result.output and "10.0.0.300" in result.output
    assert len(site_rows(db)) == 3


def test_import_export_find_show_generate(cli: CliRunner, tmp_path: Path) -> None:
    assert cli.invoke(app, ["sites", "import", str(DATA / "valid_utf8.csv")]).exit_code == 0
    found = cli.invoke(
        app, ["sites", "find", "--near", "-96.72,17.06", "--nearest", "2", "--category", "salud"]
    )
    assert found.exit_code == 0, found.output
    assert "OCSSA000123" in found.output and "km" in found.output
    assert "2 of 2 matching sites" in found.output or "of 2 matching" in found.output
    paged = cli.invoke(app, ["sites", "find", "--limit", "3"])
    assert "3 of 8 matching sites; next page: --after 3" in paged.output
    bad = cli.invoke(app, ["sites", "find", "--radius-km", "5"])
    assert bad.exit_code == 1 and "need near" in bad.output

    out = tmp_path / "out.geojson"
    exported = cli.invoke(app, ["sites", "export", str(out), "--state", "09"])
    assert exported.exit_code == 0 and "wrote 1 sites" in exported.output
    assert b"s3cret" not in out.read_bytes()

    shown = cli.invoke(app, ["sites", "show", "09DPR0001A"])
    assert shown.exit_code == 0, shown.output
    assert "Cuauhtémoc" in shown.output and "insert" in shown.output
    assert "s3cret" not in shown.output
    missing = cli.invoke(app, ["sites", "show", "NOPE"])
    assert missing.exit_code == 1 and "No site with key 'NOPE'" in missing.output

    generated = tmp_path / "gen.csv"
    made = cli.invoke(
        app, ["sites", "generate", "--count", "50", "--seed", "1", "--out", str(generated)]
    )
    assert made.exit_code == 0 and "wrote 50 sites" in made.output
    assert len(generated.read_text(encoding="utf-8").splitlines()) == 51


def test_unreadable_input_is_a_clear_error(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["sites", "import", str(tmp_path / "missing.csv")])
    assert result.exit_code == 1 and "does not exist" in result.output
    odd = tmp_path / "sites.xlsx"
    odd.write_bytes(b"PK")
    result = cli.invoke(app, ["sites", "import", str(odd)])
    assert result.exit_code == 1 and "--format" in result.output
