"""A full probe round of the 101,322-site lab inventory (SNMP + HTTP, results written).

Set-up (not timed): a throwaway embedded PostgreSQL cluster in var/bench-round (fsync on, as
in production), migrations, the INEGI geography, ``sites generate --lab`` (101,322 sites,
seed 42) imported with the sites importer, and the lab agents started in the background on
free ports. Then two rounds are run and timed per phase: the first has no previous counters,
the second computes rates for every site that answered both times. CPU seconds of the prober,
of each agent and of PostgreSQL are printed to show where the time goes, with the floor they
set: all of them divided by the cores (by the quota under ``--cpus``). Goal: a round ≤ 20 s.

Usage: python bench/round.py [--count 101322] [--workers N] [--keep] [--rounds 2] [--cpus N]

``--cpus 1`` runs everything under a CPU quota of one core in all, to see the round on a
host with half this one's CPU (a cgroup; needs root).

The issue states its reference machine by two figures: net-snmp's snmpd on loopback allows
~15,000 GETs/s (a raw-UDP loop), and pysnmp's ``get_cmd`` manages ~300 probes/s. Both are
measured here before and after the rounds (bench/probes_snmp.py, smaller counts), so every
run says how fast this host was at that moment against that reference (skip with
``--no-host-figures``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from core.settings import PROJECT_ROOT, LabPorts, Settings

if TYPE_CHECKING:
    from db.cluster import EmbeddedCluster
    from results.rounds import RoundSummary

# The round's HTTP probes run in a child started with multiprocessing's "spawn", which
# re-imports this script as __mp_main__: the heavy imports (geopandas through the generator,
# importer and geography loader) live inside the functions that use them, as they do in the
# CLI, so the child does not spend ~7 CPU-seconds importing them mid-round.

ROOT = PROJECT_ROOT / "var" / "bench-round"
REFERENCE_CEILING = 15_000  # GETs/s: the snmpd raw-UDP ceiling on its machine
REFERENCE_PYSNMP = 300  # probes/s: the pysnmp get_cmd figure on its machine


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` and its reaped children, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    user = (int(fields[11]) + int(fields[13])) / ticks
    system = (int(fields[12]) + int(fields[14])) / ticks
    return user, system


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (agent workers)."""
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in children:
        out += process_tree(int(child))
    return out


