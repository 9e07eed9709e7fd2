"""Full rounds against the lab agents (real background processes) into real PostGIS."""

from __future__ import annotations

import math
import multiprocessing
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.errors import InvalidInput
from core.settings import Settings
from lab.inventory import LabInventory, read_lab_inventory
from lab.runner import start_lab, stop_lab
from probes.http import HttpProbeProcess
from results.rounds import (
    KINDS,
    SLOW_MS,
    RoundSummary,
    _http_process_ahead,
    load_targets,
    run_round,
)
from tests.ports import free_port
from tests.probes import http_servers as srv
from tests.results.lab_sites import insert_sites, write_lab_csv, writer_has_written

pytestmark = pytest.mark.slow
SITES = 400


@dataclass
class Lab:
    rows: list[dict[str, str]]
    inventory: LabInventory
    ca_file: Path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("lab")
    settings = Settings(var_dir=tmp / "var")
    snmp_port = free_port(socket.SOCK_DGRAM)
    http_port, https_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    rows = write_lab_csv(
        tmp / "lab.csv",
        SITES,
        snmp_port=snmp_port,
        http_port=http_port,
        https_port=https_port,
        first=80_000,
    )
    state = start_lab(
        settings,
        tmp / "lab.csv",
        snmp_port=snmp_port,
        http_port=http_port,
        https_port=https_port,
    )
    try:
        yield Lab(rows, read_lab_inventory(tmp / "lab.csv"), Path(state.ca_file))
    finally:
        stop_lab(settings)


@pytest.fixture
def round_settings(db_url: str, tmp_path: Path, lab: Lab) -> Settings:
    return Settings(
        database_url=db_url,
        var_dir=tmp_path / "var",
        http_ca_file=lab.ca_file,
        http_expect_keyword="Conectado",
        probe_concurrency=500,
    )


def expected_state(lab: Lab, i: int, now: float) -> str | None:
    b = lab.inventory.behaviour(i)
    if b.flap_period_s is not None:
        return None  # may switch during the round
    if b.down:
        return "down"
    if b.wan_oper_status != 1 or b.http_status != 200 or b.tls_fault:
        return "degraded"
    return "up"


