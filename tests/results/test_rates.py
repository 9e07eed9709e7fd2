"""Rate math: wraps at 2^32 and 2^64, reboots, bogus rates, sysUpTime versus wall clock."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from results.rates import (
    TICKS_MODULUS,
    CounterArrays,
    CounterSample,
    RateStatus,
    compute_rate,
    compute_rates,
)

T0 = 1_700_000_000.0


def sample(
    ts: float = T0,
    up: int | None = 1_000_000,
    i: int = 0,
    o: int = 0,
    bits: int = 64,
    speed: float | None = 1000.0,
    if_index: int | None = 2,
) -> CounterSample:
    return CounterSample(ts, up, i, o, bits, if_index, speed)


def test_plain_rate_uses_sysuptime_when_consistent() -> None:
    prev = sample(i=1_000, o=2_000)
    # agent says 300.00 s passed, our clock says 300.7 s (the reply was slow)
    cur = sample(ts=T0 + 300.7, up=1_000_000 + 30_000, i=1_000 + 37_500_000, o=2_000 + 3_750_000)
    r = compute_rate(prev, cur)
    assert r.status == RateStatus.OK and r.used_uptime
    assert r.interval_s == 300.0
    assert r.in_bps == 1_000_000.0 and r.out_bps == 100_000.0


def test_wall_clock_when_sysuptime_disagrees() -> None:
    prev = sample()
    cur = sample(ts=T0 + 300, up=1_000_000 + 20_000, i=30_000_000)  # agent clock 200 s: off
    r = compute_rate(prev, cur)
    assert r.status == RateStatus.OK and not r.used_uptime
    assert r.interval_s == 300 and r.in_bps == 800_000.0


def test_wall_clock_when_no_sysuptime() -> None:
    r = compute_rate(sample(up=None), sample(ts=T0 + 60, up=None, i=7_500_000))
    assert r.status == RateStatus.OK and not r.used_uptime and r.in_bps == 1_000_000.0


def test_32_bit_wrap() -> None:
    prev = sample(i=2**32 - 1_000, o=5, bits=32, speed=100)
    cur = sample(ts=T0 + 300, up=1_030_000, i=2_000, o=10, bits=32, speed=100)
    r = compute_rate(prev, cur)
    assert r.status == RateStatus.OK
    assert r.in_bps == 3_000 * 8 / 300 and r.out_bps == 5 * 8 / 300


def test_64_bit_wrap() -> None:
    prev = sample(i=2**64 - 10, o=2**64 - 1)
    cur = sample(ts=T0 + 10, up=1_001_000, i=90, o=0)
    r = compute_rate(prev, cur)
    assert r.status == RateStatus.OK
    assert r.in_bps == 100 * 8 / 10 and r.out_bps == 1 * 8 / 10


def test_reboot_when_sysuptime_goes_down() -> None:
    prev = sample(i=10**9)
    cur = sample(ts=T0 + 300, up=5_000, i=10**6)
    assert compute_rate(prev, cur).status == RateStatus.UPTIME_DECREASED


def test_reboot_when_uptime_is_shorter_than_the_gap() -> None:
    # Polled again after a day; the agent has been up one hour: it rebooted in between,
    # even though its uptime is now larger than at our previous poll.
    prev = sample(up=10_000, i=10**9)
    cur = sample(ts=T0 + 86_400, up=360_000, i=10**9 + 5)
    assert compute_rate(prev, cur).status == RateStatus.UPTIME_DECREASED


def test_sysuptime_wrap_is_not_a_reboot() -> None:
    prev = sample(up=TICKS_MODULUS - 10_000, i=0)
    cur = sample(ts=T0 + 300, up=20_000, i=3_000_000)
    r = compute_rate(prev, cur)
    assert r.status == RateStatus.OK and r.used_uptime and r.interval_s == 300.0


def test_counter_going_down_without_plausible_wrap_is_a_reboot() -> None:
    prev = sample(i=5 * 10**9, speed=100)
    cur = sample(ts=T0 + 300, up=1_030_000, i=10**6, speed=100)
    assert compute_rate(prev, cur).status == RateStatus.COUNTER_DECREASED
    # without a known speed a 64-bit decrease is never a plausible wrap either
    prev2 = sample(i=5 * 10**9, speed=None)
    cur2 = sample(ts=T0 + 300, up=1_030_000, i=10**6, speed=None)
    assert compute_rate(prev2, cur2).status == RateStatus.COUNTER_DECREASED


def test_rate_above_1_1_times_speed_is_bogus() -> None:
    prev = sample(speed=10)
    just_ok = sample(ts=T0 + 100, up=1_010_000, i=int(11e6 * 100 / 8), speed=10)
    too_fast = sample(ts=T0 + 100, up=1_010_000, i=int(11e6 * 100 / 8) + 1000, speed=10)
    assert compute_rate(prev, just_ok).status == RateStatus.OK
    r = compute_rate(prev, too_fast)
    assert r.status == RateStatus.BOGUS and r.in_bps is None


def test_first_sample_and_changed_series() -> None:
    assert compute_rate(None, sample()).status == RateStatus.FIRST
    assert compute_rate(sample(bits=64), sample(ts=T0 + 1, bits=32)).status == RateStatus.CHANGED
    assert (
        compute_rate(sample(if_index=2), sample(ts=T0 + 1, if_index=3)).status == RateStatus.CHANGED
    )


def test_no_interval() -> None:
    assert compute_rate(sample(up=None), sample(up=None)).status == RateStatus.NO_INTERVAL


# -- properties -----------------------------------------------------------------------------
bits_st = st.sampled_from([32, 64])


@st.composite
def pairs(draw: st.DrawFn) -> tuple[CounterSample | None, CounterSample]:
    bits = draw(bits_st)
    top = 2**bits - 1
    counter = st.one_of(
        st.integers(0, top),
        st.sampled_from([0, 1, top, top - 1, 2**31, 2**32 - 1, min(2**32, top), 2**63 % (top + 1)]),
    )
    speed = draw(st.one_of(st.none(), st.sampled_from([0.0, 10.0, 100.0, 1000.0, 10_000.0])))
    up0 = draw(st.one_of(st.none(), st.integers(0, TICKS_MODULUS - 1)))
    gap = draw(st.floats(-5, 100_000, allow_nan=False))
    drift = draw(st.integers(-1_000, 1_000))  # ticks
    skew = draw(st.one_of(st.just(0.0), st.floats(-0.1, 0.1)))  # agent clock vs ours
    if up0 is None:
        up1 = None
    else:
        up1 = draw(
            st.one_of(
                st.just((up0 + int(gap * 100 * (1 + skew)) + drift) % TICKS_MODULUS),
                st.integers(0, TICKS_MODULUS - 1),
            )
        )
    prev = CounterSample(T0, up0, draw(counter), draw(counter), bits, 2, speed)
    cur_bits = draw(st.one_of(st.just(bits), bits_st))
    ctop = 2**cur_bits - 1
    cur = CounterSample(
        T0 + gap,
        up1,
        min(draw(counter), ctop),
        min(draw(counter), ctop),
        cur_bits,
        draw(st.sampled_from([2, 2, 2, 3])),
        speed,
    )
    return (None if draw(st.integers(0, 20)) == 0 else prev), cur


@settings(max_examples=150, deadline=None)
@given(st.lists(pairs(), min_size=1, max_size=25))
def test_vectorised_agrees_with_scalar(
    items: list[tuple[CounterSample | None, CounterSample]],
) -> None:
    prevs = [p for p, _ in items]
    curs: list[CounterSample | None] = [c for _, c in items]
    arrays = compute_rates(CounterArrays.from_samples(prevs), CounterArrays.from_samples(curs))
    for i, (prev, cur) in enumerate(items):
        assert arrays.result(i) == compute_rate(prev, cur), (prev, cur)


@settings(max_examples=300, deadline=None)
@given(pairs())
def test_ok_rates_reproduce_the_modular_delta(
    pair: tuple[CounterSample | None, CounterSample],
) -> None:
    prev, cur = pair
    r = compute_rate(prev, cur)
    if r.status != RateStatus.OK:
        return
    assert prev is not None and r.interval_s and r.in_bps is not None and r.out_bps is not None
    assert r.in_bps >= 0 and r.out_bps >= 0
    expect_in = (cur.in_octets - prev.in_octets) % 2**cur.bits
    assert math.isclose(r.in_bps * r.interval_s / 8, expect_in, rel_tol=1e-9, abs_tol=1e-6)
    if cur.speed_mbps:
        assert r.in_bps <= 1.1 * cur.speed_mbps * 1e6


@settings(max_examples=200, deadline=None)
@given(
    bits=bits_st,
    start=st.integers(0, 2**64 - 1),
    step=st.integers(0, 10**9),
    seconds=st.integers(1, 3600),
)
def test_any_single_wrap_is_recovered(bits: int, start: int, step: int, seconds: int) -> None:
    modulus = 2**bits
    start %= modulus
    prev = sample(i=start, o=start, bits=bits, speed=None)
    cur = sample(
        ts=T0 + seconds,
        up=1_000_000 + seconds * 100,
        i=(start + step) % modulus,
        o=(start + step) % modulus,
        bits=bits,
        speed=None,
    )
    r = compute_rate(prev, cur)
    assert r.status == RateStatus.OK
    assert r.in_bps == step * 8 / seconds


def test_compute_rates_handles_100k_sites_at_once() -> None:
    n = 100_000
    rng = np.random.default_rng(1)
    prev = CounterArrays.empty(n)
    prev.present[:] = True
    prev.ts[:] = T0
    prev.sys_uptime[:] = 1_000_000
    prev.in_octets[:] = rng.integers(0, 2**63, n, dtype=np.uint64)
    prev.out_octets[:] = prev.in_octets
    prev.bits[:] = 64
    prev.if_index[:] = 1
    cur = CounterArrays(**{k: v.copy() for k, v in vars(prev).items()})
    cur.ts[:] = T0 + 300
    cur.sys_uptime[:] = 1_030_000
    cur.in_octets += np.uint64(3_750_000)
    cur.speed_mbps[:] = 100
    rates = compute_rates(prev, cur)
    assert (rates.status == RateStatus.OK).all()
    assert np.allclose(rates.in_bps, 100_000.0) and np.allclose(rates.out_bps, 0.0)
