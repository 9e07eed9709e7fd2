"""Probe batches: which sites a batch holds, when it runs, and one run per batch and slot.

A probe interval of I seconds is split into B batches by site id (``id % B``). Batch b runs
at ``b·I/B`` seconds past each multiple of I since the Unix epoch, so every scheduler process
agrees on the timetable. The interval that a run belongs to is its *slot*; a run first takes a
PostgreSQL advisory lock for its batch (held on its own session for the whole run, so two
processes never run the same batch at once) and then claims its (batch, slot) row in
``scheduler_batch_runs`` (so a batch is probed once per slot even if two schedulers fire it).
After the round is written, the incident state machine runs over every site, unless one is
running or ran less than ``incident_evaluation_gap_s`` ago: the next one covers this batch.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection, Engine, text

from core.errors import InvalidInput
from core.settings import Settings
from results.incidents import (
    EvaluationLeft,
    IncidentChanges,
    evaluate_incidents,
    evaluate_incidents_if_due,
)
from results.spool import FlushReport

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SITES_PER_AUTO_BATCH = 2500
LOCK_CLASS = 0x434E5442  # "CNTB": the advisory-lock namespace of probe batches

PROBED_SITES_SQL = """
SELECT count(*) FROM sites
WHERE status IN ('active', 'installed') AND (mgmt_ip IS NOT NULL OR http_url IS NOT NULL)
"""


class RoundCounts(Protocol):
    """What the scheduler needs from a written probe round (results.rounds.RoundSummary)."""

    @property
    def round_id(self) -> str:
        """The round's id as recorded in probe_rounds."""
        ...

    @property
    def sites(self) -> int:
        """Sites probed."""
        ...

    @property
    def up(self) -> int:
        """Sites up."""
        ...

    @property
    def degraded(self) -> int:
        """Sites degraded."""
        ...

    @property
    def down(self) -> int:
        """Sites down."""
        ...

    @property
    def spooled(self) -> bool:
        """True when the database was unreachable and the round waits in the spool."""
        ...

    @property
    def flushed(self) -> FlushReport | None:
        """What writing the spool (rounds of an earlier outage) did before this round."""
        ...


RoundRunner = Callable[[str], RoundCounts]
"""Runs one probe round over the sites matching an SQL predicate on ``sites`` (alias ``s``)."""


@dataclass(frozen=True)
class BatchRun:
    """The outcome of one scheduled batch: probed, skipped (and why) or failed."""

    batch: int
    batches: int
    slot_start: datetime
    outcome: str  # done | failed | skipped_locked | skipped_done
    seconds: float = 0.0
    sites: int = 0
    up: int = 0
    degraded: int = 0
    down: int = 0
    round_id: str | None = None
    incidents: IncidentChanges | None = None
    error: str | None = None
    spooled: bool = False
    incidents_deferred: str | None = None  # why incidents were left to the next evaluation
    flushed: FlushReport | None = None  # spooled rounds written before this one

    def describe(self) -> str:
        """One log line for people: what ran, what it saw, how long it took."""
        head = f"batch {self.batch + 1}/{self.batches} slot {self.slot_start:%H:%M:%S}"
        if self.outcome == "skipped_locked":
            return f"{head}: skipped, another scheduler is running it"
        if self.outcome == "skipped_done":
            return f"{head}: skipped, already probed in this slot"
        if self.outcome == "failed":
            return f"{head}: FAILED after {self.seconds:.2f} s: {self.error}"
        line = (
            f"{head}: {self.sites:,} sites, {self.up:,} up, {self.degraded:,} degraded, "
            f"{self.down:,} down in {self.seconds:.2f} s"
        )
        line += self._spool_note()
        if self.spooled:
            return line + "; database unreachable: results spooled, incidents not updated"
        if self.incidents_deferred:
            return line + f"; incidents left to the next evaluation ({self.incidents_deferred})"
        inc = self.incidents or IncidentChanges()
        return (
            line
            + f"; incidents +{inc.opened} -{inc.closed}"
            + (f", {inc.suppressed} suppressed by maintenance" if inc.suppressed else "")
        )

    def _spool_note(self) -> str:
        report = self.flushed
        if report is None or not (report.written or report.already_written or report.rejected):
            return ""
        note = f"; wrote {report.written} spooled round(s) from an outage first"
        if report.already_written:
            note += f" ({report.already_written} were already in)"
        if report.rejected:
            note += f", {len(report.rejected)} refused and moved to the spool's rejected folder"
        if report.remaining:
            note += f", {report.remaining} still waiting"
        return note


