from __future__ import annotations

import pytest

from core.settings import Settings
from results.batches import batch_threads


@pytest.mark.parametrize(
    ("interval", "batches", "threads"),
    [
        (60, 39, 10),  # the demo: 39 batches a minute, each up to 2 × 5 s + 2 s
        (300, 39, 4),  # the default interval: the setting's 4 threads are plenty
        (60, 1, 4),
        (30, 80, 40),
    ],
)
def test_threads_cover_every_batch_of_an_interval_running_to_its_timeouts(
    interval: int, batches: int, threads: int
) -> None:
    cfg = Settings(probe_interval=interval)
    assert batch_threads(cfg, batches) == threads
    worst_s = max(cfg.snmp_timeout, cfg.http_timeout) * (cfg.probe_retries + 1) + 2.0
    assert batch_threads(cfg, batches) * interval >= batches * worst_s


def test_the_setting_is_a_floor_and_longer_timeouts_need_more_threads() -> None:
    assert batch_threads(Settings(probe_interval=300, scheduler_workers=16), 39) == 16
    short = batch_threads(Settings(probe_interval=60, http_timeout=1.0, snmp_timeout=1.0), 39)
    long = batch_threads(Settings(probe_interval=60, http_timeout=10.0), 39)
    assert short < 10 < long
