"""Retention drops whole old partitions, rolls up first what was never rolled up."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, text

from core.settings import Settings
from results.retention import apply_retention, list_partitions
from results.rollups import rollup_day
from tests.scheduler.helpers import add_site, insert_raw_results

NOW = datetime(2030, 6, 30, 3, 0, tzinfo=UTC)


def _rows(site: int, day: date, n: int = 3) -> list[dict[str, object]]:
    start = datetime(day.year, day.month, day.day, 6, tzinfo=UTC)
    return [
        {
            "round_id": uuid.uuid4(),
            "site_id": site,
            "ts": start + timedelta(minutes=5 * k),
            "kind": "snmp",
            "ok": True,
            "state": "up",
            "latency_ms": 3.0,
        }
        for k in range(n)
    ]


def test_partitions_older_than_retention_are_dropped_and_rollups_kept(
    engine: Engine, settings: Settings
) -> None:
    cfg = settings.model_copy(update={"raw_retention_days": 30})
    old_rolled, old_not_rolled, edge, kept = (
        date(2030, 5, 20),
        date(2030, 5, 25),
        date(2030, 5, 30),
        date(2030, 5, 31),
    )
    with engine.begin() as conn:
        site = add_site(conn, "RET1")
        for d in (old_rolled, old_not_rolled, edge, kept):
            insert_raw_results(conn, _rows(site, d))
        conn.execute(text("SELECT ensure_probe_results_partitions('2030-05-10', '2030-05-12')"))
        rollup_day(conn, old_rolled)
    report = apply_retention(engine, cfg, now=NOW)
    # cutoff 2030-05-31 03:00: the 30th ends before it and goes; the 31st holds younger rows
    assert report.cutoff == datetime(2030, 5, 31, 3, tzinfo=UTC)
    # (the template's partitions around its creation date are older still and go too)
    assert report.dropped[-6:] == [
        "probe_results_p20300510",
        "probe_results_p20300511",
        "probe_results_p20300512",
        "probe_results_p20300520",
        "probe_results_p20300525",
        "probe_results_p20300530",
    ]
    assert report.rolled_up_first == [old_not_rolled, edge]  # the 20th was rolled up already
    assert report.partitions_created == 8 + 1  # from 2030-06-29 to 2030-07-07
    with engine.connect() as conn:
        days = [p.day for p in list_partitions(conn)]
        assert min(days) == kept and max(days) == date(2030, 7, 7)
        raw = conn.execute(text("SELECT count(*) FROM probe_results")).scalar_one()
        assert raw == 3  # only the 31st's rows remain
        rolled = conn.execute(text("SELECT day, rounds FROM rollup_site_daily ORDER BY day")).all()
        assert [(r.day, r.rounds) for r in rolled] == [
            (old_rolled, 3),
            (old_not_rolled, 3),
            (edge, 3),
        ]
        hourly = conn.execute(text("SELECT count(*) FROM rollup_site_hourly")).scalar_one()
        assert hourly == 2  # one hour (06:00) of each day rolled up by retention
    again = apply_retention(engine, cfg, now=NOW)
    assert again.dropped == [] and again.partitions_created == 0
