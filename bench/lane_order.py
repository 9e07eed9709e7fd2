"""Which order of the expected-slow lane ends a round soonest: a simulation of probes.lanes.

A round's length is bounded by its slots (2,000 in flight): a dead site holds one for its whole
timeout chain (SNMP 2 × 2 s, HTTP 2 × 5 s), a slow one for its answer time. ``load_targets``
decides the order in which the expected-slow start. This drives the real ``probes.lanes.Lanes``
(same fast reserve, same pop rule) through a discrete-event loop for several mixes of sites, and
prints the round's end for two orders of the slow lane:

- dead first: the sites that failed last round, then those that answered slowly;
- slow first: those that answered slowly, then those that failed (the order shipped).

"went down" is how many of the slow sites fail this round (flapping links, rain fade on VSAT):
they then hold their slot for the whole timeout chain. The lab mix is the 101,322-site lab
inventory's (3,280 dead, 1,900 answering in 1.2-1.8 s); the others are plausible field mixes.
This is a model of slot occupancy only (no CPU); ``bench/round.py`` measures the real round.

Usage: python bench/lane_order.py
"""

from __future__ import annotations

import heapq
import random

from probes.lanes import Lanes

CONCURRENCY = 2000


def round_end(slow_holds: list[float], fast_count: int, fast_hold: float) -> float:
    """Seconds until the last probe ends, slow-lane items started in the given order."""
    lanes: Lanes[float] = Lanes(CONCURRENCY)
    for hold in slow_holds:
        lanes.push(hold, slow=True)
    for _ in range(fast_count):
        lanes.push(fast_hold, slow=False)
    running: list[tuple[float, bool]] = []
    now = end = 0.0
    while lanes or running:
        while lanes and len(running) < CONCURRENCY:
            hold, slow = lanes.pop()
            heapq.heappush(running, (now + hold, slow))
        now, slow = heapq.heappop(running)
        end = max(end, now)
        if slow:
            lanes.slow_done()
    return end


def mix(
    name: str,
    kind: tuple[float, float],
    *,
    dead: int,
    slow: int,
    slow_s: tuple[float, float],
    fast: int,
    went_down: int,
    seed: int = 1,
) -> None:
    """Print the round's end under both orders for one mix; ``kind`` = (dead hold, fast hold)."""
    chain_s, fast_s = kind
    rnd = random.Random(seed)
    dead_holds = [chain_s] * dead
    slow_holds = [chain_s if i < went_down else rnd.uniform(*slow_s) for i in range(slow)]
    rnd.shuffle(slow_holds)
    dead_first = round_end(dead_holds + slow_holds, fast, fast_s)
    slow_first = round_end(slow_holds + dead_holds, fast, fast_s)
    print(f"{name:<66} {dead_first:7.2f} s {slow_first:7.2f} s")


SNMP = (4.0, 0.015)  # 2 attempts of 2 s; a live answer in ~15 ms under load
HTTP = (10.0, 0.03)  # 2 attempts of 5 s
# (label, kind, dead, slow, slow answer range, fast bulk, slow sites going down: each count)
MIXES: list[
    tuple[str, tuple[float, float], int, int, tuple[float, float], int, tuple[int, ...]]
] = [
    ("SNMP lab: 3,280 dead, 1,900 slow 1.2-1.8 s", SNMP, 3280, 1900, (1.2, 1.8), 90_000, (0, 10)),
    (
        "SNMP: 3,000 dead, 30,000 satellite 0.6-0.8 s",
        SNMP,
        3000,
        30_000,
        (0.6, 0.8),
        60_000,
        (0, 100),
    ),
    ("SNMP: 300 dead, 5,000 satellite", SNMP, 300, 5000, (0.6, 0.8), 90_000, (0, 20)),
    ("HTTP: 3,000 silent, 30,000 satellite", HTTP, 3000, 30_000, (0.6, 0.8), 60_000, (0, 100)),
    ("HTTP: 300 silent, 5,000 satellite", HTTP, 300, 5000, (0.6, 0.8), 90_000, (0, 20)),
]


def main() -> None:
    """Print the table."""
    print(f"{'mix (slow lane; fast bulk)':<66} {'dead 1st':>9} {'slow 1st':>9}")
    for label, kind, dead, slow, slow_s, fast, downs in MIXES:
        for down in downs:
            mix(
                f"{label}, {down} went down; {fast // 1000}k",
                kind,
                dead=dead,
                slow=slow,
                slow_s=slow_s,
                fast=fast,
                went_down=down,
            )


if __name__ == "__main__":
    main()
