"""Export: every format re-imports with zero changes, filters apply, secrets never leave."""

from __future__ import annotations

from pathlib import Path

import pyogrio
import pytest
from sqlalchemy import Engine, text

from core.errors import InvalidInput
from sites.exporter import export_sites
from sites.filters import SiteFilter
from sites.vocabulary import SECRET_COLUMNS
from tests.sites.conftest import DATA, run_import, site_rows

SECRETS = ("s3cret-comm", "authkey-0002", "privkey-0002", "mxc-monitor", "comm-es-")
COMPARED = (
    "site_key, name, category, ST_X(geom) AS lon, ST_Y(geom) AS lat, mun_cvegeo, cve_ent, "
    "locality, address, provider, technology, bw_down_mbps, bw_up_mbps, status, installed_on, "
    "contact_name, contact_phone, access_notes, host(mgmt_ip) AS ip, snmp_version, snmp_port, "
    "wan_if_index, wan_if_name, http_url"
)


@pytest.fixture
def inventory(db: Engine) -> Engine:
    for name in ("valid_utf8.csv", "valid_bom_semicolon.csv", "valid_cp1252.csv"):
        assert run_import(db, DATA / name).inserted > 0
    return db


@pytest.mark.parametrize("suffix", ["csv", "geojson", "gpkg"])
def test_export_then_import_changes_nothing(inventory: Engine, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"export.{suffix}"
    with inventory.connect() as conn:
        report = export_sites(conn, SiteFilter(), path)
    assert (report.sites, report.format) == (15, suffix)
    again = run_import(inventory, path)
    assert again.issues == [], again.issues[:3]
    assert (again.inserted, again.updated, again.unchanged, again.rejected) == (0, 0, 15, 0)


@pytest.mark.parametrize("suffix", ["csv", "geojson", "gpkg"])
def test_an_export_rebuilds_the_inventory_elsewhere(
    inventory: Engine, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"export.{suffix}"
    with inventory.connect() as conn:
        export_sites(conn, SiteFilter(), path)
    before = [r for r in site_rows(inventory, COMPARED) if r["site_key"] != "OCSSA000123"]
    with inventory.begin() as conn:
        conn.execute(text("TRUNCATE sites, site_changes RESTART IDENTITY CASCADE"))
    report = run_import(inventory, path, mode="skip-invalid")
    # Exports carry no secrets, so the one SNMPv3 site cannot be created without its user.
    (error,) = report.errors
    assert (error.site_key, error.column) == ("OCSSA000123", "snmp_version")
    assert report.inserted == 14
    assert site_rows(inventory, COMPARED) == before


@pytest.mark.parametrize("suffix", ["csv", "geojson", "gpkg"])
def test_exports_never_hold_secrets(inventory: Engine, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"export.{suffix}"
    with inventory.connect() as conn:
        export_sites(conn, SiteFilter(), path)
    raw = path.read_bytes()
    for secret in SECRETS:
        assert secret.encode() not in raw
    columns = (
        raw.split(b"\n", 1)[0].decode().split(",")
        if suffix == "csv"
        else list(pyogrio.read_info(path)["fields"])
    )
    assert not set(columns) & set(SECRET_COLUMNS)
    assert "snmp_credentials" in columns


def test_filters_choose_what_is_exported(inventory: Engine, tmp_path: Path) -> None:
    path = tmp_path / "oaxaca.csv"
    with inventory.connect() as conn:
        report = export_sites(conn, SiteFilter(state=["20"], category=["health"]), path)
    assert report.sites == 1
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and "OCSSA000123" in lines[1]


def test_export_format_errors(inventory: Engine, tmp_path: Path) -> None:
    with inventory.connect() as conn, pytest.raises(InvalidInput, match=r"\.csv, \.geojson"):
        export_sites(conn, SiteFilter(), tmp_path / "sites.xlsx")
    with inventory.connect() as conn, pytest.raises(InvalidInput, match="csv, geojson or gpkg"):
        export_sites(conn, SiteFilter(), tmp_path / "x.csv", fmt="kml")
