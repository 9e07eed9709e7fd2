"""The HTTP probe against real servers on loopback: every error class, deadlines, caps.

Each test runs twice: with the compiled fast path (probes/native, as in production) and with
the Python engine alone (``fast_path_available`` patched to False). Tests that probe in a
child process run once, natively: the child does not see the patch.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import threading
import time

import pytest

from probes.http import (
    HttpProbeProcess,
    parse_probe_url,
    probe_http,
    probe_http_many,
    probe_http_many_in_process,
)
from probes.model import ErrorClass, HttpOutcome, HttpTarget
from probes.native import http_fast
from tests.probes import http_servers as srv

ENGINES = ("native", "python")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize the autouse ``http_engine`` fixture over ENGINES; tests that probe in a
    child process get "native" only: the child imports probes afresh and would not see the
    monkeypatch of the "python" run."""
    if "http_engine" not in metafunc.fixturenames:
        return
    name = metafunc.function.__name__
    child = "process" in name or "child" in name
    metafunc.parametrize("http_engine", ENGINES[:1] if child else ENGINES, indirect=True)


@pytest.fixture(autouse=True)
def http_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which engine runs the test's probes: "native" (the compiled loop for plain http:// to
    IPv4 addresses, the Python engine for the rest) or "python" (the Python engine alone)."""
    kind: str = request.param
    if kind == "native":
        assert http_fast.fast_path_available(), (
            "probes/native/_http_fast.so is missing or older than http_fast.c: run make native"
        )
    else:
        monkeypatch.setattr(http_fast, "fast_path_available", lambda: False)
    return kind


def probe(url: str, **kwargs: object) -> HttpOutcome:
    target_kw = {
        k: kwargs.pop(k) for k in ("expect_keyword", "method", "throughput_bytes") if k in kwargs
    }
    return asyncio.run(probe_http(HttpTarget(1, url, **target_kw), **kwargs))  # type: ignore[arg-type]


def test_ok_records_timings_status_and_keyword() -> None:
    with srv.stdlib_server() as (host, port):
        out = probe(f"http://{host}:{port}/", expect_keyword="Conectado")
    assert out.ok and out.error is None
    assert out.status_code == 200
    assert out.keyword_found is True
    assert out.bytes_read == len(srv.PAGE)
    assert out.connect_ms is not None and out.ttfb_ms is not None and out.total_ms is not None
    assert 0 < out.connect_ms <= out.ttfb_ms <= out.total_ms < 2000
    assert out.latency_ms == out.ttfb_ms
    assert out.ts.tzinfo is not None


def test_refused_on_a_closed_port_after_retry() -> None:
    port = srv.closed_port()
    out = probe(f"http://127.0.0.1:{port}/", retries=1)
    assert not out.ok and out.error == ErrorClass.REFUSED
    assert "refused" in (out.error_detail or "")


def test_timeout_when_the_server_never_answers() -> None:
    with srv.raw_server(srv.silent) as (host, port):
        t0 = time.monotonic()
        out = probe(f"http://{host}:{port}/", timeout=0.5, retries=1)
        took = time.monotonic() - t0
    assert out.error == ErrorClass.TIMEOUT
    assert out.connect_ms is not None  # connected, so not retried
    assert 0.45 < took < 1.0


def test_connect_timeout_is_retried_then_reported() -> None:
    with srv.full_listener() as port:
        t0 = time.monotonic()
        out = probe(f"http://127.0.0.1:{port}/", timeout=0.4, retries=1)
        took = time.monotonic() - t0
    assert out.error == ErrorClass.TIMEOUT
    assert "no TCP connection" in (out.error_detail or "")
    assert 0.75 < took < 1.5  # two attempts of 0.4 s


@pytest.mark.parametrize("behaviour", [srv.slowloris, srv.slow_headers])
def test_slowloris_cannot_hold_the_probe_past_its_deadline(
    behaviour: srv.Behaviour,
) -> None:
    with srv.raw_server(behaviour) as (host, port):
        t0 = time.monotonic()
        out = probe(f"http://{host}:{port}/", timeout=0.6)
        took = time.monotonic() - t0
    assert out.error == ErrorClass.TIMEOUT
    assert "incomplete" in (out.error_detail or "")
    assert took < 1.0


def test_reset_before_any_byte_is_refused() -> None:
    with srv.raw_server(srv.reset_at_once) as (host, port):
        out = probe(f"http://{host}:{port}/")
    assert out.error == ErrorClass.REFUSED
    assert "reset" in (out.error_detail or "")


def test_reset_mid_response_is_a_bad_response() -> None:
    with srv.raw_server(srv.reset_mid_body) as (host, port):
        out = probe(f"http://{host}:{port}/")
    assert out.error == ErrorClass.BAD_RESPONSE
    assert "reset" in (out.error_detail or "")


@pytest.mark.parametrize(
    ("behaviour", "words"),
    [
        (srv.garbage, "not a valid HTTP response"),
        (srv.close_at_once, "without a response"),
        (srv.close_mid_body, "before the body was complete"),
        (srv.endless_headers, "no end of headers"),
    ],
)
def test_bad_responses(behaviour: srv.Behaviour, words: str) -> None:
    with srv.raw_server(behaviour) as (host, port):
        out = probe(f"http://{host}:{port}/", timeout=3)
    assert out.error == ErrorClass.BAD_RESPONSE, out
    assert words in (out.error_detail or "")


def test_close_delimited_body_is_complete() -> None:
    with srv.raw_server(srv.close_delimited) as (host, port):
        out = probe(f"http://{host}:{port}/", expect_keyword="Conectado")
    assert out.ok and out.status_code == 200 and out.keyword_found
    assert out.bytes_read == len(b"hello Conectado, bye")


@pytest.mark.parametrize("code", [404, 500, 503])
def test_status_400_and_above_is_http_status(code: int) -> None:
    with srv.stdlib_server() as (host, port):
        out = probe(f"http://{host}:{port}/status/{code}", expect_keyword="Conectado")
    assert not out.ok and out.error == ErrorClass.HTTP_STATUS
    assert out.status_code == code and out.error_detail == f"HTTP status {code}"


def test_redirect_is_ok_and_not_followed() -> None:
    with srv.stdlib_server() as (host, port):
        out = probe(f"http://{host}:{port}/redirect")
    assert out.ok and out.status_code == 302


def test_keyword_missing_and_keyword_in_a_late_chunk() -> None:
    with srv.stdlib_server() as (host, port):
        missing = probe(f"http://{host}:{port}/", expect_keyword="Desconectado")
        chunked = probe(f"http://{host}:{port}/chunked", expect_keyword="at the end")
    assert missing.error == ErrorClass.KEYWORD_MISSING and missing.keyword_found is False
    assert missing.status_code == 200
    assert chunked.ok and chunked.keyword_found
    assert chunked.bytes_read == len(b"<html>first part, ") + 5000 + len(
        b" Conectado at the end</html>"
    )


def test_head_reads_no_body() -> None:
    with srv.stdlib_server() as (host, port):
        out = probe(f"http://{host}:{port}/", method="HEAD")
        bad = probe(f"http://{host}:{port}/", method="HEAD", expect_keyword="x")
    assert out.ok and out.status_code == 200 and out.bytes_read == 0
    assert bad.error == ErrorClass.CONFIG


def test_huge_response_is_capped_and_returns_quickly() -> None:
    with srv.raw_server(srv.huge_body) as (host, port):
        t0 = time.monotonic()
        out = probe(f"http://{host}:{port}/", max_body_bytes=100_000, expect_keyword="Conectado")
        took = time.monotonic() - t0
    assert out.ok and out.keyword_found
    assert out.bytes_read == 100_000
    assert "cap" in (out.error_detail or "")
    assert took < 2


def test_throughput_downloads_the_asked_bytes() -> None:
    with srv.stdlib_server() as (host, port):
        out = probe(f"http://{host}:{port}/bytes?n=3000000", throughput_bytes=3_000_000)
    assert out.ok and out.bytes_read == 3_000_000
    assert out.throughput_mbps is not None and out.throughput_mbps > 10


def test_unusable_urls_are_config_errors_and_names_unreachable() -> None:
    outs = asyncio.run(
        probe_http_many(
            [
                HttpTarget(1, "ftp://127.0.0.1/"),
                HttpTarget(2, "http:///nohost"),
                HttpTarget(3, "http://no-such-host.invalid/"),
            ],
            timeout=2,
        )
    )
    assert [o.error for o in outs] == [
        ErrorClass.CONFIG,
        ErrorClass.CONFIG,
        ErrorClass.UNREACHABLE,
    ]
    assert "scheme" in (outs[0].error_detail or "")
    assert "did not resolve" in (outs[2].error_detail or "")


def test_parse_probe_url_fast_and_slow_paths_agree() -> None:
    for url in ("http://127.64.0.1:18080/", "https://10.1.2.3/a?b=c", "http://127.0.0.1"):
        fast = parse_probe_url(url)
        slow = parse_probe_url(url + " ")  # trailing space defeats the fast path
        assert fast == slow


def test_one_outcome_per_target_in_order_and_bounded_concurrency() -> None:
    lock = threading.Lock()
    active = 0
    peak = 0

    def counting(conn: socket.socket, stop: threading.Event) -> None:
        nonlocal active, peak
        srv.read_request(conn)
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    with srv.raw_server(counting) as (host, port):
        targets = [HttpTarget(i, f"http://{host}:{port}/") for i in range(120)]
        seen: list[int] = []
        outs = asyncio.run(
            probe_http_many(targets, concurrency=8, on_outcome=lambda o: seen.append(o.site_id))
        )
    assert [o.site_id for o in outs] == list(range(120))
    assert all(o.ok for o in outs)
    assert sorted(seen) == list(range(120))
    assert 2 <= peak <= 8


def test_dead_and_malicious_targets_do_not_delay_the_round() -> None:
    with (
        srv.stdlib_server() as good,
        srv.raw_server(srv.silent) as dead,
        srv.raw_server(srv.slowloris) as slow,
        srv.raw_server(srv.garbage) as junk,
    ):
        targets = []
        for i in range(60):
            host, port = (good, dead, slow, junk)[i % 4]
            targets.append(HttpTarget(i, f"http://{host}:{port}/"))
        t0 = time.monotonic()
        outs = asyncio.run(probe_http_many(targets, timeout=0.8, retries=1))
        took = time.monotonic() - t0
    errors = [o.error for o in outs]
    assert errors[0::4] == [None] * 15
    assert errors[1::4] == [ErrorClass.TIMEOUT] * 15
    assert errors[2::4] == [ErrorClass.TIMEOUT] * 15
    assert errors[3::4] == [ErrorClass.BAD_RESPONSE] * 15
    assert took < 1.6


def test_sites_expected_slow_start_first_without_holding_up_the_rest() -> None:
    """Dead sites flagged from the last round take at most 80 % of the connections: the live
    ones behind them are all answered before the first dead one gives up."""
    done_at: dict[int, float] = {}
    with srv.stdlib_server() as good, srv.raw_server(srv.silent) as dead:
        targets = [
            HttpTarget(i, f"http://{dead[0]}:{dead[1]}/", expect_slow=True) for i in range(20)
        ] + [HttpTarget(100 + i, f"http://{good[0]}:{good[1]}/") for i in range(60)]
        started = time.monotonic()
        outs = asyncio.run(
            probe_http_many(
                targets,
                timeout=0.5,
                retries=0,
                concurrency=10,
                on_outcome=lambda o: done_at.update({o.site_id: time.monotonic() - started}),
            )
        )
    assert [o.error for o in outs] == [ErrorClass.TIMEOUT] * 20 + [None] * 60
    last_live = max(done_at[i] for i in range(100, 160))
    first_dead = min(done_at[i] for i in range(20))
    assert last_live < 0.5 <= first_dead
    assert max(done_at.values()) < 1.5 + 0.8  # 20 dead over 8 connections: three waves


def test_probing_in_a_child_process_gives_the_same_outcomes() -> None:
    progress: list[int] = []
    with srv.stdlib_server() as (host, port), srv.raw_server(srv.garbage) as bad:
        targets = [
            HttpTarget(i, f"http://{host}:{port}/status/{200 if i % 3 else 503}") for i in range(30)
        ] + [HttpTarget(99, f"http://{bad[0]}:{bad[1]}/")]
        here = asyncio.run(probe_http_many(targets, timeout=3))
        there = asyncio.run(
            probe_http_many_in_process(targets, on_progress=progress.append, timeout=3)
        )
    assert [(o.site_id, o.ok, o.error, o.status_code) for o in here] == [
        (o.site_id, o.ok, o.error, o.status_code) for o in there
    ]
    assert sum(progress) == len(targets)


def test_a_child_that_dies_midway_loses_no_probe_and_repeats_none() -> None:
    seen: list[int] = []

    def kill_the_child_at_the_first_batch(outcome: HttpOutcome) -> None:
        if not seen:
            for child in multiprocessing.active_children():
                if child.name == "conectado-http-probes":
                    child.kill()
        seen.append(outcome.site_id)

    with srv.stdlib_server() as (host, port), srv.raw_server(srv.silent) as quiet:
        targets = [HttpTarget(i, f"http://{host}:{port}/status/200") for i in range(20)] + [
            HttpTarget(100 + i, f"http://{quiet[0]}:{quiet[1]}/") for i in range(5)
        ]
        outcomes = asyncio.run(
            probe_http_many_in_process(
                targets,
                on_outcome=kill_the_child_at_the_first_batch,
                timeout=1.0,
                retries=0,
                concurrency=5,
            )
        )
    assert [o.site_id for o in outcomes] == [t.site_id for t in targets]
    assert [o.ok for o in outcomes] == [True] * 20 + [False] * 5, [
        (o.error, o.error_detail) for o in outcomes if not o.ok
    ]
    assert all(o.error == ErrorClass.TIMEOUT for o in outcomes[20:])
    # The child's batch before it died, then the rest probed here: each site once.
    assert sorted(seen) == sorted(t.site_id for t in targets)
    assert set(seen[:20]) == set(range(20))


def test_a_process_started_ahead_probes_and_one_that_died_is_replaced_here() -> None:
    with srv.stdlib_server() as (host, port):
        targets = [HttpTarget(i, f"http://{host}:{port}/status/200") for i in range(10)]
        ahead = HttpProbeProcess().start()
        outcomes = asyncio.run(probe_http_many_in_process(targets, process=ahead, timeout=3))
        assert [o.ok for o in outcomes] == [True] * 10
        assert ahead.closed and ahead.process.exitcode == 0
        dead = HttpProbeProcess().start()
        dead.process.kill()
        dead.process.join()
        outcomes = asyncio.run(probe_http_many_in_process(targets, process=dead, timeout=3))
    assert [o.site_id for o in outcomes] == list(range(10))
    assert all(o.ok for o in outcomes)
