"""The lab HTTP agent answers each 127.x.y.z site as its behaviour says, probed for real."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.behaviour import SiteBehaviour
from lab.http_agent import HttpAgent, _SiteContexts, ensure_lab_ca, listen
from lab.inventory import LabInventory, read_lab_inventory
from probes.http import probe_http_many
from probes.model import ErrorClass, HttpOutcome, HttpTarget
from tests.results.lab_sites import write_lab_csv


@dataclass
class RunningAgent:
    inventory: LabInventory
    port: int
    https_port: int
    ca_file: Path
    agent: HttpAgent

    def url(self, i: int, path: str = "/") -> str:
        site = self.inventory.site(i)
        if site.https:
            return f"https://{site.mgmt_ip}:{self.https_port}{path}"
        return f"http://{site.mgmt_ip}:{self.port}{path}"

    def find(self, want: Callable[[SiteBehaviour], bool], *, https: bool = False) -> int:
        for i in range(len(self.inventory)):
            b = self.inventory.behaviour(i)
            if self.inventory.site(i).https == https and b.flap_period_s is None and want(b):
                return i
        raise LookupError("no such site in the test inventory")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAgent]:
    tmp = tmp_path_factory.mktemp("agent")
    write_lab_csv(tmp / "lab.csv", 3000, snmp_port=1, http_port=1, https_port=1, first=40_000)
    inventory = read_lab_inventory(tmp / "lab.csv")
    files = ensure_lab_ca(tmp / "tls")
    plain, tls = listen(0), listen(0)
    running = HttpAgent(inventory, [(plain, False), (tls, True)], _SiteContexts(files))
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield RunningAgent(
        inventory, plain.getsockname()[1], tls.getsockname()[1], files.ca_file, running
    )
    running.stopping = True
    thread.join(5)
    plain.close()
    tls.close()


def probe(agent: RunningAgent, urls: list[str], **kwargs: object) -> list[HttpOutcome]:
    targets = [HttpTarget(i, u, expect_keyword="Conectado") for i, u in enumerate(urls)]
    return asyncio.run(
        probe_http_many(targets, timeout=4, ca_file=agent.ca_file, **kwargs)  # type: ignore[arg-type]
    )


def healthy(b: SiteBehaviour) -> bool:
    return not b.down and b.slow_delay_s == 0 and b.http_status == 200 and b.tls_fault is None


def test_healthy_site_answers_with_the_keyword_and_its_key(agent: RunningAgent) -> None:
    i = agent.find(healthy)
    [out] = probe(agent, [agent.url(i)])
    assert out.ok and out.status_code == 200 and out.keyword_found
    assert out.bytes_read == len(
        b"<html><body><h1>Conectado</h1><p>site %s</p></body></html>"
        % agent.inventory.site_keys[i].encode()
    )


def raw_exchange(agent: RunningAgent, i: int, pieces: list[bytes], pause_s: float) -> bytes:
    """Send ``pieces`` to site ``i`` with ``pause_s`` before each; return all it answered."""
    with socket.create_connection((agent.inventory.site(i).mgmt_ip, agent.port), 5) as sock:
        for piece in pieces:
            time.sleep(pause_s)
            sock.sendall(piece)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_request_in_pieces_or_after_silence_is_still_answered(agent: RunningAgent) -> None:
    # Most connections are answered straight from accept; one whose request is not complete
    # there (or that was silent at first) must still be read to the end and answered.
    i = agent.find(healthy)
    key = agent.inventory.site_keys[i].encode()
    split = raw_exchange(agent, i, [b"GET / HTTP/1.1\r\nHo", b"st: x\r\n\r\n"], 0.3)
    assert split.startswith(b"HTTP/1.1 200 OK") and key in split
    late = raw_exchange(agent, i, [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"], 1.5)
    assert late.startswith(b"HTTP/1.1 200 OK") and key in late


def test_down_site_resets_the_connection(agent: RunningAgent) -> None:
    i = agent.find(lambda b: b.down)
    [out] = probe(agent, [agent.url(i)])
    assert out.error == ErrorClass.REFUSED and "reset" in (out.error_detail or "")


def test_failing_site_returns_its_status(agent: RunningAgent) -> None:
    i = agent.find(lambda b: not b.down and b.http_status != 200)
    [out] = probe(agent, [agent.url(i)])
    assert out.error == ErrorClass.HTTP_STATUS
    assert out.status_code == agent.inventory.behaviour(i).http_status


def test_slow_site_answers_after_its_delay(agent: RunningAgent) -> None:
    i = agent.find(lambda b: not b.down and b.slow_delay_s > 0 and b.http_status == 200)
    delay = agent.inventory.behaviour(i).slow_delay_s
    [out] = probe(agent, [agent.url(i)])
    assert out.ok
    assert out.ttfb_ms is not None and delay * 1000 <= out.ttfb_ms < delay * 1000 + 500


def test_https_sites_good_expired_and_wrong_host(agent: RunningAgent) -> None:
    good = agent.find(healthy, https=True)
    expired = agent.find(lambda b: not b.down and b.tls_fault == "expired", https=True)
    wrong = agent.find(lambda b: not b.down and b.tls_fault == "wrong_host", https=True)
    ok, exp, bad = probe(agent, [agent.url(good), agent.url(expired), agent.url(wrong)])
    assert ok.ok and ok.tls_days_left is not None and ok.tls_days_left > 80
    assert exp.error == ErrorClass.TLS and "expired" in (exp.error_detail or "")
    assert bad.error == ErrorClass.TLS and "mismatch" in (bad.error_detail or "")


def test_bytes_endpoint_feeds_the_throughput_test(agent: RunningAgent) -> None:
    i = agent.find(healthy)
    targets = [HttpTarget(1, agent.url(i, "/bytes?n=5000000"), throughput_bytes=5_000_000)]
    [out] = asyncio.run(probe_http_many(targets, timeout=5))
    assert out.ok and out.bytes_read == 5_000_000
    assert out.throughput_mbps is not None and out.throughput_mbps > 50


def test_unknown_address_is_404(agent: RunningAgent) -> None:
    [out] = probe(agent, [f"http://127.0.0.1:{agent.port}/"])
    assert out.error == ErrorClass.HTTP_STATUS and out.status_code == 404


def test_many_sites_at_once_match_their_behaviours(agent: RunningAgent) -> None:
    picks = [i for i in range(len(agent.inventory)) if not agent.inventory.site(i).https][:1500]
    t0 = time.monotonic()
    outs = probe(agent, [agent.url(i) for i in picks], concurrency=500)
    took = time.monotonic() - t0
    now = time.time()
    for i, out in zip(picks, outs, strict=True):
        b = agent.inventory.behaviour(i)
        if b.flap_period_s is not None:
            continue  # its state may switch during the test
        if not b.answers(now):
            assert out.error == ErrorClass.REFUSED, (i, out)
        elif b.http_status != 200:
            assert out.error == ErrorClass.HTTP_STATUS, (i, out)
        else:
            assert out.ok, (i, out)
    assert took < 10