def test_two_rounds_against_the_lab(engine: Engine, round_settings: Settings, lab: Lab) -> None:
    insert_sites(engine, lab.rows)
    first = run_round(engine, round_settings)
    assert first.written and first.sites == SITES
    assert first.snmp_probes == SITES and first.http_probes == SITES
    assert first.up + first.degraded + first.down == SITES
    assert first.rates_computed == 0  # nothing to compare with yet
    # Both engines ran at once; each one's time is shown and the round waited for the slower.
    engines = [first.phases["probe snmp"], first.phases["probe http"]]
    assert min(engines) > 0 and max(engines) <= first.phases["probe"]
    assert first.phases["early build"] > 0  # what follows checks the chunked build too

    with engine.connect() as conn:
        ids = {r.site_key: r.id for r in conn.execute(text("SELECT id, site_key FROM sites"))}
        states: dict[str, str] = dict(
            conn.execute(
                text(
                    "SELECT s.site_key, st.state FROM site_status st JOIN sites s "
                    "ON s.id = st.site_id"
                )
            ).all()
        )
        n_results = conn.execute(text("SELECT count(*) FROM probe_results")).scalar_one()
        bits: dict[str, int] = dict(
            conn.execute(
                text(
                    "SELECT s.site_key, r.counter_bits FROM probe_results r JOIN sites s "
                    "ON s.id = r.site_id WHERE r.kind = 'snmp' AND r.ok"
                )
            ).all()
        )
        by_name: dict[str, int] = dict(
            conn.execute(
                text(
                    "SELECT s.site_key, r.if_index FROM probe_results r JOIN sites s "
                    "ON s.id = r.site_id WHERE r.kind = 'snmp' AND r.ok "
                    "AND s.wan_if_name IS NOT NULL"
                )
            ).all()
        )
        stored_round = conn.execute(
            text("SELECT sites, up, degraded, down FROM probe_rounds")
        ).one()
    assert n_results == 2 * SITES
    assert tuple(stored_round) == (SITES, first.up, first.degraded, first.down)
    now = time.time()
    checked = 0
    for i, key in enumerate(lab.inventory.site_keys):
        want = expected_state(lab, i, now)
        if want is not None:
            assert states[key] == want, (key, lab.inventory.behaviour(i))
            checked += 1
        if key in bits:
            assert bits[key] == lab.inventory.behaviour(i).counter_bits
    assert checked > SITES * 0.9
    assert 32 in bits.values() and 64 in bits.values()
    assert by_name and all(index is not None and index >= 2 for index in by_name.values())
    assert len(ids) == SITES

    # The next round starts the sites that failed or answered slowly in the slow lane.
    with engine.begin() as conn:  # an up site with no latency (it goes last among the up)
        conn.execute(
            text(
                "UPDATE site_status SET latency_ms = NULL WHERE site_id = "
                "(SELECT min(site_id) FROM site_status WHERE state = 'up' AND snmp_ok AND http_ok)"
            )
        )
    targets = load_targets(engine, round_settings)
    with engine.connect() as conn:
        last = {
            r.site_id: r
            for r in conn.execute(
                text("SELECT site_id, state, snmp_ok, http_ok, latency_ms FROM site_status")
            )
        }
    slow_snmp = {t.site_id for _, t in targets.snmp if t.expect_slow}
    slow_http = {t.site_id for _, t in targets.http if t.expect_slow}
    assert slow_snmp == {
        i for i, r in last.items() if r.snmp_ok is False or (r.latency_ms or 0) >= SLOW_MS
    }
    assert slow_http == {
        i for i, r in last.items() if r.http_ok is False or (r.latency_ms or 0) >= SLOW_MS
    }
    assert 0 < len(slow_snmp) < SITES * 0.3 and 0 < len(slow_http) < SITES * 0.3
    down = {ids[key] for key, state in states.items() if state == "down"}
    assert down and down <= slow_snmp & slow_http
    # Slow answers start before the sites that were down (a slow one started late that goes
    # down would end the round a whole timeout later).
    order = [t.site_id for _, t in targets.snmp]
    answered_slowly = [i for i in order if (last[i].latency_ms or 0) >= SLOW_MS]
    assert answered_slowly
    assert max(order.index(i) for i in answered_slowly) < min(order.index(i) for i in down)

    # The whole order: answered slowly, then down, then failing, then the rest; within each,
    # slower first, no latency last, then by id.
    def group(r: Any) -> int:
        if r.latency_ms is not None and r.latency_ms >= SLOW_MS:
            return 0
        if r.state == "down":
            return 1
        return 2 if r.snmp_ok is False or r.http_ok is False else 3

    def rank(i: int) -> tuple[int, float, int]:
        lat = last[i].latency_ms
        return group(last[i]), -lat if lat is not None else math.inf, i

    assert order == sorted(order, key=rank)
    assert len({group(last[i]) for i in order}) == 4

    time.sleep(2)
    second = run_round(engine, round_settings)
    assert second.written
    assert second.rates_computed > SITES * 0.8
    with engine.connect() as conn:
        rates = conn.execute(
            text(
                """
                SELECT s.site_key, r.in_bps, r.out_bps, p.ts AS t0, r.ts AS t1,
                       s.bw_down_mbps, s.bw_up_mbps
                FROM probe_results r
                JOIN sites s ON s.id = r.site_id
                JOIN probe_results p ON p.site_id = r.site_id AND p.kind = 'snmp'
                     AND p.round_id = CAST(:first AS uuid)
                WHERE r.kind = 'snmp' AND r.round_id = CAST(:second AS uuid)
                  AND r.in_bps IS NOT NULL
                """
            ),
            {"first": first.round_id, "second": second.round_id},
        ).all()
        status_rates = conn.execute(
            text(
                "SELECT count(*) FROM site_status WHERE in_bps IS NOT NULL AND rates_at IS NOT NULL"
            )
        ).scalar_one()
    assert len(rates) == second.rates_computed == status_rates
    index = {key: i for i, key in enumerate(lab.inventory.site_keys)}
    for r in rates:
        b = lab.inventory.behaviour(index[r.site_key])
        assert 0 < r.in_bps <= r.bw_down_mbps * 1e6 and 0 < r.out_bps <= r.bw_up_mbps * 1e6
        t0, t1 = r.t0.timestamp(), r.t1.timestamp()
        in0, out0 = b.octets(t0)
        in1, out1 = b.octets(t1)
        mod = 2**b.counter_bits
        expect_in = ((in1 - in0) % mod) * 8 / (t1 - t0)
        expect_out = ((out1 - out0) % mod) * 8 / (t1 - t0)
        assert r.in_bps == pytest.approx(expect_in, rel=0.05), r.site_key
        assert r.out_bps == pytest.approx(expect_out, rel=0.05), r.site_key


