"""The lab inventory reader and the per-site behaviour model."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from core.errors import DataFileError, InvalidInput
from core.settings import LAB_HTTP_PORT, LAB_SNMP_PORT, LabPorts
from lab.behaviour import DAY_S, behaviour_for
from lab.inventory import inventory_from_rows, lab_address, read_lab_inventory
from probes.model import LAB_COMMUNITY

HEADER = (
    "site_key,name,mgmt_ip,snmp_port,snmp_community,wan_if_index,wan_if_name,"
    "bw_down_mbps,bw_up_mbps,http_url\n"
)


def test_reads_a_lab_csv(tmp_path: Path) -> None:
    path = tmp_path / "lab.csv"
    path.write_text(
        HEADER
        + "A1,Escuela,127.64.0.1,16161,conectado-lab,3,,20,5,http://127.64.0.1:18080/\n"
        + "A2,Clínica,127.64.0.2,,,,GigabitEthernet0/1,50.5,10,https://127.64.0.2:18443/\n"
        + "A3,Sin IP,,,,,,,,\n",
        encoding="utf-8-sig",
    )
    inventory = read_lab_inventory(path)
    assert len(inventory) == 2 and inventory.skipped_rows == 1
    first, second = inventory.site(0), inventory.site(1)
    assert first.wan_if_index == 3 and first.wan_if_name is None and not first.https
    assert second.snmp_port == LAB_SNMP_PORT and second.community == LAB_COMMUNITY
    assert second.wan_if_index is None and second.wan_if_name == "GigabitEthernet0/1"
    assert second.bw_down_mbps == 50.5 and second.https
    assert inventory.find("127.64.0.2") == 1 and inventory.find("127.64.0.9") is None


def test_the_ports_an_inventory_names(tmp_path: Path) -> None:
    path = tmp_path / "lab.csv"
    path.write_text(
        HEADER
        + "A1,Escuela,127.64.0.1,26161,c,3,,20,5,http://127.64.0.1:28080/\n"
        + "A2,Clínica,127.64.0.2,26161,c,3,,20,5,HTTPS://127.64.0.2:28443/x\n"
        + "A3,Oficina,127.64.0.3,26161,c,3,,20,5,http://127.64.0.3:28080/\n"
        + "A4,Parque,127.64.0.4,161,c,3,,20,5,http://127.64.0.4/\n"
    )
    assert read_lab_inventory(path).ports() == LabPorts(26161, 28080, 28443)
    path.write_text(HEADER + "A4,Parque,127.64.0.4,,c,3,,20,5,https://127.64.0.4/\n")
    assert read_lab_inventory(path).ports() == LabPorts(LAB_SNMP_PORT, LAB_HTTP_PORT, 443)


def test_semicolon_files(tmp_path: Path) -> None:
    path = tmp_path / "lab.csv"
    path.write_text("site_key;mgmt_ip;wan_if_index\nB1;127.64.0.7;2\n")
    assert read_lab_inventory(path).site(0).wan_if_index == 2


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ({"site_key": "X", "mgmt_ip": "10.0.0.1"}, "row 1 (site_key X), column mgmt_ip"),
        ({"site_key": "X", "mgmt_ip": "127.0.0.300"}, "not an IPv4 address"),
        ({"site_key": "X", "mgmt_ip": "127.64.0.1", "snmp_port": "70000"}, "snmp_port"),
        ({"site_key": "X", "mgmt_ip": "127.64.0.1", "wan_if_index": "eth0"}, "whole number"),
        ({"site_key": "X", "mgmt_ip": "127.64.0.1", "bw_down_mbps": "-3"}, "bw_down_mbps"),
        ({"site_key": "X", "mgmt_ip": "127.64.0.1", "http_url": "ftp://x/"}, "http_url"),
        ({"site_key": "", "mgmt_ip": "127.64.0.1"}, "column site_key"),
    ],
)
def test_bad_rows_are_named(row: dict[str, str], words: str) -> None:
    with pytest.raises(InvalidInput, match="invalid value") as caught:
        inventory_from_rows([row])
    assert words in caught.value.message


def test_duplicate_addresses_name_both_sites() -> None:
    with pytest.raises(InvalidInput) as caught:
        inventory_from_rows(
            [{"site_key": "A", "mgmt_ip": "127.64.0.1"}, {"site_key": "B", "mgmt_ip": "127.64.0.1"}]
        )
    assert "'B'" in caught.value.message and "'A'" in caught.value.message


def test_missing_columns_and_files(tmp_path: Path) -> None:
    path = tmp_path / "lab.csv"
    path.write_text("site_key,ip\nA,127.64.0.1\n")
    with pytest.raises(DataFileError, match="mgmt_ip"):
        read_lab_inventory(path)
    with pytest.raises(DataFileError, match="generate"):
        read_lab_inventory(tmp_path / "absent.csv")


def test_lab_addresses_skip_0_and_255() -> None:
    addresses = [lab_address(i) for i in range(600)]
    assert addresses[0] == "127.64.0.1" and addresses[253] == "127.64.0.254"
    assert addresses[254] == "127.64.1.1"
    assert len(set(addresses)) == 600
    assert not any(a.endswith((".0", ".255")) for a in addresses)
    assert lab_address(101_321).startswith("127.")


KEYS = [f"LAB{i:06d}" for i in range(20_000)]


def test_behaviour_is_deterministic_and_mixed() -> None:
    sites = [behaviour_for(k, 20, 5, https=i % 50 == 0) for i, k in enumerate(KEYS)]
    assert sites[:50] == [
        behaviour_for(k, 20, 5, https=i % 50 == 0) for i, k in enumerate(KEYS[:50])
    ]

    def share(flag: list[bool]) -> float:
        return sum(flag) / len(flag)

    assert 0.02 < share([s.down for s in sites]) < 0.04
    assert 0.04 < share([s.counter_bits == 32 for s in sites]) < 0.06
    assert 0.005 < share([s.flap_period_s is not None for s in sites]) < 0.015
    assert 0.015 < share([s.slow_delay_s > 0 for s in sites]) < 0.025
    assert 0.015 < share([s.wan_oper_status == 2 for s in sites]) < 0.025
    assert 0.005 < share([s.fast_rebooter for s in sites]) < 0.015
    assert 0.005 < share([s.http_status >= 500 for s in sites]) < 0.015
    https = [s for i, s in enumerate(sites) if i % 50 == 0]
    assert 0.15 < share([s.tls_fault is not None for s in https]) < 0.45
    assert all(s.tls_fault is None for i, s in enumerate(sites) if i % 50)
    assert all(1.2 <= s.slow_delay_s < 1.8 for s in sites if s.slow_delay_s)


@pytest.mark.parametrize("key", KEYS[:300])
def test_counters_integrate_a_rate_within_the_contract(key: str) -> None:
    site = behaviour_for(key, 20, 5)
    now = 1_790_000_000.0
    boot = site.last_boot(now)
    t0, t1 = now, now + 60.0
    if site.last_boot(t1) != boot:
        return  # a reboot in between: covered by the reboot test
    (in0, out0), (in1, out1) = site.octets(t0), site.octets(t1)
    modulus = 1 << site.counter_bits
    in_bps = ((in1 - in0) % modulus) * 8 / 60.0
    out_bps = ((out1 - out0) % modulus) * 8 / 60.0
    assert 0 < in_bps <= 20e6 and 0 < out_bps <= 5e6
    expected = (site.rates_bps(t0)[0] + site.rates_bps(t1)[0]) / 2
    assert math.isclose(in_bps, expected, rel_tol=0.01)
    uptime0, uptime1 = site.sys_uptime(t0), site.sys_uptime(t1)
    assert (uptime1 - uptime0) % 2**32 == 6000


def test_reboots_reset_uptime_and_counters() -> None:
    site = next(behaviour_for(k, 50, 10) for k in KEYS if behaviour_for(k, 50, 10).fast_rebooter)
    now = 1_790_000_000.0
    boot = site.last_boot(now)
    after = boot + site.reboot_period_s + 1.0  # one second after the next reboot
    before = after - 2.0
    assert site.sys_uptime(after) < site.sys_uptime(before)
    assert site.sys_uptime(after) == 100
    if site.counter_offset == 0:
        assert site.octets(after)[0] < site.octets(before)[0]
    assert site.reboot_period_s < 600


def test_32bit_counters_wrap_and_some_64bit_start_near_the_top() -> None:
    sites = [behaviour_for(k, 100, 100) for k in KEYS]
    narrow = [s for s in sites if s.counter_bits == 32]
    assert all(max(s.octets(1_790_000_000.0)) < 2**32 for s in narrow)
    high = [s for s in sites if s.counter_bits == 64 and s.counter_offset > 2**63]
    assert high, "some 64-bit agents start close to 2^64"
    site = high[0]
    start = site.last_boot(1_790_000_000.0) + 1.0
    samples = [site.octets(start + step * 600.0)[0] for step in range(6 * 24)]  # one day
    assert samples[0] > 2**63
    assert any(b < a for a, b in itertools.pairwise(samples))  # wrapped past 2^64


def test_flapping_sites_alternate() -> None:
    site = next(s for s in (behaviour_for(k, 10, 10) for k in KEYS) if s.flap_period_s)
    assert site.flap_period_s is not None
    samples = [site.answers(1_790_000_000.0 + t) for t in range(0, 1200, 10)]
    assert any(samples) and not all(samples)
    assert 0.4 < sum(samples) / len(samples) < 0.6


def test_reboot_period_is_days_for_most() -> None:
    slow = [behaviour_for(k, 10, 10) for k in KEYS[:500]]
    assert all(2 * DAY_S <= s.reboot_period_s <= 6 * DAY_S for s in slow if not s.fast_rebooter)
