"""``conectado demo``: the whole platform, end to end, on this machine.

Database → geography → a seeded lab inventory → lab agents → the scheduler's first full
round → coverage and maps → the API and pages; then it waits for Ctrl-C and stops what it
started. Long-running parts (lab agents, scheduler, API) run as child processes so that one
Ctrl-C stops them all cleanly and each can be looked at on its own (logs in var/demo/).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import typer
from rich.table import Table
from sqlalchemy import Engine, text

from api.auth import Role, authenticate_token, create_key, revoke_key
from cli.common import console, database, friendly_errors, rich_progress, settings
from core.errors import Conflict, SetupError
from core.settings import LabPorts, Settings
from db.cluster import EmbeddedCluster, free_port, port_is_free
from db.connect import database_url
from db.migrate import upgrade
from geo.coverage import compute_coverage
from geo.loader import load_geography
from lab.runner import start_lab, stop_lab
from maps.coverage_map import render_coverage_map
from maps.health_map import render_health_map
from maps.site_map import render_site_map
from results.current import probed_sql
from sites.generator import generate_sites, write_sites_csv
from sites.importer import ImportOptions, import_file

T = TypeVar("T")
DEMO_KEY_NAME = "demo-admin"


@dataclass
class DemoRun:
    """What the demo started, so it can stop exactly that, and how long each step took."""

    cfg: Settings
    root: Path
    timings: list[tuple[str, float]] = field(default_factory=list)
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    started_database: bool = False
    started_lab: bool = False
    lab_ca_file: str | None = None  # the lab's CA, which the demo's probers must trust

    def step(self, name: str, func: Callable[[], T]) -> T:
        """Run one step, print its title and record its duration."""
        console.rule(f"[bold]{name}")
        began = time.perf_counter()
        result = func()
        self.timings.append((name, time.perf_counter() - began))
        return result

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start a child process in its own process group, logging to var/demo/NAME.log."""
        log = (self.root / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=self.cfg.home,
        )
        log.close()
        self.children.append((name, proc))
        return proc

    def stop_all(self) -> None:
        """Stop children (SIGTERM, then SIGKILL), the lab agents and the embedded database."""
        for name, proc in reversed(self.children):
            if proc.poll() is None:
                console.print(f"stopping {name} …")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        if self.started_lab:
            console.print("stopping lab agents …")
            stop_lab(self.cfg)
        if self.started_database:
            console.print("stopping the embedded database …")
            EmbeddedCluster(self.cfg).stop()


def _child_env(run: DemoRun, url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["CONECTADO_DATABASE_URL"] = url  # children must not each manage the cluster
    env["CONECTADO_HOME"] = str(run.cfg.home)
    if run.lab_ca_file is not None:
        # The lab's https sites are signed by the lab's own CA: without it every one of them
        # would fail as "unable to get local issuer certificate" in the scheduler's rounds
        # and in the pages' "Probe now".
        env["CONECTADO_HTTP_CA_FILE"] = run.lab_ca_file
    env.update(extra)
    return env


def _conectado() -> str:
    exe = Path(sys.executable).parent / "conectado"
    return str(exe) if exe.exists() else "conectado"


def _inventory(run: DemoRun, count: int, seed: int) -> Path:
    ports = run.cfg.lab_ports
    named = "" if ports == LabPorts() else f"-ports{ports.snmp}-{ports.http}-{ports.https}"
    path = run.root / f"sites-lab-{count}-seed{seed}{named}.csv"
    if path.exists():
        console.print(f"reusing {path}")
        return path
    with rich_progress() as progress:
        frame = generate_sites(
            run.cfg.inegi_dir,
            count=count,
            seed=seed,
            lab=True,
            lab_ports=ports,
            progress=progress,
        )
    tmp = path.with_suffix(".tmp")
    write_sites_csv(frame, tmp)
    tmp.replace(path)
    console.print(f"wrote {len(frame):,} sites to {path}")
    return path


def _import(eng: Engine, path: Path) -> None:
    with rich_progress() as progress:
        report = import_file(eng, path, options=ImportOptions(changed_by="demo"), progress=progress)
    console.print(
        f"inserted {report.inserted:,}  updated {report.updated:,}  unchanged "
        f"{report.unchanged:,}  rejected {report.rejected:,}  ({report.seconds:.1f} s)"
    )
    if report.rejected:
        raise SetupError(
            f"the generated inventory had {report.rejected} invalid rows; "
            f"first: {report.errors[0] if report.errors else '?'}"
        )


def _probeable(eng: Engine) -> int:
    with eng.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM sites WHERE status IN ('active', 'installed') "
                    "AND (mgmt_ip IS NOT NULL OR http_url IS NOT NULL)"
                )
            ).scalar_one()
        )


