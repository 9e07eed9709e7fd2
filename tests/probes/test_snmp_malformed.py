"""A misbehaving agent at the network edge: malformed datagrams are dropped and counted, never
end a probe early, never crash the round and never hold it past the target's own timeout.

The fake (tests/probes/snmp_daemons.FakeAgent) stands in only for what a real agent will not
do on purpose; the same engine is proven against snmpd and snmpsim in the other test files.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest

from probes.model import ErrorClass, SnmpTarget
from probes.snmp import SnmpStats, probe_snmp_many_sync
from tests.probes.snmp_daemons import GOOD_VALUES, FakeAgent
from tests.probes.snmp_engines import pytest_generate_tests, snmp_engine  # noqa: F401


@pytest.fixture
def fake() -> Iterator[FakeAgent]:
    with FakeAgent() as agent:
        yield agent


def target(agent: FakeAgent, mode: str, site_id: int = 1, **kw: object) -> SnmpTarget:
    return SnmpTarget(
        site_id=site_id,
        host="127.0.0.1",
        port=agent.port,
        community=mode,
        if_index=kw.get("if_index", 3),  # type: ignore[arg-type]
        if_name=kw.get("if_name"),  # type: ignore[arg-type]
    )


def probe(agent: FakeAgent, mode: str, **kw: object):
    stats = SnmpStats()
    [outcome] = probe_snmp_many_sync(
        [target(agent, mode)],
        timeout=0.3,
        retries=1,
        stats=stats,
        **kw,  # type: ignore[arg-type]
    )
    return outcome, stats


def test_good_answer(fake: FakeAgent) -> None:
    outcome, stats = probe(fake, "good")
    assert outcome.ok and outcome.in_octets == GOOD_VALUES["in"]
    assert outcome.out_octets == GOOD_VALUES["out"] and outcome.sys_uptime == GOOD_VALUES["uptime"]
    assert stats.dropped == 0


@pytest.mark.parametrize(
    ("mode", "counter"),
    [
        ("truncated", "malformed"),
        ("garbage", "malformed"),
        ("huge", "oversized"),
        ("wrong-source", "wrong_source"),
        ("wrong-community", "not_a_response"),
        ("report-pdu", "not_a_response"),
    ],
)
def test_bad_datagrams_are_dropped_and_the_probe_times_out(
    fake: FakeAgent, mode: str, counter: str
) -> None:
    started = time.monotonic()
    outcome, stats = probe(fake, mode)
    elapsed = time.monotonic() - started
    assert outcome.error is ErrorClass.TIMEOUT
    assert getattr(stats, counter) == 2  # one per attempt
    assert stats.responses == 0
    assert 0.6 <= elapsed < 0.6 + 1.0


@pytest.mark.parametrize(
    ("mode", "counter"),
    [
        ("garbage-then-good", "malformed"),
        ("wrong-rid-then-good", "unknown_request_id"),
        ("huge-then-good", "oversized"),
    ],
)
def test_the_right_answer_after_junk_is_taken(fake: FakeAgent, mode: str, counter: str) -> None:
    outcome, stats = probe(fake, mode)
    assert outcome.ok and outcome.in_octets == GOOD_VALUES["in"]
    assert getattr(stats, counter) == 1 and stats.retransmissions == 0


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("error-status", "error-status genErr at varbind 2"),
        ("wrong-varbinds", "not the OIDs"),
        ("wrong-types", "not Counter64"),
    ],
)
def test_answers_that_are_not_what_we_asked(fake: FakeAgent, mode: str, words: str) -> None:
    outcome, _ = probe(fake, mode)
    assert outcome.error is ErrorClass.BAD_RESPONSE
    assert words in (outcome.error_detail or "")


def test_walk_that_does_not_advance(fake: FakeAgent) -> None:
    stats = SnmpStats()
    looping, good = probe_snmp_many_sync(
        [
            target(fake, "walk-loop", 1, if_index=None, if_name="wan0"),
            target(fake, "good", 2, if_index=None, if_name="wan0"),
        ],
        timeout=0.3,
        stats=stats,
    )
    # The looping agent answers ifName.1 again and again: stopped after its second page.
    assert looping.error is ErrorClass.BAD_RESPONSE and "advance" in (looping.error_detail or "")
    assert good.ok and good.if_index == 5


def test_no_hc_counters_fall_back_to_32_bits(fake: FakeAgent) -> None:
    outcome, stats = probe(fake, "no-hc")
    assert outcome.ok and outcome.counter_bits == 32
    assert outcome.in_octets == GOOD_VALUES["in"] & 0xFFFFFFFF
    assert outcome.high_speed_mbps == GOOD_VALUES["speed"]
    assert stats.fallbacks_32bit == 1 and stats.requests_sent == 2


def test_dead_targets_do_not_delay_the_round(fake: FakeAgent) -> None:
    modes = ["good", "silent", "garbage", "huge", "delay-100"] * 40
    targets = [target(fake, mode, i) for i, mode in enumerate(modes)]
    started = time.monotonic()
    outcomes = probe_snmp_many_sync(targets, timeout=0.4, retries=1)
    elapsed = time.monotonic() - started
    assert [o.site_id for o in outcomes] == list(range(len(modes)))
    for mode, outcome in zip(modes, outcomes, strict=True):
        assert outcome.ok is (mode in ("good", "delay-100")), (mode, outcome)
    # Every dead target gives up after 2 × 0.4 s; the round is not longer than that (+ margin).
    assert 0.8 <= elapsed < 0.8 + 1.2


def test_concurrency_is_bounded(fake: FakeAgent) -> None:
    stats = SnmpStats()
    targets = [target(fake, "delay-40", i) for i in range(200)]
    started = time.monotonic()
    outcomes = probe_snmp_many_sync(targets, timeout=2.0, concurrency=10, stats=stats)
    elapsed = time.monotonic() - started
    assert all(o.ok for o in outcomes)
    assert stats.max_in_flight == 10 and fake.max_in_flight <= 10
    assert elapsed >= 200 / 10 * 0.04 * 0.9  # 20 waves of 40 ms: the bound really held


def test_sites_expected_slow_start_first_without_holding_up_the_rest(fake: FakeAgent) -> None:
    """Dead sites flagged from the last round take at most 80 % of the slots: the live ones
    behind them in the queue are all answered before the first dead one gives up."""
    dead = [dataclasses.replace(target(fake, "silent", i), expect_slow=True) for i in range(20)]
    live = [target(fake, "good", 100 + i) for i in range(100)]
    done_at: dict[int, float] = {}
    started = time.monotonic()
    outcomes = probe_snmp_many_sync(
        dead + live,
        timeout=0.4,
        retries=1,
        concurrency=10,
        on_outcome=lambda o: done_at.update({o.site_id: time.monotonic() - started}),
    )
    assert [o.ok for o in outcomes] == [False] * 20 + [True] * 100
    last_live = max(done_at[t.site_id] for t in live)
    first_dead = min(done_at[t.site_id] for t in dead)
    assert last_live < 0.4 < 0.8 <= first_dead  # dead: two attempts of 0.4 s
    assert max(done_at.values()) < 1.6 + 0.8  # 20 dead over 8 slots: two waves of 0.8 s


def test_a_site_whose_interface_is_not_yet_resolved_starts_first(fake: FakeAgent) -> None:
    """Finding an interface by name costs extra round trips (seconds on a slow link), so such a
    site starts first, even before the expected-slow; once its index is cached it queues like
    any other."""
    live = [target(fake, "delay-30", i) for i in range(5)]
    live[0] = dataclasses.replace(live[0], expect_slow=True)
    by_name = target(fake, "good", 99, if_index=None, if_name="wan0")
    done: list[int] = []
    cache: dict[tuple[int, str], int] = {}
    outcomes = probe_snmp_many_sync(
        [*live, by_name],
        timeout=1.0,
        concurrency=1,
        if_index_cache=cache,
        on_outcome=lambda o: done.append(o.site_id),
    )
    assert all(o.ok for o in outcomes) and outcomes[-1].if_index == 5
    assert done == [99, 0, 1, 2, 3, 4]
    done.clear()
    probe_snmp_many_sync(
        [*live, by_name],
        timeout=1.0,
        concurrency=1,
        if_index_cache=cache,
        on_outcome=lambda o: done.append(o.site_id),
    )
    assert done == [0, 1, 2, 3, 4, 99]


def test_a_failing_callback_does_not_wedge_the_round(fake: FakeAgent) -> None:
    calls: list[int] = []

    def explode(outcome: object) -> None:
        calls.append(1)
        raise RuntimeError("callback bug")

    with pytest.raises(RuntimeError, match="callback bug"):
        probe_snmp_many_sync(
            [target(fake, "good", i) for i in range(5)], timeout=0.3, on_outcome=explode
        )
    assert calls == [1]
