"""`conectado demo` end to end at a reduced size: the same path `make demo` runs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core.settings import PROJECT_ROOT
from db.cluster import free_port

CONECTADO = str(Path(sys.executable).parent / "conectado")


def _get(url: str, key: str) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=20) as resp:
        return resp.status, resp.read().decode("utf-8", "replace")


@pytest.mark.slow
def test_demo_runs_end_to_end_and_stops_cleanly(db_url: str, tmp_path: Path) -> None:
    port = free_port(18700)
    env = dict(
        os.environ,
        CONECTADO_DATABASE_URL=db_url,
        CONECTADO_VAR_DIR=str(tmp_path),
        CONECTADO_TILE_URL="",
        COLUMNS="160",
        NO_COLOR="1",
    )
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
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line or time.monotonic() > deadline:
                break
        out = "".join(lines)
        assert "Press Ctrl-C" in out, out[-3000:]
        key = re.search(r"Admin API key\s+(\S+)", out)
        assert key, out[-3000:]
        assert re.search(r"Sites up [\d,]+ · degraded [\d,]+ · down [\d,]+", out)
        assert "Uncovered municipalities:" in out
        for name in ("coverage", "health"):
            assert (tmp_path / "maps" / f"{name}.html").stat().st_size > 10_000, name
        assert re.search(
            r"Population without a working site within 5 km: [\d,]+ of "
            r"126,014,024",
            out,
        )
        tech = re.search(r"Technician page\s+(http://\S+)", out)
        assert tech, out[-3000:]
        base = f"http://127.0.0.1:{port}"
        for url in (f"{base}/", f"{base}/coverage", tech.group(1), f"{base}/docs"):
            status, body = _get(url, key.group(1))
            assert status == 200, url
            assert "<html" in body.lower(), url
        status, body = _get(f"{base}/healthz", key.group(1))
        assert status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    out = "".join(lines) + rest
    assert proc.returncode == 0, out[-3000:]
    assert "Stopped." in out
    assert "stopping lab agents" in out
