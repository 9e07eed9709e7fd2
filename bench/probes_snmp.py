"""SNMP v2c probe throughput on one core, each figure printed next to its baselines (same run).

Agent: net-snmp's snmpd (a real, widely deployed C agent, not our code) started here with a
temporary config (``agentAddress udp:127.0.0.1:<port>``, ``rocommunity``, 4 MiB socket buffers,
``-f -Lo -C -c conf``: foreground, no system config), pinned to core 1.

Measured, with this process pinned to core 0 (os.sched_setaffinity):
- ceiling: a minimal raw-UDP loop that sends precomputed copies of the probe's GET datagram and
  counts responses, at the same concurrency (no decoding, no outcomes);
- ours: probes.snmp.probe_snmp_many (decode, validate, outcomes with timestamps and latency;
  the cyclic garbage collector paused, as in a probe round),
  with its compiled loop (probes/native/snmp_fast.c, the default) and, right after in each round,
  with the Python engine alone (``native=False``), so both are measured against the same
  ceiling;
- baseline: pysnmp's high-level asyncio get_cmd with the same five OIDs (bounded probe count).
snmpd's own CPU use during each run is printed, to show when the agent is the bottleneck.

Usage: python bench/probes_snmp.py [--probes 50000] [--concurrency 2000] [--repeat 2]
                                   [--baseline-probes 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.collector import collector_paused
from probes import ber
from probes.model import SnmpOutcome, SnmpTarget
from probes.snmp import SnmpStats, probe_snmp_many
from probes.snmp_oids import (
    IF_HC_IN_OCTETS,
    IF_HC_OUT_OCTETS,
    IF_HIGH_SPEED,
    IF_OPER_STATUS,
    SYS_UPTIME,
)

COMMUNITY = "bench"
IF_INDEX = 1
OIDS = [
    SYS_UPTIME,
    *((*c, IF_INDEX) for c in (IF_HC_IN_OCTETS, IF_HC_OUT_OCTETS, IF_OPER_STATUS, IF_HIGH_SPEED)),
]
BENCH_CORE = 0
AGENT_CORE = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_snmpd(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = root / "snmpd.conf"
    conf.write_text(
        f"agentAddress udp:127.0.0.1:{port}\n"
        f"rocommunity {COMMUNITY} 127.0.0.1\n"
        "[snmp] serverRecvBuf 4194304\n"
        "[snmp] serverSendBuf 4194304\n"
    )
    proc = subprocess.Popen(
        [
            "/usr/sbin/snmpd",
            "-f",
            "-Lo",
            "-C",
            "-c",
            str(conf),
            "-p",
            str(root / "snmpd.pid"),
            f"--persistentDir={root / 'persist'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MIBS": ""},
    )
    if (os.cpu_count() or 1) > 1:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(proc.pid, {AGENT_CORE})
    template = ber.RequestTemplate(COMMUNITY.encode(), ber.GET_REQUEST, [SYS_UPTIME])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        for attempt in range(100):
            sock.sendto(template.build(ber.REQUEST_ID_MIN + attempt), ("127.0.0.1", port))
            try:
                sock.recv(65536)
                return proc, port
            except TimeoutError:
                continue
    proc.kill()
    raise SystemExit("snmpd did not answer within 20 s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_ceiling(port: int, count: int, concurrency: int) -> tuple[float, int]:
    """Send precomputed GETs, keep ``concurrency`` outstanding, count answers: (GETs/s, lost)."""
    template = ber.RequestTemplate(COMMUNITY.encode(), ber.GET_REQUEST, OIDS)
    datagrams = [template.build(ber.REQUEST_ID_MIN + i) for i in range(count)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.setblocking(False)
    poller = select.epoll()
    poller.register(sock.fileno(), select.EPOLLIN)
    address = ("127.0.0.1", port)
    sent = received = 0
    started = time.perf_counter()
    last = started
    while received < count:
        while sent < count and sent - received < concurrency:
            sock.sendto(datagrams[sent], address)
            sent += 1
        if not poller.poll(0.5):
            if sent >= count:
                break  # the rest were lost
            received = sent  # lost datagrams: refill the window
            continue
        while True:
            try:
                sock.recv(65536)
            except BlockingIOError:
                break
            received += 1
            last = time.perf_counter()
    sock.close()
    poller.close()
    answered = min(received, count)
    return answered / (last - started), count - answered


def engine_run(
    port: int, count: int, concurrency: int, native: bool = True
) -> tuple[float, list[float], SnmpStats, int]:
    targets = [
        SnmpTarget(site_id=i, host="127.0.0.1", port=port, community=COMMUNITY, if_index=IF_INDEX)
        for i in range(count)
    ]
    stats = SnmpStats()

    async def run() -> list[SnmpOutcome]:
        return await probe_snmp_many(
            targets, timeout=2.0, retries=1, concurrency=concurrency, stats=stats, native=native
        )

    started = time.perf_counter()
    with collector_paused():  # as in a probe round (results.rounds)
        outcomes = asyncio.run(run())
    elapsed = time.perf_counter() - started
    latencies = [o.latency_ms for o in outcomes if o.ok and o.latency_ms is not None]
    ok = sum(o.ok for o in outcomes)
    return ok / elapsed, latencies, stats, count - ok


def pysnmp_run(port: int, count: int, concurrency: int) -> float:
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData,
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        get_cmd,
    )

    async def run() -> int:
        engine = SnmpEngine()
        auth = CommunityData(COMMUNITY)
        transport = await UdpTransportTarget.create(("127.0.0.1", port), timeout=2, retries=1)
        gate = asyncio.Semaphore(concurrency)

        async def one() -> bool:
            async with gate:
                error, status, _, _ = await get_cmd(
                    engine,
                    auth,
                    transport,
                    ContextData(),
                    *(ObjectType(ObjectIdentity(oid)) for oid in OIDS),
                    lookupMib=False,
                )
            return error is None and not int(status)

        oks = await asyncio.gather(*(one() for _ in range(count)))
        engine.close_dispatcher()
        return sum(oks)

    started = time.perf_counter()
    ok = asyncio.run(run())
    return ok / (time.perf_counter() - started)


def lab_run(count: int, concurrency: int) -> None:
    """Our engine against the lab agent: many addresses, one responder process; with the
    compiled fast path (lab.native) and in pure Python, one after the other."""
    for native in (True, False):
        lab_run_once(count, concurrency, native)


def lab_run_once(count: int, concurrency: int, native: bool) -> None:
    """One lab agent process (``native`` or pure Python), probed twice."""
    from lab.inventory import inventory_from_rows, lab_address

    rows = [
        {"site_key": f"BENCH{i:06d}", "mgmt_ip": lab_address(i), "wan_if_index": "3"}
        for i in range(count)
    ]
    inventory = inventory_from_rows(rows)
    now = time.time()
    steady = [
        i
        for i in range(count)
        if inventory.behaviour(i).answers(now)
        and inventory.behaviour(i).answers(now + 60)
        and not inventory.behaviour(i).slow_delay_s
    ]
    with tempfile.TemporaryDirectory(prefix="conectado-bench-lab-") as tmp:
        csv_path = Path(tmp) / "lab.csv"
        csv_path.write_text(
            "site_key,mgmt_ip,wan_if_index\n"
            + "".join(f"{r['site_key']},{r['mgmt_ip']},3\n" for r in rows)
        )
        port = free_port()
        code = (
            "import os; from pathlib import Path; from lab.inventory import read_lab_inventory; "
            "from lab.snmp_agent import run_snmp_agent; "
            f"os.sched_setaffinity(0, {{{AGENT_CORE}}}) if (os.cpu_count() or 1) > 1 else None; "
            f"run_snmp_agent(read_lab_inventory(Path({str(csv_path)!r})), port={port}, workers=1, "
            f"native={native})"
        )
        agent = subprocess.Popen([sys.executable, "-c", code])
        try:
            targets = [
                SnmpTarget(
                    site_id=i,
                    host=lab_address(i),
                    port=port,
                    community="conectado-lab",
                    if_index=3,
                )
                for i in steady
            ]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                probe = asyncio.run(probe_snmp_many(targets[:1], timeout=0.5, retries=0))
                if probe[0].ok:
                    break
            for attempt in (1, 2):
                agent0, wall0 = cpu_seconds(agent.pid), time.perf_counter()
                stats = SnmpStats()
                outcomes = asyncio.run(
                    probe_snmp_many(targets, concurrency=concurrency, stats=stats)
                )
                wall = time.perf_counter() - wall0
                agent_cpu = cpu_seconds(agent.pid) - agent0
                ok = sum(o.ok for o in outcomes)
                kind = "compiled fast path" if native else "pure Python"
                print(
                    f"lab agent, {kind}, #{attempt} ({len(targets):,} sites at their own "
                    f"addresses, 1 worker): {ok / wall:,.0f} probes/s, ok {ok:,}/{len(targets):,}, "
                    f"agent {agent_cpu / max(1, stats.requests_sent) * 1e6:.1f} µs CPU/answer "
                    f"(= {stats.requests_sent / agent_cpu if agent_cpu else 0:,.0f} answers/s "
                    "per core), first pass includes building each site's model"
                )
        finally:
            agent.terminate()
            agent.wait(timeout=10)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--baseline-probes", type=int, default=1000)
    parser.add_argument(
        "--lab-sites",
        type=int,
        default=20_000,
        help="also probe this many sites of the lab SNMP agent (one worker on the other core), "
        "each at its own 127.x.y.z; 0 to skip",
    )
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    if cores > 1:
        os.sched_setaffinity(0, {BENCH_CORE})
    print(
        f"SNMP v2c probe benchmark: {args.probes:,} probes, concurrency {args.concurrency}, "
        f"prober on core {BENCH_CORE}, snmpd on core {AGENT_CORE} ({cores} cores)"
    )
    print(
        f"load average at start: {os.getloadavg()[0]:.2f} (other work on this machine "
        "depresses every figure alike)"
    )
    with tempfile.TemporaryDirectory(
        prefix="conectado-bench-snmp-", ignore_cleanup_errors=True
    ) as tmp:
        proc, port = start_snmpd(Path(tmp))
        try:
            rows: list[tuple[str, float, float, float, str]] = []
            ceilings: list[float] = []
            ours: list[float] = []
            ours_cpu: list[float] = []
            python_rates: list[float] = []
            python_cpu: list[float] = []
            raw_cpu: list[float] = []
            all_latencies: list[float] = []
            for round_ in range(1, args.repeat + 1):
                agent0, cpu0, wall0 = (
                    cpu_seconds(proc.pid),
                    time.process_time(),
                    time.perf_counter(),
                )
                ceiling, lost = raw_ceiling(port, args.probes, args.concurrency)
                wall = time.perf_counter() - wall0
                agent_load = (cpu_seconds(proc.pid) - agent0) / wall
                per_get = (time.process_time() - cpu0) / args.probes * 1e6
                ceilings.append(ceiling)
                raw_cpu.append(per_get)
                rows.append(
                    (f"raw-UDP ceiling #{round_}", ceiling, per_get, agent_load, f"lost {lost}")
                )
                for native in (True, False):
                    agent0, cpu0, wall0 = (
                        cpu_seconds(proc.pid),
                        time.process_time(),
                        time.perf_counter(),
                    )
                    rate, latencies, stats, failed = engine_run(
                        port, args.probes, args.concurrency, native
                    )
                    wall = time.perf_counter() - wall0
                    agent_load = (cpu_seconds(proc.pid) - agent0) / wall
                    per_probe = (time.process_time() - cpu0) / args.probes * 1e6
                    if native:
                        ours.append(rate)
                        ours_cpu.append(per_probe)
                        all_latencies += latencies
                    else:
                        python_rates.append(rate)
                        python_cpu.append(per_probe)
                    rows.append(
                        (
                            f"ours, {'compiled loop' if native else 'Python engine'} #{round_}",
                            rate,
                            per_probe,
                            agent_load,
                            f"failed {failed}, retransmissions {stats.retransmissions}, "
                            f"p50 {percentile(latencies, 0.5):.1f} ms, "
                            f"p95 {percentile(latencies, 0.95):.1f} ms",
                        )
                    )
            agent0, cpu0, wall0 = cpu_seconds(proc.pid), time.process_time(), time.perf_counter()
            baseline = pysnmp_run(port, args.baseline_probes, min(args.concurrency, 100))
            wall = time.perf_counter() - wall0
            agent_load = (cpu_seconds(proc.pid) - agent0) / wall
            per_baseline = (time.process_time() - cpu0) / args.baseline_probes * 1e6
            rows.append(
                (
                    f"pysnmp get_cmd ({args.baseline_probes:,} probes)",
                    baseline,
                    per_baseline,
                    agent_load,
                    "",
                )
            )
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print(f"\n{'run':<34} {'probes/s':>9} {'CPU µs/probe':>13} {'snmpd CPU':>10}  notes")
    for name, rate, cpu, load, notes in rows:
        print(f"{name:<34} {rate:>9,.0f} {cpu:>13.1f} {load:>9.0%}  {notes}")
    best_ours, best_ceiling = max(ours), max(ceilings)
    ratios = [o / c for o, c in zip(ours, ceilings, strict=True)]
    print(
        f"\nours: {statistics.median(ours):,.0f} probes/s median, {best_ours:,.0f} best "
        "(goal ≥ 10,000 on one core)"
    )
    print(
        f"raw-UDP ceiling: {statistics.median(ceilings):,.0f} GETs/s median, "
        f"{best_ceiling:,.0f} best"
    )
    print(
        f"ratio to the ceiling of the same round: {', '.join(f'{r:.2f}' for r in ratios)} "
        "(goal ≥ 0.65)"
    )
    print(
        f"CPU on the prober's core: ours {statistics.median(ours_cpu):.1f} µs/probe "
        f"(= {1e6 / statistics.median(ours_cpu):,.0f} probes/s if the core were ours alone), "
        f"raw loop {statistics.median(raw_cpu):.1f} µs/GET, "
        f"pysnmp {per_baseline:,.0f} µs/probe"
    )
    python_ratios = [p / c for p, c in zip(python_rates, ceilings, strict=True)]
    print(
        f"Python engine alone: {statistics.median(python_rates):,.0f} probes/s median at "
        f"{statistics.median(python_cpu):.1f} µs/probe (the compiled loop uses "
        f"{statistics.median(ours_cpu) / statistics.median(python_cpu):.2f}× its CPU); "
        f"ratio to the ceiling {', '.join(f'{r:.2f}' for r in python_ratios)}"
    )
    print(f"baseline pysnmp get_cmd: {baseline:,.0f} probes/s; ours is {best_ours / baseline:.0f}×")
    if args.lab_sites:
        lab_run(args.lab_sites, args.concurrency)
    print(
        f"latency of our probes (all rounds): p50 {percentile(all_latencies, 0.5):.1f} ms, "
        f"p95 {percentile(all_latencies, 0.95):.1f} ms "
        f"(queueing behind {args.concurrency} requests in flight to one agent)"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
