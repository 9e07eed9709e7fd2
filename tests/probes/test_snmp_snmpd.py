"""The SNMP engine against a real net-snmp snmpd (v2c and v3 authPriv) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    get_cmd,
)

from probes.model import ErrorClass, SnmpTarget, V3Credentials
from probes.snmp import SnmpStats, probe_snmp_many, probe_snmp_many_sync
from probes.snmp_oids import IF_HC_IN_OCTETS, IF_HC_OUT_OCTETS, IF_HIGH_SPEED, IF_OPER_STATUS
from tests.probes.snmp_daemons import V3_USERS, Daemon, free_udp_port, running_snmpd
from tests.probes.snmp_engines import pytest_generate_tests, snmp_engine  # noqa: F401


@pytest.fixture(scope="module")
def snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_snmpd(tmp_path_factory.mktemp("snmpd")) as daemon:
        yield daemon


def v2c(daemon: Daemon, site_id: int = 1, **changes: Any) -> SnmpTarget:
    target = SnmpTarget(
        site_id=site_id, host=daemon.host, port=daemon.port, community="public", if_index=1
    )
    return replace(target, **changes)


def v3(daemon: Daemon, account: str, site_id: int = 1, **overrides: str) -> SnmpTarget:
    (_, auth), auth_key, (_, priv), priv_key = V3_USERS[account]
    creds = {
        "user": account,
        "auth_proto": auth,
        "auth_key": auth_key,
        "priv_proto": priv,
        "priv_key": priv_key,
        **overrides,
    }
    return SnmpTarget(
        site_id=site_id,
        host=daemon.host,
        port=daemon.port,
        version="3",
        v3=V3Credentials(**creds),
        if_index=1,
    )


async def pysnmp_lo(daemon: Daemon) -> list[int]:
    """The same objects through pysnmp (the library baseline)."""
    engine = SnmpEngine()
    oids = [(*c, 1) for c in (IF_HC_IN_OCTETS, IF_HC_OUT_OCTETS, IF_OPER_STATUS, IF_HIGH_SPEED)]
    error, status, _, varbinds = await get_cmd(
        engine,
        CommunityData("public"),
        await UdpTransportTarget.create((daemon.host, daemon.port), timeout=2, retries=1),
        ContextData(),
        *(ObjectType(ObjectIdentity(oid)) for oid in oids),
        lookupMib=False,
    )
    engine.close_dispatcher()
    assert error is None and not int(status)
    return [int(vb[1]) for vb in varbinds]


def test_v2c_get_agrees_with_pysnmp(snmpd: Daemon) -> None:
    before = asyncio.run(pysnmp_lo(snmpd))
    started = datetime.now(UTC)
    [outcome] = probe_snmp_many_sync([v2c(snmpd, site_id=7)])
    after = asyncio.run(pysnmp_lo(snmpd))
    assert outcome.ok, outcome.error_detail
    assert outcome.site_id == 7 and outcome.if_index == 1 and outcome.counter_bits == 64
    # Counters only grow: ours must lie between two pysnmp reads taken around it.
    assert before[0] <= outcome.in_octets <= after[0]  # type: ignore[operator]
    assert before[1] <= outcome.out_octets <= after[1]  # type: ignore[operator]
    assert outcome.oper_status == before[2] == 1
    assert outcome.high_speed_mbps == before[3]
    assert outcome.sys_uptime is not None and outcome.sys_uptime > 0
    assert outcome.ts.tzinfo is UTC and started <= outcome.ts <= datetime.now(UTC)
    assert outcome.latency_ms is not None and 0 < outcome.latency_ms < 2000


def test_if_name_resolved_once_then_cached(snmpd: Daemon) -> None:
    cache: dict[tuple[int, str], int] = {}
    first, second = SnmpStats(), SnmpStats()
    target = v2c(snmpd, site_id=3, if_index=None, if_name="lo")
    [a] = probe_snmp_many_sync([target], if_index_cache=cache, stats=first)
    [b] = probe_snmp_many_sync([target], if_index_cache=cache, stats=second)
    assert a.ok and b.ok and a.if_index == b.if_index == 1
    assert cache == {(3, "lo"): 1}
    assert first.walks == 1 and first.if_index_cache_hits == 0
    assert second.walks == 0 and second.if_index_cache_hits == 1
    assert second.requests_sent == 1


def test_stale_cached_index_is_resolved_again(snmpd: Daemon) -> None:
    cache = {(3, "lo"): 4242}
    [outcome] = probe_snmp_many_sync(
        [v2c(snmpd, site_id=3, if_index=None, if_name="lo")], if_index_cache=cache
    )
    assert outcome.ok and outcome.if_index == 1 and cache == {(3, "lo"): 1}


def test_unknown_interfaces(snmpd: Daemon) -> None:
    by_name, by_index = probe_snmp_many_sync(
        [
            v2c(snmpd, site_id=1, if_index=None, if_name="wan-nowhere"),
            v2c(snmpd, site_id=2, if_index=4242),
        ]
    )
    assert by_name.error is ErrorClass.NO_SUCH_INTERFACE
    assert "'wan-nowhere'" in (by_name.error_detail or "") and "'lo'" in (
        by_name.error_detail or ""
    )
    assert by_index.error is ErrorClass.NO_SUCH_INTERFACE and "4242" in (
        by_index.error_detail or ""
    )


def test_wrong_community_is_a_timeout_within_its_budget(snmpd: Daemon) -> None:
    started = time.monotonic()
    stats = SnmpStats()
    [outcome] = probe_snmp_many_sync(
        [v2c(snmpd, community="not-the-community")], timeout=0.3, retries=1, stats=stats
    )
    elapsed = time.monotonic() - started
    assert outcome.error is ErrorClass.TIMEOUT and "community" in (outcome.error_detail or "")
    assert stats.requests_sent == 2 and stats.retransmissions == 1
    assert 0.6 <= elapsed < 0.6 + 1.0


def test_closed_port_is_refused_at_once() -> None:
    port = free_udp_port()
    started = time.monotonic()
    stats = SnmpStats()
    outcomes = probe_snmp_many_sync(
        [
            SnmpTarget(
                site_id=i,
                host=f"127.1.{i // 250}.{i % 250 + 1}",
                port=port,
                community="public",
                if_index=1,
            )
            for i in range(2000)
        ],
        timeout=2.0,
        stats=stats,
    )
    assert [o.error for o in outcomes] == [ErrorClass.REFUSED] * 2000
    assert str(port) in (outcomes[0].error_detail or "")
    assert time.monotonic() - started < 1.9  # attributed by the ICMP errors, not by timeouts
    assert stats.icmp_errors == 2000 and stats.retransmissions == 0 and stats.send_errors == 0


def test_unresolvable_host_is_unreachable() -> None:
    # A label over 63 characters fails before any DNS query: no traffic leaves loopback.
    bad_name = "x" * 64 + ".lab"
    [outcome] = probe_snmp_many_sync(
        [SnmpTarget(site_id=1, host=bad_name, community="c", if_index=1)]
    )
    assert outcome.error is ErrorClass.UNREACHABLE and "did not resolve" in (
        outcome.error_detail or ""
    )


def test_config_errors() -> None:
    outcomes = probe_snmp_many_sync(
        [
            SnmpTarget(site_id=1, host="127.0.0.1", community=None, if_index=1),
            SnmpTarget(site_id=2, host="127.0.0.1", community="c"),
            SnmpTarget(site_id=3, host="127.0.0.1", version="3", v3=None, if_index=1),
        ]
    )
    assert [o.error for o in outcomes] == [ErrorClass.CONFIG] * 3


@pytest.mark.parametrize("user", sorted(V3_USERS))
def test_v3_auth_priv(snmpd: Daemon, user: str) -> None:
    cache: dict[tuple[int, str], int] = {}
    named = replace(v3(snmpd, user, site_id=9), if_index=None, if_name="lo")
    by_index, by_name = probe_snmp_many_sync([v3(snmpd, user), named], if_index_cache=cache)
    for outcome in (by_index, by_name):
        assert outcome.ok, outcome.error_detail
        assert outcome.counter_bits == 64 and outcome.if_index == 1 and outcome.oper_status == 1
        assert outcome.in_octets is not None and outcome.sys_uptime is not None
    assert cache == {(9, "lo"): 1}


def test_v3_errors_map_to_auth(snmpd: Daemon) -> None:
    wrong_auth, unknown_user, wrong_priv, bad_proto = probe_snmp_many_sync(
        [
            v3(snmpd, "shaaes", site_id=1, auth_key="not-the-key"),
            v3(snmpd, "shaaes", site_id=2, user="nobody-here"),
            v3(snmpd, "shaaes", site_id=3, priv_key="not-the-key"),
            v3(snmpd, "shaaes", site_id=4, auth_proto="ROT13"),
        ],
        timeout=0.5,
        retries=0,
    )
    assert wrong_auth.error is ErrorClass.AUTH and "digest" in (wrong_auth.error_detail or "")
    assert unknown_user.error is ErrorClass.AUTH and "user" in (unknown_user.error_detail or "")
    # net-snmp drops what it cannot decrypt without a report: on the wire that is silence.
    assert wrong_priv.error is ErrorClass.TIMEOUT
    assert bad_proto.error is ErrorClass.CONFIG


def test_mixed_call_keeps_order_and_reports_each(snmpd: Daemon) -> None:
    closed = free_udp_port()
    targets = [
        v2c(snmpd, site_id=1),
        v3(snmpd, "shaaes", site_id=2),
        SnmpTarget(site_id=3, host="127.0.0.1", port=closed, community="public", if_index=1),
        v2c(snmpd, site_id=4, community="wrong"),
        v3(snmpd, "sha256aes256", site_id=5),
    ]
    seen: list[int] = []
    outcomes = asyncio.run(
        probe_snmp_many(
            targets, timeout=0.4, retries=0, on_outcome=lambda o: seen.append(o.site_id)
        )
    )
    assert [o.site_id for o in outcomes] == [1, 2, 3, 4, 5]
    assert [o.ok for o in outcomes] == [True, True, False, False, True]
    assert outcomes[2].error is ErrorClass.REFUSED and outcomes[3].error is ErrorClass.TIMEOUT
    assert sorted(seen) == [1, 2, 3, 4, 5]


def test_many_probes_of_one_agent(snmpd: Daemon) -> None:
    stats = SnmpStats()
    outcomes = probe_snmp_many_sync(
        [v2c(snmpd, site_id=i) for i in range(3000)], concurrency=500, stats=stats
    )
    assert all(o.ok for o in outcomes)
    assert stats.max_in_flight <= 500 and stats.dropped == 0
    ts = sorted(o.ts for o in outcomes)
    assert ts[-1] - ts[0] < timedelta(seconds=30)
