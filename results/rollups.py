"""Hourly and daily rollups of raw probe results, per site and per municipality/state/provider.

Every figure is computed by PostgreSQL from ``probe_results`` in one statement per level, and
written with ``INSERT ... ON CONFLICT DO UPDATE``: recomputing a period gives the same rows.
Periods are UTC hours and UTC days (the partitions of ``probe_results`` are UTC days).

Definitions (README "Rollups"):
- a *round* of a site is one ``round_id``; its state is the same on its SNMP and HTTP rows;
- ``uptime_pct`` = up rounds / rounds with a result × 100 (results/status.py's definition);
- latency percentiles (``percentile_cont``) are of successful probes, SNMP and HTTP apart;
  per site they are exact; per municipality/state/provider they are read from a histogram
  of 0.5 %-wide logarithmic buckets (within 0.25 % of exact, and far cheaper than sorting
  every raw row three times);
- bps figures are of the rates computed at SNMP polls (``in_bps``/``out_bps`` not null);
- ``util_in_pct`` = average in bps / (contracted ``bw_down_mbps`` × 10⁶) × 100, and
  ``util_out_pct`` the same for out bps and ``bw_up_mbps``;
- group rollups pool their sites: uptime = Σ up rounds / Σ rounds, bps totals = Σ of site
  averages, utilisation = Σ average bps / Σ contracted bps of the sites with both.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Literal

from sqlalchemy import Connection, Engine, text

from core.errors import InvalidInput
from core.progress import NullProgress, Progress

SITE_AGGREGATES = """
    SELECT site_id,
           count(*) AS raw_rows,
           count(DISTINCT round_id) AS rounds,
           count(DISTINCT round_id) FILTER (WHERE state = 'up') AS up_rounds,
           count(DISTINCT round_id) FILTER (WHERE state = 'degraded') AS degraded_rounds,
           percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY latency_ms)
               FILTER (WHERE kind = 'snmp' AND ok) AS snmp_lat,
           percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY latency_ms)
               FILTER (WHERE kind = 'http' AND ok) AS http_lat,
           count(in_bps) AS rate_samples,
           avg(in_bps) AS in_bps_avg,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY in_bps) AS in_bps_p95,
           max(in_bps) AS in_bps_max,
           avg(out_bps) AS out_bps_avg,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY out_bps) AS out_bps_p95,
           max(out_bps) AS out_bps_max
    FROM probe_results
    WHERE ts >= :start AND ts < :end AND site_id >= :lo AND site_id < :hi
    GROUP BY site_id
