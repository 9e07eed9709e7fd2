"""The spool across a real database outage: a private cluster is stopped mid-round."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from core.db import make_engine
from core.settings import Settings
from db.cluster import EmbeddedCluster
from db.migrate import upgrade
from results.batch import RoundBatch, RoundRecord
from results.batches import run_batch
from results.rounds import RoundSummary, run_round
from results.spool import flush_spool, pending_rounds, spool_round
from tests.probes import http_servers as srv
from tests.results.lab_sites import insert_sites, round_counts, write_lab_csv, writer_has_written

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
        # The scheduler's next batch writes the spool first and its log line says so.
        with srv.raw_server(srv.close_delimited) as (host, port):
            with engine.begin() as conn:
                conn.execute(
                    text("UPDATE sites SET http_url = :u"), {"u": f"http://{host}:{port}/"}
                )
            run = run_batch(
                engine,
                settings,
                batch=0,
                batches=1,
                probe=lambda where: run_round(engine, settings, kinds={"http"}, sites_where=where),
                runner="t",
            )
        assert run.flushed is not None and run.flushed.written == 1
        assert "wrote 1 spooled round(s) from an outage first" in run.describe()
        assert pending_rounds(settings) == []
        assert round_counts(engine) == (3, 12, 4)
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
        assert round_counts(engine) == (3, 12, 4)
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


def test_a_round_whose_early_sites_were_being_written_when_the_database_went_down_is_spooled_whole(
    private_cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    # Two sites have only a web server, which answers at once: they are built and written
    # while the other two wait out an SNMP agent that never answers. The database goes down
    # with that first chunk written but not committed; the whole round is spooled, then
    # written once, every site in it.
    engine = make_engine(private_cluster.url())
    settings = Settings(
        database_url=private_cluster.url(),
        var_dir=tmp_path / "var",
        snmp_timeout=3.0,
        probe_retries=0,
    )
    mute = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # reads nothing, answers nothing
    mute.bind(("0.0.0.0", 0))  # every 127.x.y.z the sites use
    try:
        with srv.raw_server(srv.close_delimited) as (host, port):
            rows = write_lab_csv(
                tmp_path / "s.csv",
                4,
                snmp_port=mute.getsockname()[1],
                http_port=port,
                https_port=1,
            )
            for row in rows:
                row["http_url"] = f"http://{host}:{port}/"
            insert_sites(engine, rows)
            web_only = [rows[0]["site_key"], rows[1]["site_key"]]
            with engine.begin() as conn:
                conn.execute(
                    text("UPDATE sites SET mgmt_ip = NULL WHERE site_key = ANY(:k)"),
                    {"k": web_only},
                )
            result: dict[str, object] = {}
            worker = threading.Thread(
                target=lambda: result.setdefault("s", run_round(engine, settings))
            )
            worker.start()
            deadline = time.monotonic() + 20
            while not writer_has_written(engine, "site_status"):
                assert time.monotonic() < deadline, "the early sites were not being written"
                assert worker.is_alive(), result
                time.sleep(0.02)
            private_cluster.stop()
            worker.join(60)
        summary = result["s"]
        assert isinstance(summary, RoundSummary)
        assert summary.spooled and not summary.written and not summary.lost
        assert summary.phases["early build"] > 0 and summary.sites == 4

        private_cluster.start()
        report = flush_spool(engine, settings)
        assert (report.written, report.remaining) == (1, 0)
        assert round_counts(engine) == (1, 6, 4)  # 2 web-only results, 2 × 2 for the others
        with engine.connect() as conn:
            states: dict[str, str] = dict(
                conn.execute(
                    text(
                        "SELECT s.site_key, st.state FROM site_status st "
                        "JOIN sites s ON s.id = st.site_id"
                    )
                ).all()
            )
        assert states == {
            rows[0]["site_key"]: "up",
            rows[1]["site_key"]: "up",
            rows[2]["site_key"]: "degraded",  # SNMP silent, web server fine
            rows[3]["site_key"]: "degraded",
        }
    finally:
        mute.close()
        engine.dispose()
