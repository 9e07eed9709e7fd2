"""Bandwidth from two consecutive successful SNMP polls: pure functions, scalar and vectorised.

Definitions (also in the README):

- **Interval Δt.** The agent's own clock (sysUpTime, hundredths of a second) when it agrees with
  our wall clock to within ``max(2 s, 5 %)`` of the wall interval; otherwise the wall clock.
  sysUpTime is 32-bit and wraps after ~497 days: a decrease that matches the wall interval
  once 2^32 ticks are added is a wrap, not a reboot.
- **Reboot (counter reset).** The agent rebooted between the polls when sysUpTime went down
  (and is not a wrap) or when it is smaller than the time since our previous poll; or when a
  counter went down and a wrap is implausible (see below). A reboot gives no rate for that
  interval and records a reboot event (``uptime_decreased`` / ``counter_decreased``).
- **Wraps.** Counters wrap at 2^32 (ifInOctets) or 2^64 (ifHCInOctets); Δoctets is taken modulo
  that. When a counter went down the wrap is plausible only if the wrapped Δ gives a rate
  within 1.1 × ifHighSpeed (or, with no known speed, a Δ below half the counter range). At
  most one wrap per interval is assumed (a 32-bit counter on a fast link polled rarely can
  wrap more than once unnoticed; that is why ifHC* counters are read first).
- **Rate.** bps = Δoctets × 8 / Δt for in and out.
- **Bogus.** A rate above 1.1 × ifHighSpeed in either direction is discarded (both directions
  of the interval) and counted.
- A change of counter width (64 → 32-bit) or of interface index restarts the series (no rate,
  no reboot).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

import numpy as np
import numpy.typing as npt

TICKS_MODULUS: Final = 2**32
BOGUS_FACTOR: Final = 1.1
UPTIME_TOLERANCE_S: Final = 2.0
UPTIME_TOLERANCE_FRACTION: Final = 0.05


class RateStatus(IntEnum):
    """What became of one interval."""

    OK = 0
    FIRST = 1  # no previous sample
    UPTIME_DECREASED = 2  # reboot
    COUNTER_DECREASED = 3  # reboot: a counter went down and a wrap is implausible
    BOGUS = 4  # rate above 1.1 × ifHighSpeed, discarded
    NO_INTERVAL = 5  # Δt ≤ 0
    CHANGED = 6  # counter width or interface changed: series restarts

    @property
    def is_reboot(self) -> bool:
        """True for the two reboot statuses."""
        return self in (RateStatus.UPTIME_DECREASED, RateStatus.COUNTER_DECREASED)

    @property
    def reboot_reason(self) -> str | None:
        """The ``reboot_events.reason`` text, or None."""
        return {
            RateStatus.UPTIME_DECREASED: "uptime_decreased",
            RateStatus.COUNTER_DECREASED: "counter_decreased",
        }.get(self)


@dataclass(frozen=True, slots=True)
class CounterSample:
    """One successful poll: wall time (epoch s), sysUpTime ticks, octet counters."""

    ts: float
    sys_uptime: int | None
    in_octets: int
    out_octets: int
    bits: int  # 32 or 64
    if_index: int | None = None
    speed_mbps: float | None = None  # ifHighSpeed at this poll


@dataclass(frozen=True, slots=True)
class RateResult:
    """The rate for the interval ending at a poll, or why there is none."""

    status: RateStatus
    in_bps: float | None = None
    out_bps: float | None = None
    interval_s: float | None = None
    used_uptime: bool = False


def uptime_tolerance(wall_s: float) -> float:
    """How far sysUpTime may disagree with the wall clock and still be trusted."""
    return max(UPTIME_TOLERANCE_S, UPTIME_TOLERANCE_FRACTION * abs(wall_s))


def counter_delta(prev: int, cur: int, bits: int) -> int:
    """Δ of a ``bits``-wide counter from ``prev`` to ``cur``, assuming at most one wrap."""
    return (cur - prev) % (1 << bits)


def compute_rate(prev: CounterSample | None, cur: CounterSample) -> RateResult:
    """Return the rate between two consecutive successful polls of one site (see module doc)."""
    if prev is None:
        return RateResult(RateStatus.FIRST)
    if prev.bits != cur.bits or prev.if_index != cur.if_index:
        return RateResult(RateStatus.CHANGED)
    wall = cur.ts - prev.ts
    tol = uptime_tolerance(wall)
    interval = wall
    used_uptime = False
    if prev.sys_uptime is not None and cur.sys_uptime is not None:
        du = cur.sys_uptime - prev.sys_uptime
        if du < 0 and abs((du + TICKS_MODULUS) / 100.0 - wall) <= tol:
            interval, used_uptime = (du + TICKS_MODULUS) / 100.0, True
        elif du < 0 or cur.sys_uptime / 100.0 + tol < wall:
            return RateResult(RateStatus.UPTIME_DECREASED)
        elif abs(du / 100.0 - wall) <= tol:
            interval, used_uptime = du / 100.0, True
    if interval <= 0:
        return RateResult(RateStatus.NO_INTERVAL)
    speed_bps = (cur.speed_mbps or 0.0) * 1e6
    limit = BOGUS_FACTOR * speed_bps
    modulus = 1 << cur.bits
    deltas = []
    for before, after in ((prev.in_octets, cur.in_octets), (prev.out_octets, cur.out_octets)):
        delta = counter_delta(before, after, cur.bits)
        if after < before:
            plausible = delta * 8 / interval <= limit if speed_bps > 0 else delta < modulus // 2
            if not plausible:
                return RateResult(RateStatus.COUNTER_DECREASED)
        deltas.append(delta)
    in_bps, out_bps = deltas[0] * 8 / interval, deltas[1] * 8 / interval
    if speed_bps > 0 and (in_bps > limit or out_bps > limit):
        return RateResult(RateStatus.BOGUS, interval_s=interval, used_uptime=used_uptime)
    return RateResult(RateStatus.OK, in_bps, out_bps, interval, used_uptime)


@dataclass
class CounterArrays:
    """Many samples as parallel arrays (``present`` False marks a missing sample).

    ``sys_uptime`` and ``if_index`` use -1 for unknown; ``speed_mbps`` uses 0 for unknown;
    counters are uint64 (exact up to 2^64 - 1).
    """

    present: npt.NDArray[np.bool_]
    ts: npt.NDArray[np.float64]
    sys_uptime: npt.NDArray[np.int64]
    in_octets: npt.NDArray[np.uint64]
    out_octets: npt.NDArray[np.uint64]
    bits: npt.NDArray[np.int8]
    if_index: npt.NDArray[np.int64]
    speed_mbps: npt.NDArray[np.float64]

    @classmethod
    def from_samples(cls, samples: list[CounterSample | None]) -> CounterArrays:
        """Build arrays from scalar samples (tests and small inputs)."""
        n = len(samples)
        out = cls.empty(n)
        for i, s in enumerate(samples):
            if s is None:
                continue
            out.present[i] = True
            out.ts[i] = s.ts
            out.sys_uptime[i] = -1 if s.sys_uptime is None else s.sys_uptime
            out.in_octets[i] = s.in_octets
            out.out_octets[i] = s.out_octets
            out.bits[i] = s.bits
            out.if_index[i] = -1 if s.if_index is None else s.if_index
            out.speed_mbps[i] = s.speed_mbps or 0.0
        return out

    @classmethod
    def empty(cls, n: int) -> CounterArrays:
        """Arrays of length ``n`` with every sample missing."""
        return cls(
            present=np.zeros(n, dtype=np.bool_),
            ts=np.zeros(n, dtype=np.float64),
            sys_uptime=np.full(n, -1, dtype=np.int64),
            in_octets=np.zeros(n, dtype=np.uint64),
            out_octets=np.zeros(n, dtype=np.uint64),
            bits=np.zeros(n, dtype=np.int8),
            if_index=np.full(n, -1, dtype=np.int64),
            speed_mbps=np.zeros(n, dtype=np.float64),
        )

    def take(self, indices: Sequence[int] | npt.NDArray[np.int64]) -> CounterArrays:
        """The samples at ``indices``, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        return CounterArrays(**{name: arr[idx] for name, arr in vars(self).items()})