"""

SITE_COLUMNS = """rounds, up_rounds, degraded_rounds, down_rounds, uptime_pct,
    snmp_latency_p50_ms, snmp_latency_p95_ms, http_latency_p50_ms, http_latency_p95_ms,
    rate_samples, in_bps_avg, in_bps_p95, in_bps_max, out_bps_avg, out_bps_p95, out_bps_max,
    util_in_pct, util_out_pct, computed_at"""


def _site_upsert(table: str, period_column: str) -> str:
    updates = ", ".join(
        f"{c.strip()} = excluded.{c.strip()}" for c in SITE_COLUMNS.split(",") if c.strip()
    )
    return f"""
    WITH agg AS MATERIALIZED ({SITE_AGGREGATES}),
    ins AS (
        INSERT INTO {table} (site_id, {period_column}, {SITE_COLUMNS})
        SELECT a.site_id, :period, a.rounds, a.up_rounds, a.degraded_rounds,
               a.rounds - a.up_rounds - a.degraded_rounds,
               100.0 * a.up_rounds / nullif(a.rounds, 0),
               a.snmp_lat[1], a.snmp_lat[2], a.http_lat[1], a.http_lat[2],
               a.rate_samples, a.in_bps_avg, a.in_bps_p95, a.in_bps_max,
               a.out_bps_avg, a.out_bps_p95, a.out_bps_max,
               100.0 * a.in_bps_avg / nullif(s.bw_down_mbps * 1e6, 0),
               100.0 * a.out_bps_avg / nullif(s.bw_up_mbps * 1e6, 0),
               now()
        FROM agg a JOIN sites s ON s.id = a.site_id
        ON CONFLICT (site_id, {period_column}) DO UPDATE SET {updates}
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM ins) AS site_rows,
           (SELECT coalesce(sum(raw_rows), 0) FROM agg) AS raw_rows
    """


HOURLY_SQL = _site_upsert("rollup_site_hourly", "hour")
DAILY_SQL = _site_upsert("rollup_site_daily", "day")

GROUP_COLUMNS = """sites, sites_all_up, sites_with_down, rounds, up_rounds, degraded_rounds,
    down_rounds, uptime_pct, snmp_latency_p50_ms, snmp_latency_p95_ms, http_latency_p50_ms,
    http_latency_p95_ms, in_bps_total, out_bps_total, in_bps_max, out_bps_max,
    contracted_down_bps, contracted_up_bps, util_in_pct, util_out_pct, computed_at"""

# Counts, uptime and bandwidth pool the day's site rollups; latency percentiles come from one
# hashed pass over the raw rows into logarithmic buckets (no sort of the raw rows).
LATENCY_BUCKETS_PER_E = 200
GROUP_SQL = f"""
WITH site_day AS (
    SELECT d.*, s.mun_cvegeo::text AS mun, s.cve_ent::text AS ent, s.provider,
           s.bw_down_mbps * 1e6 AS down_bps, s.bw_up_mbps * 1e6 AS up_bps
    FROM rollup_site_daily d JOIN sites s ON s.id = d.site_id
    WHERE d.day = :day
),
pooled AS (
    SELECT CASE WHEN GROUPING(mun) = 0 THEN 'municipality'
                WHEN GROUPING(ent) = 0 THEN 'state' ELSE 'provider' END AS level,
           coalesce(mun, ent, provider) AS key,
           count(*) AS sites,
           count(*) FILTER (WHERE up_rounds = rounds) AS sites_all_up,
           count(*) FILTER (WHERE down_rounds > 0) AS sites_with_down,
           sum(rounds) AS rounds, sum(up_rounds) AS up_rounds,
           sum(degraded_rounds) AS degraded_rounds, sum(down_rounds) AS down_rounds,
           sum(in_bps_avg) AS in_bps_total, sum(out_bps_avg) AS out_bps_total,
           max(in_bps_max) AS in_bps_max, max(out_bps_max) AS out_bps_max,
           sum(down_bps) AS contracted_down_bps, sum(up_bps) AS contracted_up_bps,
           sum(in_bps_avg) FILTER (WHERE down_bps > 0) AS in_for_util,
           sum(down_bps) FILTER (WHERE in_bps_avg IS NOT NULL) AS down_for_util,
           sum(out_bps_avg) FILTER (WHERE up_bps > 0) AS out_for_util,
           sum(up_bps) FILTER (WHERE out_bps_avg IS NOT NULL) AS up_for_util
    FROM site_day
    GROUP BY GROUPING SETS ((mun), (ent), (provider))
),
raw AS (
    SELECT s.mun_cvegeo, s.provider, r.kind,
           round(ln(greatest(r.latency_ms::float8, 0.001)) * {LATENCY_BUCKETS_PER_E})::int AS b
    FROM probe_results r JOIN sites s ON s.id = r.site_id
    WHERE r.ts >= :start AND r.ts < :end AND r.ok AND r.latency_ms IS NOT NULL
),
-- Two hashed grouping sets; a state's histogram is the sum of its municipalities'.
hist0 AS (
    SELECT GROUPING(mun_cvegeo) AS by_provider, mun_cvegeo::text AS mun, provider, kind, b,
           count(*) AS n
    FROM raw
    GROUP BY GROUPING SETS ((mun_cvegeo, kind, b), (provider, kind, b))
),
hist AS (
    SELECT 'municipality' AS level, mun AS key, kind, b, n
    FROM hist0 WHERE by_provider = 0 AND mun IS NOT NULL
    UNION ALL
    SELECT 'state', left(mun, 2), kind, b, sum(n)
    FROM hist0 WHERE by_provider = 0 AND mun IS NOT NULL
    GROUP BY left(mun, 2), kind, b
    UNION ALL
    SELECT 'provider', provider, kind, b, n
    FROM hist0 WHERE by_provider = 1 AND provider IS NOT NULL
),
ranked AS (
    SELECT level, key, kind, exp(b / {LATENCY_BUCKETS_PER_E}.0) AS v, n,
           sum(n) OVER (PARTITION BY level, key, kind ORDER BY b) - n AS below,
           sum(n) OVER (PARTITION BY level, key, kind) - 1 AS last
    FROM hist
    WHERE key IS NOT NULL
),
-- percentile_cont over the bucketed values: the values at ranks floor(p·last) and
-- ceil(p·last), interpolated.
pct AS (
    SELECT level, key, kind,
           max(v) FILTER (WHERE below <= floor(0.5 * last) AND floor(0.5 * last) < below + n)
               AS lo50,
           max(v) FILTER (WHERE below <= ceil(0.5 * last) AND ceil(0.5 * last) < below + n)
               AS hi50,
           max(v) FILTER (WHERE below <= floor(0.95 * last) AND floor(0.95 * last) < below + n)
               AS lo95,
           max(v) FILTER (WHERE below <= ceil(0.95 * last) AND ceil(0.95 * last) < below + n)
               AS hi95,
           max(0.5 * last - floor(0.5 * last)) AS f50,
           max(0.95 * last - floor(0.95 * last)) AS f95
    FROM ranked
    GROUP BY level, key, kind
),
latency AS (
    SELECT level, key,
           ARRAY[max(lo50 + f50 * (hi50 - lo50)) FILTER (WHERE kind = 'snmp'),
                 max(lo95 + f95 * (hi95 - lo95)) FILTER (WHERE kind = 'snmp')] AS snmp_lat,
           ARRAY[max(lo50 + f50 * (hi50 - lo50)) FILTER (WHERE kind = 'http'),
                 max(lo95 + f95 * (hi95 - lo95)) FILTER (WHERE kind = 'http')] AS http_lat
    FROM pct
    GROUP BY level, key
),
ins AS (
    INSERT INTO rollup_group_daily (level, key, day, {GROUP_COLUMNS})
    SELECT p.level, p.key, :day, p.sites, p.sites_all_up, p.sites_with_down, p.rounds,
           p.up_rounds, p.degraded_rounds, p.down_rounds,
           100.0 * p.up_rounds / nullif(p.rounds, 0),
           l.snmp_lat[1], l.snmp_lat[2], l.http_lat[1], l.http_lat[2],
           p.in_bps_total, p.out_bps_total, p.in_bps_max, p.out_bps_max,
           p.contracted_down_bps, p.contracted_up_bps,
           100.0 * p.in_for_util / nullif(p.down_for_util, 0),
           100.0 * p.out_for_util / nullif(p.up_for_util, 0),
           now()
    FROM pooled p LEFT JOIN latency l ON l.level = p.level AND l.key = p.key
    WHERE p.key IS NOT NULL
    ON CONFLICT (level, key, day) DO UPDATE SET {
    ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in GROUP_COLUMNS.split(",") if c.strip())
}
    RETURNING 1
)
SELECT count(*) FROM ins
"""

RECORD_RUN_SQL = """
INSERT INTO rollup_runs (period, period_start, computed_at, site_rows, group_rows, raw_rows,
                         seconds)