def batch_count(conn: Connection, settings: Settings) -> int:
    """Batches per interval: the setting, or one per ~2,500 probed sites (at least one)."""
    if settings.probe_batches:
        return settings.probe_batches
    sites = int(conn.execute(text(PROBED_SITES_SQL)).scalar_one())
    return max(1, math.ceil(sites / SITES_PER_AUTO_BATCH))


def _check(batch: int, batches: int) -> None:
    if batches < 1 or not 0 <= batch < batches:
        raise InvalidInput(f"batch {batch} is not within 0..{batches - 1}.")


def batch_predicate(batch: int, batches: int, alias: str = "s") -> str:
    """The SQL predicate on ``sites`` (as ``alias``) that selects the sites of a batch."""
    _check(batch, batches)
    if not alias.isidentifier():
        raise InvalidInput(f"'{alias}' is not an SQL table alias.")
    return f"{alias}.id % {int(batches)} = {int(batch)}"


def batch_offset(interval_s: int, batch: int, batches: int) -> timedelta:
    """How far into each interval a batch runs (batches are spread evenly)."""
    _check(batch, batches)
    return timedelta(microseconds=interval_s * 1_000_000 * batch // batches)


def batch_start_date(interval_s: int, batch: int, batches: int) -> datetime:
    """The anchor of a batch's timetable (the epoch plus its offset)."""
    return EPOCH + batch_offset(interval_s, batch, batches)


def slot_start(now: datetime, interval_s: int, batch: int, batches: int) -> datetime:
    """The scheduled start of the batch run that ``now`` belongs to (the latest one ≤ now)."""
    anchor = batch_start_date(interval_s, batch, batches)
    period = timedelta(seconds=interval_s)
    return anchor + ((now - anchor) // period) * period


def run_batch(
    engine: Engine,
    settings: Settings,
    *,
    batch: int,
    batches: int,
    probe: RoundRunner,
    runner: str,
    now: datetime | None = None,
) -> BatchRun:
    """Probe one batch once in its slot, guarded by an advisory lock, then update incidents."""
    when = now or datetime.now(UTC)
    slot = slot_start(when, settings.probe_interval, batch, batches)
    key = batches * 10_000 + batch
    try:
        lock_conn = engine.connect()
    except Exception as exc:
        log.error("batch %d/%d not run: database unreachable (%s)", batch + 1, batches, exc)
        return BatchRun(batch, batches, slot, "failed", error=f"database unreachable: {exc}")
    with lock_conn:
        got = lock_conn.execute(
            text("SELECT pg_try_advisory_lock(:c, :k)"), {"c": LOCK_CLASS, "k": key}
        ).scalar_one()
        lock_conn.commit()
        if not got:
            return BatchRun(batch, batches, slot, "skipped_locked")
        try:
            return _run_locked(engine, settings, batch, batches, slot, probe, runner, when)
        finally:
            try:
                lock_conn.execute(
                    text("SELECT pg_advisory_unlock(:c, :k)"), {"c": LOCK_CLASS, "k": key}
                )
                lock_conn.commit()
            except Exception:
                # A lost session has released its locks already.
                log.warning("could not release the lock of batch %d/%d", batch + 1, batches)


def _run_locked(
    engine: Engine,
    settings: Settings,
    batch: int,
    batches: int,
    slot: datetime,
    probe: RoundRunner,
    runner: str,
    started: datetime,
) -> BatchRun:
    with engine.begin() as conn:
        claimed = conn.execute(
            text(
                "INSERT INTO scheduler_batch_runs (batches, batch, slot_start, interval_s, "
                "started_at, runner) VALUES (:n, :b, :slot, :i, :at, :runner) "
                "ON CONFLICT DO NOTHING RETURNING batch"
            ),
            {
                "n": batches,
                "b": batch,
                "slot": slot,
                "i": settings.probe_interval,
                "at": started,
                "runner": runner,
            },
        ).first()
    if claimed is None:
        return BatchRun(batch, batches, slot, "skipped_done")
    began = time.perf_counter()
    try:
        counts = probe(batch_predicate(batch, batches))
    except Exception as exc:
        seconds = time.perf_counter() - began
        log.exception("probe batch %d/%d failed", batch + 1, batches)
        _finish(engine, batch, batches, slot, "failed", error=f"{type(exc).__name__}: {exc}")
        return BatchRun(batch, batches, slot, "failed", seconds, error=str(exc))
    changes: IncidentChanges | None = None
    deferred: str | None = None
    if not counts.spooled:
        try:
            with engine.begin() as conn:
                if batches > 1:
                    # When one is running, or ran less than the gap ago, a later one covers
                    # this batch's results: the next batch is at most one slot away. Waiting
                    # queued every batch behind a serial evaluation of all sites (1.6 s each,
                    # 39 a minute in the demo: 10-12 s of queue), and one after every batch
                    # kept a third of a core busy repeating it every 1.5 s.
                    due = evaluate_incidents_if_due(conn, settings, now=datetime.now(UTC))
                    if isinstance(due, EvaluationLeft):
                        deferred = due.reason
                    else:
                        changes = due
                else:
                    changes = evaluate_incidents(conn, settings, now=datetime.now(UTC))
        except Exception:
            log.exception("incident evaluation after batch %d/%d failed", batch + 1, batches)
    result = BatchRun(
        batch,
        batches,
        slot,
        "done",
        time.perf_counter() - began,
        counts.sites,
        counts.up,
        counts.degraded,
        counts.down,
        counts.round_id,
        changes,
        spooled=counts.spooled,
        incidents_deferred=deferred,
        flushed=counts.flushed,
    )
    _finish(engine, batch, batches, slot, "done", result=result)
    return result


def _finish(
    engine: Engine,
    batch: int,
    batches: int,
    slot: datetime,
    outcome: str,
    *,
    result: BatchRun | None = None,
    error: str | None = None,
) -> None:
    try:
        _record_finish(engine, batch, batches, slot, outcome, result, error)
    except Exception:
        # The database went away mid-batch: the round itself is spooled by the store.
        log.exception("could not record the end of batch %d/%d", batch + 1, batches)


def _record_finish(
    engine: Engine,
    batch: int,
    batches: int,
    slot: datetime,
    outcome: str,
    result: BatchRun | None,
    error: str | None,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE scheduler_batch_runs SET finished_at = :finished, "
                "outcome = :outcome, round_id = :rid, sites = :sites, up = :up, "
                "degraded = :degraded, down = :down, error = :error "
                "WHERE batches = :n AND batch = :b AND slot_start = :slot"
            ),
            {
                "finished": datetime.now(UTC),
                "outcome": outcome,
                "rid": result.round_id if result else None,
                "sites": result.sites if result else None,
                "up": result.up if result else None,
                "degraded": result.degraded if result else None,
                "down": result.down if result else None,
                "error": error,
                "n": batches,
                "b": batch,
                "slot": slot,
            },
        )


@dataclass(frozen=True)
class BatchRunRow:
    """A recorded batch run, as `conectado scheduler status` lists it."""

    batches: int
    batch: int
    slot_start: datetime
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    runner: str
    sites: int | None
    up: int | None
    degraded: int | None
    down: int | None
    error: str | None


def recent_batch_runs(conn: Connection, *, limit: int = 20) -> list[BatchRunRow]:
    """The latest recorded batch runs, newest first."""
    rows = conn.execute(
        text(
            "SELECT batches, batch, slot_start, started_at, finished_at, outcome, runner, sites, "
            "up, degraded, down, error FROM scheduler_batch_runs "
            "ORDER BY started_at DESC LIMIT :limit"
        ),
        {"limit": limit},
    )
    return [BatchRunRow(**dict(r._mapping)) for r in rows]
