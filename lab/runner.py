"""Start, stop and describe the lab agents as background processes.

``start_lab`` launches one SNMP agent and one HTTP agent (``python -m lab.runner snmp|http``)
in their own sessions, records their process ids, ports and log files in
``<var_dir>/lab/lab.json`` and returns once both answer. ``stop_lab`` ends exactly those
processes (and their workers). Logs: ``<var_dir>/lab/snmp_agent.log`` and ``http_agent.log``;
the lab CA for https sites: ``<var_dir>/lab/tls/ca.pem``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from core.errors import Conflict, SetupError
from core.settings import Settings
from lab.inventory import read_lab_inventory
from probes.model import SnmpTarget

STATE_FILE: Final = "lab.json"
AGENT_MARK: Final = "lab.runner"


@dataclass(frozen=True)
class LabPaths:
    """Where the lab keeps its state, logs and TLS files."""

    root: Path

    @property
    def state_file(self) -> Path:
        """JSON with the running agents."""
        return self.root / STATE_FILE

    @property
    def tls_dir(self) -> Path:
        """Lab CA, server key and per-site certificates."""
        return self.root / "tls"

    @property
    def ca_file(self) -> Path:
        """The CA that signs the lab's good certificates (CONECTADO_HTTP_CA_FILE)."""
        return self.tls_dir / "ca.pem"

    def log(self, name: str) -> Path:
        """Log file of agent ``name``."""
        return self.root / f"{name}_agent.log"


def lab_paths(settings: Settings) -> LabPaths:
    """The lab folder under ``settings.var_dir``."""
    return LabPaths(settings.path(settings.var_dir) / "lab")


@dataclass
class AgentProcess:
    """One background agent."""

    name: str
    pid: int
    ports: list[int]
    log: str
    alive: bool = True


@dataclass
class LabState:
    """The running lab: what it serves and its agents."""

    sites_file: str
    sites: int
    https_sites: int
    started_at: str
    ca_file: str
    agents: list[AgentProcess] = field(default_factory=list)

    @property
    def running(self) -> bool:
        """True when every agent is alive."""
        return bool(self.agents) and all(a.alive for a in self.agents)


def pid_alive(pid: int) -> bool:
    """True when ``pid`` is a live lab agent (guards against a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        # A process spawned a moment ago can show an empty cmdline until its exec is done
        # (seen on this kernel); kernel threads keep it empty, so the wait is bounded.
        for _ in range(20):
            if cmdline:
                break
            time.sleep(0.005)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if AGENT_MARK.encode() not in cmdline:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def read_state(paths: LabPaths) -> LabState | None:
    """The recorded lab, with each agent's liveness refreshed; None when there is none."""
    try:
        raw = json.loads(paths.state_file.read_text())
    except (OSError, ValueError):
        return None
    agents = [AgentProcess(**a) for a in raw.pop("agents", [])]
    state = LabState(**raw, agents=agents)
    for agent in state.agents:
        agent.alive = pid_alive(agent.pid)
    return state


def _write_state(paths: LabPaths, state: LabState) -> None:
    tmp = paths.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(paths.state_file)


def lab_status(settings: Settings) -> LabState | None:
    """Describe the lab recorded under ``var_dir`` (None when never started or stopped)."""
    return read_state(lab_paths(settings))