VALUES (:period, :start, now(), :site_rows, :group_rows, :raw_rows, :seconds)
ON CONFLICT (period, period_start) DO UPDATE SET
    computed_at = excluded.computed_at, site_rows = excluded.site_rows,
    group_rows = excluded.group_rows, raw_rows = excluded.raw_rows, seconds = excluded.seconds
"""


@dataclass(frozen=True)
class RollupResult:
    """What one rollup wrote: rows per level, raw rows read and the time it took."""

    period: Literal["hour", "day"]
    start: datetime
    raw_rows: int
    site_rows: int
    group_rows: int
    seconds: float


def utc_hour(value: datetime) -> datetime:
    """Return the UTC hour that contains ``value`` (which must carry a time zone)."""
    if value.tzinfo is None:
        raise InvalidInput(
            f"The hour {value.isoformat()} has no time zone; give it in UTC, e.g. "
            f"{value.replace(minute=0, second=0, microsecond=0).isoformat()}+00:00."
        )
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_start(day: date) -> datetime:
    """Return midnight UTC at the start of ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


ALL_SITES = {"lo": 0, "hi": 2**62}


def rollup_hour(conn: Connection, hour: datetime) -> RollupResult:
    """Recompute the per-site rollup of the UTC hour containing ``hour``; idempotent."""
    start = utc_hour(hour)
    end = start + timedelta(hours=1)
    began = time.perf_counter()
    row = (
        conn.execute(text(HOURLY_SQL), {"start": start, "end": end, "period": start, **ALL_SITES})
        .mappings()
        .one()
    )
    seconds = time.perf_counter() - began
    result = RollupResult("hour", start, int(row["raw_rows"]), int(row["site_rows"]), 0, seconds)
    _record(conn, result)
    return result


