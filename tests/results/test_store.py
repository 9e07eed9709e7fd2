"""Writing rounds to real PostGIS: COPY into partitions, site_status, counters, reboots, replays."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.settings import Settings
from probes.model import ErrorClass, HttpOutcome, SnmpOutcome
from results.batch import (
    ROW_PARTS,
    BatchParts,
    ChunkRows,
    ChunkTotals,
    RoundBatch,
    build_chunk,
    build_round_batch,
)
from results.rates import CounterArrays, CounterSample
from results.store import write_parts, write_round
from tests.probes import http_servers as srv
from tests.results.lab_sites import insert_sites, round_counts, write_lab_csv, writer_has_written

T0 = datetime(2031, 3, 4, 23, 59, 0, tzinfo=UTC)


@pytest.fixture
def site_ids(engine: Engine, tmp_path: Path) -> list[int]:
    rows = write_lab_csv(tmp_path / "s.csv", 3, snmp_port=1, http_port=2, https_port=3)
    insert_sites(engine, rows)
    with engine.connect() as conn:
        return [int(i) for i in conn.execute(text("SELECT id FROM sites ORDER BY id")).scalars()]


def snmp_ok(site: int, ts: datetime, up: int, octets: int, oper: int = 1) -> SnmpOutcome:
    return SnmpOutcome(
        site_id=site,
        ts=ts,
        ok=True,
        latency_ms=1.5,
        if_index=1,
        sys_uptime=up,
        in_octets=octets,
        out_octets=octets // 10,
        counter_bits=64,
        oper_status=oper,
        high_speed_mbps=100,
    )


def batch_for(
    ids: list[int],
    ts: datetime,
    snmp: list[SnmpOutcome],
    http: list[HttpOutcome],
    previous: list[CounterSample | None],
) -> RoundBatch:
    return build_round_batch(
        round_id=uuid.uuid4(),
        started_at=ts,
        finished_at=ts + timedelta(seconds=2),
        kinds=["http", "snmp"],
        site_ids=ids,
        snmp=list(enumerate(snmp)),
        http=list(enumerate(http)),
        previous_counters=CounterArrays.from_samples(previous),
        probe_seconds=2.0,
    )


def first_round(ids: list[int]) -> RoundBatch:
    a, b, c = ids
    snmp = [
        snmp_ok(a, T0, 100_000, 1_000_000),
        SnmpOutcome(b, T0, False, error=ErrorClass.TIMEOUT, error_detail="no answer\tat all"),
        snmp_ok(c, T0, 200_000, 5_000, oper=2),
    ]
    http = [
        HttpOutcome(a, T0, True, latency_ms=3.0, status_code=200, ttfb_ms=3.0, total_ms=3.2),
        HttpOutcome(b, T0, False, error=ErrorClass.REFUSED, error_detail="connection reset"),
        HttpOutcome(
            c,
            T0,
            False,
            error=ErrorClass.HTTP_STATUS,
            error_detail="HTTP status 503",
            status_code=503,
            ttfb_ms=2.0,
        ),
    ]
    return batch_for(ids, T0, snmp, http, [None, None, None])


def test_a_round_is_written_once(engine: Engine, site_ids: list[int]) -> None:
    batch = first_round(site_ids)
    assert (batch.round.up, batch.round.degraded, batch.round.down) == (1, 1, 1)
    assert write_round(engine, batch) is True
    assert write_round(engine, batch) is False  # a replay writes nothing
    a, b, c = site_ids
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT site_id, kind, ok, state, error, error_detail FROM probe_results "
                "ORDER BY site_id, kind"
            )
        ).all()
        assert len(rows) == 6
        assert {(r.site_id, r.state) for r in rows} == {(a, "up"), (b, "down"), (c, "degraded")}
        assert [r.error_detail for r in rows if r.site_id == b and r.kind == "snmp"] == [
            "no answer\tat all"
        ]
        parts = (
            conn.execute(text("SELECT tableoid::regclass::text FROM probe_results GROUP BY 1"))
            .scalars()
            .all()
        )
        assert parts == ["probe_results_p20310304"]
        status = {r.site_id: r for r in conn.execute(text("SELECT * FROM site_status"))}
        assert status[a].state == "up" and status[a].consecutive_failures == 0
        assert status[a].last_ok_at == T0 and status[a].latency_ms == 1.5
        assert status[b].state == "down" and status[b].consecutive_failures == 1
        assert status[b].last_ok_at is None and status[b].last_failure_at == T0
        assert "snmp timeout" in status[b].last_error and "http refused" in status[b].last_error
        assert status[c].state == "degraded" and status[c].http_status == 503
        assert "ifOperStatus 2" in status[c].snmp_error
        assert str(status[a].last_round_id) == batch.round.id
        counters = conn.execute(text("SELECT count(*) FROM counter_state")).scalar_one()
        assert counters == 2
        rounds = conn.execute(text("SELECT sites, up, degraded, down FROM probe_rounds")).one()
        assert tuple(rounds) == (3, 1, 1, 1)


def test_second_round_computes_rates_and_records_a_reboot(
    engine: Engine, site_ids: list[int]
) -> None:
    a, b, c = site_ids
    write_round(engine, first_round(site_ids))
    t1 = T0 + timedelta(seconds=300)  # next UTC day: a new partition
    snmp = [
        snmp_ok(a, t1, 100_000 + 30_000, 1_000_000 + 3_750_000),  # 100 kbit/s in
        snmp_ok(b, t1, 50, 10),
        snmp_ok(c, t1, 1_000, 10),  # uptime went down: rebooted
    ]
    http = [HttpOutcome(i, t1, True, latency_ms=1.0, status_code=200) for i in site_ids]
    previous = [
        CounterSample(T0.timestamp(), 100_000, 1_000_000, 100_000, 64, 1),
        None,
        CounterSample(T0.timestamp(), 200_000, 5_000, 500, 64, 1),
    ]
    batch = batch_for(site_ids, t1, snmp, http, previous)
    assert batch.round.rates_computed == 1 and batch.round.reboots == 1
    assert write_round(engine, batch)
    with engine.connect() as conn:
        rate = conn.execute(
            text(
                "SELECT in_bps, out_bps FROM probe_results WHERE site_id = :a AND ts = :t "
                "AND kind = 'snmp'"
            ),
            {"a": a, "t": t1},
        ).one()
        assert rate.in_bps == pytest.approx(100_000.0) and rate.out_bps == pytest.approx(10_000.0)
        st = {r.site_id: r for r in conn.execute(text("SELECT * FROM site_status"))}
        assert st[a].in_bps == pytest.approx(100_000.0) and st[a].rates_at == t1
        assert st[b].state == "up" and st[b].consecutive_failures == 0
        assert st[b].state_since == t1 and st[a].state_since == T0
        reboot = conn.execute(
            text("SELECT site_id, reason, prev_uptime, new_uptime FROM reboot_events")
        ).one()
        assert tuple(reboot) == (c, "uptime_decreased", 200_000, 1_000)
        cs = conn.execute(
            text("SELECT sys_uptime, in_octets FROM counter_state WHERE site_id = :c"), {"c": c}
        ).one()
        assert (cs.sys_uptime, int(cs.in_octets)) == (1_000, 10)
        days = conn.execute(text("SELECT count(DISTINCT tableoid) FROM probe_results")).scalar_one()
        assert days == 2


def test_an_older_round_replayed_late_does_not_regress_state(
    engine: Engine, site_ids: list[int]
) -> None:
    old = first_round(site_ids)
    t1 = T0 + timedelta(minutes=5)
    newer = batch_for(
        site_ids,
        t1,
        [snmp_ok(i, t1, 500_000, 9_000_000) for i in site_ids],
        [HttpOutcome(i, t1, True, latency_ms=1.0, status_code=200) for i in site_ids],
        [None, None, None],
    )
    assert write_round(engine, newer)
    assert write_round(engine, old)  # its results are kept...
    with engine.connect() as conn:
        states = conn.execute(text("SELECT DISTINCT state, last_probe_at FROM site_status")).all()
        assert states == [("up", t1)]  # ...but it does not overwrite the newer state
        ups = conn.execute(text("SELECT DISTINCT sys_uptime FROM counter_state")).scalars().all()
        assert ups == [500_000]
        assert conn.execute(text("SELECT count(*) FROM probe_results")).scalar_one() == 12


def test_batch_survives_serialisation(site_ids: list[int]) -> None:
    batch = first_round(site_ids)
    again = RoundBatch.from_bytes(batch.to_bytes())
    assert again == batch


def give(parts: BatchParts, batch: RoundBatch, names: tuple[str, ...]) -> None:
    """Hand over the named parts of a finished batch, as the builder would."""
    for name in names:
        if name == "head":
            parts.give("head", (batch.round.id, batch.first_day, batch.last_day))
        elif name == "round":
            parts.give("round", batch.round)
        else:
            parts.give(name, getattr(batch, name))


@contextmanager
def writing_in_background(engine: Engine, parts: BatchParts) -> Iterator[Future[bool]]:
    """``write_parts`` in a thread; parts not handed over by the end fail, so it never hangs."""
    with ThreadPoolExecutor(1) as pool:
        try:
            yield pool.submit(write_parts, engine, parts)
        finally:
            parts.fail(RuntimeError("the test ended before handing over every part"))


def partition_exists(engine: Engine, name: str) -> bool:
    """True once the writer has checked for the round and committed the partitions it needs."""
    with engine.connect() as conn:
        found = conn.execute(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name})
        return bool(found.scalar_one())


def test_state_is_written_before_the_results_are_built(engine: Engine, site_ids: list[int]) -> None:
    batch = first_round(site_ids)
    parts = BatchParts()
    with writing_in_background(engine, parts) as writing:
        give(parts, batch, ("head", "counter_rows", "reboot_rows", "status_rows"))
        deadline = time.monotonic() + 20
        while not writer_has_written(engine, "site_status"):
            assert time.monotonic() < deadline, "site_status was not written before the results"
            assert not writing.done(), writing.exception()
            time.sleep(0.02)
        assert round_counts(engine) == (0, 0, 0)  # nothing is visible before the commit
        give(parts, batch, ("snmp_rows", "http_rows", "round"))
        assert writing.result(timeout=30) is True
    assert round_counts(engine) == (1, 6, 3)


def test_a_batch_that_fails_to_be_built_writes_nothing(engine: Engine, site_ids: list[int]) -> None:
    batch = first_round(site_ids)
    parts = BatchParts()
    with writing_in_background(engine, parts) as writing:
        give(parts, batch, ("head", "counter_rows", "reboot_rows", "status_rows", "snmp_rows"))
        parts.fail(ValueError("the builder broke"))
        with pytest.raises(ValueError, match="the builder broke"):
            writing.result(timeout=30)
    assert round_counts(engine) == (0, 0, 0)
    assert write_round(engine, batch) is True  # the same round can still be written whole
    assert round_counts(engine) == (1, 6, 3)


def test_two_writers_of_one_round_write_it_once(engine: Engine, site_ids: list[int]) -> None:
    batch = first_round(site_ids)
    parts = BatchParts()
    with writing_in_background(engine, parts) as slow:
        give(parts, batch, ("head",))
        deadline = time.monotonic() + 20
        while not partition_exists(engine, "probe_results_p20310304"):
            assert time.monotonic() < deadline, "the writer did not create the partitions"
            time.sleep(0.02)
        # The slow writer found no such round; another writes the same round meanwhile.
        assert write_round(engine, batch) is True
        give(parts, batch, ("counter_rows", "reboot_rows", "status_rows", "snmp_rows"))
        give(parts, batch, ("http_rows", "round"))
        assert slow.result(timeout=30) is False  # its insert of the round met the other's
    assert round_counts(engine) == (1, 6, 3)


def test_a_round_whose_batch_fails_to_build_raises_and_writes_nothing(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import results.rounds as rounds

    real = build_chunk
    handed: list[BatchParts] = []

    def breaks_after_two_parts(**kwargs: Any) -> tuple[ChunkRows, ChunkTotals]:
        """The real build, then a failure after the writer got its first parts."""
        rows, _ = real(**{**kwargs, "parts": None})
        parts = kwargs["parts"]
        handed.append(parts)
        parts.give("counter_rows", rows.counter_rows)
        raise RuntimeError("the builder broke")

    monkeypatch.setattr(rounds, "build_chunk", breaks_after_two_parts)
    settings = Settings(database_url="unused", var_dir=tmp_path / "var")
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            rounds.run_round(engine, settings, kinds={"http"})
        except BaseException as exc:
            outcome["error"] = exc

    with srv.raw_server(srv.close_delimited) as (host, port):
        rows = write_lab_csv(tmp_path / "s.csv", 3, snmp_port=1, http_port=port, https_port=1)
        for row in rows:
            row["http_url"] = f"http://{host}:{port}/"
        insert_sites(engine, rows)
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(60)
    try:
        assert not worker.is_alive(), "the round hung: its writer was never told the build failed"
    finally:
        for parts in handed:
            parts.fail(RuntimeError("test over"))  # frees a writer left waiting
    assert isinstance(outcome.get("error"), RuntimeError)
    assert round_counts(engine) == (0, 0, 0)


def lines_of(batch: RoundBatch, name: str, sites: set[int]) -> str:
    """The lines of a row part that belong to ``sites`` (the site id's column varies)."""
    column = 1 if name in ("snmp_rows", "http_rows") else 0
    rows = getattr(batch, name).splitlines(keepends=True)
    return "".join(r for r in rows if int(r.split("\t")[column]) in sites)


def stored_state(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row a round writes, by table, in a fixed order."""
    tables = {
        "site_status": "SELECT * FROM site_status ORDER BY site_id",
        "counter_state": "SELECT * FROM counter_state ORDER BY site_id",
        "reboot_events": "SELECT site_id, detected_at, round_id, reason, prev_uptime, new_uptime "
        "FROM reboot_events ORDER BY site_id",
        "probe_results": "SELECT * FROM probe_results ORDER BY site_id, kind, ts",
        "probe_rounds": "SELECT id, sites, up, degraded, down, rates_computed, reboots "
        "FROM probe_rounds ORDER BY started_at",
    }
    with engine.connect() as conn:
        return {t: [tuple(r) for r in conn.execute(text(sql))] for t, sql in tables.items()}


def test_a_batch_written_in_chunks_stores_what_it_stores_whole(
    engine: Engine, site_ids: list[int]
) -> None:
    a, b, c = site_ids
    t1 = T0 + timedelta(seconds=300)
    second = batch_for(
        site_ids,
        t1,
        [snmp_ok(a, t1, 130_000, 4_750_000), snmp_ok(b, t1, 50, 10), snmp_ok(c, t1, 1_000, 10)],
        [HttpOutcome(i, t1, True, latency_ms=1.0, status_code=200) for i in site_ids],
        [
            CounterSample(T0.timestamp(), 100_000, 1_000_000, 100_000, 64, 1),
            CounterSample(T0.timestamp(), 9_000, 5, 5, 64, 1),
            CounterSample(T0.timestamp(), 200_000, 5_000, 500, 64, 1),
        ],
    )
    assert second.round.reboots == 2 and second.round.rates_computed == 1
    first = first_round(site_ids)

    write_round(engine, first)
    assert write_round(engine, second)
    whole = stored_state(engine)
    with engine.begin() as conn:
        conn.execute(
            text("TRUNCATE probe_rounds, site_status, counter_state, reboot_events, probe_results")
        )

    write_round(engine, first)
    parts = BatchParts()
    with writing_in_background(engine, parts) as writing:
        give(parts, second, ("head",))
        for chunk in ({a, c}, {b}):  # every staging table used twice (b and c reboot)
            for name in ROW_PARTS:
                parts.give(name, lines_of(second, name, chunk))
        give(parts, second, ("round",))
        assert writing.result(timeout=30) is True
    chunked = stored_state(engine)
    assert len(chunked["reboot_events"]) == 2 and len(chunked["probe_results"]) == 12
    assert chunked == whole


def test_parts_must_come_in_their_order() -> None:
    parts = BatchParts()
    parts.give("head", ("r", "2031-03-04", "2031-03-04"))
    with pytest.raises(ValueError, match="'status_rows' given where 'counter_rows' was due"):
        parts.give("status_rows", "")
    parts.give("counter_rows", "")
    with pytest.raises(ValueError, match="the round came before the chunk's reboot_rows"):
        parts.give("round", None)
