"""When the compiled SNMP loop cannot start, the probes run in Python, and a process out of
file descriptors gets outcomes, not an exception (probe_snmp_many never raises for that)."""

from __future__ import annotations

import subprocess
import sys

from probes.native import snmp_fast

_OUT_OF_DESCRIPTORS = r"""
import asyncio, resource, socket, sys
from probes.model import SnmpTarget
from probes.native.snmp_fast import fast_path_available
from probes.snmp import probe_snmp_many

assert fast_path_available()  # loaded while file descriptors are left
loop = asyncio.new_event_loop()  # so is the event loop's own epoll set
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
held = []
try:
    while True:
        held.append(socket.socket())
except OSError:
    pass
for _ in range(int(sys.argv[1])):  # leave this many descriptors free
    held.pop().close()
target = SnmpTarget(site_id=1, host="127.0.0.1", port=9, community="public", if_index=1)
(outcome,) = loop.run_until_complete(probe_snmp_many([target], timeout=0.5, retries=0))
print(outcome.error, outcome.error_detail)
"""


def run_with_free_descriptors(free: int) -> subprocess.CompletedProcess[str]:
    """Probe a closed port from a fresh process left with ``free`` file descriptors."""
    return subprocess.run(
        [sys.executable, "-c", _OUT_OF_DESCRIPTORS, str(free)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_loop_that_cannot_start_leaves_the_probes_to_python() -> None:
    assert snmp_fast.fast_path_available(), "run make native"
    # No descriptor left: the compiled loop's socket fails, then the Python engine's.
    done = run_with_free_descriptors(0)
    assert done.returncode == 0, done.stderr
    assert "the compiled SNMP loop cannot start" in done.stderr, done.stderr
    assert done.stdout.strip() == "internal no socket: Too many open files", done.stdout
    # One left: the compiled loop takes it and probes (nothing listens on port 9).
    done = run_with_free_descriptors(1)
    assert done.returncode == 0, done.stderr
    assert "cannot start" not in done.stderr, done.stderr
    assert done.stdout.startswith("refused ICMP port unreachable"), done.stdout
