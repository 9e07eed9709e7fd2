"""The spool across a real database outage: a private cluster is stopped mid-round."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from core.db import make_engine
from core.settings import Settings
from db.cluster import EmbeddedCluster
from db.migrate import upgrade
from results.batch import RoundBatch, RoundRecord
from results.rounds import run_round
from results.spool import flush_spool, pending_rounds, spool_round
from tests.probes import http_servers as srv
from tests.results.lab_sites import insert_sites, round_counts, write_lab_csv

pytestmark = pytest.mark.slow


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    cfg = Settings(pg_data_dir=tmp_path / "pg", pg_port=57300)
    cluster = EmbeddedCluster(cfg, data_dir=tmp_path / "pg", unsafe_fast=True)
    cluster.start()
    try:
        upgrade(cluster.url())
        yield cluster
    finally:
        cluster.destroy()


def test_round_is_spooled_while_the_database_is_down_and_written_once_after(
    private_cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    engine = make_engine(private_cluster.url())
    settings = Settings(database_url=private_cluster.url(), var_dir=tmp_path / "var")
    request_seen = threading.Event()
    db_stopped = threading.Event()

    def gated(conn: socket.socket, stop: threading.Event) -> None:
        srv.read_request(conn)
        request_seen.set()
        db_stopped.wait(60)  # answer only once the database is down
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nConectado")

    try:
        with srv.raw_server(srv.close_delimited) as (host, port):
            rows = write_lab_csv(tmp_path / "s.csv", 4, snmp_port=1, http_port=port, https_port=1)
            for row in rows:
                row["http_url"] = f"http://{host}:{port}/"
            insert_sites(engine, rows)
            first = run_round(engine, settings, kinds={"http"})
        assert first.written and not first.spooled and first.up == 4
        assert round_counts(engine) == (1, 4, 4)

        with srv.raw_server(gated) as (host, port):
            with engine.begin() as conn:
                conn.execute(
                    text("UPDATE sites SET http_url = :u"), {"u": f"http://{host}:{port}/"}
                )
            result: dict[str, object] = {}
            worker = threading.Thread(
                target=lambda: result.setdefault("s", run_round(engine, settings, kinds={"http"}))
            )
            worker.start()
            assert request_seen.wait(30)
            private_cluster.stop()
            db_stopped.set()
            worker.join(120)
        summary = result["s"]
        assert summary.spooled and not summary.written and not summary.lost  # type: ignore[attr-defined]
        spooled = pending_rounds(settings)
        assert len(spooled) == 1

        # While the database is down a flush keeps everything.
        report = flush_spool(engine, settings)
        assert report.written == 0 and report.remaining == 1 and report.error
        assert pending_rounds(settings) == spooled

        private_cluster.start()
        keep = tmp_path / "copy.gz"
        shutil.copy(spooled[0], keep)
        report = flush_spool(engine, settings)
        assert (report.written, report.already_written, report.remaining) == (1, 0, 0)
        assert pending_rounds(settings) == []
        assert round_counts(engine) == (2, 8, 4)
        with engine.connect() as conn:
            from_spool = conn.execute(
                text("SELECT from_spool FROM probe_rounds WHERE id = :i"),
                {"i": summary.round_id},  # type: ignore[attr-defined]
            ).scalar_one()
        assert from_spool is True

        # A crash between commit and delete leaves the file: the replay writes nothing twice.
        shutil.copy(keep, spooled[0])
        report = flush_spool(engine, settings)
        assert (report.written, report.already_written) == (0, 1)
        assert round_counts(engine) == (2, 8, 4)
        assert flush_spool(engine, settings).written == 0
    finally:
        engine.dispose()


def test_full_spool_refuses_new_rounds_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(var_dir=tmp_path / "var", spool_max_rounds=2)

    def batch(i: int) -> RoundBatch:
        record = RoundRecord(
            id=f"00000000-0000-0000-0000-00000000000{i}",
            started_at=f"2031-01-01T00:0{i}:00+00:00",
            finished_at=f"2031-01-01T00:0{i}:01+00:00",
            kinds=["http"],
            sites=1,
        )
        return RoundBatch(record, "2031-01-01", "2031-01-01", http_rows="x\n" * 10)

    assert spool_round(settings, batch(1)) is not None
    assert spool_round(settings, batch(2)) is not None
    assert spool_round(settings, batch(3)) is None
    assert "Spool full" in caplog.text and "NOT kept" in caplog.text
    assert [p.name[:15] for p in pending_rounds(settings)] == ["20310101T000100", "20310101T000200"]
