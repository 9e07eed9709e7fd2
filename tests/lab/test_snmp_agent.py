"""The lab SNMP agent, probed by our engine and by net-snmp's own snmpget/snmpwalk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.behaviour import SiteBehaviour
from lab.inventory import LabInventory, inventory_from_rows, lab_address
from lab.snmp_agent import RunningAgent, running_snmp_agent
from probes.model import LAB_COMMUNITY, ErrorClass, SnmpTarget
from probes.snmp import SnmpStats, probe_snmp_many_sync

SITES = 2000


def _rows() -> list[dict[str, str]]:
    rows = []
    for i in range(SITES):
        named = i % 20 == 0
        rows.append(
            {
                "site_key": f"LAB{i:06d}",
                "mgmt_ip": lab_address(i),
                "wan_if_index": "" if named else str(2 + i % 5),
                "wan_if_name": "GigabitEthernet0/1" if named else "",
                "bw_down_mbps": str(10 + i % 90),
                "bw_up_mbps": str(5 + i % 20),
            }
        )
    return rows


@pytest.fixture(scope="module")
def inventory() -> LabInventory:
    return inventory_from_rows(_rows())


@pytest.fixture(scope="module")
def agent(inventory: LabInventory) -> Iterator[RunningAgent]:
    with running_snmp_agent(inventory) as running:
        yield running


def targets(inventory: LabInventory, port: int, positions: list[int]) -> list[SnmpTarget]:
    found = []
    for i in positions:
        site = inventory.site(i)
        found.append(
            SnmpTarget(
                site_id=i,
                host=site.mgmt_ip,
                port=port,
                community=site.community,
                if_index=site.wan_if_index,
                if_name=site.wan_if_name,
            )
        )
    return found


def steady(b: SiteBehaviour, now: float) -> bool:
    """Up, fast, and not about to reboot or flap within the test."""
    return (
        not b.down
        and b.flap_period_s is None
        and not b.slow_delay_s
        and b.last_boot(now) == b.last_boot(now + 30)
    )


def pick(
    inventory: LabInventory, want: Callable[[SiteBehaviour, float], bool], count: int = 3
) -> list[int]:
    now = time.time()
    found = [i for i in range(len(inventory)) if want(inventory.behaviour(i), now)]
    assert len(found) >= count, "the inventory is too small to hold this behaviour"
    return found[:count]


def test_values_follow_the_behaviour_model(inventory: LabInventory, agent: RunningAgent) -> None:
    positions = pick(inventory, lambda b, now: steady(b, now) and b.counter_bits == 64, 40)
    before = time.time()
    stats = SnmpStats()
    outcomes = probe_snmp_many_sync(targets(inventory, agent.port, positions), stats=stats)
    after = time.time()
    assert stats.wrong_source == 0  # every answer came from the address that was asked
    for i, outcome in zip(positions, outcomes, strict=True):
        b = inventory.behaviour(i)
        assert outcome.ok, outcome.error_detail
        assert outcome.counter_bits == 64
        assert b.octets(before)[0] <= outcome.in_octets <= b.octets(after)[0]  # type: ignore[operator]
        assert b.octets(before)[1] <= outcome.out_octets <= b.octets(after)[1]  # type: ignore[operator]
        assert b.sys_uptime(before) <= outcome.sys_uptime <= b.sys_uptime(after)  # type: ignore[operator]
        assert outcome.high_speed_mbps == b.high_speed_mbps
        assert outcome.oper_status == b.wan_oper_status
        expected_index = inventory.wan_if_indexes[i] or outcome.if_index
        assert outcome.if_index == expected_index


def test_behaviours_seen_by_the_engine(inventory: LabInventory, agent: RunningAgent) -> None:
    down = pick(inventory, lambda b, now: b.down, 2)
    narrow = pick(inventory, lambda b, now: steady(b, now) and b.counter_bits == 32, 2)
    degraded = pick(inventory, lambda b, now: steady(b, now) and b.wan_oper_status == 2, 2)
    named = [
        i
        for i in pick(inventory, lambda b, now: steady(b, now), SITES // 2)
        if inventory.wan_if_names[i]
    ][:2]
    slow = pick(
        inventory, lambda b, now: b.slow_delay_s > 0 and not b.down and not b.flap_period_s, 1
    )
    positions = down + narrow + degraded + named + slow
    cache: dict[tuple[int, str], int] = {}
    outcomes = probe_snmp_many_sync(
        targets(inventory, agent.port, positions), timeout=2.0, retries=0, if_index_cache=cache
    )
    by_site = {o.site_id: o for o in outcomes}
    assert all(by_site[i].error is ErrorClass.TIMEOUT for i in down)
    assert all(by_site[i].ok and by_site[i].counter_bits == 32 for i in narrow)
    assert all(by_site[i].in_octets < 2**32 for i in narrow)  # type: ignore[operator]
    assert all(by_site[i].ok and by_site[i].oper_status == 2 for i in degraded)
    assert all(by_site[i].ok for i in named) and len(named) == 2
    assert {k for k in cache} == {(i, "GigabitEthernet0/1") for i in named}
    [s] = slow
    delay = inventory.behaviour(s).slow_delay_s
    assert by_site[s].ok and by_site[s].latency_ms >= delay * 1000 * 0.95  # type: ignore[operator]


def test_wrong_community_and_unknown_address_get_silence(
    inventory: LabInventory, agent: RunningAgent
) -> None:
    [i] = pick(inventory, lambda b, now: steady(b, now), 1)
    site = inventory.site(i)
    wrong = SnmpTarget(site_id=1, host=site.mgmt_ip, port=agent.port, community="x", if_index=3)
    stranger = SnmpTarget(
        site_id=2, host="127.63.255.254", port=agent.port, community=LAB_COMMUNITY, if_index=3
    )
    outcomes = probe_snmp_many_sync([wrong, stranger], timeout=0.3, retries=0)
    assert [o.error for o in outcomes] == [ErrorClass.TIMEOUT, ErrorClass.TIMEOUT]
    assert agent.stats.wrong_community >= 1 if agent.stats.requests else True


def _net_snmp(*args: str) -> str:
    done = subprocess.run(
        list(args), capture_output=True, text=True, timeout=20, env={**os.environ, "MIBS": ""}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_net_snmp_clients_walk_the_lab_agent(inventory: LabInventory, agent: RunningAgent) -> None:
    [wide] = pick(inventory, lambda b, now: steady(b, now) and b.counter_bits == 64, 1)
    [narrow] = pick(inventory, lambda b, now: steady(b, now) and b.counter_bits == 32, 1)
    wide_ip, narrow_ip = inventory.site(wide).mgmt_ip, inventory.site(narrow).mgmt_ip
    walk = _net_snmp(
        "snmpbulkwalk",
        "-v2c",
        "-c",
        LAB_COMMUNITY,
        "-On",
        f"{wide_ip}:{agent.port}",
        ".1.3.6.1.2.1",
    )
    lines = [line for line in walk.strip().splitlines() if "No more variables" not in line]
    assert any(line.startswith('.1.3.6.1.2.1.1.5.0 = STRING: "LAB') for line in lines)
    wan = inventory.wan_if_indexes[wide]
    assert any(line.startswith(f".1.3.6.1.2.1.31.1.1.1.6.{wan} = Counter64:") for line in lines)
    assert any(line.startswith(f".1.3.6.1.2.1.2.2.1.8.{wan} = INTEGER:") for line in lines)
    assert len(lines) == 4 + 3 * 6 + 3 * 4  # system, ifTable and ifXTable rows of 3 interfaces
    get = _net_snmp(
        "snmpget",
        "-v2c",
        "-c",
        LAB_COMMUNITY,
        "-On",
        f"{narrow_ip}:{agent.port}",
        ".1.3.6.1.2.1.31.1.1.1.6.1",
        ".1.3.6.1.2.1.2.2.1.10.1",
        ".1.3.6.1.2.1.2.2.1.8.99",
    )
    assert "No Such Object" in get.splitlines()[0]
    assert "Counter32" in get.splitlines()[1]
    assert "No Such Instance" in get.splitlines()[2]


def test_workers_share_the_port_and_stop_on_sigterm(tmp_path: Path) -> None:
    csv = tmp_path / "lab.csv"
    rows = _rows()[:300]
    csv.write_text(
        "site_key,mgmt_ip,wan_if_index,wan_if_name,bw_down_mbps,bw_up_mbps\n"
        + "".join(
            f"{r['site_key']},{r['mgmt_ip']},{r['wan_if_index']},{r['wan_if_name']},"
            f"{r['bw_down_mbps']},{r['bw_up_mbps']}\n"
            for r in rows
        )
    )
    from tests.probes.snmp_daemons import free_udp_port

    def start(port: int) -> subprocess.Popen[bytes]:
        code = (
            "import sys; from pathlib import Path; from lab.inventory import read_lab_inventory; "
            "from lab.snmp_agent import run_snmp_agent; "
            f"run_snmp_agent(read_lab_inventory(Path({str(csv)!r})), port={port}, workers=2)"
        )
        return subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=Path(__file__).resolve().parents[2],
            stderr=(tmp_path / f"agent-{port}.err").open("wb"),
        )

    port = free_udp_port("0.0.0.0")
    proc = start(port)
    try:
        inventory = inventory_from_rows(rows)
        now = time.time()
        up = [i for i in range(len(inventory)) if steady(inventory.behaviour(i), now)]
        restarts = 0
        deadline = time.monotonic() + 60  # the child imports pandas and reads the file first
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                # The free port was taken between our check and the agent's bind (another
                # process's ephemeral port): pick another one, at most twice.
                err = (tmp_path / f"agent-{port}.err").read_text()
                assert "Address already in use" in err and restarts < 2, err
                restarts += 1
                port = free_udp_port("0.0.0.0")
                proc = start(port)
            [first] = probe_snmp_many_sync(targets(inventory, port, up[:1]), timeout=0.5, retries=0)
            if first.ok:
                break
        probes = targets(inventory, port, up)
        outcomes = probe_snmp_many_sync(probes, timeout=2.0, retries=1)
        assert all(o.ok for o in outcomes), [o.error_detail for o in outcomes if not o.ok][:3]
        children = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(children) == 1  # a second responder process shares the port
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
