"""The lab HTTP agent's compiled fast path (lab/native/http_fast.c) answers byte for byte as
the pure-Python agent does, and ends each connection the same way (EOF or reset).

Two agents serve the same inventory at the same fixed clock, one with the fast path and one
without, each on its own port; the same raw requests go to the same 127.x.y.z addresses of
both, over real loopback sockets.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.http_agent import HttpAgent, listen
from lab.inventory import LabInventory, lab_address, read_lab_inventory
from lab.native import load_library
from lab.native.http_fast import HttpFastPath
from tests.results.lab_sites import write_lab_csv

CLOCK = 1_750_000_000.0  # fixed: flapping sites are up or down alike for both agents
FIRST = 70_000  # lab address number of the first site
SITES = 3000

REQUESTS: dict[str, list[bytes]] = {
    "get": [b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"],
    "head": [b"HEAD / HTTP/1.1\r\nHost: lab\r\n\r\n"],
    "query": [b"GET /?x=1 HTTP/1.0\r\n\r\n"],
    "bytes": [b"GET /bytes?n=10 HTTP/1.1\r\n\r\n"],
    "head_bytes": [b"HEAD /bytes?n=10 HTTP/1.1\r\n\r\n"],
    "bytes_default": [b"GET /bytes HTTP/1.1\r\n\r\n"],
    "not_bytes": [b"GET /bytesx?n=5 HTTP/1.1\r\n\r\n"],
    "post_with_body": [b"POST /form HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"],
    "lowercase_head": [b"head / HTTP/1.1\r\n\r\n"],
    "empty_target": [b"GET  HTTP/1.1\r\n\r\n"],
    "bare_lf_in_line": [b"GET /x HTTP/1.1\nX: y\r\n\r\n"],
    "bad_line": [b"NONSENSE\r\n\r\n"],
    "bad_version": [b"GET / HTTP/2\r\n\r\n"],
    "four_parts": [b"GET / x HTTP/1.1\r\n\r\n"],
    "no_line": [b"\r\n\r\n"],
    "too_large": [b"GET / HTTP/1.1\r\nX: " + b"a" * 9000],
    "split": [b"GET / HTTP/1.1\r\nHo", b"st: lab\r\n\r\n"],
    "fin_only": [],
}
EVERY_SITE = ("get", "head", "query", "bytes")  # the rest go to a rotating share of sites


@dataclass(frozen=True)
class Ending:
    """What one connection got: every byte, and whether it ended in EOF or a reset."""

    data: bytes
    end: str


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> LabInventory:
    tmp: Path = tmp_path_factory.mktemp("native-http")
    write_lab_csv(tmp / "lab.csv", SITES, snmp_port=1, http_port=1, https_port=1, first=FIRST)
    return read_lab_inventory(tmp / "lab.csv")


@contextmanager
def running(inventory: LabInventory, *, native: bool) -> Iterator[tuple[HttpAgent, int]]:
    plain = listen(0)
    agent = HttpAgent(inventory, [(plain, False)], None, clock=CLOCK, native=native)
    thread = threading.Thread(target=agent.serve_forever, daemon=True)
    thread.start()
    try:
        yield agent, plain.getsockname()[1]
    finally:
        agent.stopping = True
        thread.join(5)
        plain.close()


def pick_sites(inventory: LabInventory) -> dict[str, list[int]]:
    """Sites of every behaviour kind at CLOCK, a few hundred in all."""
    kinds: dict[str, list[int]] = {
        k: [] for k in ("down", "flap_down", "flap_up", "slow", "500", "503", "healthy")
    }
    for i in range(len(inventory)):
        b = inventory.behaviour(i)
        if b.down:
            kinds["down"].append(i)
        elif b.flap_period_s is not None:
            kinds["flap_up" if b.answers(CLOCK) else "flap_down"].append(i)
        elif b.slow_delay_s > 0:
            kinds["slow"].append(i)
        elif b.http_status != 200:
            kinds[str(b.http_status)].append(i)
        else:
            kinds["healthy"].append(i)
    kinds["down"] = kinds["down"][:30]
    kinds["slow"] = kinds["slow"][:8]  # each holds its connections 1.2-1.8 s
    kinds["healthy"] = kinds["healthy"][:200]
    return kinds


async def exchange(host: str, port: int, pieces: list[bytes]) -> Ending:
    """Send ``pieces`` (a pause between them; none: close our side at once) to
    ``host:port`` and read to the end."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    data = b""
    try:
        await loop.sock_connect(sock, (host, port))
        for k, piece in enumerate(pieces):
            if k:
                await asyncio.sleep(0.2)
            await loop.sock_sendall(sock, piece)
        if not pieces:
            sock.shutdown(socket.SHUT_WR)
        while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 10):
            data += chunk
        return Ending(data, "eof")
    except (ConnectionResetError, BrokenPipeError):
        return Ending(data, "reset")
    finally:
        sock.close()


