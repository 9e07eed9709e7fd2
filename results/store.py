"""Write a round to PostgreSQL in one transaction: results by COPY, state by bulk upsert.

Order inside the transaction: the ``probe_rounds`` row first (``ON CONFLICT DO NOTHING``: a
round already written is recognised and the whole batch skipped, so a spool replay never
writes twice), then ``COPY`` into ``probe_results`` (the daily partitions are created
beforehand when missing), then ``site_status`` and ``counter_state`` upserted from staging
tables, then the reboot events. Upserts never let an older round overwrite a newer one
(``last_probe_at`` / ``ts`` guards), so a late replay cannot regress a site's state.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from core.errors import DatabaseUnavailable
from results.batch import (
    COUNTER_COLUMNS,
    HTTP_COLUMNS,
    REBOOT_COLUMNS,
    SNMP_COLUMNS,
    STATUS_COLUMNS,
    RoundBatch,
)

INSERT_ROUND = text(
    """
    INSERT INTO probe_rounds (id, started_at, finished_at, kinds, sites, snmp_probes,
        http_probes, up, degraded, down, latency_p50_ms, latency_p95_ms, probes_per_s,
        rates_computed, reboots, bogus_rates, from_spool)
    VALUES (:id, :started_at, :finished_at, :kinds, :sites, :snmp_probes, :http_probes, :up,
        :degraded, :down, :latency_p50_ms, :latency_p95_ms, :probes_per_s, :rates_computed,
        :reboots, :bogus_rates, :from_spool)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
    """
)

STAGING = """
CREATE TEMP TABLE round_status (
    site_id bigint, state text, ts timestamptz, latency_ms real, in_bps double precision,
    out_bps double precision, rates_at timestamptz, snmp_ok boolean, snmp_error text,
    http_ok boolean, http_error text, http_status smallint, oper_status smallint,
    tls_days_left real, last_error text
) ON COMMIT DROP
"""
STAGING_COUNTERS = """
CREATE TEMP TABLE round_counters (
    site_id bigint, ts timestamptz, sys_uptime bigint, in_octets numeric(20, 0),
    out_octets numeric(20, 0), counter_bits smallint, if_index integer
) ON COMMIT DROP
"""
STAGING_REBOOTS = """
CREATE TEMP TABLE round_reboots (
    site_id bigint, detected_at timestamptz, round_id uuid, reason text, prev_uptime bigint,
    new_uptime bigint
) ON COMMIT DROP
"""
INSERT_REBOOTS = f"""
INSERT INTO reboot_events ({REBOOT_COLUMNS})
SELECT {", ".join("r." + c.strip() for c in REBOOT_COLUMNS.split(","))}
FROM round_reboots r JOIN sites ON sites.id = r.site_id
"""

UPSERT_STATUS = """
INSERT INTO site_status AS s (site_id, state, state_since, last_probe_at, last_ok_at,
    last_failure_at, last_error, consecutive_failures, latency_ms, in_bps, out_bps, rates_at,
    snmp_ok, snmp_error, http_ok, http_error, http_status, oper_status, tls_days_left,
    last_round_id)
SELECT r.site_id, coalesce(r.state, 'unknown'),
       CASE WHEN r.state IS NOT NULL THEN r.ts END,
       r.ts,
       CASE WHEN r.state = 'up' THEN r.ts END,
       CASE WHEN r.state IN ('down', 'degraded') THEN r.ts END,
       r.last_error,
       CASE WHEN r.state IN ('down', 'degraded') THEN 1 ELSE 0 END,
       r.latency_ms, r.in_bps, r.out_bps, r.rates_at, r.snmp_ok, r.snmp_error, r.http_ok,
       r.http_error, r.http_status, r.oper_status, r.tls_days_left, CAST(%(round_id)s AS uuid)
