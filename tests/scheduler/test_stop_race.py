"""APScheduler 3's submit-after-shutdown race, driven through the library's own loop."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import pytest
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from scheduler import StoppingSubmitFilter


def _job() -> None:
    pass


def test_a_job_due_as_the_executor_closes_is_one_info_line_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What a stop can leave in the log: the job was not started and stays due."""
    assert any(
        isinstance(f, StoppingSubmitFilter)
        for f in logging.getLogger("apscheduler.scheduler").filters
    )
    executor = ThreadPoolExecutor(2)
    sched = BackgroundScheduler(executors={"default": executor}, timezone=UTC)
    sched.start(paused=True)
    try:
        sched.add_job(_job, "interval", hours=1, id="batch-7", next_run_time=datetime.now(UTC))
        executor.shutdown(wait=True)  # what shutdown() does while the loop may be waking up
        with caplog.at_level(logging.INFO, logger="apscheduler.scheduler"):
            sched.resume()  # the loop wakes and hands the due job to the closed pool
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                "_job (trigger" in r.getMessage() for r in caplog.records
            ):
                time.sleep(0.02)
        job = sched.get_job("batch-7")
        assert job is not None and job.next_run_time > datetime.now(UTC)  # kept, next run ahead
    finally:
        sched.shutdown(wait=False)
    about_job = [r for r in caplog.records if "_job (trigger" in r.getMessage()]
    assert about_job, "the library did not try to submit the job"
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in about_job), [
        (r.levelname, r.getMessage()) for r in about_job
    ]
    assert about_job[0].getMessage().endswith("not started: the scheduler is stopping")