def round_watching_the_writer(engine: Engine, settings: Settings) -> tuple[RoundSummary, float]:
    """Run a round; also return how long before its end its writer was first seen writing."""
    done: dict[str, RoundSummary | BaseException] = {}

    def run() -> None:
        try:
            done["summary"] = run_round(engine, settings)
        except BaseException as exc:
            done["summary"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    seen_writing = None
    while worker.is_alive():
        if seen_writing is None and writer_has_written(engine, "site_status"):
            seen_writing = time.monotonic()
            with engine.connect() as conn:  # nothing is visible before the commit
                assert conn.execute(text("SELECT count(*) FROM site_status")).scalar_one() == 0
        time.sleep(0.02)
    ended = time.monotonic()
    summary = done["summary"]
    assert isinstance(summary, RoundSummary), summary
    return summary, 0.0 if seen_writing is None else ended - seen_writing


def assert_whole_round_stored(engine: Engine, summary: RoundSummary) -> None:
    assert summary.written and summary.sites == SITES
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT count(*), count(DISTINCT last_round_id) FROM site_status")
        ).one()
        results = conn.execute(text("SELECT count(*) FROM probe_results")).scalar_one()
    assert tuple(stored) == (SITES, 1) and results == 2 * SITES


def test_sites_done_early_are_written_while_the_dead_are_awaited(
    engine: Engine, round_settings: Settings, lab: Lab
) -> None:
    # The lab's down sites refuse HTTP at once but leave SNMP to time out (2 attempts of 2 s):
    # the HTTP probes are all in seconds before the SNMP ones, and the sites done by then are
    # built and written meanwhile, in the round's one transaction.
    insert_sites(engine, lab.rows)
    summary, written_before_end = round_watching_the_writer(engine, round_settings)
    assert summary.down > 0
    assert summary.phases["probe http"] + 1.0 < summary.phases["probe snmp"]
    assert written_before_end > 1.0, "not written early"
    assert summary.phases["early build"] > 0
    # What was left after the probing was only the sites still awaited.
    assert summary.phases["compute"] + summary.phases["write"] < 1.0
    assert_whole_round_stored(engine, summary)


def round_with_ten_silent_web_servers(
    engine: Engine, round_settings: Settings, lab: Lab, *, snmp_timeout: float, http_timeout: float
) -> tuple[RoundSummary, float, list[dict[str, str]]]:
    """The lab's sites with the first ten's web servers silent, probed once (HTTP in a child
    process, no retries) while the writer is watched: (summary, seconds written before the
    end, the rows)."""
    settings = round_settings.model_copy(
        update={
            "snmp_timeout": snmp_timeout,
            "probe_retries": 0,
            "http_timeout": http_timeout,
            "http_process_min": 1,
        }
    )
    with srv.raw_server(srv.silent) as (host, port):
        rows = [dict(r) for r in lab.rows]
        for row in rows[:10]:
            row["http_url"] = f"http://{host}:{port}/"
        insert_sites(engine, rows)
        summary, written_before_end = round_watching_the_writer(engine, settings)
    return summary, written_before_end, rows


