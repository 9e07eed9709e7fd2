"""`lab start/stop/status`: real background agents, found by their recorded pids."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import Conflict, InvalidInput, SetupError
from core.settings import Settings
from lab.runner import lab_status, pid_alive, start_lab, stop_lab
from probes.http import probe_http_many
from probes.model import HttpTarget, SnmpTarget
from probes.snmp import probe_snmp_many
from tests.ports import free_port
from tests.results.lab_sites import write_lab_csv


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM])
def test_a_port_held_by_another_lab_is_refused_not_shared(
    tmp_path: Path, kind: socket.SocketKind
) -> None:
    """Another program holding a lab port with SO_REUSEPORT (as a second lab's agents do)
    would silently get half of the probes: the lab refuses to start and names the port."""
    settings = Settings(var_dir=tmp_path / "var")
    snmp_port = free_port(socket.SOCK_DGRAM)
    http_port, https_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    write_lab_csv(
        tmp_path / "lab.csv", 20, snmp_port=snmp_port, http_port=http_port, https_port=https_port
    )
    held = snmp_port if kind == socket.SOCK_DGRAM else https_port
    with socket.socket(socket.AF_INET, kind) as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("0.0.0.0", held))
        if kind == socket.SOCK_STREAM:
            other.listen()
        with pytest.raises(Conflict, match=f"port {held}/(udp|tcp) is already in use"):
            start_lab(
                settings,
                tmp_path / "lab.csv",
                snmp_port=snmp_port,
                http_port=http_port,
                https_port=https_port,
            )
    assert lab_status(settings) is None  # nothing was started


def test_start_status_stop(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    snmp_port = free_port(socket.SOCK_DGRAM)
    http_port, https_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    rows = write_lab_csv(
        tmp_path / "lab.csv",
        200,
        snmp_port=snmp_port,
        http_port=http_port,
        https_port=https_port,
        first=60_000,
    )
    state = start_lab(
        settings,
        tmp_path / "lab.csv",
        snmp_port=snmp_port,
        http_port=http_port,
        https_port=https_port,
        http_workers=2,
    )
    try:
        assert state.running and state.sites == 200 and state.https_sites == 20
        assert {a.name for a in state.agents} == {"snmp", "http"}
        assert Path(state.ca_file).exists()
        again = lab_status(settings)
        assert again is not None and again.running
        with pytest.raises(Conflict, match="already running"):
            start_lab(settings, tmp_path / "lab.csv", snmp_port=snmp_port, http_port=http_port)

        healthy = [r for r in rows if r["http_url"].startswith("http:")][:20]
        http = asyncio.run(
            probe_http_many(
                [HttpTarget(i, r["http_url"]) for i, r in enumerate(healthy)], timeout=3
            )
        )
        assert sum(o.status_code is not None for o in http) >= 15
        snmp = asyncio.run(
            probe_snmp_many(
                [
                    SnmpTarget(
                        i, r["mgmt_ip"], snmp_port, community=r["snmp_community"], if_index=1
                    )
                    for i, r in enumerate(healthy)
                ],
                timeout=2,
            )
        )
        assert sum(o.ok for o in snmp) >= 15
    finally:
        stopped = stop_lab(settings)
    assert {a.name for a in stopped} == {"snmp", "http"}
    assert not any(pid_alive(a.pid) for a in stopped)
    assert lab_status(settings) is None
    assert stop_lab(settings) == []
    # every worker process is gone too: nothing listens on the ports any more
    time.sleep(0.2)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", http_port)) != 0


def test_bad_inventory_is_refused_before_anything_starts(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    bad = tmp_path / "bad.csv"
    bad.write_text("site_key,mgmt_ip\nA1,10.0.0.1\n")
    with pytest.raises(InvalidInput, match=r"outside 127\.0\.0\.0/8"):
        start_lab(settings, bad)
    assert lab_status(settings) is None


def test_an_agent_that_dies_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    http_port, https_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    write_lab_csv(tmp_path / "lab.csv", 5, snmp_port=1, http_port=http_port, https_port=https_port)
    # The HTTP agent keeps its CA in var/lab/tls: a file in that place kills it at start.
    (tmp_path / "var" / "lab").mkdir(parents=True)
    (tmp_path / "var" / "lab" / "tls").write_text("not a directory")
    with pytest.raises(SetupError, match=r"exited at start|did not answer") as info:
        start_lab(
            settings,
            tmp_path / "lab.csv",
            kinds=("http",),
            http_port=http_port,
            https_port=https_port,
            wait_s=20,
        )
    assert "File exists" in str(info.value) or "did not answer" in str(info.value)
    state = lab_status(settings)
    assert state is None or not any(a.alive for a in state.agents)
    assert os.path.exists(tmp_path / "var" / "lab" / "http_agent.log")


def test_an_agent_just_spawned_is_not_taken_for_dead(tmp_path: Path) -> None:
    """Right after the spawn, /proc/<pid>/cmdline can still be empty (seen on 6 of 10 starts of
    an HTTP-only lab): start_lab must ask its own child whether it exited, not /proc."""
    for attempt in range(5):
        settings = Settings(var_dir=tmp_path / f"var{attempt}")
        http_port, https_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
        csv = tmp_path / f"lab{attempt}.csv"
        write_lab_csv(csv, 5, snmp_port=1, http_port=http_port, https_port=https_port)
        try:
            state = start_lab(
                settings, csv, kinds=("http",), http_port=http_port, https_port=https_port
            )
            assert state.running
        finally:
            stop_lab(settings)


def test_pid_alive_sees_an_agent_the_moment_it_is_spawned() -> None:
    """stop_lab right after a start (one agent died at once) must still see the other one."""
    procs = []
    try:
        for _ in range(50):
            proc = subprocess.Popen(
                [sys.executable, "-c", "import time; time.sleep(2)", "lab.runner"],
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            procs.append(proc)
            assert pid_alive(proc.pid)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert not any(pid_alive(p.pid) for p in procs)
