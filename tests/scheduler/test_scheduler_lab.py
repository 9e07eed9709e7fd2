"""The real scheduler with second-scale intervals against real lab agents and real PostGIS."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, text

import scheduler as sched
from core.settings import Settings
from results.batches import LOCK_CLASS, BatchRun, run_batch
from results.incidents import LOCK_SQL, incident_members, list_incidents
from results.maintenance import add_window
from results.rollups import rollup_hour, utc_hour
from scheduler import ConectadoScheduler, default_probe, stored_jobs
from tests.scheduler.lab import (
    Lab,
    add_lab_sites,
    fast_settings,
    point_site_at,
    settings_env,
)
from tests.scheduler.test_rollups import _compare, _db_frame, _expected_site

CONECTADO = str(Path(sys.executable).parent / "conectado")
# (a `conectado` process takes a few seconds to import its libraries on a busy machine)


def _runs(engine: Engine) -> pd.DataFrame:
    return _db_frame(engine, "SELECT * FROM scheduler_batch_runs ORDER BY batch, slot_start", {})


def _wait_for(predicate, timeout: float, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(step)


def _done_runs(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM scheduler_batch_runs WHERE outcome = 'done'")
            ).scalar_one()
        )


@pytest.mark.slow
def test_rounds_run_on_time_per_batch_never_overlap_and_probe_each_site_once(
    lab: Lab, engine: Engine, settings: Settings
) -> None:
    cfg = fast_settings(settings)  # every 2 s, 2 batches: batch 1 runs 1 s after batch 0
    ids = add_lab_sites(engine, lab.take(steady=14, dead=2))
    s = ConectadoScheduler(engine, cfg)
    s.start()
    try:
        time.sleep(7.3)
    finally:
        s.shutdown(wait=True)
    runs = _runs(engine)
    assert set(runs.outcome) == {"done"}
    for b, g in runs.groupby("batch"):
        slots = list(g.slot_start)
        assert len(slots) >= 3
        # one run per slot, consecutive slots, at b·interval/B past each interval
        assert all(b2 - b1 == pd.Timedelta(seconds=2) for b1, b2 in itertools.pairwise(slots))
        assert all(ts.timestamp() % 2 == b for ts in slots)
        lateness = (g.started_at - g.slot_start).dt.total_seconds()
        assert lateness.max() < 0.5, lateness.tolist()
        # a run ends before the next run of the same batch starts
        assert all(g.finished_at.iloc[:-1].to_numpy() <= g.started_at.iloc[1:].to_numpy())
        assert (g.sites == sum(1 for i in ids if i % 2 == b)).all()
    with engine.connect() as conn:
        per_site: dict[int, int] = dict(
            conn.execute(
                text("SELECT site_id, count(DISTINCT round_id) FROM probe_results GROUP BY site_id")
            ).all()
        )
        batch_of_round: dict[object, int] = dict(
            conn.execute(text("SELECT round_id, batch FROM scheduler_batch_runs")).all()
        )
        pairs = conn.execute(text("SELECT DISTINCT site_id, round_id FROM probe_results")).all()
    runs_per_batch = runs.groupby("batch").size().to_dict()
    assert per_site == {i: runs_per_batch[i % 2] for i in ids}  # each site once per slot
    assert all(site % 2 == batch_of_round[rid] for site, rid in pairs)


@pytest.mark.slow
def test_a_batch_slower_than_the_interval_is_coalesced_not_stacked(
    lab: Lab, engine: Engine, settings: Settings
) -> None:
    # dead sites time out after 2.5 s: each run overruns the 2 s interval
    cfg = fast_settings(settings, probe_batches=1, snmp_timeout=2.5, http_timeout=2.5)
    add_lab_sites(engine, lab.take(steady=2, dead=2))
    seen: list[BatchRun] = []
    s = ConectadoScheduler(engine, cfg, on_batch=seen.append)
    s.start()
    try:
        time.sleep(8.5)
    finally:
        s.shutdown(wait=True)
    runs = _runs(engine)
    assert 2 <= len(runs) <= 3  # 4 slots passed, no run started while another ran
    assert all(r.seconds > 2.4 for r in seen)
    assert all(runs.finished_at.iloc[:-1].to_numpy() <= runs.started_at.iloc[1:].to_numpy())


def test_a_restart_resumes_the_stored_timetable_without_duplicates(
    lab: Lab, engine: Engine, settings: Settings
) -> None:
    cfg = fast_settings(settings)
    add_lab_sites(engine, lab.take(steady=4))
    first = ConectadoScheduler(engine, cfg)
    first.start()
    time.sleep(2.2)
    first.shutdown(wait=True)
    stopped_at = datetime.now(UTC)
    before = {j.id: j.next_run_time for j in stored_jobs(engine)}
    assert set(before) == {
        "probe-batch-0",
        "probe-batch-1",
        "rollup-hourly",
        "rollup-daily",
        "retention",
    }
    assert all(t is not None for t in before.values())
    runs_before = _done_runs(engine)
    assert runs_before >= 2

    second = ConectadoScheduler(engine, cfg)
    second.start()
    try:
        after = dict(second.jobs())
        assert set(after) == set(before)
        for b in (0, 1):  # still on the timetable: b s past each even second
            t = after[f"probe-batch-{b}"]
            assert t is not None and t > stopped_at - timedelta(seconds=1)
            assert t.timestamp() % 2 == b
        assert after["rollup-daily"] == before["rollup-daily"]
        time.sleep(2.2)
    finally:
        second.shutdown(wait=True)
    assert _done_runs(engine) >= runs_before + 2  # the schedule went on
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM apscheduler_jobs")).scalar_one() == 5

    third = ConectadoScheduler(engine, cfg.model_copy(update={"probe_batches": 3}))
    third.start()
    third.shutdown(wait=False)
    ids = {j.id for j in stored_jobs(engine)}
    assert {i for i in ids if i.startswith("probe-")} == {
        "probe-batch-0",
        "probe-batch-1",
        "probe-batch-2",
    }


def test_a_batch_held_by_another_process_is_skipped(
    lab: Lab, engine: Engine, settings: Settings
) -> None:
    cfg = fast_settings(settings, probe_batches=1)
    add_lab_sites(engine, lab.take(steady=2))
    probe = default_probe(engine, cfg)
    with engine.connect() as other:
        other.execute(text("SELECT pg_advisory_lock(:c, :k)"), {"c": LOCK_CLASS, "k": 10_000})
        held = run_batch(engine, cfg, batch=0, batches=1, probe=probe, runner="t")
        other.execute(text("SELECT pg_advisory_unlock(:c, :k)"), {"c": LOCK_CLASS, "k": 10_000})
        other.commit()
    assert held.outcome == "skipped_locked"
    now = datetime.now(UTC)
    ran = run_batch(engine, cfg, batch=0, batches=1, probe=probe, runner="t", now=now)
    again = run_batch(engine, cfg, batch=0, batches=1, probe=probe, runner="u", now=now)
    assert (ran.outcome, ran.sites, again.outcome) == ("done", 2, "skipped_done")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM probe_rounds")).scalar_one() == 1


def test_a_batch_does_not_queue_behind_an_incident_evaluation_running_elsewhere(
    lab: Lab, engine: Engine, settings: Settings
) -> None:
    """With several batches a batch leaves incidents to the next evaluation when one is running
    (it covers this batch's results); a lone batch per interval waits for it instead."""
    cfg = fast_settings(settings)
    add_lab_sites(engine, lab.take(steady=2))
    probe = default_probe(engine, cfg)
    with engine.connect() as other:
        other.execute(text(LOCK_SQL))  # an evaluation elsewhere, for the next 8 s
        timer = threading.Timer(8.0, other.rollback)
        timer.start()
        began = time.monotonic()
        left = run_batch(engine, cfg, batch=0, batches=2, probe=probe, runner="t")
        took = time.monotonic() - began
        timer.join()
    assert took < 5, f"the batch waited {took:.1f} s for the evaluation"
    assert (left.outcome, left.incidents) == ("done", None)
    assert left.incidents_deferred == "one was running"
    assert "incidents left to the next evaluation (one was running)" in left.describe()

    lone = fast_settings(settings, probe_batches=1)
    with engine.connect() as other:
        other.execute(text(LOCK_SQL))
        timer = threading.Timer(1.5, other.rollback)
        timer.start()
        began = time.monotonic()
        waited = run_batch(engine, lone, batch=0, batches=1, probe=probe, runner="t")
        timer.join()
    assert time.monotonic() - began >= 1.5
    assert waited.outcome == "done" and waited.incidents is not None
    assert not waited.incidents_deferred


def _start(cfg: Settings, var_dir: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, **settings_env(cfg, var_dir)}
    return subprocess.Popen(
        [CONECTADO, "scheduler", "run", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_two_schedulers_never_run_the_same_batch(
    lab: Lab, engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    cfg = fast_settings(settings)
    ids = add_lab_sites(engine, lab.take(steady=6, dead=1))
    procs = [_start(cfg, tmp_path / f"v{n}", "--interval", "2", "--batches", "2") for n in (1, 2)]
    try:
        _wait_for(lambda: _done_runs(engine) >= 6, timeout=60)
    except AssertionError:
        for p in procs:
            p.kill()
        pytest.fail("no runs: " + "\n".join(p.communicate(timeout=10)[0] for p in procs))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
    outputs = [p.communicate(timeout=30)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    runs = _runs(engine)
    runs = runs[runs.outcome == "done"]
    for _b, g in runs.groupby("batch"):
        g = g.sort_values("started_at")
        assert all(g.finished_at.iloc[:-1].to_numpy() <= g.started_at.iloc[1:].to_numpy())
    with engine.connect() as conn:
        per_site: dict[int, int] = dict(
            conn.execute(
                text("SELECT site_id, count(DISTINCT round_id) FROM probe_results GROUP BY site_id")
            ).all()
        )
    per_batch = runs.groupby("batch").size().to_dict()
    assert per_site == {i: per_batch[i % 2] for i in ids}  # never probed twice in a slot
    assert all("started: 2 probe batches every 2 s" in out for out in outputs)


@pytest.mark.slow
def test_sigterm_mid_round_finishes_the_batch_and_exits_cleanly(
    lab: Lab, engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    # dead sites hold the round for 1.5 s (their probe timeout): time to signal mid-round
    cfg = fast_settings(settings, snmp_timeout=1.5, http_timeout=1.5)
    add_lab_sites(engine, lab.take(steady=3, dead=2))
    proc = _start(cfg, tmp_path / "v", "--interval", "3", "--batches", "1")

    def running() -> bool:
        with engine.connect() as conn:
            return bool(
                conn.execute(
                    text("SELECT count(*) FROM scheduler_batch_runs WHERE outcome = 'running'")
                ).scalar_one()
            )

    try:
        _wait_for(running, timeout=60, step=0.05)
        proc.send_signal(signal.SIGTERM)
        try:
            out = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # its threads' stacks, to say where it hangs
            time.sleep(1)
            proc.kill()
            pytest.fail(f"not stopped 30 s after SIGTERM:\n{proc.communicate()[0][-8000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "SIGTERM received" in out and "5 sites" in out and "stopped" in out
    with engine.connect() as conn:
        run = conn.execute(text("SELECT * FROM scheduler_batch_runs")).one()
        assert run.outcome == "done" and run.sites == 5
        written = conn.execute(
            text("SELECT count(*) FROM probe_results WHERE round_id = :r"), {"r": run.round_id}
        ).scalar_one()
        assert written == 10  # 5 sites × (SNMP + HTTP)
        assert conn.execute(text("SELECT count(*) FROM probe_rounds")).scalar_one() == 1


@pytest.mark.slow
def test_usr1_dumps_every_thread_and_the_scheduler_goes_on(
    lab: Lab, engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    """`kill -USR1` shows what a scheduler that seems stuck is doing, without stopping it."""
    cfg = fast_settings(settings)
    add_lab_sites(engine, lab.take(steady=2, dead=0))
    proc = _start(cfg, tmp_path / "v", "--interval", "2", "--batches", "1")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))  # type: ignore[union-attr]
    reader.start()
    try:
        _wait_for(lambda: any("started" in line for line in lines), timeout=60)
        proc.send_signal(signal.SIGUSR1)
        _wait_for(lambda: any("(most recent call first)" in line for line in lines), timeout=10)
        done = _done_runs(engine)
        _wait_for(lambda: _done_runs(engine) >= done + 2, timeout=30)  # it went on probing
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(10)
    out = "".join(lines)
    assert "run_forever" in out  # the main thread's stack, waiting for a signal
    assert "stopped" in out


@pytest.mark.slow
def test_incidents_open_group_suppress_and_close_from_real_probes(
    lab: Lab, engine: Engine, settings: Settings
) -> None:
    cfg = fast_settings(settings, probe_batches=1, incident_failures=2)
    grouped = add_lab_sites(engine, lab.take(dead=4, steady=2), mun="09015")
    single = add_lab_sites(engine, lab.take(dead=1, steady=4), mun="14039")
    maint = add_lab_sites(engine, lab.take(dead=1, steady=3), mun="14120")
    spare = lab.take(steady=5)  # healthy devices to move the dead sites to later
    with engine.begin() as conn:
        key = conn.execute(text("SELECT site_key FROM sites WHERE id = :i"), {"i": maint[0]})
        add_window(
            conn,
            scope="site",
            target=key.scalar_one(),
            starts_at=datetime.now(UTC) - timedelta(minutes=1),
            ends_at=datetime.now(UTC) + timedelta(hours=1),
            reason="router replacement",
            created_by="test",
        )
    s = ConectadoScheduler(engine, cfg)
    s.start()
    try:
        _wait_for(lambda: _done_runs(engine) >= 3, timeout=15)
        with engine.connect() as conn:
            open_now = list_incidents(conn)
        by_kind = defaultdict(list)
        for inc in open_now:
            by_kind[inc.kind].append(inc)
        assert len(by_kind["municipality"]) == 1 and len(by_kind["site"]) == 1
        (mun_inc,) = by_kind["municipality"]
        assert mun_inc.mun_cvegeo == "09015" and mun_inc.sites_total == 6
        with engine.connect() as conn:
            members = {m.site_id for m in incident_members(conn, mun_inc.id)}
        assert members == set(grouped[:4])
        assert by_kind["site"][0].site_id == single[0]
        assert by_kind["site"][0].last_error  # what the probes saw
        # the dead devices come back (their sites now reach healthy lab devices)
        done = _done_runs(engine)
        for site_id, row in zip([*grouped[:4], single[0]], spare, strict=True):
            point_site_at(engine, site_id, row)
        _wait_for(lambda: _done_runs(engine) >= done + 2, timeout=15)
    finally:
        s.shutdown(wait=True)
    with engine.connect() as conn:
        assert list_incidents(conn) == []
        closed = list_incidents(conn, status="all")
    assert {i.close_reason for i in closed} == {"recovered"} and len(closed) == 2
    assert all(i.duration_s and i.duration_s > 0 for i in closed)

    # the rollups of these real rounds match pandas over the same raw rows, hour by hour
    raw = _db_frame(engine, "SELECT * FROM probe_results", {})
    meta = _db_frame(
        engine, "SELECT id AS site_id, bw_down_mbps AS bw_down, bw_up_mbps AS bw_up FROM sites", {}
    )
    for hour in sorted({utc_hour(ts) for ts in raw.ts}):
        with engine.begin() as conn:
            rollup_hour(conn, hour)
        got = _db_frame(
            engine, "SELECT * FROM rollup_site_hourly WHERE hour = :h ORDER BY site_id", {"h": hour}
        ).set_index("site_id")
        in_hour = raw[(raw.ts >= hour) & (raw.ts < hour + timedelta(hours=1))]
        _compare(got, _expected_site(in_hour, meta))
    assert raw.in_bps.notna().any() and raw.latency_ms.notna().any()


@pytest.mark.slow
def test_a_flapping_site_gets_one_flapping_incident(
    lab: Lab, engine: Engine, settings: Settings
) -> None:
    cfg = fast_settings(
        settings,
        probe_interval=1,
        probe_batches=1,
        flap_changes=2,
        flap_window_s=60,
        snmp_timeout=0.5,
        http_timeout=0.5,
    )
    good, bad = lab.take(steady=1), lab.take(dead=1)
    (site,) = add_lab_sites(engine, good)
    add_lab_sites(engine, lab.take(steady=3))
    toggles = iter([bad[0], good[0]] * 10)

    def toggle(run: BatchRun) -> None:
        point_site_at(engine, site, next(toggles))  # up, down, up, down ... each round

    s = ConectadoScheduler(engine, cfg, on_batch=toggle)
    s.start()
    try:
        _wait_for(lambda: _done_runs(engine) >= 6, timeout=15)
    finally:
        s.shutdown(wait=True)
    with engine.connect() as conn:
        incs = list_incidents(conn, status="all")
        changes = conn.execute(
            text("SELECT count(*) FROM site_transitions WHERE site_id = :s"), {"s": site}
        ).scalar_one()
    assert changes >= 5
    assert [(i.site_id, i.cause, i.flapping, i.status) for i in incs] == [
        (site, "flapping", True, "open")
    ]


def test_the_job_functions_are_importable_by_reference() -> None:
    # the job store keeps "module:function" references, so they must stay module-level
    for func in (
        sched.probe_batch_job,
        sched.hourly_rollup_job,
        sched.daily_rollup_job,
        sched.retention_job,
    ):
        assert func.__module__ == "scheduler" and "." not in func.__qualname__