def test_sites_done_early_are_written_while_silent_web_servers_are_awaited(
    engine: Engine, round_settings: Settings, lab: Lab
) -> None:
    # The other way round, as in the field where a dead link's web server is silent for the
    # whole HTTP timeout: SNMP ends first, and the HTTP probes run in their child process,
    # which sends its outcomes as they come, so the sites it has done are built meanwhile.
    summary, written_before_end, rows = round_with_ten_silent_web_servers(
        engine, round_settings, lab, snmp_timeout=0.5, http_timeout=3.0
    )
    assert summary.phases["probe snmp"] + 1.0 < summary.phases["probe http"]
    assert summary.errors.get("http timeout", 0) >= 10
    assert written_before_end > 1.0, "not written early"
    assert summary.phases["early build"] > 0
    assert summary.phases["compute"] + summary.phases["write"] < 1.0
    assert_whole_round_stored(engine, summary)
    keys = [r["site_key"] for r in rows[:10]]
    with engine.connect() as conn:
        states = conn.execute(
            text(
                "SELECT st.http_error FROM site_status st JOIN sites s ON s.id = st.site_id "
                "WHERE s.site_key = ANY(:keys)"
            ),
            {"keys": keys},
        ).scalars()
        assert all(e and e.startswith("timeout") for e in states)


def test_sites_whose_last_probe_ends_after_the_other_engine_are_written_early_too(
    engine: Engine, round_settings: Settings, lab: Lab
) -> None:
    # Every web server answers only after the SNMP probes are over (as when the HTTP child
    # starts late on a busy host), and ten never do: the sites are built and written as their
    # answers come, not only those in when the first engine ended (there were none).
    settings = round_settings.model_copy(
        update={"snmp_timeout": 0.5, "probe_retries": 0, "http_timeout": 5.0, "http_process_min": 1}
    )
    with (
        srv.raw_server(srv.late_answer) as (late_host, late_port),
        srv.raw_server(srv.silent) as (silent_host, silent_port),
    ):
        rows = [dict(r) for r in lab.rows]
        for n, row in enumerate(rows):
            host, port = (silent_host, silent_port) if n < 10 else (late_host, late_port)
            row["http_url"] = f"http://{host}:{port}/"
        insert_sites(engine, rows)
        summary, written_before_end = round_watching_the_writer(engine, settings)
    assert summary.phases["probe snmp"] + 3.0 < summary.phases["probe http"]
    assert summary.errors.get("http timeout", 0) == 10
    assert written_before_end > 1.5, "not written early"
    assert summary.phases["early build"] > 0
    assert_whole_round_stored(engine, summary)


def test_sites_done_are_written_while_both_engines_still_run(
    engine: Engine, round_settings: Settings, lab: Lab
) -> None:
    # The lab's down sites leave SNMP silent for its whole timeout and ten web servers are
    # silent for the HTTP one: both engines run to the end of their timeouts, and the sites
    # done meanwhile are written before either engine ends, not only after the first does.
    summary, written_before_end, _ = round_with_ten_silent_web_servers(
        engine, round_settings, lab, snmp_timeout=6.0, http_timeout=6.0
    )
    first_engine_end = min(summary.phases["probe snmp"], summary.phases["probe http"])
    assert first_engine_end > 5.5  # both waited out their silent peers
    assert summary.errors.get("http timeout", 0) >= 10 and summary.down > 0
    # Writing was seen well before the first engine ended (the old rule started it then).
    assert written_before_end > summary.phases["total"] - first_engine_end + 1.5, (
        written_before_end,
        summary.phases,
    )
    assert_whole_round_stored(engine, summary)