def tree_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` and every live process under it."""
    splits = [cpu_split(p) for p in process_tree(pid)]
    return sum(u for u, _ in splits), sum(s for _, s in splits)


def postgres_pid(cluster: EmbeddedCluster) -> int | None:
    """The postmaster's pid, from its pid file."""
    try:
        return int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cpu_usage(agents: dict[str, int], cluster: EmbeddedCluster) -> dict[str, tuple[float, float]]:
    """(user, system) CPU seconds so far of each agent, the prober and PostgreSQL."""
    usage = {name: tree_cpu(pid) for name, pid in agents.items()}
    usage["prober"] = cpu_split(os.getpid())
    pg = postgres_pid(cluster)
    usage["postgres"] = tree_cpu(pg) if pg is not None else (0.0, 0.0)
    return usage


def prepare(count: int, keep: bool) -> tuple[EmbeddedCluster, Path, dict[str, int]]:
    from sqlalchemy import text

    from core.db import make_engine
    from db.cluster import EmbeddedCluster
    from db.migrate import upgrade
    from geo.loader import load_geography
    from sites.generator import generate_sites, write_sites_csv
    from sites.importer import import_file

    cfg = Settings(pg_data_dir=ROOT / "pg", pg_port=58432)
    cluster = EmbeddedCluster(cfg, data_dir=ROOT / "pg")
    fresh = not cluster.initialised
    url = cluster.start()
    sites_csv = ROOT / f"lab-{count}.csv"
    ports_file = ROOT / f"ports-{count}.txt"
    engine = make_engine(url)
    try:
        upgrade(url)
        with engine.connect() as conn:
            loaded = conn.execute(text("SELECT count(*) FROM municipalities")).scalar_one()
            have = conn.execute(text("SELECT count(*) FROM sites")).scalar_one()
        if fresh or not loaded:
            t = time.perf_counter()
            load_geography(engine, PROJECT_ROOT / "data" / "inegi")
            print(f"set-up: geography loaded in {time.perf_counter() - t:.0f} s")
        if have != count or not sites_csv.exists() or not ports_file.exists():
            ports = {
                "snmp": free_port(socket.SOCK_DGRAM),
                "http": free_port(socket.SOCK_STREAM),
                "https": free_port(socket.SOCK_STREAM),
            }
            t = time.perf_counter()
            frame = generate_sites(
                PROJECT_ROOT / "data" / "inegi",
                count=count,
                seed=42,
                lab=True,
                lab_ports=LabPorts(ports["snmp"], ports["http"], ports["https"]),
            )
            write_sites_csv(frame, sites_csv)
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE sites CASCADE"))
            report = import_file(engine, sites_csv)
            ports_file.write_text(" ".join(f"{k}={v}" for k, v in ports.items()))
            print(
                f"set-up: generated and imported {report.inserted:,} lab sites in "
                f"{time.perf_counter() - t:.0f} s"
            )
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE probe_rounds, site_status, counter_state, reboot_events"))
            conn.execute(text("TRUNCATE probe_results"))
        ports = dict((k, int(v)) for k, v in (p.split("=") for p in ports_file.read_text().split()))
    finally:
        engine.dispose()
    return cluster, sites_csv, ports


def show(
    n: int,
    summary: RoundSummary,
    cpu: dict[str, tuple[float, float]],
    wall: float,
    cores: float,
) -> None:
    ph = summary.phases
    print(
        f"\nround {n}: {summary.sites:,} sites, {summary.snmp_probes:,} SNMP + "
        f"{summary.http_probes:,} HTTP probes"
    )
    print(
        f"  up {summary.up:,}  degraded {summary.degraded:,}  down {summary.down:,}; "
        f"rates {summary.rates_computed:,}, reboots {summary.reboots:,}, "
        f"bogus {summary.bogus_rates:,}"
    )
    print(
        f"  latency p50 {summary.latency_p50_ms or 0:.1f} ms, p95 {summary.latency_p95_ms or 0:.1f}"
        f" ms; {summary.probes_per_s or 0:,.0f} probes/s while probing"
    )
    print("  phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in ph.items()))
    spent = sum(u + s for u, s in cpu.values())
    print(
        "  CPU s (user + system):  "
        + ", ".join(f"{k} {u + s:.1f} ({u:.1f} + {s:.1f})" for k, (u, s) in cpu.items())
        + f"; all {spent:.1f}"
    )
    # The same run's floor: this much work cannot finish sooner on this many cores, however
    # well the phases overlap.
    print(f"  CPU floor: {spent / cores:.1f} s ({spent:.1f} CPU-s on {cores:g} cores)")
    if summary.errors:
        print("  failures: " + ", ".join(f"{k} {v:,}" for k, v in list(summary.errors.items())[:8]))
    # The round as its caller waits for it: the phases plus what run_round does after them
    # (collecting and freeing the round's objects).
    verdict = "met" if wall <= 20 else "NOT met"
    print(
        f"  round {wall:.1f} s from call to return (phases {ph['total']:.1f} s; "
        f"goal ≤ 20 s: {verdict})"
    )


def host_figures() -> tuple[float, float] | None:
    """This host's snmpd raw-UDP ceiling (GETs/s) and pysnmp ``get_cmd`` rate (probes/s) now,
    from bench/probes_snmp.py with small counts; None (with the reason printed) if it failed."""
    command = [
        sys.executable,
        str(Path(__file__).with_name("probes_snmp.py")),
        "--probes",
        "30000",
        "--repeat",
        "1",
        "--baseline-probes",
        "500",
        "--lab-sites",
        "0",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    ceiling = re.search(r"raw-UDP ceiling: ([\d,]+) GETs/s", done.stdout)
    pysnmp = re.search(r"baseline pysnmp get_cmd: ([\d,]+) probes/s", done.stdout)
    if done.returncode != 0 or ceiling is None or pysnmp is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        print(f"  host figures not measured (bench/probes_snmp.py: {' / '.join(tail)})")
        return None
    return float(ceiling[1].replace(",", "")), float(pysnmp[1].replace(",", ""))


def show_host(when: str, figures: tuple[float, float] | None) -> None:
    """Print the host's figures against the issue's reference machine."""
    if figures is None:
        return
    ceiling, pysnmp = figures
    print(
        f"host {when}: snmpd raw-UDP ceiling {ceiling:,.0f} GETs/s "
        f"({ceiling / REFERENCE_CEILING:.2f}× the issue's ~{REFERENCE_CEILING:,}), "
        f"pysnmp get_cmd {pysnmp:,.0f} probes/s "
        f"({pysnmp / REFERENCE_PYSNMP:.2f}× its ~{REFERENCE_PYSNMP})"
    )


def _leave_group(root: Path, group: Path) -> None:
    """Move back to the root group and remove ours (left alone while a kept cluster is in it)."""
    with contextlib.suppress(OSError):
        (root / "cgroup.procs").write_text(str(os.getpid()))
        group.rmdir()


def cap_cpu(cpus: float) -> str:
    """Put this process (and so every process it starts) under a CPU quota of ``cpus`` cores.

    A CFS quota over a 10 ms period: the run gets that much CPU time in all, spread over the
    machine's cores, as a host with less CPU would give it. Tries cgroup v2 (``cpu.max``), then
    v1 (``cpu.cfs_quota_us``). Returns the group's path; exits with a message when it cannot.
    """
    period = 10_000
    quota = max(1_000, int(cpus * period))
    name = f"conectado-bench-{os.getpid()}"
    for root, files in (
        (Path("/sys/fs/cgroup"), {"cpu.max": f"{quota} {period}"}),
        (Path("/sys/fs/cgroup/unified"), {"cpu.max": f"{quota} {period}"}),
        (
            Path("/sys/fs/cgroup/cpu"),
            {"cpu.cfs_period_us": str(period), "cpu.cfs_quota_us": str(quota)},
        ),
    ):
        if not (root / "cgroup.procs").exists():
            continue
        group = root / name
        try:
            group.mkdir(exist_ok=True)
            for file, value in files.items():
                (group / file).write_text(value)
            (group / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            with contextlib.suppress(OSError):
                group.rmdir()
            continue
        atexit.register(_leave_group, root, group)
        return str(group)
    raise SystemExit(
        "--cpus needs a writable cgroup CPU controller (cgroup v2 cpu.max or v1 "
        "cpu.cfs_quota_us) and root; none was found. Run without --cpus."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=101_322)
    parser.add_argument(
        "--workers", type=int, default=None, help="processes per lab agent (default: per core)"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--gap", type=float, default=5.0, help="seconds between rounds")
    parser.add_argument("--keep", action="store_true", help="keep the cluster for the next run")
    parser.add_argument(
        "--kind", default="snmp,http", help="probe kinds of the round (snmp, http or both)"
    )
    parser.add_argument(
        "--cpus",
        type=float,
        default=None,
        help="emulate a slower host: cap this run (cluster, lab agents, prober) at this many "
        "cores' worth of CPU with a cgroup quota (root; e.g. 1.0 or 0.67)",
    )
    parser.add_argument(
        "--no-host-figures",
        action="store_true",
        help="skip measuring the host against the issue's reference figures",
    )
    args = parser.parse_args()
    if args.cpus is not None:
        print(f"set-up: capped at {args.cpus:g} cores' worth of CPU ({cap_cpu(args.cpus)})")
    if not args.no_host_figures:
        show_host("before the rounds", host_figures())
    from core.db import make_engine
    from lab.runner import lab_status, start_lab, stop_lab
    from results.rounds import run_round

    ROOT.mkdir(parents=True, exist_ok=True)
    cluster, sites_csv, ports = prepare(args.count, args.keep)
    lab_settings = Settings(var_dir=ROOT / "var")
    if lab_status(lab_settings) is not None:
        stop_lab(lab_settings)
    t = time.perf_counter()
    state = start_lab(
        lab_settings,
        sites_csv,
        snmp_port=ports["snmp"],
        http_port=ports["http"],
        https_port=ports["https"],
        http_workers=args.workers,
        snmp_workers=args.workers,
    )
    print(
        f"set-up: lab agents answering after {time.perf_counter() - t:.1f} s "
        f"({state.sites:,} sites, {state.https_sites:,} https)"
    )
    settings = Settings(
        database_url=cluster.url(),
        var_dir=ROOT / "var",
        http_ca_file=Path(state.ca_file),
        http_expect_keyword="Conectado",
    )
    engine = make_engine(cluster.url())
    walls: list[float] = []
    try:
        agents = {a.name: a.pid for a in state.agents}
        for n in range(1, args.rounds + 1):
            before = cpu_usage(agents, cluster)
            called = time.perf_counter()
            summary = run_round(engine, settings, kinds=set(args.kind.split(",")))
            wall = time.perf_counter() - called
            walls.append(wall)
            after = cpu_usage(agents, cluster)
            show(
                n,
                summary,
                {k: (after[k][0] - before[k][0], after[k][1] - before[k][1]) for k in after},
                wall,
                # Under --cpus the run has that many cores' worth of CPU, whatever the machine.
                args.cpus if args.cpus is not None else float(os.cpu_count() or 1),
            )
            if n < args.rounds:
                time.sleep(args.gap)
    finally:
        engine.dispose()
        stop_lab(lab_settings)
        if not args.keep:
            cluster.destroy()
            print(f"\nthrowaway cluster in {cluster.data_dir} removed (use --keep to reuse it)")
    if walls:
        missed = sum(w > 20 for w in walls)
        print(
            "\nrounds: "
            + ", ".join(f"{w:.1f}" for w in walls)
            + " s from call to return; "
            + (f"{missed} of {len(walls)} over 20 s" if missed else "every one ≤ 20 s")
        )
    if not args.no_host_figures:
        show_host("after the rounds", host_figures())


if __name__ == "__main__":
    main()