FROM round_status r
JOIN sites ON sites.id = r.site_id
ON CONFLICT (site_id) DO UPDATE SET
    state = CASE WHEN excluded.state = 'unknown' THEN s.state ELSE excluded.state END,
    state_since = CASE
        WHEN excluded.state = 'unknown' OR excluded.state = s.state THEN s.state_since
        ELSE excluded.last_probe_at END,
    last_probe_at = excluded.last_probe_at,
    last_ok_at = coalesce(excluded.last_ok_at, s.last_ok_at),
    last_failure_at = coalesce(excluded.last_failure_at, s.last_failure_at),
    last_error = excluded.last_error,
    consecutive_failures = CASE
        WHEN excluded.state = 'up' THEN 0
        WHEN excluded.state IN ('down', 'degraded') THEN s.consecutive_failures + 1
        ELSE s.consecutive_failures END,
    latency_ms = excluded.latency_ms,
    in_bps = CASE WHEN excluded.rates_at IS NULL THEN s.in_bps ELSE excluded.in_bps END,
    out_bps = CASE WHEN excluded.rates_at IS NULL THEN s.out_bps ELSE excluded.out_bps END,
    rates_at = coalesce(excluded.rates_at, s.rates_at),
    snmp_ok = excluded.snmp_ok,
    snmp_error = excluded.snmp_error,
    http_ok = excluded.http_ok,
    http_error = excluded.http_error,
    http_status = excluded.http_status,
    oper_status = excluded.oper_status,
    tls_days_left = excluded.tls_days_left,
    last_round_id = excluded.last_round_id
WHERE s.last_probe_at IS NULL OR s.last_probe_at < excluded.last_probe_at
"""

UPSERT_COUNTERS = """
INSERT INTO counter_state AS c (site_id, ts, sys_uptime, in_octets, out_octets, counter_bits,
    if_index)
SELECT r.site_id, r.ts, r.sys_uptime, r.in_octets, r.out_octets, r.counter_bits, r.if_index
FROM round_counters r
JOIN sites ON sites.id = r.site_id
ON CONFLICT (site_id) DO UPDATE SET
    ts = excluded.ts, sys_uptime = excluded.sys_uptime, in_octets = excluded.in_octets,
    out_octets = excluded.out_octets, counter_bits = excluded.counter_bits,
    if_index = excluded.if_index
WHERE c.ts < excluded.ts
"""


def is_connection_error(exc: BaseException) -> bool:
    """True when ``exc`` means the database could not be reached or the connection broke."""
    if isinstance(exc, DatabaseUnavailable | psycopg.OperationalError | psycopg.InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(
            exc.orig, psycopg.OperationalError | psycopg.InterfaceError
        )
    return False


def ensure_partitions(conn: Connection, batch: RoundBatch) -> int:
    """Create the daily partitions the batch needs (one day of margin each side)."""
    first, last = batch.days
    made = conn.execute(
        text("SELECT ensure_probe_results_partitions(:a, :b)"),
        {"a": first - timedelta(days=1), "b": last + timedelta(days=1)},
    ).scalar_one()
    return int(made)


def _copy(cur: psycopg.Cursor[tuple[object, ...]], sql: str, data: str) -> None:
    if not data:
        return
    with cur.copy(sql) as copy:
        copy.write(data)


def write_round(engine: Engine, batch: RoundBatch, *, from_spool: bool = False) -> bool:
    """Write ``batch`` in one transaction; return False when that round was already written."""
    record = batch.round
    with engine.connect() as conn:
        with conn.begin():
            ensure_partitions(conn, batch)
        with conn.begin():
            params = {k: v for k, v in vars(record).items() if k != "errors"} | {
                "from_spool": from_spool
            }
            if conn.execute(INSERT_ROUND, params).first() is None:
                return False
            raw = conn.connection.driver_connection
            assert isinstance(raw, psycopg.Connection)
            with raw.cursor() as cur:
                _copy(cur, f"COPY probe_results ({SNMP_COLUMNS}) FROM STDIN", batch.snmp_rows)
                _copy(cur, f"COPY probe_results ({HTTP_COLUMNS}) FROM STDIN", batch.http_rows)
                if batch.status_rows:
                    cur.execute(STAGING)
                    _copy(
                        cur, f"COPY round_status ({STATUS_COLUMNS}) FROM STDIN", batch.status_rows
                    )
                    cur.execute(UPSERT_STATUS, {"round_id": record.id})
                if batch.counter_rows:
                    cur.execute(STAGING_COUNTERS)
                    _copy(
                        cur,
                        f"COPY round_counters ({COUNTER_COLUMNS}) FROM STDIN",
                        batch.counter_rows,
                    )
                    cur.execute(UPSERT_COUNTERS)
                if batch.reboot_rows:
                    cur.execute(STAGING_REBOOTS)
                    _copy(
                        cur, f"COPY round_reboots ({REBOOT_COLUMNS}) FROM STDIN", batch.reboot_rows
                    )
                    cur.execute(INSERT_REBOOTS)
    return True