def _recent_full_round(eng: Engine, total: int, max_age_s: float) -> datetime | None:
    """The oldest result when every probeable site has one younger than ``max_age_s``."""
    with eng.connect() as conn:
        count, oldest = conn.execute(
            text(
                "SELECT count(*), min(st.last_probe_at) FROM sites s "
                "JOIN site_status st ON st.site_id = s.id "
                "WHERE s.status IN ('active', 'installed') "
                "AND (s.mgmt_ip IS NOT NULL OR s.http_url IS NOT NULL) "
                "AND st.last_probe_at >= now() - make_interval(secs => :age)"
            ),
            {"age": max_age_s},
        ).one()
    return oldest if total and int(count) == total else None


def _wait_first_round(
    eng: Engine,
    since: float,
    total: int,
    limit_s: float,
    scheduler: subprocess.Popen[bytes],
    log: Path,
) -> None:
    with rich_progress() as progress:
        task = progress.task("Sites probed in the first round", total=total)
        done = 0
        deadline = time.monotonic() + limit_s
        while done < total:
            if scheduler.poll() is not None:
                raise SetupError(f"the scheduler exited (code {scheduler.returncode}); see {log}")
            if time.monotonic() > deadline:
                raise SetupError(
                    f"only {done:,} of {total:,} sites were probed within "
                    f"{limit_s:.0f} s; see {log}"
                )
            time.sleep(1.0)
            with eng.connect() as conn:
                now_done = int(
                    conn.execute(
                        text(
                            "SELECT count(*) FROM site_status "
                            "WHERE last_probe_at >= to_timestamp(:t)"
                        ),
                        {"t": since},
                    ).scalar_one()
                )
            task.advance(now_done - done)
            done = now_done
        task.finish()


def _map_renders(run: DemoRun, eng: Engine) -> dict[str, Callable[[], str]]:
    """The three maps' renderers by name (the site map shows the first site that is up)."""
    with eng.connect() as conn:
        sample = conn.execute(
            text(
                "SELECT s.site_key FROM sites s JOIN site_status st ON st.site_id = s.id "
                "WHERE st.state = 'up' ORDER BY s.id LIMIT 1"
            )
        ).scalar()
    renders: dict[str, Callable[[], str]] = {
        "coverage": lambda: render_coverage_map(eng, run.cfg),
        "health": lambda: render_health_map(eng, run.cfg),
    }
    if sample:
        renders[f"site {sample}"] = lambda: render_site_map(eng, run.cfg, str(sample))
    return renders


def _write_maps(run: DemoRun, renders: dict[str, Callable[[], str]]) -> dict[str, Path]:
    """Render maps as self-contained HTML files in var/maps (they work offline)."""
    out = run.cfg.path(run.cfg.var_dir) / "maps"
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, render in renders.items():
        began = time.perf_counter()
        path = out / f"{name.replace(' ', '-')}.html"
        path.write_text(render(), encoding="utf-8")
        console.print(
            f"{name} map: {path} ({path.stat().st_size / 1e6:.1f} MB, "
            f"{time.perf_counter() - began:.1f} s)"
        )
        written[name] = path
    return written


