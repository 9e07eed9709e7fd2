"""HTTP probe throughput on one core, each figure printed next to its baselines (same run).

Server: Debian's nginx (a real, widely deployed C server, not our code), one worker pinned to
the other core, listening on 0.0.0.0 with keep-alive off; each probe goes to its own
127.x.y.z address with a new TCP connection, as in the field. Without nginx the lab HTTP
agent (2 workers) is used instead and the output says so.

Measured, pinned to core 0 (os.sched_setaffinity):
- ceiling: a minimal raw-socket epoll loop (connect, send, read to EOF; no parsing, no
  outcomes) — what Python on this core can do at all;
- ours: probes.http.probe_http_many (full parsing, keyword check, outcomes), with its compiled
  loop for plain http:// (probes/native/http_fast.c) and with the Python engine alone
  (native=False), alternated;
- baselines: httpx.AsyncClient and aiohttp (keep-alive off, so one connection per probe),
  with a bounded number of probes.

Then the lab HTTP agent's own cost (``--lab-sites``, 0 to skip): two agents (``python -m
lab.runner http``, one worker each, on the other core), one with the compiled fast path
(lab/native/http_fast.c) and one in pure Python (``CONECTADO_LAB_NATIVE=false``), probed in
turn with every site of a lab inventory (its down, flapping, slow and failing sites too); the
figure is each agent's CPU (user + system, from /proc) per connection.

Usage: python bench/probes_http.py [--probes 30000] [--baseline-probes 3000] [--repeat 3]
                                   [--lab-sites 20000] [--lab-only]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.inventory import lab_address
from probes.http import probe_http_many
from probes.model import HttpTarget
from probes.native.http_fast import fast_path_available

BODY = "<html><body><h1>Conectado</h1><p>site ok</p></body></html>"
NGINX_CONF = """
worker_processes 1;
worker_cpu_affinity {affinity};
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; use epoll; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp;
  fastcgi_temp_path {root}/tmp; uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
  keepalive_timeout 0;
  server {{
    listen 0.0.0.0:{port} reuseport backlog=8192;
    location / {{ default_type text/html; return 200 "{body}"; }}
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"server on port {port} did not start")


class Server:
    """nginx (preferred) or the lab HTTP agent, on the other core."""

    def __init__(self, server_cpu: int) -> None:
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
        self.proc: subprocess.Popen[bytes]
        nginx = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
        if nginx:
            (self.tmp / "tmp").mkdir()
            conf = self.tmp / "nginx.conf"
            affinity = "".join(
                "1" if i == server_cpu else "0" for i in reversed(range(os.cpu_count() or 2))
            )
            conf.write_text(
                NGINX_CONF.format(root=self.tmp, port=self.port, body=BODY, affinity=affinity)
            )
            self.name = "nginx 1 worker"
            self.proc = subprocess.Popen(
                [nginx, "-c", str(conf), "-p", str(self.tmp)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        else:
            import csv

            sites = self.tmp / "lab.csv"
            with sites.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["site_key", "mgmt_ip", "http_url"])
                for i in range(60_000):
                    ip = lab_address(i)
                    w.writerow([f"B{i}", ip, f"http://{ip}:{self.port}/"])
            self.name = "lab HTTP agent, 2 workers (nginx not installed)"
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lab.runner",
                    "http",
                    "--sites",
                    str(sites),
                    "--port",
                    str(self.port),
                    "--https-port",
                    "0",
                    "--tls-dir",
                    str(self.tmp),
                    "--workers",
                    "2",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        os.sched_setaffinity(self.proc.pid, {server_cpu})
        wait_port(self.port)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def urls(port: int, n: int, offset: int = 0) -> list[str]:
    return [f"http://{lab_address(offset + i)}:{port}/" for i in range(n)]


def raw_ceiling(addresses: list[str], port: int, concurrency: int) -> float:
    """Connect, send a GET, read to EOF, with the fewest syscalls: the least a probe must do."""
    ep = select.epoll()
    events = select.EPOLLIN | select.EPOLLOUT | select.EPOLLET
    conns: dict[int, tuple[socket.socket, bytes, list[int]]] = {}
    todo = list(reversed(addresses))
    t0 = time.perf_counter()

    def start() -> None:
        host = todo.pop()
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex((host, port))
        req = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        conns[sock.fileno()] = (sock, req, [0])
        ep.register(sock.fileno(), events)

    done = 0
    while todo and len(conns) < concurrency:
        start()
    while conns:
        for fd, _ in ep.poll(1.0):
            sock, req, state = conns[fd]
            if state[0] == 0:
                sock.send(req)
                state[0] = 1
                continue
            while True:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    break
                except ConnectionError:
                    data = b""
                if not data:
                    del conns[fd]
                    sock.close()
                    done += 1
                    if todo:
                        start()
                    break
    ep.close()
    return done / (time.perf_counter() - t0)


def ours(
    addresses: list[str], concurrency: int, *, native: bool = True
) -> tuple[float, float, float, int]:
    targets = [HttpTarget(i, u, expect_keyword="Conectado") for i, u in enumerate(addresses)]
    t0 = time.perf_counter()
    outs = asyncio.run(
        probe_http_many(targets, timeout=5, retries=0, concurrency=concurrency, native=native)
    )
    took = time.perf_counter() - t0
    ttfb = sorted(o.ttfb_ms for o in outs if o.ttfb_ms is not None)
    ok = sum(o.ok for o in outs)
    p50 = ttfb[len(ttfb) // 2] if ttfb else float("nan")
    p95 = ttfb[int(len(ttfb) * 0.95)] if ttfb else float("nan")
    return len(outs) / took, p50, p95, ok


def httpx_baseline(addresses: list[str], concurrency: int) -> tuple[float, int]:
    import httpx

    async def main() -> tuple[float, int]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
        sem = asyncio.Semaphore(concurrency)
        ok = 0
        async with httpx.AsyncClient(limits=limits, timeout=5) as client:

            async def one(url: str) -> None:
                nonlocal ok
                async with sem:
                    r = await client.get(url, headers={"Connection": "close"})
                    ok += r.status_code == 200 and "Conectado" in r.text

            t0 = time.perf_counter()
            await asyncio.gather(*(one(u) for u in addresses))
            return len(addresses) / (time.perf_counter() - t0), ok

    return asyncio.run(main())


def aiohttp_baseline(addresses: list[str], concurrency: int) -> tuple[float, int]:
    import aiohttp

    async def main() -> tuple[float, int]:
        connector = aiohttp.TCPConnector(limit=concurrency, force_close=True)
        sem = asyncio.Semaphore(concurrency)
        ok = 0
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def one(url: str) -> None:
                nonlocal ok
                async with sem, session.get(url) as r:
                    body = await r.text()
                    ok += r.status == 200 and "Conectado" in body

            t0 = time.perf_counter()
            await asyncio.gather(*(one(u) for u in addresses))
            return len(addresses) / (time.perf_counter() - t0), ok

    return asyncio.run(main())


def agent_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def lab_agents(sites: int, concurrency: int, repeat: int, agent_core: int) -> None:
    """The lab HTTP agent's CPU per connection, compiled fast path against pure Python, the
    two agents probed in turn in this one run."""
    from lab.inventory import read_lab_inventory

    tmp = Path(tempfile.mkdtemp(prefix="bench-lab-http-"))
    agents: dict[str, tuple[subprocess.Popen[bytes], int, Path]] = {}
    try:
        port_of = {"compiled fast path": free_port(), "pure Python": free_port()}
        for name, port in port_of.items():
            csv_path = tmp / f"lab-{port}.csv"
            with csv_path.open("w") as f:
                f.write("site_key,mgmt_ip,http_url\n")
                for i in range(sites):
                    ip = lab_address(300_000 + i)
                    f.write(f"B{i},{ip},http://{ip}:{port}/\n")
            log_path = tmp / f"agent-{port}.log"
            env = {**os.environ, "CONECTADO_LAB_NATIVE": str(name == "compiled fast path")}
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    [
                        *(sys.executable, "-m", "lab.runner", "http", "--sites", str(csv_path)),
                        *("--port", str(port), "--https-port", "0", "--tls-dir", str(tmp)),
                        *("--workers", "1"),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=str(Path(__file__).resolve().parent.parent),
                )
            os.sched_setaffinity(proc.pid, {agent_core})
            agents[name] = (proc, port, csv_path)
        for name, (_, port, _) in agents.items():
            wait_port(port)
            deadline = time.monotonic() + 30
            while "serving" not in (text := (tmp / f"agent-{port}.log").read_text()):
                if time.monotonic() > deadline:
                    raise SystemExit(f"lab agent ({name}) did not start:\n{text}")
                time.sleep(0.1)
            said = "compiled fast path" if "(compiled fast path)" in text else "pure Python"
            if said != name:
                print(f"NOTE: the {name} agent runs in {said} (is lab/native built? make native)")
        inventory = read_lab_inventory(agents["pure Python"][2])
        slow = sum(1 for b in inventory.behaviours() if b.slow_delay_s > 0)
        answering = sum(1 for b in inventory.behaviours() if b.answers(time.time()))
        print(
            f"\nlab HTTP agent, 1 worker on core {agent_core}: {sites:,} sites each at its own "
            f"127.x.y.z ({sites - answering:,} down or flapping down: reset; {slow:,} slow), "
            f"a new connection per probe, concurrency {concurrency:,}"
        )
        print(f"{'agent':22} {'probes/s':>9} {'CPU µs/conn':>12} {'user':>6} {'sys':>6}  notes")
        for attempt in range(1, repeat + 1):
            for name, (proc, port, _) in agents.items():
                targets = [
                    HttpTarget(
                        i, f"http://{lab_address(300_000 + i)}:{port}/", expect_keyword="Conectado"
                    )
                    for i in range(sites)
                ]
                u0, s0 = agent_cpu(proc.pid)
                t0 = time.perf_counter()
                outs = asyncio.run(
                    probe_http_many(targets, timeout=5, retries=0, concurrency=concurrency)
                )
                took = time.perf_counter() - t0
                u1, s1 = agent_cpu(proc.pid)
                n = len(outs)
                user, system = (u1 - u0) * 1e6 / n, (s1 - s0) * 1e6 / n
                ok = sum(o.ok for o in outs)
                print(
                    f"{name:22} {n / took:>9,.0f} {user + system:>12.1f} {user:>6.1f} "
                    f"{system:>6.1f}  pass {attempt}, ok {ok:,}/{n:,}"
                )
    finally:
        for proc, _, _ in agents.values():
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--probes", type=int, default=30_000)
    parser.add_argument("--baseline-probes", type=int, default=3_000)
    parser.add_argument("--concurrency", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--lab-sites", type=int, default=20_000)
    parser.add_argument("--lab-only", action="store_true", help="only the lab agents' figures")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores: the prober on one, the server on the other")
    os.sched_setaffinity(0, {0})
    if not args.lab_only:
        probe_figures(args)
    if args.lab_sites:
        lab_agents(args.lab_sites, args.concurrency, args.repeat, agent_core=1)


def probe_figures(args: argparse.Namespace) -> None:
    server = Server(server_cpu=1)
    try:
        print(f"server: {server.name} on core 1, 0.0.0.0:{server.port}; prober on core 0")
        print(
            f"probes: {args.probes:,} at concurrency {args.concurrency:,}, each to its own "
            "127.x.y.z, a new connection per probe\n"
        )
        ours(urls(server.port, 2000, 200_000), args.concurrency)  # warm-up
        hosts = [u.split("/")[2].split(":")[0] for u in urls(server.port, args.probes)]
        rows: list[tuple[str, list[float], list[float], str]] = []

        ceiling: list[float] = []
        ceiling_cpu: list[float] = []
        for _ in range(args.repeat):
            c0 = time.process_time()
            ceiling.append(raw_ceiling(hosts, server.port, args.concurrency))
            ceiling_cpu.append((time.process_time() - c0) * 1e6 / len(hosts))
        rows.append(("raw epoll ceiling (no parsing)", ceiling, ceiling_cpu, ""))

        # The compiled loop (probes/native) and the Python engine alone, alternated in each
        # repeat so that both see the same moments of a noisy host.
        engine_rates: dict[bool, list[float]] = {True: [], False: []}
        engine_cpus: dict[bool, list[float]] = {True: [], False: []}
        notes: dict[bool, str] = {}
        for _ in range(args.repeat):
            for native in (True, False):
                c0 = time.process_time()
                rate, p50, p95, ok = ours(
                    urls(server.port, args.probes), args.concurrency, native=native
                )
                engine_cpus[native].append((time.process_time() - c0) * 1e6 / args.probes)
                engine_rates[native].append(rate)
                notes[native] = (
                    f"ok {ok:,}/{args.probes:,}; ttfb p50 {p50:.1f} ms, p95 {p95:.1f} ms"
                )
        if not fast_path_available():
            notes[True] = "probes/native NOT built (make native): Python engine; " + notes[True]
        mine, mine_cpu = engine_rates[True], engine_cpus[True]
        rows.append(("ours: probe_http_many (compiled loop)", mine, mine_cpu, notes[True]))
        rows.append(
            (
                "ours: Python engine only (native=False)",
                engine_rates[False],
                engine_cpus[False],
                notes[False],
            )
        )

        base = urls(server.port, args.baseline_probes, 100_000)
        for name, fn in (
            ("baseline: httpx.AsyncClient (no keep-alive)", httpx_baseline),
            ("baseline: aiohttp (force_close)", aiohttp_baseline),
        ):
            c0 = time.process_time()
            rate, ok = fn(base, min(args.concurrency, 500))
            cpu = (time.process_time() - c0) * 1e6 / len(base)
            rows.append((name, [rate], [cpu], f"{len(base):,} probes, ok {ok:,}"))

        print(f"{'measure':44} {'probes/s':>9} {'CPU µs/probe':>13}  notes")
        for name, rates, cpus, extra in rows:
            runs = ", ".join(f"{x:,.0f}" for x in rates) if len(rates) > 1 else ""
            print(
                f"{name:44} {statistics.median(rates):>9,.0f} {statistics.median(cpus):>13,.0f}"
                f"  {('runs ' + runs + '; ') if runs else ''}{extra}"
            )
        med = statistics.median(mine)
        med_cpu = statistics.median(mine_cpu)
        hx, ah = rows[3][1][0], rows[4][1][0]
        print(
            f"\nours / ceiling = {med / statistics.median(ceiling):.2f}; ours / httpx = "
            f"{med / hx:.1f}x; ours / aiohttp = {med / ah:.1f}x; one core fully ours would do "
            f"~{1e6 / med_cpu:,.0f}/s (1e6 / CPU µs per probe); goal ≥ 3,000/s: "
            f"{'met' if med >= 3000 else 'NOT met'} as measured"
        )
        python_cpu = statistics.median(engine_cpus[False])
        print(
            f"compiled loop against the Python engine alone: {med_cpu:,.0f} against "
            f"{python_cpu:,.0f} CPU µs per probe ({python_cpu / med_cpu:.2f}x less CPU)"
        )
        print(
            f"load average now {os.getloadavg()[0]:.1f}: other work on the machine depresses "
            "probes/s; CPU µs per probe is the steadier figure"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
