"""The rollup and retention jobs as the scheduler runs them (wall clock, stored runtime)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

import scheduler as sched
from core.errors import Conflict
from core.settings import Settings
from results.rollups import utc_hour
from tests.scheduler.helpers import add_site, insert_raw_results


def test_rollup_and_retention_jobs_use_the_running_scheduler(
    engine: Engine, settings: Settings
) -> None:
    now = datetime.now(UTC)
    prev_hour = utc_hour(now) - timedelta(hours=1)
    with engine.begin() as conn:
        site = add_site(conn, "JOB1")
        rows = [
            {
                "round_id": uuid.uuid4(),
                "site_id": site,
                "ts": prev_hour + timedelta(minutes=m),
                "kind": "snmp",
                "ok": True,
                "state": "up",
                "latency_ms": 2.0,
            }
            for m in (1, 31)
        ]
        insert_raw_results(conn, rows)
        for r in rows:
            conn.execute(
                text(
                    "INSERT INTO probe_rounds (id, started_at, finished_at, kinds, sites) "
                    "VALUES (:id, :ts, :ts, ARRAY['snmp'], 1)"
                ),
                {"id": r["round_id"], "ts": r["ts"]},
            )
    with pytest.raises(Conflict, match="No scheduler runs"):
        sched.hourly_rollup_job()
    cfg = settings.model_copy(update={"probe_interval": 3600, "probe_batches": 1})
    s = sched.ConectadoScheduler(engine, cfg, probe=lambda where: pytest.fail("no probing"))
    s.start()
    try:
        with pytest.raises(Conflict, match="already runs"):
            sched.ConectadoScheduler(engine, cfg).start()
        sched.hourly_rollup_job()
        sched.daily_rollup_job()
        sched.retention_job()
    finally:
        s.shutdown(wait=True)
    with engine.connect() as conn:
        hourly = conn.execute(
            text("SELECT rounds, up_rounds FROM rollup_site_hourly WHERE hour = :h"),
            {"h": prev_hour},
        ).one()
        assert tuple(hourly) == (2, 2)
        ahead = conn.execute(
            text("SELECT count(*) FROM pg_inherits WHERE inhparent = 'probe_results'::regclass")
        ).scalar_one()
        assert ahead >= 8  # yesterday to a week ahead