def _coverage_and_maps(run: DemoRun, eng: Engine) -> dict[str, Path]:
    """Compute coverage and write the three maps.

    The health and site maps do not depend on coverage, so a second thread renders them
    meanwhile; most of both jobs is PostGIS work, which runs beside the GIL.
    """
    renders = _map_renders(run, eng)
    coverage_map = {"coverage": renders.pop("coverage")}
    with ThreadPoolExecutor(max_workers=1) as pool:
        others = pool.submit(_write_maps, run, renders)
        with rich_progress() as progress:
            result = compute_coverage(eng, run.cfg, progress=progress)
        console.print(
            f"coverage computed in {result.duration_s:.1f} s "
            f"({result.working_sites:,} working sites, basis {result.basis})"
        )
        written = _write_maps(run, coverage_map)
        written.update(others.result())
    return written


def _admin_key(eng: Engine, root: Path) -> str:
    key_file = root / "admin.key"
    with eng.begin() as conn:
        if key_file.exists():
            token = key_file.read_text().strip()
            if authenticate_token(conn, token) is not None:
                return token
        with contextlib.suppress(Conflict, Exception):
            revoke_key(conn, ref=DEMO_KEY_NAME, revoked_by="demo")
        created = create_key(conn, name=DEMO_KEY_NAME, role=Role.ADMIN, created_by="demo")
    key_file.write_text(created.token + "\n")
    key_file.chmod(0o600)
    return created.token


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, limit_s: float = 180) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        if proc.poll() is not None:
            raise SetupError(f"the API exited (code {proc.returncode}); see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SetupError(f"the API did not answer {url} within {limit_s:.0f} s; see {log}")
        time.sleep(0.3)


@dataclass
class NationalFigures:
    """The figures the demo prints at the end."""

    up: int
    degraded: int
    down: int
    unknown: int
    uptime_pct: float | None
    uncovered_municipalities: int
    municipalities: int
    pop_without_site: int
    pop_total: int
    radius_km: float
    sample_site: str


def national_figures(eng: Engine) -> NationalFigures:
    """Read the summary figures from status, results and the newest coverage run."""
    with eng.connect() as conn:
        states: dict[str, int] = dict(
            conn.execute(
                text(
                    "SELECT coalesce(st.state, 'unknown'), count(*) FROM sites s "
                    "LEFT JOIN site_status st ON st.site_id = s.id "
                    f"WHERE {probed_sql('s')} GROUP BY 1"
                )
            )
            .tuples()
            .all()
        )
        uptime = conn.execute(
            text(
                "SELECT 100.0 * count(*) FILTER (WHERE st.state = 'up') / nullif(count(*), 0) "
                "FROM site_status st JOIN sites s ON s.id = st.site_id "
                f"WHERE st.state <> 'unknown' AND {probed_sql('s')}"
            )
        ).scalar()
        cov = conn.execute(
            text(
                "SELECT n.uncovered_municipalities, n.municipalities, n.uncovered_pop, n.pop_2020, "
                "r.radius_km FROM coverage_national n JOIN coverage_runs r ON r.id = n.run_id "
                "ORDER BY r.id DESC LIMIT 1"
            )
        ).one()
        sample = (
            conn.execute(
                text(
                    "SELECT s.site_key FROM sites s JOIN site_status st ON st.site_id = s.id "
                    "WHERE st.state = 'up' ORDER BY s.id LIMIT 1"
                )
            ).scalar()
            or ""
        )
    return NationalFigures(
        up=int(states.get("up", 0)),
        degraded=int(states.get("degraded", 0)),
        down=int(states.get("down", 0)),
        unknown=int(states.get("unknown", 0)),
        uptime_pct=None if uptime is None else float(uptime),
        uncovered_municipalities=int(cov[0]),
        municipalities=int(cov[1]),
        pop_without_site=int(cov[2]),
        pop_total=int(cov[3] or 0),
        radius_km=float(cov[4]),
        sample_site=str(sample),
    )


def _summary(
    run: DemoRun, base: str, key: str, figures: NationalFigures, maps: dict[str, Path]
) -> None:
    console.rule("[bold green]Conectado is running")
    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # URLs and the key wrap rather than lose characters
    table.add_row("Operator dashboard", f"{base}/")
    table.add_row("Planner coverage page", f"{base}/coverage")
    if figures.sample_site:
        table.add_row("Technician page", f"{base}/sites/{figures.sample_site}")
    table.add_row("API docs", f"{base}/docs")
    table.add_row("Admin API key", key)
    table.add_row("", f"(also in {run.root / 'admin.key'})")
    for name, path in maps.items():
        table.add_row(f"{name} map (file)", str(path))
    console.print(table)
    probed = figures.up + figures.degraded + figures.down
    console.print(
        f"\nSites up {figures.up:,} · degraded {figures.degraded:,} · down {figures.down:,}"
        f" · not yet probed {figures.unknown:,}"
    )
    if figures.uptime_pct is not None and probed:
        console.print(f"Sites up in the latest round: {figures.uptime_pct:.1f} %")
    console.print(
        f"Uncovered municipalities: {figures.uncovered_municipalities:,} of "
        f"{figures.municipalities:,}"
    )
    console.print(
        f"Population without a working site within {figures.radius_km:g} km: "
        f"{figures.pop_without_site:,} of {figures.pop_total:,}"
    )
    steps = Table(title="Time per step")
    steps.add_column("step")
    steps.add_column("seconds", justify="right")
    for name, seconds in run.timings:
        steps.add_row(name, f"{seconds:.1f}")
    steps.add_row("total", f"{sum(s for _, s in run.timings):.1f}")
    console.print(steps)


@contextlib.contextmanager
def _interrupts_as_exceptions() -> Iterator[None]:
    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell that starts the demo in the background leaves SIGINT ignored.
    previous = {sig: signal.signal(sig, raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _the_only_demo(root: Path) -> Iterator[None]:
    """Hold ``root``/demo.lock while this demo runs and stops, or fail if another holds it.

    Two demos on one folder would fight: the second restarts the first's lab agents and
    takes over its database and files. The lock is the process's own (an open file, not
    inherited by the children), so a crash releases it.
    """
    path = root / "demo.lock"
    with path.open("a+") as held:
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.seek(0)
            pid = held.read().strip() or "?"
            raise SetupError(
                f"another `conectado demo` (pid {pid}) is running, or still stopping, with "
                f"{root.parent} as its folder. Stop it (Ctrl-C in its terminal) and wait for "
                "its 'Stopped.', or give this demo another folder with CONECTADO_VAR_DIR."
            ) from None
        held.seek(0)
        held.truncate()
        held.write(f"{os.getpid()}\n")
        held.flush()
        yield


@friendly_errors
def demo(
    sites: int = typer.Option(101_322, "--sites", min=10, help="Lab inventory size."),
    seed: int = typer.Option(42, help="Seed of the generated inventory."),
    interval: int = typer.Option(60, min=5, help="Probe interval of the demo scheduler (s)."),
    port: int = typer.Option(
        None, help="API port (default CONECTADO_API_PORT, or the next free one)."
    ),
    exit_when_ready: bool = typer.Option(
        False, help="Stop everything after printing the summary (tests, CI)."
    ),
) -> None:
    """Run the whole platform on this machine and keep it running until Ctrl-C."""
    cfg = settings()
    root = cfg.path(cfg.var_dir) / "demo"
    root.mkdir(parents=True, exist_ok=True)
    run = DemoRun(cfg=cfg, root=root)
    with _the_only_demo(root), _interrupts_as_exceptions():
        try:
            _demo(
                run,
                sites=sites,
                seed=seed,
                interval=interval,
                port=port,
                exit_when_ready=exit_when_ready,
            )
        except KeyboardInterrupt:
            console.print("\nInterrupted: stopping what the demo started.")
        finally:
            run.stop_all()
    console.print("Stopped.")


def _demo(
    run: DemoRun, *, sites: int, seed: int, interval: int, port: int | None, exit_when_ready: bool
) -> None:
    cfg = run.cfg

    def start_database() -> str:
        if cfg.database_url is None:
            run.started_database = not EmbeddedCluster(cfg).running()
        url = database_url(cfg)
        upgrade(url)
        return url

    url = run.step("Database (PostgreSQL 15 + PostGIS 3) and migrations", start_database)
    with database(cfg) as eng:

        def geography() -> None:
            with rich_progress() as progress:
                report = load_geography(eng, cfg.inegi_dir, progress=progress)
            console.print(
                f"{report.municipality_count:,} municipalities, Σ population "
                f"{report.municipality_population:,}; {report.locality_count:,} "
                f"localities; {report.changed:,} rows changed"
            )

        run.step("INEGI geography", geography)
        inventory = run.step(
            f"Lab inventory of {sites:,} sites (seed {seed})", lambda: _inventory(run, sites, seed)
        )
        run.step("Import into PostGIS", lambda: _import(eng, inventory))

        def lab() -> None:
            stop_lab(cfg)
            state = start_lab(cfg, inventory)
            run.started_lab = True
            run.lab_ca_file = state.ca_file
            console.print(f"lab agents answer for {state.sites:,} sites")

        run.step("Lab agents (simulated SNMP and HTTP devices)", lab)

        total = _probeable(eng)

        def first_round() -> None:
            since = time.time()
            earlier = _recent_full_round(eng, total, cfg.coverage_working_hours * 3600)
            log = run.root / "scheduler.log"
            proc = run.spawn(
                "scheduler",
                [_conectado(), "scheduler", "run", "--interval", str(interval)],
                _child_env(run, url, CONECTADO_PROBE_INTERVAL=str(interval)),
            )
            if earlier is None:
                _wait_first_round(eng, since, total, interval * 3 + 120, proc, log)
                return
            # A re-run: every site already has a recent result, so the figures below are real;
            # the scheduler's next full round refreshes them within one interval.
            time.sleep(2.0)
            if proc.poll() is not None:
                raise SetupError(f"the scheduler exited (code {proc.returncode}); see {log}")
            console.print(
                f"every site was probed by an earlier run (oldest result "
                f"{earlier:%Y-%m-%d %H:%M:%S %Z}); the figures below are from it and the "
                f"scheduler's next full round refreshes them within {interval} s"
            )

        run.step(f"Scheduler, first full round (interval {interval} s)", first_round)

        api_port = port or cfg.api_port
        if not port_is_free(api_port):
            chosen = free_port(api_port + 1)
            console.print(f"[yellow]port {api_port} is taken; using {chosen}[/]")
            api_port = chosen
        base = f"http://{cfg.api_host}:{api_port}"
        # The API boots (imports, workers) while coverage and maps are computed.
        api_log = run.root / "api.log"
        api_proc = run.spawn(
            "api",
            [_conectado(), "serve", "--host", cfg.api_host, "--port", str(api_port)],
            # the scheduler's interval: the pages judge from it whether probing is behind
            _child_env(run, url, CONECTADO_PROBE_INTERVAL=str(interval)),
        )

        maps = run.step("Coverage and maps", lambda: _coverage_and_maps(run, eng))

        def api() -> str:
            key = _admin_key(eng, run.root)
            _wait_http(f"{base}/healthz", api_proc, api_log)
            return key

        key = run.step("API and pages", api)
        _summary(run, base, key, national_figures(eng), maps)
    if exit_when_ready:
        return
    console.print("\nPress Ctrl-C to stop everything.")
    while all(proc.poll() is None for _, proc in run.children):
        time.sleep(1.0)
    dead = [name for name, proc in run.children if proc.poll() is not None]
    console.print(f"[red]{', '.join(dead)} stopped unexpectedly; see {run.root}/*.log[/]")