def rollup_day(conn: Connection, day: date) -> RollupResult:
    """Recompute the per-site and per municipality/state/provider rollups of a UTC day."""
    start = day_start(day)
    end = start + timedelta(days=1)
    began = time.perf_counter()
    row = (
        conn.execute(text(DAILY_SQL), {"start": start, "end": end, "period": day, **ALL_SITES})
        .mappings()
        .one()
    )
    group_rows = int(
        conn.execute(text(GROUP_SQL), {"start": start, "end": end, "day": day}).scalar_one()
    )
    seconds = time.perf_counter() - began
    result = RollupResult(
        "day", start, int(row["raw_rows"]), int(row["site_rows"]), group_rows, seconds
    )
    _record(conn, result)
    return result


def site_ranges(conn: Connection, parts: int) -> list[tuple[int, int]]:
    """Split the site ids into ``parts`` contiguous ranges holding about as many sites each."""
    bounds = conn.execute(
        text("SELECT percentile_disc(CAST(:q AS float8[])) WITHIN GROUP (ORDER BY id) FROM sites"),
        {"q": [k / parts for k in range(1, parts)]},
    ).scalar()
    cuts = sorted(set(bounds or []))
    edges = [0, *cuts, ALL_SITES["hi"]]
    return [(a, b) for a, b in pairwise(edges) if a < b]


def rollup_day_parallel(engine: Engine, day: date, *, workers: int = 2) -> RollupResult:
    """``rollup_day`` with the per-site part split over ``workers`` connections by site id.

    Each site range is written in its own transaction, then the group rollups in one more;
    the result is the same as ``rollup_day`` (every statement is an idempotent upsert).
    """
    start = day_start(day)
    end = start + timedelta(days=1)
    began = time.perf_counter()
    with engine.connect() as conn:
        ranges = site_ranges(conn, max(1, workers))

    def one_range(bounds: tuple[int, int]) -> tuple[int, int]:
        with engine.begin() as conn:
            row = (
                conn.execute(
                    text(DAILY_SQL),
                    {"start": start, "end": end, "period": day, "lo": bounds[0], "hi": bounds[1]},
                )
                .mappings()
                .one()
            )
        return int(row["site_rows"]), int(row["raw_rows"])

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        parts = list(pool.map(one_range, ranges))
    with engine.begin() as conn:
        group_rows = int(
            conn.execute(text(GROUP_SQL), {"start": start, "end": end, "day": day}).scalar_one()
        )
        result = RollupResult(
            "day",
            start,
            sum(p[1] for p in parts),
            sum(p[0] for p in parts),
            group_rows,
            time.perf_counter() - began,
        )
        _record(conn, result)
    return result