def test_site_selection(engine: Engine, round_settings: Settings, lab: Lab) -> None:
    insert_sites(engine, lab.rows[:30])
    keys = [lab.rows[0]["site_key"], lab.rows[1]["site_key"]]
    one = run_round(engine, round_settings, site_keys=keys, kinds={"http"})
    assert (one.sites, one.snmp_probes, one.http_probes) == (2, 0, 2)
    assert "probe http" not in one.phases  # one engine: its time is the probe phase
    limited = run_round(engine, round_settings, kinds={"snmp"}, limit=5)
    assert (limited.sites, limited.snmp_probes, limited.http_probes) == (5, 5, 0)
    where = run_round(
        engine,
        round_settings.model_copy(update={"http_process_min": 1}),  # HTTP in a child process
        kinds={"http"},
        sites_where="s.http_url LIKE :scheme",
        sites_params={"scheme": "https:%"},
    )
    assert where.http_probes == sum(r["http_url"].startswith("https:") for r in lab.rows[:30])
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE sites SET status = 'planned' WHERE site_key = :k"), {"k": keys[1]}
        )
    with pytest.raises(InvalidInput) as info:
        run_round(engine, round_settings, site_keys=[keys[1], "NOPE"])
    assert "NOPE: no such site" in info.value.message
    assert f"{keys[1]}: status is 'planned'" in info.value.message
    with pytest.raises(InvalidInput, match="--kind"):
        run_round(engine, round_settings, kinds={"ftp"})


def test_a_whole_inventory_round_starts_its_http_process_before_loading(
    engine: Engine, round_settings: Settings, lab: Lab
) -> None:
    insert_sites(engine, lab.rows)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE sites"))  # the estimate the decision reads
    settings = round_settings.model_copy(update={"http_process_min": 100})

    def ahead(**selection: Any) -> HttpProbeProcess | None:
        picked = {"site_keys": None, "site_ids": None, "sites_where": None, "limit": None}
        return _http_process_ahead(engine, settings, KINDS, **(picked | selection))

    started = ahead()
    assert started is not None and started.process.is_alive()
    started.close()  # never given a job: it ends at once, cleanly
    assert started.process.exitcode == 0
    # Batches, key lists, small limits, SNMP-only rounds and small inventories start none.
    assert ahead(sites_where="s.id % 2 = 0") is None
    assert ahead(site_keys=["A"]) is None
    assert ahead(site_ids=[1, 2]) is None
    assert ahead(limit=10) is None
    assert (
        _http_process_ahead(
            engine, settings, {"snmp"}, site_keys=None, site_ids=None, sites_where=None, limit=None
        )
        is None
    )
    big = settings.model_copy(update={"http_process_min": SITES * 10})
    assert (
        _http_process_ahead(
            engine, big, KINDS, site_keys=None, site_ids=None, sites_where=None, limit=None
        )
        is None
    )

    # A whole round uses the one started ahead, and leaves no process behind.
    summary = run_round(engine, settings)
    assert_whole_round_stored(engine, summary)
    assert not [c for c in multiprocessing.active_children() if c.name.startswith("conectado-http")]


def test_a_process_started_ahead_and_not_needed_is_ended(
    engine: Engine, round_settings: Settings, lab: Lab
) -> None:
    # The estimate says the inventory is large, but the round has few HTTP targets (most
    # sites have no probe URL): the child started ahead is told to end, and the HTTP probes
    # run in this process.
    rows = [dict(r) for r in lab.rows]
    for row in rows[50:]:
        row["http_url"] = ""
    insert_sites(engine, rows)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE sites"))
    settings = round_settings.model_copy(update={"http_process_min": 100})
    summary = run_round(engine, settings)
    assert summary.written and summary.http_probes == 50
    assert not [c for c in multiprocessing.active_children() if c.name.startswith("conectado-http")]
