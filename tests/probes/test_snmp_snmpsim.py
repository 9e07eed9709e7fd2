"""The SNMP engine against snmpsim: exact values, the 32-bit fallback, Counter64 edges, v3."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from probes.model import ErrorClass, SnmpTarget, V3Credentials
from probes.snmp import SnmpStats, probe_snmp_many_sync
from tests.probes.snmp_daemons import SNMPSIM_V3, Daemon, running_snmpsim
from tests.probes.snmp_engines import pytest_generate_tests, snmp_engine  # noqa: F401


@pytest.fixture(scope="module")
def snmpsim() -> Iterator[Daemon]:
    with running_snmpsim() as daemon:
        yield daemon


def target(daemon: Daemon, community: str, site_id: int = 1, **kw: object) -> SnmpTarget:
    return SnmpTarget(
        site_id=site_id,
        host=daemon.host,
        port=daemon.port,
        community=community,
        if_index=kw.get("if_index", 2 if community == "bits32" else 7),  # type: ignore[arg-type]
        if_name=kw.get("if_name"),  # type: ignore[arg-type]
    )


def test_counter64_edges_are_exact(snmpsim: Daemon) -> None:
    [outcome] = probe_snmp_many_sync([target(snmpsim, "hc")])
    assert outcome.ok, outcome.error_detail
    assert outcome.counter_bits == 64
    assert outcome.in_octets == 2**64 - 1 and outcome.out_octets == 2**63
    assert outcome.sys_uptime == 2**32 - 1
    assert outcome.oper_status == 2  # WAN down: the site answers but is degraded
    assert outcome.high_speed_mbps == 10_000


def test_32bit_agent_falls_back_once_per_agent(snmpsim: Daemon) -> None:
    stats = SnmpStats()
    agents32: set[tuple[str, int]] = set()
    first, second = probe_snmp_many_sync(
        [target(snmpsim, "bits32", 1), target(snmpsim, "bits32", 2)],
        concurrency=1,
        stats=stats,
        counter32_agents=agents32,
    )
    for outcome in (first, second):
        assert outcome.ok, outcome.error_detail
        assert outcome.counter_bits == 32
        assert outcome.in_octets == 2**32 - 1 and outcome.out_octets == 12345
        assert outcome.high_speed_mbps == 100  # ifSpeed 100,000,000 bit/s
        assert outcome.sys_uptime == 123456
    # The first probe learnt the agent is 32-bit; the second asked for 32-bit objects at once.
    assert stats.fallbacks_32bit == 1 and stats.requests_sent == 3
    assert agents32 == {(snmpsim.host, snmpsim.port)}
    later = SnmpStats()
    probe_snmp_many_sync([target(snmpsim, "bits32")], stats=later, counter32_agents=agents32)
    assert later.requests_sent == 1


def test_if_name_walks(snmpsim: Daemon) -> None:
    cache: dict[tuple[int, str], int] = {}
    cisco, by_descr, missing = probe_snmp_many_sync(
        [
            target(snmpsim, "hc", 1, if_index=None, if_name="GigabitEthernet0/1"),
            # No ifXTable on this agent: the name is found in ifDescr.
            target(snmpsim, "bits32", 2, if_index=None, if_name="ether1"),
            target(snmpsim, "hc", 3, if_index=None, if_name="Gi0/9"),
        ],
        if_index_cache=cache,
    )
    assert cisco.ok and cisco.if_index == 7
    assert by_descr.ok and by_descr.if_index == 2 and by_descr.counter_bits == 32
    assert missing.error is ErrorClass.NO_SUCH_INTERFACE
    assert "'Nu0'" in (missing.error_detail or "")
    assert cache == {(1, "GigabitEthernet0/1"): 7, (2, "ether1"): 2}


def test_unknown_community_is_silence(snmpsim: Daemon) -> None:
    [outcome] = probe_snmp_many_sync([target(snmpsim, "no-such-data")], timeout=0.3, retries=0)
    assert outcome.error is ErrorClass.TIMEOUT


def test_v3_against_snmpsim(snmpsim: Daemon) -> None:
    user, auth_key, priv_key = SNMPSIM_V3

    def v3(site_id: int, auth: str, context: str, **kw: object) -> SnmpTarget:
        return SnmpTarget(
            site_id=site_id,
            host=snmpsim.host,
            port=snmpsim.port,
            version="3",
            v3=V3Credentials(user, "SHA", auth, "AES", priv_key, context=context),
            if_index=kw.get("if_index", 7),  # type: ignore[arg-type]
            if_name=kw.get("if_name"),  # type: ignore[arg-type]
        )

    cache: dict[tuple[int, str], int] = {}
    hc, bits32, named, wrong = probe_snmp_many_sync(
        [
            v3(1, auth_key, "hc"),
            v3(2, auth_key, "bits32", if_index=2),
            v3(3, auth_key, "hc", if_index=None, if_name="GigabitEthernet0/1"),
            v3(4, "wrong-auth-key", "hc"),
        ],
        timeout=1.0,
        retries=0,
        if_index_cache=cache,
    )
    assert hc.ok and hc.in_octets == 2**64 - 1 and hc.out_octets == 2**63, hc.error_detail
    assert bits32.ok and bits32.counter_bits == 32 and bits32.in_octets == 2**32 - 1
    assert bits32.high_speed_mbps == 100
    assert named.ok and named.if_index == 7 and cache == {(3, "GigabitEthernet0/1"): 7}
    assert wrong.error is ErrorClass.AUTH