def _record(conn: Connection, result: RollupResult) -> None:
    if result.raw_rows == 0:
        return
    conn.execute(
        text(RECORD_RUN_SQL),
        {
            "period": result.period,
            "start": result.start,
            "site_rows": result.site_rows,
            "group_rows": result.group_rows,
            "raw_rows": result.raw_rows,
            "seconds": result.seconds,
        },
    )


def rollup_hours(
    engine: Engine, start: datetime, end: datetime, *, progress: Progress | None = None
) -> list[RollupResult]:
    """Recompute each UTC hour from the one holding ``start`` to ``end``; a transaction each."""
    hour = utc_hour(start)
    if utc_hour(end) < hour or end <= start:
        raise InvalidInput(
            f"The period {start.isoformat()} – {end.isoformat()} is empty; give an end after "
            "the start."
        )
    hours = []
    while hour < end:
        hours.append(hour)
        hour += timedelta(hours=1)
    task = (progress or NullProgress()).task("Hourly rollups", total=len(hours))
    results = []
    for hour in hours:
        with engine.begin() as conn:
            results.append(rollup_hour(conn, hour))
        task.advance()
    task.finish()
    return results


def recent_hours(now: datetime, count: int = 2) -> list[datetime]:
    """The ``count`` complete UTC hours before ``now``, oldest first (late data is re-rolled)."""
    current = utc_hour(now)
    return [current - timedelta(hours=n) for n in range(count, 0, -1)]


def days_rolled_up(conn: Connection, first: date, last: date) -> set[date]:
    """The UTC days in [first, last] that have a recorded daily rollup."""
    rows = conn.execute(
        text(
            "SELECT (period_start AT TIME ZONE 'UTC')::date FROM rollup_runs "
            "WHERE period = 'day' AND period_start >= :a AND period_start <= :b"
        ),
        {"a": day_start(first), "b": day_start(last)},
    ).scalars()
    return set(rows)


STALE_SQL = """
SELECT DISTINCT r.start
FROM (
    SELECT date_trunc(:unit, started_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS start,
           written_at
    FROM probe_rounds WHERE started_at >= :since AND started_at < :until
    UNION ALL
    SELECT date_trunc(:unit, finished_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', written_at
    FROM probe_rounds WHERE finished_at >= :since AND finished_at < :until
) r
LEFT JOIN rollup_runs rr ON rr.period = :unit AND rr.period_start = r.start
WHERE r.start < :until AND (rr.computed_at IS NULL OR r.written_at > rr.computed_at)
ORDER BY r.start
"""


def stale_hours(conn: Connection, now: datetime, *, lookback_h: int = 48) -> list[datetime]:
    """Complete UTC hours of the last ``lookback_h`` with rounds written after their rollup.

    A round replayed late from the spool (or one never rolled up) makes its hour stale.
    """
    until = utc_hour(now)
    rows = conn.execute(
        text(STALE_SQL),
        {"unit": "hour", "since": until - timedelta(hours=lookback_h), "until": until},
    ).scalars()
    return list(rows)


def stale_days(conn: Connection, now: datetime, *, lookback_days: int = 7) -> list[date]:
    """Complete UTC days of the last ``lookback_days`` with rounds written after their rollup."""
    until = day_start(now.astimezone(UTC).date())
    rows = conn.execute(
        text(STALE_SQL),
        {"unit": "day", "since": until - timedelta(days=lookback_days), "until": until},
    ).scalars()
    return [r.astimezone(UTC).date() for r in rows]
