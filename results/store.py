"""Write a round to PostgreSQL in one transaction: results by COPY, state by bulk upsert.

Order inside the transaction: ``counter_state`` upserted from a staging table, the reboot
events, ``site_status`` upserted from a staging table, ``COPY`` into ``probe_results`` (the
daily partitions are created beforehand when missing), and last the ``probe_rounds`` row
(``ON CONFLICT DO NOTHING``): when that round is already there the transaction is rolled
back, so a spool replay never writes twice. A round already written before the write began is
recognised at once and skipped. The row comes last because its summary is the last part of a
batch to be built, and ``write_parts`` starts writing while the rest is still being built
(results.batch.PART_NAMES gives the order). A batch may come in several chunks of sites
(results.batch.BatchParts): each goes through the same steps, the staging tables emptied
between. Upserts never let an older round overwrite a newer one (``last_probe_at`` / ``ts``
guards), so a late replay cannot regress a site's state.
"""

from __future__ import annotations

from datetime import date, timedelta

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
    BatchParts,
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
ROUND_EXISTS = text("SELECT 1 FROM probe_rounds WHERE id = :id")

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


def ensure_partitions(conn: Connection, first: date, last: date) -> int:
    """Create the daily partitions for results from ``first`` to ``last`` (a day of margin)."""
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


class _AlreadyWritten(Exception):
    """Raised inside the write's transaction to roll it back."""


def write_round(engine: Engine, batch: RoundBatch, *, from_spool: bool = False) -> bool:
    """Write ``batch`` in one transaction; return False when that round was already written."""
    return write_parts(engine, BatchParts.of(batch), from_spool=from_spool)


def write_parts(engine: Engine, parts: BatchParts, *, from_spool: bool = False) -> bool:
    """Write a batch in one transaction, each part as soon as it is handed over.

    Returns False, having written nothing, when that round was already written. If the batch
    fails to be built (``parts.fail``), the transaction is rolled back and the error raised.
    """
    round_id, first, last = parts.head()
    with engine.connect() as conn:
        with conn.begin():
            if conn.execute(ROUND_EXISTS, {"id": round_id}).first() is not None:
                return False
            ensure_partitions(conn, first, last)
        try:
            with conn.begin():
                raw = conn.connection.driver_connection
                assert isinstance(raw, psycopg.Connection)
                with raw.cursor() as cur:
                    _write_rows(cur, parts)
                record = parts.record()
                params = {k: v for k, v in vars(record).items() if k != "errors"} | {
                    "from_spool": from_spool
                }
                if conn.execute(INSERT_ROUND, params).first() is None:
                    raise _AlreadyWritten  # written by another writer meanwhile: roll back
        except _AlreadyWritten:
            return False
    return True


def _write_rows(cur: psycopg.Cursor[tuple[object, ...]], parts: BatchParts) -> None:
    # Chunk by chunk, in ROW_PARTS order: each step waits only for the part it writes. The
    # staging tables are made once per transaction and emptied for each further chunk.
    made: set[str] = set()
    round_id = parts.head()[0]
    for chunk in parts.chunks():
        _upsert(
            cur,
            made,
            STAGING_COUNTERS,
            "round_counters",
            COUNTER_COLUMNS,
            chunk.rows("counter_rows"),
            UPSERT_COUNTERS,
        )
        _upsert(
            cur,
            made,
            STAGING_REBOOTS,
            "round_reboots",
            REBOOT_COLUMNS,
            chunk.rows("reboot_rows"),
            INSERT_REBOOTS,
        )
        _upsert(
            cur,
            made,
            STAGING,
            "round_status",
            STATUS_COLUMNS,
            chunk.rows("status_rows"),
            UPSERT_STATUS,
            {"round_id": round_id},
        )
        _copy(cur, f"COPY probe_results ({SNMP_COLUMNS}) FROM STDIN", chunk.rows("snmp_rows"))
        _copy(cur, f"COPY probe_results ({HTTP_COLUMNS}) FROM STDIN", chunk.rows("http_rows"))


def _upsert(
    cur: psycopg.Cursor[tuple[object, ...]],
    made: set[str],
    create: str,
    staging: str,
    columns: str,
    rows: str,
    statement: str,
    params: dict[str, object] | None = None,
) -> None:
    """COPY ``rows`` into the staging table ``staging``, then run ``statement`` from it."""
    if not rows:
        return
    if staging in made:
        cur.execute(f"TRUNCATE {staging}")
    else:
        cur.execute(create)
        made.add(staging)
    _copy(cur, f"COPY {staging} ({columns}) FROM STDIN", rows)
    cur.execute(statement, params)
