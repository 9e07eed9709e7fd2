"""Every validation rule, on real files, reported with line, column and reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from core.errors import DataFileError
from sites.importer import ImportIssue, ImportReport
from tests.sites.conftest import DATA, run_import, site_rows


def _by_key(report: ImportReport) -> dict[str, list[ImportIssue]]:
    found: dict[str, list[ImportIssue]] = {}
    for issue in report.issues:
        found.setdefault(issue.site_key, []).append(issue)
    return found


@pytest.fixture
def invalid_report(db: Engine) -> ImportReport:
    return run_import(db, DATA / "invalid_rows.csv", mode="skip-invalid")


def test_each_rule_names_line_column_and_reason(invalid_report: ImportReport) -> None:
    issues = _by_key(invalid_report)

    def one(key: str, severity: str = "error") -> ImportIssue:
        matching = [i for i in issues[key] if i.severity == severity]
        assert len(matching) >= 1, issues.get(key)
        return matching[0]

    missing = [i for i in issues["VAL-002"]]
    assert {(i.position, i.column) for i in missing} == {(3, "lat"), (3, "lon")}
    assert all("empty" in i.message for i in missing)

    assert (one("VAL-003").position, one("VAL-003").column) == (4, "lat")
    assert "not a number" in one("VAL-003").message and one("VAL-003").value == "diecinueve"

    assert one("VAL-004").position == 5 and "swapped" in one("VAL-004").message
    assert "--fix-swapped" in one("VAL-004").message

    guatemala = one("VAL-005")
    assert guatemala.position == 6 and "not within any Mexican municipality" in guatemala.message
    assert "km away" in guatemala.message

    pacific = one("VAL-006")
    assert pacific.position == 7 and "not within any Mexican municipality" in pacific.message

    coast = one("VAL-007", "warning")
    assert coast.position == 8 and "outside the boundary of Acapulco de Juárez (12001)" in (
        coast.message
    )
    assert not [i for i in issues["VAL-007"] if i.severity == "error"]

    duplicates = [i for i in issues["VAL-008"]]
    assert sorted(i.position for i in duplicates) == [9, 10]
    assert all("lines 9, 10" in i.message and i.column == "site_key" for i in duplicates)

    category = one("VAL-009")
    assert (category.position, category.column, category.value) == (11, "category", "cine")
    assert "school, health, public_space, community, government, research" in category.message

    technology = one("VAL-010")
    assert (technology.position, technology.column) == (12, "technology")
    assert "fiber, microwave, satellite" in technology.message

    ip = one("VAL-011")
    assert (ip.position, ip.column, ip.value) == (13, "mgmt_ip", "10.0.0.300")

    bandwidth = one("VAL-012")
    assert (bandwidth.position, bandwidth.column) == (14, "bw_down_mbps")
    assert "negative" in bandwidth.message

    v3 = one("VAL-013")
    assert (v3.position, v3.column) == (15, "v3_user") and "SNMPv3" in v3.message

    positive = one("VAL-014")
    assert (positive.position, positive.column) == (16, "lon") and "minus" in positive.message

    assert "VAL-001" not in issues and "VAL-015" not in issues


def test_skip_invalid_writes_only_the_valid_rows(db: Engine, invalid_report: ImportReport) -> None:
    assert invalid_report.written
    assert invalid_report.rows == 16
    assert (invalid_report.inserted, invalid_report.rejected) == (3, 13)
    assert invalid_report.unchanged == 0
    rows = site_rows(db, "site_key, mun_cvegeo, cve_ent")
    assert rows == [
        {"site_key": "VAL-001", "mun_cvegeo": "09015", "cve_ent": "09"},
        {"site_key": "VAL-007", "mun_cvegeo": "12001", "cve_ent": "12"},
        {"site_key": "VAL-015", "mun_cvegeo": "20067", "cve_ent": "20"},
    ]


def test_strict_mode_writes_nothing_and_lists_every_error(db: Engine) -> None:
    report = run_import(db, DATA / "invalid_rows.csv")
    assert not report.written
    assert report.rejected == 13
    assert {i.site_key for i in report.errors} == {f"VAL-{n:03d}" for n in range(2, 15)} - {
        "VAL-007"
    }
    assert site_rows(db) == []
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM site_changes")).scalar_one() == 0


def test_fix_swapped_swaps_and_warns(db: Engine) -> None:
    report = run_import(db, DATA / "invalid_rows.csv", mode="skip-invalid", fix_swapped=True)
    swapped = [i for i in report.issues if i.site_key == "VAL-004"]
    assert [i.severity for i in swapped] == ["warning"] and "fixed" in swapped[0].message
    with db.connect() as conn:
        row = conn.execute(
            text("SELECT ST_Y(geom), ST_X(geom), mun_cvegeo FROM sites WHERE site_key = 'VAL-004'")
        ).one()
    assert tuple(row) == (17.0606, -96.7253, "20067")


def test_malformed_lines_are_errors_with_their_line(db: Engine) -> None:
    report = run_import(db, DATA / "extra_fields.csv", mode="skip-invalid")
    assert (report.rows, report.inserted, report.rejected) == (3, 2, 1)
    (error,) = report.errors
    assert error.position == 3 and "6 fields but the header has 5" in error.message
    strict = run_import(db, DATA / "extra_fields.csv")
    assert not strict.written and strict.rejected == 1


def test_line_numbers_follow_quoted_line_breaks(db: Engine) -> None:
    report = run_import(db, DATA / "multiline.csv", mode="skip-invalid")
    (error,) = report.errors
    assert (error.site_key, error.position, error.column) == ("ML-002", 4, "category")
    with db.connect() as conn:
        notes = conn.execute(
            text("SELECT access_notes FROM sites WHERE site_key = 'ML-001'")
        ).scalar_one()
    assert notes == "Primera línea\nsegunda línea"


def test_non_point_geometry_is_an_error(db: Engine) -> None:
    report = run_import(db, DATA / "mixed_geometry.geojson", mode="skip-invalid")
    (error,) = report.errors
    assert (error.site_key, error.locator, error.position) == ("GEO-002", "feature", 2)
    assert "Polygon" in error.message
    assert report.inserted == 1


def test_municipality_in_file_that_disagrees_is_a_warning(db: Engine) -> None:
    report = run_import(db, DATA / "valid_bom_semicolon.csv")
    assert report.written and report.inserted == 4
    warnings = {i.site_key: i for i in report.warnings}
    # "Veracruz" is a municipality, but Xalapa's coordinates are in 30087 Xalapa.
    assert set(warnings) == {"MXC-EP-30-000010"}
    assert warnings["MXC-EP-30-000010"].column == "Municipio"
    assert "Xalapa (30087)" in warnings["MXC-EP-30-000010"].message


def test_missing_required_column_is_a_file_error(tmp_path: Path, db: Engine) -> None:
    path = tmp_path / "no_coords.csv"
    path.write_text("clave,nombre,categoria\nA-1,Uno,escuela\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="lat or latitud") as caught:
        run_import(db, path)
    assert "lon or longitud" in caught.value.message


def test_two_headers_for_one_column_is_a_file_error(tmp_path: Path, db: Engine) -> None:
    path = tmp_path / "twice.csv"
    path.write_text("clave,cct,nombre,categoria,lat,lon\nA,B,Uno,escuela,19.4,-99.1\n")
    with pytest.raises(DataFileError, match="'clave' and 'cct' both mean site_key"):
        run_import(db, path)


def test_more_rules_on_one_file(tmp_path: Path, db: Engine) -> None:
    path = tmp_path / "more.csv"
    path.write_text(
        "site_key,name,category,lat,lon,installed_on,snmp_version,snmp_port,wan_if_index,"
        "http_url,v3_user,v3_auth_key,bw_up_mbps\n"
        "M-1,,school,19.4326,-99.1332,,,,,,,,\n"
        "M-2,Dos,school,19.4326,-99.1332,31/31/2020,,,,,,,\n"
        "M-3,Tres,school,19.4326,-99.1332,,1,,,,,,\n"
        "M-4,Cuatro,school,19.4326,-99.1332,,,70000,,,,,\n"
        "M-5,Cinco,school,19.4326,-99.1332,,,,2.5,,,,\n"
        "M-6,Seis,school,19.4326,-99.1332,,,,,ftp://x/,,,\n"
        "M-7,Siete,school,19.4326,-99.1332,,3,,,,u,corta,\n"
        "M-8,Ocho,school,19.4326,-99.1332,,,,,,,,muchos\n"
        "M-9,Nueve,school,19.4326,-99.1332,04/05/2021,v2c,1161,7,https://a.example/x,,,1 Gbps\n",
        encoding="utf-8",
    )
    report = run_import(db, path, mode="skip-invalid")
    errors = {i.site_key: (i.column, i.message) for i in report.errors}
    assert errors["M-1"][0] == "name" and "empty" in errors["M-1"][1]
    assert errors["M-2"][0] == "installed_on" and "not a date" in errors["M-2"][1]
    assert errors["M-3"] == ("snmp_version", "SNMP v1 is not supported; use 2c or 3")
    assert errors["M-4"][0] == "snmp_port" and "between 1 and 65535" in errors["M-4"][1]
    assert errors["M-5"][0] == "wan_if_index" and "whole number" in errors["M-5"][1]
    assert errors["M-6"][0] == "http_url"
    assert errors["M-7"][0] == "v3_auth_key" and "at least 8" in errors["M-7"][1]
    assert errors["M-8"][0] == "bw_up_mbps"
    assert "corta" not in " ".join(i.value for i in report.issues)  # keys are masked
    assert "M-9" not in errors and report.inserted == 1
    (row,) = site_rows(db, "installed_on::text, snmp_version, snmp_port, bw_up_mbps")
    assert row == {
        "installed_on": "2021-05-04",
        "snmp_version": "2c",
        "snmp_port": 1161,
        "bw_up_mbps": 1000.0,
    }