def _spawn(
    name: str, args: list[str], paths: LabPaths, cpus: set[int] | None
) -> subprocess.Popen[bytes]:
    log_file = paths.log(name)
    with log_file.open("ab") as log:
        log.write(f"\n--- {datetime.now(UTC).isoformat()} starting {name} agent\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "lab.runner", name, *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(proc.pid, cpus)
    return proc


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _http_answers(port: int) -> bool:
    """True when something answers an HTTP GET on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.")
    except OSError:
        return False


def _snmp_answers(targets: list[SnmpTarget]) -> bool:
    """True when the SNMP agent answers a GET for any of ``targets``."""
    from probes.snmp import probe_snmp_many

    outcomes = asyncio.run(probe_snmp_many(targets, timeout=0.5, retries=0))
    return any(o.ok for o in outcomes)


def default_lab_workers() -> int:
    """Processes per lab agent when none is asked for: one per core, at most four.

    The agents stand in for ~100k independent devices; with one process each they would
    serialise on one core what the field does in parallel. On this 2-core machine a full
    95,279-site round took 31.9–39.1 s over four runs with two workers per agent, against
    35.0–38.7 s with one (bench/round.py --workers 1): a second or two, near the noise.
    """
    return max(1, min(os.cpu_count() or 1, 4))


def port_in_use(kind: socket.SocketKind, port: int) -> bool:
    """True when another socket already holds ``port`` (TCP listener or bound UDP socket).

    The agents bind with SO_REUSEPORT so that their workers share a port; that would also let
    them share it, silently, with another lab (a second demo, a test run): each would then get
    half of the other's probes. A probe bind without SO_REUSEPORT fails on any holder.
    """
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no holder
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def start_lab(
    settings: Settings,
    sites_file: Path,
    *,
    snmp_port: int | None = None,
    http_port: int | None = None,
    https_port: int | None = None,
    http_workers: int | None = None,
    snmp_workers: int | None = None,
    kinds: tuple[str, ...] = ("snmp", "http"),
    wait_s: float = 120.0,
    cpus: set[int] | None = None,
) -> LabState:
    """Start the lab agents for ``sites_file`` in the background; return once they answer.

    Each port left None is the one the inventory's sites name (``LabInventory.ports``).
    ``http_workers`` and ``snmp_workers`` default to ``default_lab_workers()``.

    Raises Conflict when a lab is already running and SetupError (with the log's last lines)
    when an agent exits or does not answer within ``wait_s``.
    """
    paths = lab_paths(settings)
    paths.root.mkdir(parents=True, exist_ok=True)
    current = read_state(paths)
    if current is not None and any(a.alive for a in current.agents):
        pids = ", ".join(str(a.pid) for a in current.agents if a.alive)
        raise Conflict(
            f"The lab is already running (pids {pids}, sites {current.sites_file}); "
            "stop it first with `conectado lab stop`."
        )
    sites_file = sites_file.resolve()
    inventory = read_lab_inventory(sites_file)  # validates the file before anything starts
    named = inventory.ports()
    snmp_port = named.snmp if snmp_port is None else snmp_port
    http_port = named.http if http_port is None else http_port
    https_port = named.https if https_port is None else https_port
    https_sites = sum(1 for u in inventory.http_urls if u and u[:6].lower() == "https:")
    state = LabState(
        sites_file=str(sites_file),
        sites=len(inventory),
        https_sites=https_sites,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        ca_file=str(paths.ca_file),
    )
    wanted = []
    if "snmp" in kinds:
        wanted.append(("SNMP", socket.SOCK_DGRAM, snmp_port, "udp"))
    if "http" in kinds:
        wanted += [("HTTP", socket.SOCK_STREAM, http_port, "tcp")]
        wanted += [("HTTPS", socket.SOCK_STREAM, https_port, "tcp")] if https_port else []
    for what, kind, port, proto in wanted:
        if port_in_use(kind, port):
            raise Conflict(
                f"The lab's {what} port {port}/{proto} is already in use by another program "
                "(another Conectado lab, from a demo or a test run?). The lab inventory's "
                f"addresses name this port, so the lab cannot move. See who holds it with "
                f"`ss -lnp{'u' if proto == 'udp' else 't'} 'sport = :{port}'` and stop it, or "
                "make a new inventory that names other ports (CONECTADO_LAB_SNMP_PORT, "
                "CONECTADO_LAB_HTTP_PORT, CONECTADO_LAB_HTTPS_PORT)."
            )
    http_workers = http_workers or default_lab_workers()
    snmp_workers = snmp_workers or default_lab_workers()
    common = ["--sites", str(sites_file)]
    # Our own children: whether one exited is asked of its Popen, not of /proc (right after
    # the spawn /proc/<pid>/cmdline can still be empty, which pid_alive reads as "not ours").
    children: dict[str, subprocess.Popen[bytes]] = {}
    if "snmp" in kinds:
        children["snmp"] = _spawn(
            "snmp",
            [*common, "--port", str(snmp_port), "--workers", str(snmp_workers)],
            paths,
            cpus,
        )
        state.agents.append(
            AgentProcess("snmp", children["snmp"].pid, [snmp_port], str(paths.log("snmp")))
        )
    if "http" in kinds:
        args = [*common, "--port", str(http_port), "--https-port", str(https_port)]
        args += ["--tls-dir", str(paths.tls_dir), "--workers", str(http_workers)]
        children["http"] = _spawn("http", args, paths, cpus)
        state.agents.append(
            AgentProcess(
                "http", children["http"].pid, [http_port, https_port], str(paths.log("http"))
            )
        )
    _write_state(paths, state)

    probe_targets: list[SnmpTarget] = []
    now = time.time()
    for i in range(min(len(inventory), 500)):
        behaviour = inventory.behaviour(i)
        if behaviour.answers(now) and behaviour.slow_delay_s == 0 and len(probe_targets) < 5:
            site = inventory.site(i)
            probe_targets.append(
                SnmpTarget(
                    site_id=i,
                    host=site.mgmt_ip,
                    port=snmp_port,
                    community=site.community,
                    if_index=site.wan_if_index or 1,
                )
            )
    deadline = time.monotonic() + wait_s
    pending = {a.name for a in state.agents}
    while pending:
        for agent in state.agents:
            if agent.name not in pending:
                continue
            if children[agent.name].poll() is not None:
                stop_lab(settings)
                raise SetupError(
                    f"The lab {agent.name} agent exited at start. Last lines of {agent.log}:\n"
                    + _tail(Path(agent.log))
                )
            ready = (
                _http_answers(http_port)
                if agent.name == "http"
                else (not probe_targets or _snmp_answers(probe_targets))
            )
            if ready:
                pending.discard(agent.name)
        if pending and time.monotonic() > deadline:
            stop_lab(settings)
            raise SetupError(
                f"The lab agent(s) {', '.join(sorted(pending))} did not answer within "
                f"{wait_s:g} s; see {paths.root}/*_agent.log."
            )
        if pending:
            time.sleep(0.2)
    return state


def stop_lab(settings: Settings, *, timeout: float = 10.0) -> list[AgentProcess]:
    """Stop the recorded lab agents (SIGTERM, then SIGKILL after ``timeout``); return them."""
    paths = lab_paths(settings)
    state = read_state(paths)
    if state is None:
        return []
    alive = [a for a in state.agents if a.alive]
    for agent in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(agent.pid, signal.SIGTERM)  # the agent leads its own session
    deadline = time.monotonic() + timeout
    while any(pid_alive(a.pid) for a in alive) and time.monotonic() < deadline:
        time.sleep(0.1)
    for agent in alive:
        if pid_alive(agent.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(agent.pid, signal.SIGKILL)
    for agent in alive:
        # reap if the agent happens to be our child (tests start and stop in one process)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(agent.pid, os.WNOHANG)
    with contextlib.suppress(FileNotFoundError):
        paths.state_file.unlink()
    for agent in state.agents:
        agent.alive = False
    return alive


def _main(argv: list[str] | None = None) -> None:
    """Run one agent in the foreground (what ``start_lab`` launches)."""
    parser = argparse.ArgumentParser(prog="python -m lab.runner")
    sub = parser.add_subparsers(dest="agent", required=True)
    for name in ("snmp", "http"):
        p = sub.add_parser(name)
        p.add_argument("--sites", type=Path, required=True)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--workers", type=int, default=1)
        if name == "http":
            p.add_argument("--https-port", type=int, required=True)
            p.add_argument("--tls-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    inventory = read_lab_inventory(args.sites)
    if args.agent == "http":
        from lab.http_agent import run_http_agent

        run_http_agent(
            inventory,
            port=args.port,
            https_port=args.https_port,
            tls_dir=args.tls_dir,
            workers=args.workers,
            native=Settings().lab_native,
        )
    else:
        from lab.snmp_agent import run_snmp_agent

        run_snmp_agent(
            inventory, port=args.port, workers=args.workers, native=Settings().lab_native
        )


if __name__ == "__main__":
    _main()
