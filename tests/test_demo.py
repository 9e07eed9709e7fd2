"""`conectado demo` end to end at a reduced size: the same path `make demo` runs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from core.settings import LAB_HTTP_PORT, LAB_HTTPS_PORT, LAB_SNMP_PORT, PROJECT_ROOT
from db.cluster import free_port
from tests import ports

CONECTADO = str(Path(sys.executable).parent / "conectado")


def _get(url: str, key: str) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=20) as resp:
        return resp.status, resp.read().decode("utf-8", "replace")


def _start_demo(env: dict[str, str], port: int) -> tuple[subprocess.Popen[str], str]:
    """Start the demo and read its output until it is ready (or fails, or 400 s pass)."""
    proc = subprocess.Popen(
        [CONECTADO, "demo", "--sites", "2000", "--interval", "10", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 400
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if "Press Ctrl-C" in line or time.monotonic() > deadline:
            break
    return proc, "".join(lines)


def _stop_demo(proc: subprocess.Popen[str], out: str) -> str:
    """Ctrl-C the demo; assert it stopped what it started; return its whole output."""
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    out += rest
    assert proc.returncode == 0, out[-3000:]
    assert "Stopped." in out
    assert "stopping lab agents" in out
    return out


def _check_served(out: str, port: int) -> None:
    """The summary's figures are there and its URLs answer."""
    assert "Press Ctrl-C" in out, out[-3000:]
    key = re.search(r"Admin API key\s+(\S+)", out)
    assert key, out[-3000:]
    assert re.search(r"Sites up [\d,]+ · degraded [\d,]+ · down [\d,]+", out)
    assert "Uncovered municipalities:" in out
    assert re.search(r"Population without a working site within 5 km: [\d,]+ of 126,014,024", out)
    tech = re.search(r"Technician page\s+(http://\S+)", out)
    assert tech, out[-3000:]
    base = f"http://127.0.0.1:{port}"
    for url in (f"{base}/", f"{base}/coverage", tech.group(1), f"{base}/docs"):
        status, body = _get(url, key.group(1))
        assert status == 200, url
        assert "<html" in body.lower(), url
    status, _ = _get(f"{base}/healthz", key.group(1))
    assert status == 200
    # the API judges freshness by the scheduler's interval (10 s here), not its own default
    status, body = _get(f"{base}/api/status/probes", key.group(1))
    assert status == 200 and json.loads(body)["probe_interval_s"] == 10, body


def _check_lab_tls_trusted(db_url: str) -> None:
    """The scheduler trusts the lab's CA: healthy https sites are up, and only the lab's own
    certificate faults (expired, wrong host) fail TLS, never an unknown issuer."""
    with psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        rows = conn.execute(
            """
            SELECT count(*) FILTER (WHERE st.http_ok),
                   count(*) FILTER (WHERE st.http_error LIKE '%unable to get local issuer%')
            FROM sites s JOIN site_status st ON st.site_id = s.id
            WHERE s.http_url LIKE 'https:%'
            """
        ).fetchone()
    assert rows is not None
    https_ok, unknown_issuer = rows
    assert https_ok > 0 and unknown_issuer == 0, (https_ok, unknown_issuer)


def _check_second_demo_refused(env: dict[str, str], port: int) -> None:
    """A second demo on the same folder stops at once, saying why, and the first one goes on
    serving with its lab agents untouched."""
    lab_state = Path(env["CONECTADO_VAR_DIR"]) / "lab" / "lab.json"
    agents_before = lab_state.read_text()
    second = subprocess.run(
        [CONECTADO, "demo", "--sites", "2000", "--interval", "10", "--port", str(port + 1)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = second.stdout + second.stderr
    assert second.returncode != 0, said[-3000:]
    assert "another `conectado demo` (pid" in said and "CONECTADO_VAR_DIR" in said, said[-3000:]
    assert lab_state.read_text() == agents_before
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=20) as resp:
        assert resp.status == 200


def _hold_default_lab_ports(stack: contextlib.ExitStack) -> None:
    """Bind the lab's default ports where they are free, as a running `make demo` holds them."""
    for kind, port in (
        (socket.SOCK_DGRAM, LAB_SNMP_PORT),
        (socket.SOCK_STREAM, LAB_HTTP_PORT),
        (socket.SOCK_STREAM, LAB_HTTPS_PORT),
    ):
        sock = stack.enter_context(socket.socket(socket.AF_INET, kind))
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            continue  # already held, by a demo that runs: the case this test is about
        if kind == socket.SOCK_STREAM:
            sock.listen()


@pytest.mark.slow
def test_demo_runs_end_to_end_and_a_second_run_reuses_it(db_url: str, tmp_path: Path) -> None:
    port = free_port(18700)
    env = dict(
        os.environ,
        CONECTADO_DATABASE_URL=db_url,
        CONECTADO_VAR_DIR=str(tmp_path),
        CONECTADO_TILE_URL="",
        # A demo of its own beside the user's: its lab on other ports than a `make demo`'s
        CONECTADO_LAB_SNMP_PORT=str(ports.free_port(socket.SOCK_DGRAM)),
        CONECTADO_LAB_HTTP_PORT=str(ports.free_port(socket.SOCK_STREAM)),
        CONECTADO_LAB_HTTPS_PORT=str(ports.free_port(socket.SOCK_STREAM)),
        COLUMNS="160",
        NO_COLOR="1",
    )
    with contextlib.ExitStack() as held:
        _hold_default_lab_ports(held)
        _run_demo_twice(env, port, db_url, tmp_path)


def _run_demo_twice(env: dict[str, str], port: int, db_url: str, tmp_path: Path) -> None:
    proc, out = _start_demo(env, port)
    try:
        _check_served(out, port)
        for name in ("coverage", "health"):
            assert (tmp_path / "maps" / f"{name}.html").stat().st_size > 10_000, name
        assert "Sites probed in the first round" in out
        _check_lab_tls_trusted(db_url)
        _check_second_demo_refused(env, port)
    finally:
        _stop_demo(proc, out)

    # Again, with the requested port taken: it says so, picks another, and reuses the
    # inventory, the import and the earlier round instead of redoing them.
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        taken.bind(("127.0.0.1", port))
        taken.listen()
        began = time.monotonic()
        proc, out = _start_demo(env, port)
        try:
            ready_s = time.monotonic() - began
            assert f"port {port} is taken; using" in out, out[-3000:]
            chosen = re.search(r"port \d+ is taken; using (\d+)", out)
            assert chosen
            _check_served(out, int(chosen.group(1)))
            assert "reusing" in out
            assert re.search(r"inserted 0\s+updated 0\s+unchanged 2,000", out), out[-3000:]
            assert "every site was probed by an earlier run" in out
            print(f"second demo ready in {ready_s:.1f} s")
        finally:
            _stop_demo(proc, out)
