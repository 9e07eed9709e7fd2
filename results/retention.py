"""Retention: raw probe results are kept for N days by dropping whole daily partitions.

Rollups and incidents are kept forever; a day that was never rolled up is rolled up before its
partition goes, so retention never loses the figures. Partitions for the coming week are made
ahead so writers never wait for one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, Engine, text

from core.settings import Settings
from results.rollups import day_start, days_rolled_up, rollup_day_parallel, rollup_hours

log = logging.getLogger(__name__)

PARTITIONS_AHEAD_DAYS = 7

PARTITIONS_SQL = r"""
SELECT c.relname AS name, i.inhdetachpending AS detach_pending,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                     $$FROM \('([^']+)'\) TO \('([^']+)'\)$$))[1]::timestamptz AS lower,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                     $$FROM \('([^']+)'\) TO \('([^']+)'\)$$))[2]::timestamptz AS upper
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'probe_results'::regclass
ORDER BY lower
"""


@dataclass(frozen=True)
class Partition:
    """One daily partition of probe_results and the time range it holds."""

    name: str
    lower: datetime
    upper: datetime
    detach_pending: bool = False

    @property
    def day(self) -> date:
        """The UTC day the partition holds."""
        return self.lower.astimezone(UTC).date()


@dataclass
class RetentionReport:
    """What a retention run did."""

    cutoff: datetime
    dropped: list[str] = field(default_factory=list)
    rolled_up_first: list[date] = field(default_factory=list)
    partitions_created: int = 0
    transitions_deleted: int = 0
    batch_runs_deleted: int = 0


def list_partitions(conn: Connection) -> list[Partition]:
    """The daily partitions of probe_results, oldest first."""
    return [
        Partition(r.name, r.lower, r.upper, bool(r.detach_pending))
        for r in conn.execute(text(PARTITIONS_SQL))
    ]


def ensure_partitions_ahead(
    conn: Connection, today: date, days: int = PARTITIONS_AHEAD_DAYS
) -> int:
    """Create the missing partitions from yesterday to ``days`` ahead; return how many."""
    return int(
        conn.execute(
            text("SELECT ensure_probe_results_partitions(:a, :b)"),
            {"a": today - timedelta(days=1), "b": today + timedelta(days=days)},
        ).scalar_one()
    )


def retention_cutoff(settings: Settings, now: datetime) -> datetime:
    """Raw rows older than this go: partitions wholly before it are dropped."""
    return now - timedelta(days=settings.raw_retention_days)


def apply_retention(engine: Engine, settings: Settings, *, now: datetime) -> RetentionReport:
    """Drop daily partitions older than raw_retention_days (rolling them up first if needed)."""
    report = RetentionReport(cutoff=retention_cutoff(settings, now))
    with engine.begin() as conn:
        report.partitions_created = ensure_partitions_ahead(conn, now.astimezone(UTC).date())
        expired = [p for p in list_partitions(conn) if p.upper <= report.cutoff]
        done = days_rolled_up(conn, expired[0].day, expired[-1].day) if expired else set()
    for part in expired:
        if part.day not in done and not part.detach_pending:
            has_rows = _has_rows(engine, part.name)
            if has_rows:
                log.info("rolling up %s before dropping %s", part.day, part.name)
                rollup_hours(engine, day_start(part.day), day_start(part.day + timedelta(days=1)))
                rollup_day_parallel(engine, part.day, workers=settings.rollup_workers)
                report.rolled_up_first.append(part.day)
        _drop_partition(engine, part)
        report.dropped.append(part.name)
        log.info("dropped raw results of %s (%s)", part.day, part.name)
    with engine.begin() as conn:
        report.transitions_deleted = conn.execute(
            text("DELETE FROM site_transitions WHERE at < :cutoff"), {"cutoff": report.cutoff}
        ).rowcount
        report.batch_runs_deleted = conn.execute(
            text("DELETE FROM scheduler_batch_runs WHERE started_at < :cutoff"),
            {"cutoff": report.cutoff},
        ).rowcount
    return report


def _has_rows(engine: Engine, name: str) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text(f'SELECT EXISTS (SELECT 1 FROM "{name}")')).scalar())


def _drop_partition(engine: Engine, part: Partition) -> None:
    """Detach without blocking writers of other days (CONCURRENTLY), then drop."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SET lock_timeout = '60s'"))
        try:
            mode = "FINALIZE" if part.detach_pending else "CONCURRENTLY"
            conn.execute(text(f'ALTER TABLE probe_results DETACH PARTITION "{part.name}" {mode}'))
            conn.execute(text(f'DROP TABLE "{part.name}"'))
        finally:
            conn.execute(text("RESET lock_timeout"))
