"""The scheduler's wiring: APScheduler 3 jobs for probe batches, rollups and retention.

Jobs live in PostgreSQL (APScheduler's SQLAlchemyJobStore on the ``apscheduler_jobs`` table
that migration 0004 creates), with stable ids and ``replace_existing``, so a restart resumes
the same timetable without duplicates. The job functions are module-level (the job store keeps
a reference to them, not a pickled closure) and find the engine and settings of the running
process in ``_runtime``. What a job does lives in ``results/``; this module only wires it.

Jobs (UTC):
- ``probe-batch-<b>``: every ``probe_interval`` seconds at ``b·interval/B`` past each interval
  (``results.batches``), max_instances=1, coalesce, misfire grace of half an interval;
- ``rollup-hourly``: at minute 5 of each hour, the previous hour and any hour of the last two
  days with rounds written after its rollup (rounds replayed late from the spool);
- ``rollup-daily``: at 00:20, yesterday (and any stale day of the last week) per site,
  municipality, state and provider;
- ``retention``: at 00:50, raw partitions past ``raw_retention_days`` and partitions ahead.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, text

from core.db import make_engine
from core.errors import Conflict
from core.settings import Settings
from results.batches import (
    BatchRun,
    RoundCounts,
    RoundRunner,
    batch_count,
    batch_start_date,
    run_batch,
)
from results.retention import apply_retention, ensure_partitions_ahead
from results.rollups import (
    recent_hours,
    rollup_day_parallel,
    rollup_hour,
    stale_days,
    stale_hours,
)

log = logging.getLogger("conectado.scheduler")


class StoppingSubmitFilter(logging.Filter):
    """Rewords APScheduler 3's "Error submitting job" traceback when the cause is its own stop.

    Its loop can hand a due job to the executor just after ``shutdown`` closed it (a known race,
    agronholm/apscheduler#285 and #985). The job is not started, that one run is skipped and the
    job keeps its next run time, as a run missed while stopped would be; nothing was begun, so
    nothing is half-done. Any other submit error passes as is.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Turn that one record into an INFO line without a traceback; keep every record."""
        exc = record.exc_info[1] if record.exc_info else None
        if (
            isinstance(exc, RuntimeError)
            and "after shutdown" in str(exc)
            and str(record.msg).startswith("Error submitting job")
            and isinstance(record.args, tuple)
            and record.args
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = 'job "%s" not started: the scheduler is stopping'
            record.args = (record.args[0],)
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("apscheduler.scheduler").addFilter(StoppingSubmitFilter())

PROBE_JOB_PREFIX = "probe-batch-"
JOB_TABLE = "apscheduler_jobs"


def default_probe(engine: Engine, settings: Settings) -> RoundRunner:
    """The production round: results.rounds.run_round over the sites of a batch."""
    from results.rounds import run_round

    def probe(where: str) -> RoundCounts:
        return run_round(engine, settings, sites_where=where)

    return probe


@dataclass
class _Runtime:
    """What the job functions of this process use (set while a scheduler runs)."""

    engine: Engine
    settings: Settings
    probe: RoundRunner
    runner: str
    on_batch: Callable[[BatchRun], None] | None = None
    batches_run: list[BatchRun] = field(default_factory=list)


_runtime: _Runtime | None = None
_runtime_lock = threading.Lock()


def _current() -> _Runtime:
    if _runtime is None:
        raise Conflict(
            "No scheduler runs in this process; start one with `conectado scheduler run`."
        )
    return _runtime


def probe_batch_job(batch: int, batches: int) -> None:
    """Job: probe one batch in its slot, then update incidents; logs one line."""
    rt = _current()
    result = run_batch(
        rt.engine, rt.settings, batch=batch, batches=batches, probe=rt.probe, runner=rt.runner
    )
    (log.warning if result.outcome == "failed" else log.info)("%s", result.describe())
    if rt.on_batch is not None:
        rt.on_batch(result)


def hourly_rollup_job() -> None:
    """Job: roll up the previous UTC hour and any recent hour with rounds written late."""
    rt = _current()
    now = datetime.now(UTC)
    with rt.engine.connect() as conn:
        hours = sorted(set(recent_hours(now, 1)) | set(stale_hours(conn, now)))
    for hour in hours:
        with rt.engine.begin() as conn:
            r = rollup_hour(conn, hour)
        log.info(
            "rollup %s: %d sites from %d raw rows in %.2f s",
            f"{hour:%Y-%m-%d %H}h",
            r.site_rows,
            r.raw_rows,
            r.seconds,
        )


def daily_rollup_job() -> None:
    """Job: roll up yesterday (sites, municipalities, states, providers) and any stale day."""
    rt = _current()
    now = datetime.now(UTC)
    with rt.engine.connect() as conn:
        days = sorted({now.date() - timedelta(days=1), *stale_days(conn, now)})
    for day in days:
        r = rollup_day_parallel(rt.engine, day, workers=rt.settings.rollup_workers)
        log.info(
            "rollup %s: %d sites and %d groups from %d raw rows in %.1f s",
            day,
            r.site_rows,
            r.group_rows,
            r.raw_rows,
            r.seconds,
        )


def retention_job() -> None:
    """Job: drop raw partitions older than the retention and create the coming ones."""
    rt = _current()
    report = apply_retention(rt.engine, rt.settings, now=datetime.now(UTC))
    log.info(
        "retention: dropped %d partitions %s, rolled up first %s, created %d ahead",
        len(report.dropped),
        report.dropped,
        report.rolled_up_first,
        report.partitions_created,
    )


@dataclass(frozen=True)
class JobSpec:
    """One job as the scheduler should hold it."""

    id: str
    func: Callable[..., None]
    trigger: Any
    args: tuple[int, ...] = ()
    misfire_grace_time: int = 600
    name: str = ""


def desired_jobs(settings: Settings, batches: int) -> list[JobSpec]:
    """The full timetable for ``batches`` probe batches plus rollups and retention."""
    interval = settings.probe_interval
    grace = max(1, interval // 2)
    jobs = [
        JobSpec(
            f"{PROBE_JOB_PREFIX}{b}",
            probe_batch_job,
            IntervalTrigger(
                seconds=interval, start_date=batch_start_date(interval, b, batches), timezone=UTC
            ),
            (b, batches),
            grace,
            f"probe batch {b + 1}/{batches}",
        )
        for b in range(batches)
    ]
    jobs += [
        JobSpec(
            "rollup-hourly",
            hourly_rollup_job,
            CronTrigger(minute=5, timezone=UTC),
            name="hourly rollups",
        ),
        JobSpec(
            "rollup-daily",
            daily_rollup_job,
            CronTrigger(hour=0, minute=20, timezone=UTC),
            misfire_grace_time=6 * 3600,
            name="daily rollups",
        ),
        JobSpec(
            "retention",
            retention_job,
            CronTrigger(hour=0, minute=50, timezone=UTC),
            misfire_grace_time=12 * 3600,
            name="retention",
        ),
    ]
    return jobs


class ConectadoScheduler:
    """A BackgroundScheduler on the PostgreSQL job store with Conectado's timetable."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        probe: RoundRunner | None = None,
        runner: str | None = None,
        on_batch: Callable[[BatchRun], None] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.probe = probe or default_probe(engine, settings)
        self.runner = runner or f"{socket.gethostname()}:{os.getpid()}"
        self.on_batch = on_batch
        self.batches = 0
        self._store_engine: Engine | None = None
        self._scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        """Register this process's runtime, sync the timetable into the job store and run."""
        global _runtime
        with _runtime_lock:
            if _runtime is not None:
                raise Conflict("A scheduler already runs in this process.")
            _runtime = _Runtime(self.engine, self.settings, self.probe, self.runner, self.on_batch)
        try:
            with self.engine.begin() as conn:
                self.batches = batch_count(conn, self.settings)
                ensure_partitions_ahead(conn, datetime.now(UTC).date())
            url = self.engine.url.render_as_string(hide_password=False)
            self._store_engine = make_engine(url, pool_size=2, application_name="conectado-jobs")
            sched = BackgroundScheduler(
                jobstores={
                    "default": SQLAlchemyJobStore(engine=self._store_engine, tablename=JOB_TABLE)
                },
                executors={"default": ThreadPoolExecutor(self.settings.scheduler_workers)},
                job_defaults={"coalesce": True, "max_instances": 1},
                timezone=UTC,
            )
            sched.add_listener(_log_skipped, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
            sched.start(paused=True)
            self._scheduler = sched
            self._sync_jobs(sched)
            sched.resume()
        except BaseException:
            self._release()
            raise
        log.info(
            "scheduler %s started: %d probe batches every %d s, jobs in %s",
            self.runner,
            self.batches,
            self.settings.probe_interval,
            JOB_TABLE,
        )

    def _sync_jobs(self, sched: BackgroundScheduler) -> None:
        wanted = desired_jobs(self.settings, self.batches)
        ids = {j.id for j in wanted}
        for job in sched.get_jobs():
            if job.id.startswith(PROBE_JOB_PREFIX) and job.id not in ids:
                sched.remove_job(job.id)
        for spec in wanted:
            sched.add_job(
                spec.func,
                spec.trigger,
                args=spec.args,
                id=spec.id,
                name=spec.name or spec.id,
                replace_existing=True,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=spec.misfire_grace_time,
            )

    def jobs(self) -> list[tuple[str, datetime | None]]:
        """The scheduled jobs and their next run times."""
        if self._scheduler is None:
            return []
        return [(j.id, j.next_run_time) for j in self._scheduler.get_jobs()]

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop scheduling; with ``wait`` the jobs in flight finish first."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=wait)
            self._scheduler = None
        self._release()
        log.info("scheduler %s stopped", self.runner)

    def _release(self) -> None:
        global _runtime
        with _runtime_lock:
            _runtime = None
        if self._store_engine is not None:
            self._store_engine.dispose()
            self._store_engine = None


def _log_skipped(event: JobEvent) -> None:
    what = "missed its time" if event.code == EVENT_JOB_MISSED else "still running"
    log.warning("job %s skipped (%s); the next run is coalesced", event.job_id, what)


@dataclass(frozen=True)
class StoredJob:
    """A job as the job store holds it (read without unpickling)."""

    id: str
    next_run_time: datetime | None


def stored_jobs(engine: Engine) -> list[StoredJob]:
    """The jobs in the PostgreSQL job store, soonest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT id, next_run_time FROM {JOB_TABLE} ORDER BY next_run_time, id")
        ).all()
    return [
        StoredJob(
            r.id,
            None if r.next_run_time is None else datetime.fromtimestamp(r.next_run_time, tz=UTC),
        )
        for r in rows
    ]


def run_forever(engine: Engine, settings: Settings, *, probe: RoundRunner | None = None) -> int:
    """Run the scheduler until SIGTERM/SIGINT, then let batches in flight finish; exit code."""
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: finishing the batches in flight", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    # `kill -USR1 <pid>` writes every thread's stack to stderr (the log): what a scheduler that
    # seems stuck is doing, without stopping it.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    sched = ConectadoScheduler(engine, settings, probe=probe)
    try:
        sched.start()
        while not stop.wait(3600):
            pass
    finally:
        sched.shutdown(wait=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        faulthandler.unregister(signal.SIGUSR1)
    return 0
