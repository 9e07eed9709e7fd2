"""The generated national inventory: exact mix, reproducible bytes, plausible, importable."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, text

from core.errors import InvalidInput
from core.settings import LAB_HTTP_PORT, LAB_HTTPS_PORT, LAB_SNMP_PORT, PROJECT_ROOT, LabPorts
from probes.model import LAB_COMMUNITY
from sites.generator import (
    PROGRAMME_MIX,
    category_counts,
    generate_sites,
    write_sites_csv,
)
from sites.vocabulary import CATEGORIES
from tests.sites.conftest import run_import

INEGI = PROJECT_ROOT / "data" / "inegi"
CCT = r"\d{2}[DEK](JN|PR|ES|TV|ST|BH)\d{4}[A-Z]"
CLUES = r"[A-Z]{2}(SSA|IMB|IMS|IST)\d{6}"
PROGRAMME = r"MXC-(EP|CC|GB|CI)-\d{2}-\d{6}"


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return generate_sites(INEGI, count=5000, seed=3)


@pytest.fixture(scope="module")
def lab_sample() -> pd.DataFrame:
    return generate_sites(INEGI, count=5000, seed=3, lab=True)


def test_category_counts_are_exact_and_scaled() -> None:
    assert tuple(category_counts(101_322).values()) == PROGRAMME_MIX
    for count in (0, 1, 7, 1000, 12_345, 200_000):
        counts = category_counts(count)
        assert sum(counts.values()) == count
        for category, share in zip(CATEGORIES, PROGRAMME_MIX, strict=True):
            assert abs(counts[category] - count * share / 101_322) < 1
    assert category_counts(1000) == {
        "school": 679,
        "health": 98,
        "public_space": 96,
        "community": 60,
        "government": 66,
        "research": 1,
    }
    with pytest.raises(InvalidInput):
        generate_sites(INEGI, count=-1)


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    write_sites_csv(generate_sites(INEGI, count=800, seed=9, lab=True), first)
    write_sites_csv(generate_sites(INEGI, count=800, seed=9, lab=True), second)
    write_sites_csv(generate_sites(INEGI, count=800, seed=10, lab=True), other)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_keys_names_and_values_are_plausible(sample: pd.DataFrame) -> None:
    assert sample.site_key.is_unique
    by = sample.groupby("category").site_key
    assert by.apply(lambda k: k.str.fullmatch(CCT).all())["school"]
    assert by.apply(lambda k: k.str.fullmatch(CLUES).all())["health"]
    for category in ("public_space", "community", "government"):
        assert by.apply(lambda k: k.str.fullmatch(PROGRAMME).all())[category]
    schools = sample[sample.category == "school"]
    assert (schools.site_key.str[:2] >= "01").all() and (schools.site_key.str[:2] <= "32").all()
    assert sample.status.value_counts(normalize=True)["active"] > 0.85
    days = pd.to_datetime(sample.installed_on[sample.installed_on != ""])
    assert days.min().year >= 2019 and days.max().year <= 2025
    assert (sample.installed_on[sample.status == "planned"] == "").all()
    assert (sample.bw_down_mbps > 0).all() and (sample.bw_up_mbps > 0).all()
    assert sample.lat.between(14, 33).all() and sample.lon.between(-119, -86).all()
    ips = sample.mgmt_ip.map(ipaddress.ip_address)
    assert all(ip in ipaddress.ip_network("10.0.0.0/8") for ip in ips) and ips.is_unique
    v3 = sample[sample.snmp_version == "3"]
    assert len(v3) > 0 and (v3.v3_user != "").all() and (v3.snmp_community == "").all()
    assert (sample[sample.snmp_version == "2c"].snmp_community != "").all()


def test_satellite_is_for_remote_rural_places(sample: pd.DataFrame) -> None:
    rural_small = sample.address.str.startswith("Domicilio conocido")
    share_remote = (sample[rural_small].technology == "satellite").mean()
    share_other = (sample[~rural_small].technology == "satellite").mean()
    assert share_remote > 2 * share_other
    assert set(sample[sample.technology == "satellite"].provider) <= {
        "Hughes",
        "Telecomm",
        "Viasat",
        "Starlink",
        "Eutelsat",
    }


def test_lab_inventory_names_the_ports_it_is_given() -> None:
    frame = generate_sites(INEGI, count=200, seed=3, lab=True, lab_ports=LabPorts(2161, 2080, 2443))
    assert (frame.snmp_port == 2161).all()
    https = frame.http_url.str.startswith("https://")
    assert https.any()
    assert frame.http_url[https].str.endswith(":2443/").all()
    assert frame.http_url[~https].str.endswith(":2080/").all()


def test_lab_inventory_uses_loopback_addresses(lab_sample: pd.DataFrame) -> None:
    ips = [ipaddress.IPv4Address(ip) for ip in lab_sample.mgmt_ip]
    assert ips[0] == ipaddress.IPv4Address("127.64.0.1")
    assert len(set(ips)) == len(ips)
    assert all(ip in ipaddress.ip_network("127.0.0.0/8") for ip in ips)
    assert not [ip for ip in ips if int(ip) % 256 in (0, 255)]
    assert (lab_sample.snmp_port == LAB_SNMP_PORT).all()
    assert (lab_sample.snmp_community == LAB_COMMUNITY).all()
    assert (lab_sample.snmp_version == "2c").all()
    https = lab_sample.http_url.str.startswith("https://")
    assert 0.005 < https.mean() < 0.05
    expected = np.where(
        https,
        "https://" + lab_sample.mgmt_ip + f":{LAB_HTTPS_PORT}/",
        "http://" + lab_sample.mgmt_ip + f":{LAB_HTTP_PORT}/",
    )
    assert (lab_sample.http_url == expected).all()
    by_name = lab_sample.wan_if_name != ""
    assert 0.02 < by_name.mean() < 0.1
    assert lab_sample.wan_if_index[by_name].isna().all()
    assert lab_sample.wan_if_index[~by_name].notna().all()


def test_generated_file_imports_cleanly(db: Engine, tmp_path: Path) -> None:
    path = tmp_path / "generated.csv"
    write_sites_csv(generate_sites(INEGI, count=3000, seed=5, lab=True), path)
    report = run_import(db, path)
    assert report.errors == [] and report.inserted == 3000
    with db.connect() as conn:
        municipalities = conn.execute(
            text("SELECT count(DISTINCT mun_cvegeo) FROM sites")
        ).scalar_one()
    assert 500 < municipalities < 2475


@pytest.mark.slow
def test_national_inventory_end_to_end(db: Engine, tmp_path: Path) -> None:
    frame = generate_sites(INEGI, count=101_322, seed=42)
    assert tuple(frame.category.value_counts()[list(CATEGORIES)]) == PROGRAMME_MIX
    assert frame.site_key.is_unique and frame.mgmt_ip.is_unique
    path = tmp_path / "national.csv"
    write_sites_csv(frame, path)
    report = run_import(db, path)
    assert report.errors == [] and report.inserted == 101_322
    again = run_import(db, path)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 101_322)
    with db.connect() as conn:
        covered, empty, indexes = conn.execute(
            text(
                "SELECT count(DISTINCT s.mun_cvegeo), "
                "(SELECT count(*) FROM municipalities m WHERE NOT EXISTS "
                " (SELECT 1 FROM sites x WHERE x.mun_cvegeo = m.cvegeo)), "
                "(SELECT count(*) FROM pg_indexes WHERE tablename = 'sites') FROM sites s"
            )
        ).one()
        foreign_keys = conn.execute(
            text(
                "SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
                "AND conrelid IN ('sites'::regclass, 'site_secrets'::regclass)"
            )
        ).scalar_one()
    # Real-looking gaps: most municipalities have sites, a visible share have none.
    assert covered > 1800 and empty > 100
    # The bulk path dropped and rebuilt indexes and foreign keys: all are back.
    assert indexes == 11 and foreign_keys == 3
