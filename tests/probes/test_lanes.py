"""The two-lane queue that decides which probe takes the next free slot."""

from __future__ import annotations

import pytest

from probes.lanes import Lanes


def test_slow_lane_goes_first_but_leaves_the_reserve_to_the_fast_lane() -> None:
    lanes: Lanes[str] = Lanes(10, fast_reserve=0.2)
    for i in range(20):
        lanes.push(f"slow{i}", slow=True)
    for i in range(5):
        lanes.push(f"fast{i}", slow=False)
    started = [lanes.pop() for _ in range(10)]  # ten free slots
    assert [item for item, _ in started[:8]] == [f"slow{i}" for i in range(8)]
    assert [item for item, _ in started[8:]] == ["fast0", "fast1"]
    assert [slow for _, slow in started] == [True] * 8 + [False] * 2
    # A fast probe ends: its slot goes to the next fast one while the slow lane is at its cap.
    assert lanes.pop() == ("fast2", False)
    # A slow probe ends: the slow lane may start one more.
    lanes.slow_done()
    assert lanes.pop() == ("slow8", True)


def test_a_lane_that_runs_dry_leaves_every_slot_to_the_other() -> None:
    lanes: Lanes[int] = Lanes(4, fast_reserve=0.5)
    for i in range(6):
        lanes.push(i, slow=True)
    assert [lanes.pop() for _ in range(4)] == [(0, True), (1, True), (2, True), (3, True)]
    fast: Lanes[int] = Lanes(4, fast_reserve=0.5)
    for i in range(6):
        fast.push(i, slow=False)
    assert [item for item, _ in (fast.pop() for _ in range(6))] == list(range(6))
    with pytest.raises(IndexError):
        fast.pop()
    assert not fast and len(lanes) == 2


def test_retries_go_first_and_a_fast_probe_that_turned_slow_counts_against_the_slow_cap() -> None:
    lanes: Lanes[str] = Lanes(10, fast_reserve=0.2)  # slow cap 8
    for i in range(10):
        lanes.push(f"slow{i}", slow=True)
    lanes.push("fast", slow=False)
    for _ in range(7):
        lanes.pop()
    lanes.turned_slow()  # a fast-lane probe timed out once: now 8 slow in flight
    assert lanes.pop() == ("fast", False)
    lanes.push_front("retry", slow=True)
    lanes.slow_done()
    assert lanes.pop() == ("retry", True)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        Lanes(0)
    with pytest.raises(ValueError, match="fast_reserve"):
        Lanes(10, fast_reserve=1.0)
    assert Lanes(1).slow_cap == 1