@dataclass
class RateArrays:
    """Vectorised ``RateResult``: status codes, rates (NaN when none), intervals."""

    status: npt.NDArray[np.int8]
    in_bps: npt.NDArray[np.float64]
    out_bps: npt.NDArray[np.float64]
    interval_s: npt.NDArray[np.float64]
    used_uptime: npt.NDArray[np.bool_]

    def result(self, i: int) -> RateResult:
        """The scalar result at ``i``."""
        status = RateStatus(int(self.status[i]))
        ok = status == RateStatus.OK
        has_interval = status in (RateStatus.OK, RateStatus.BOGUS)
        return RateResult(
            status,
            float(self.in_bps[i]) if ok else None,
            float(self.out_bps[i]) if ok else None,
            float(self.interval_s[i]) if has_interval else None,
            bool(self.used_uptime[i]) if has_interval else False,
        )


def compute_rates(prev: CounterArrays, cur: CounterArrays) -> RateArrays:
    """``compute_rate`` for many sites at once; ``cur`` samples must all be present."""
    n = len(cur.ts)
    status = np.full(n, RateStatus.OK, dtype=np.int8)
    undecided = np.ones(n, dtype=np.bool_)

    def settle(mask: npt.NDArray[np.bool_], code: RateStatus) -> None:
        hit = mask & undecided
        status[hit] = code
        undecided[hit] = False

    settle(~prev.present, RateStatus.FIRST)
    settle((prev.bits != cur.bits) | (prev.if_index != cur.if_index), RateStatus.CHANGED)

    wall = cur.ts - prev.ts
    tol = np.maximum(UPTIME_TOLERANCE_S, UPTIME_TOLERANCE_FRACTION * np.abs(wall))
    has_up = (prev.sys_uptime >= 0) & (cur.sys_uptime >= 0)
    du = (cur.sys_uptime - prev.sys_uptime).astype(np.float64)
    tick_wrap = has_up & (du < 0) & (np.abs((du + TICKS_MODULUS) / 100.0 - wall) <= tol)
    rebooted = (
        has_up & ~tick_wrap & ((du < 0) | (cur.sys_uptime.astype(np.float64) / 100.0 + tol < wall))
    )
    settle(rebooted, RateStatus.UPTIME_DECREASED)
    trust_up = has_up & ~tick_wrap & (np.abs(du / 100.0 - wall) <= tol)
    interval = np.where(
        tick_wrap, (du + TICKS_MODULUS) / 100.0, np.where(trust_up, du / 100.0, wall)
    )
    used_uptime = tick_wrap | trust_up
    settle(interval <= 0, RateStatus.NO_INTERVAL)

    safe_interval = np.where(interval > 0, interval, 1.0)
    mask64 = np.where(cur.bits == 32, np.uint64(0xFFFFFFFF), np.uint64(0xFFFFFFFFFFFFFFFF))
    half = np.where(cur.bits == 32, np.uint64(2**31), np.uint64(2**63))
    speed_bps = cur.speed_mbps * 1e6
    limit = BOGUS_FACTOR * speed_bps
    known_speed = speed_bps > 0
    rates = []
    implausible = np.zeros(n, dtype=np.bool_)
    for before, after in ((prev.in_octets, cur.in_octets), (prev.out_octets, cur.out_octets)):
        delta = (after - before) & mask64
        rate = delta.astype(np.float64) * 8.0 / safe_interval
        went_down = after < before
        plausible = np.where(known_speed, rate <= limit, delta < half)
        implausible |= went_down & ~plausible
        rates.append(rate)
    settle(implausible, RateStatus.COUNTER_DECREASED)
    settle(known_speed & ((rates[0] > limit) | (rates[1] > limit)), RateStatus.BOGUS)
    ok = status == RateStatus.OK
    return RateArrays(
        status=status,
        in_bps=np.where(ok, rates[0], np.nan),
        out_bps=np.where(ok, rates[1], np.nan),
        interval_s=interval,
        used_uptime=used_uptime,
    )