async def exchange_all(
    jobs: list[tuple[str, str, list[bytes]]], ports: tuple[int, int]
) -> list[tuple[Ending, Ending]]:
    limit = asyncio.Semaphore(400)

    async def both(host: str, pieces: list[bytes]) -> tuple[Ending, Ending]:
        async with limit:
            a, b = await asyncio.gather(
                exchange(host, ports[0], pieces), exchange(host, ports[1], pieces)
            )
            return a, b

    return await asyncio.gather(*(both(host, pieces) for _, host, pieces in jobs))


def test_the_library_is_built_and_loads(inventory: LabInventory) -> None:
    assert load_library("http_fast") is not None, "lab/native/_http_fast.so: run make native"
    assert HttpFastPath.for_inventory(inventory) is not None


def test_flap_arithmetic_is_pythons_float_modulo(inventory: LabInventory) -> None:
    path = HttpFastPath.for_inventory(inventory)
    assert path is not None
    rng = random.Random(7)
    cases = [(CLOCK, 240.0), (0.0, 120.0), (-0.0, 3.5), (-1.0, 120.0), (-240.0, 120.0)]
    cases += [(rng.uniform(-1e10, 1e10), rng.uniform(120.0, 360.0)) for _ in range(20_000)]
    cases += [(rng.uniform(-1e3, 1e3), rng.uniform(1e-3, 1e3)) for _ in range(20_000)]
    cases += [
        (float(rng.randrange(-(10**12), 10**12)), 0.5 * rng.randrange(1, 999)) for _ in range(5000)
    ]
    for x, y in cases:
        assert path.py_mod(x, y) == x % y, (x, y)


def test_native_answers_byte_for_byte_as_python(inventory: LabInventory) -> None:
    kinds = pick_sites(inventory)
    assert all(kinds.values()), {k: len(v) for k, v in kinds.items()}
    hosts = [(kind, inventory.site(i).mgmt_ip) for kind, sites in kinds.items() for i in sites]
    hosts += [("unknown", lab_address(FIRST - 3)), ("unknown", "127.0.0.1")]
    hosts.sort(key=lambda kh: kh[0] != "slow")  # the slow ones first: they take longest
    names = list(REQUESTS)
    jobs: list[tuple[str, str, list[bytes]]] = []
    for n, (kind, host) in enumerate(hosts):
        wanted = names if kind != "healthy" else [*EVERY_SITE, names[n % len(names)]]
        jobs += [(f"{kind} {host} {name}", host, REQUESTS[name]) for name in wanted]
    t0 = time.monotonic()
    with (
        running(inventory, native=True) as (fast, fast_port),
        running(inventory, native=False) as (slow, slow_port),
    ):
        assert fast.native is not None, "the compiled fast path is not built: run make native"
        assert slow.native is None
        results = asyncio.run(exchange_all(jobs, (fast_port, slow_port)))
        served = fast.served, slow.served
        counts = dict(fast.native.counts)
    took = time.monotonic() - t0
    mismatches = [
        (what, a, b) for (what, _, _), (a, b) in zip(jobs, results, strict=True) if a != b
    ]
    assert not mismatches, mismatches[:5]
    assert served[0] == served[1]
    # The comparison means something only if C did answer, reset and hand back.
    assert counts["answered"] > len(hosts), counts
    assert counts["reset"] > 0 and counts["handed"] > 0, counts
    assert counts["accepted"] == sum(counts[k] for k in ("answered", "reset", "handed", "dropped"))
    ends = {e.end for pair in results for e in pair}
    assert ends == {"eof", "reset"}
    statuses = {e.data.split(b"\r\n", 1)[0] for pair in results for e in pair if e.data}
    for status in (b"200 OK", b"400", b"404", b"431", b"500", b"503"):
        assert any(status in s for s in statuses), (status, statuses)
    assert took < 20
