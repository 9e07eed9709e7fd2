"""HTTP(S) probes: a lean HTTP/1.1 GET/HEAD client on raw non-blocking sockets and epoll.

One probe opens a new TCP connection (as a monitoring system does in the field), optionally
does a TLS handshake, sends one request with ``Connection: close`` and reads the response
(Content-Length, chunked or close-delimited bodies, parsed by llhttp through ``httptools``).
Each attempt has one total deadline covering connect, TLS, request and the whole response, so
a slowloris server cannot hold a probe past it, and bodies are read up to a cap.

Why not httpx or aiohttp: they manage ~1,000 probes/s on one core with a new connection per
probe; this client does >10,000/s (``bench/probes_http.py`` measures both in the same run).
It runs inside the caller's asyncio loop: its epoll set is one reader of that loop, and all
ready sockets are handled in one batch without a task or future per connection.

Plain http:// probes of IPv4 addresses run by default in a compiled loop
(``probes.native.http_fast``): it does their syscalls and reads simple answers, and this engine
makes their outcomes with the same rules; an answer it does not fully understand is handed
back mid-connection and read on here (``HttpEngine._adopt``). It costs about 1.3× less CPU a
probe; ``tests/probes/test_http_native.py`` holds the two to the same outcomes.

Error classes (``probes.model.ErrorClass``):

- ``refused``: the connection was refused (RST to our SYN), or reset before any response byte;
- ``unreachable``: no route to the host or network, or the host name did not resolve;
- ``timeout``: no complete answer before the attempt's deadline (connect, TLS or response);
- ``tls``: the TLS handshake failed (certificate expired, self-signed or untrusted, wrong
  name, protocol error); the detail says which;
- ``bad_response``: something answered but not with a complete HTTP response (garbage, closed
  or reset mid-response, headers too large);
- ``http_status``: a complete response with status ≥ 400;
- ``keyword_missing``: a 2xx/3xx response whose body (its first ``max_body_bytes``, or the
  target's ``throughput_bytes`` when that is smaller) lacks the expected keyword (exact,
  case-sensitive bytes);
- ``config``: the URL cannot be probed (bad scheme, no host, HEAD with a keyword).

Interim answers (1xx but 101) are skipped; whatever follows a complete answer in the same read
is ignored.

Retries (``retries`` more attempts) happen only when no TCP connection was made (refused,
unreachable, connect timeout); a site that accepted the connection is never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import heapq
import ipaddress
import itertools
import logging
import multiprocessing
import os
import re
import resource
import select
import socket
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httptools

from probes.lanes import Lanes
from probes.model import ErrorClass, HttpOutcome, HttpTarget
from probes.native import http_fast as fast

log = logging.getLogger("conectado.probes.http")

# How often the HTTP child sends the outcomes it has (probe_http_many_in_process).
STREAM_EVERY_S: Final = 0.25
DEFAULT_MAX_BODY_BYTES: Final = 256 * 1024
MAX_HEADER_BYTES: Final = 64 * 1024
USER_AGENT: Final = "conectado-probe/1"
_RECV_SIZE: Final = 65536
_TICK_S: Final = 0.02
# Edge-triggered for both directions: registered once, never modified (two syscalls a probe
# fewer); every handler therefore reads or writes until it would block.
_EVENTS: Final = select.EPOLLIN | select.EPOLLOUT | select.EPOLLET

# Connection phases.
_CONNECTING: Final = 0
_HANDSHAKE: Final = 1
_SENDING: Final = 2
_READING: Final = 3
_CLOSED: Final = 4

_PHASE_NAMES: Final = {
    _CONNECTING: "no TCP connection",
    _HANDSHAKE: "TLS handshake not finished",
    _SENDING: "request not sent",
    _READING: "no complete response",
}

# The compiled loop's phases (probes/native/http_fast.c) as this engine's.
_FAST_PHASES: Final = {
    fast.PHASE_CONNECTING: _CONNECTING,
    fast.PHASE_SENDING: _SENDING,
    fast.PHASE_READING: _READING,
}

_REFUSED_ERRNOS: Final = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE}
_UNREACHABLE_ERRNOS: Final = {
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EHOSTDOWN,
    errno.ENETDOWN,
    errno.EADDRNOTAVAIL,
}


@dataclass(frozen=True, slots=True)
class ProbeUrl:
    """A probe URL split into what a connection needs."""

    tls: bool
    host: str
    port: int
    path: str
    host_header: str
    literal_family: socket.AddressFamily | None  # set when host is an IP literal


_FAST_URL = re.compile(
    r"^(https?)://((?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3})"
    r"(?::(\d{1,5}))?(/[^\s#]*)?$"
)


def parse_probe_url(url: str) -> ProbeUrl:
    """Split ``url`` for probing; raise ValueError saying what is wrong with it."""
    fast = _FAST_URL.match(url)
    if fast is not None:  # the common case (http://a.b.c.d:port/path), ~10x cheaper
        scheme, host, port_text, path = fast.groups()
        default_port = 443 if scheme == "https" else 80
        port = int(port_text) if port_text else default_port
        if 0 < port < 65536:
            host_header = host if port == default_port else f"{host}:{port}"
            return ProbeUrl(scheme == "https", host, port, path or "/", host_header, socket.AF_INET)
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"URL scheme must be http or https, not {parts.scheme or 'missing'!r}")
    host = parts.hostname
    if not host:
        raise ValueError("URL has no host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise ValueError(f"URL port is not valid: {exc}") from exc
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    family: socket.AddressFamily | None = None
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = None
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    default_port = 443 if scheme == "https" else 80
    host_header = shown if port == default_port else f"{shown}:{port}"
    return ProbeUrl(scheme == "https", host, port, path, host_header, family)


def tls_client_context(*, verify: bool = True, ca_file: Path | None = None) -> ssl.SSLContext:
    """Return the client TLS context probes use: system CAs plus ``ca_file`` when verifying."""
    if not verify:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file is not None:
        ctx.load_verify_locations(cafile=str(ca_file))
    return ctx


def _days_left_from_dict(cert: dict[str, object]) -> float | None:
    not_after = cert.get("notAfter")
    if not isinstance(not_after, str):
        return None
    return (ssl.cert_time_to_seconds(not_after) - time.time()) / 86400.0


def _days_left_from_der(der: bytes | None) -> float | None:
    if not der:
        return None
    from cryptography import x509  # only needed when verification is off

    cert = x509.load_der_x509_certificate(der)
    return (cert.not_valid_after_utc.timestamp() - time.time()) / 86400.0


class _Probe:
    """One target's probe across its attempts."""

    __slots__ = (
        "addr",
        "attempts",
        "family",
        "index",
        "keep",
        "keyword",
        "native",
        "read_cap",
        "request",
        "server_hostname",
        "slow",
        "target",
        "tls",
    )

    def __init__(
        self, index: int, target: HttpTarget, url: ProbeUrl, read_cap: int, keep: int
    ) -> None:
        self.index = index
        self.target = target
        self.tls = url.tls
        self.server_hostname = url.host
        self.addr: tuple[str, int] | tuple[str, int, int, int] = (url.host, url.port)
        self.family = url.literal_family or socket.AF_INET
        self.keyword = target.expect_keyword.encode() if target.expect_keyword else None
        self.read_cap = read_cap
        # The body bytes searched for the keyword: the first ``keep``, or all that is read when
        # the cap is smaller (then what is searched never depends on how the reads fell).
        self.keep = min(keep, read_cap) if self.keyword is not None else 0
        self.attempts = 0
        self.slow = False  # the running attempt came from the slow lane
        self.native = False  # its attempts run in the compiled loop (probes.native)
        self.request = (
            f"{target.method} {url.path} HTTP/1.1\r\nHost: {url.host_header}\r\n"
            f"User-Agent: {USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        ).encode("ascii", "strict")


class _Conn:
    """One attempt: a socket moving through connect, TLS, send and read."""

    __slots__ = (
        "body",
        "body_bytes",
        "chunked",
        "complete",
        "connect_ms",
        "deadline",
        "fd",
        "head",
        "header_bytes",
        "headers_done",
        "interim",
        "outbuf",
        "parser",
        "phase",
        "probe",
        "received",
        "sent_at",
        "sock",
        "started",
        "status",
        "tls_days_left",
        "ttfb_ms",
    )

    def __init__(self, probe: _Probe, sock: socket.socket, started: float, deadline: float) -> None:
        self.probe = probe
        self.sock: socket.socket | ssl.SSLSocket = sock
        self.fd = sock.fileno()
        self.started = started
        self.deadline = deadline
        self.phase = _CONNECTING
        self.outbuf = probe.request
        self.connect_ms: float | None = None
        self.ttfb_ms: float | None = None
        self.sent_at = 0.0
        self.tls_days_left: float | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.headers_done = False
        self.complete = False
        self.head = bytearray()  # the bytes up to the end of the headers
        self.chunked = False
        self.status: int | None = None
        self.body = bytearray()
        self.body_bytes = 0
        self.header_bytes = 0
        self.received = 0  # answer bytes read, head and body
        self.interim = 0  # interim (1xx) answers skipped before the final one

    # httptools callbacks -----------------------------------------------------------------
    @property
    def framed(self) -> bool:
        """Content-Length or chunked: then EOF before completion is truncation.

        Read from the raw header block only when needed (at an early EOF), so that the parser
        needs no per-header callback on the hot path.
        """
        heads = bytes(self.head).split(b"\r\n\r\n", self.interim + 1)
        head = heads[min(self.interim, len(heads) - 1)].lower()
        return b"\ncontent-length:" in head or (
            b"\ntransfer-encoding:" in head and b"chunked" in head
        )

    # Once the answer is complete, llhttp may go on parsing what follows in the same read (a
    # body sent to a HEAD, a second answer): ignored, so that an outcome never depends on how
    # the bytes fell into reads.
    def on_headers_complete(self) -> None:
        if self.complete:
            return
        assert self.parser is not None
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.interim += 1  # 100 Continue, 103 Early Hints...: the final answer follows
            return
        self.headers_done = True
        self.status = status
        if self.probe.target.method == "HEAD" or status in (204, 304):
            self.complete = True

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        probe = self.probe
        if len(self.body) < probe.keep:
            self.body += body[: probe.keep - len(self.body)]
        self.body_bytes += min(len(body), probe.read_cap - self.body_bytes)

    def on_message_complete(self) -> None:
        if self.headers_done:  # else the end of an interim answer
            self.complete = True


class HttpEngine:
    """Runs many HTTP probes inside the running asyncio loop; see ``probe_http_many``."""

    def __init__(
        self,
        targets: Sequence[HttpTarget],
        *,
        timeout: float,
        retries: int,
        concurrency: int,
        on_outcome: Callable[[HttpOutcome], None] | None,
        tls_context: ssl.SSLContext | None,
        max_body_bytes: int,
        on_outcome_at: Callable[[int, HttpOutcome], None] | None = None,
        native: bool = True,
    ) -> None:
        self.targets = targets
        self.timeout = timeout
        self.retries = max(0, retries)
        self.concurrency = max(1, concurrency)
        self.on_outcome = on_outcome
        self.on_outcome_at = on_outcome_at
        self.max_body_bytes = max_body_bytes
        self._tls_context = tls_context
        self.results: list[HttpOutcome | None] = [None] * len(targets)
        self._ep = select.epoll()
        self._conns: dict[int, _Conn] = {}
        self._heap: list[tuple[float, int, _Conn]] = []
        self._seq = itertools.count()
        self._queue: Lanes[_Probe] = Lanes(self.concurrency)
        self._done = 0
        self._wall0 = time.time()
        self._perf0 = time.perf_counter()
        self._finished: asyncio.Future[None] | None = None
        self._tick: asyncio.TimerHandle | None = None
        self._native = native and fast.fast_path_available()
        # the compiled loop, if any probe runs there (its counts stay readable after run())
        self.fast: fast.HttpFastPath | None = None
        self._probes: list[_Probe | None] = [None] * len(targets)

    @property
    def tls_context(self) -> ssl.SSLContext:
        """The client TLS context (verifying, system CAs), built on first https target."""
        if self._tls_context is None:
            self._tls_context = tls_client_context()
        return self._tls_context

    # -- results ---------------------------------------------------------------------------
    def _now_utc(self, perf: float) -> datetime:
        return datetime.fromtimestamp(self._wall0 + (perf - self._perf0), UTC)

    def _finish(self, index: int, outcome: HttpOutcome) -> None:
        if self.results[index] is not None:
            return
        self.results[index] = outcome
        self._done += 1
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        if self.on_outcome_at is not None:
            self.on_outcome_at(index, outcome)
        if self._done == len(self.results) and self._finished and not self._finished.done():
            self._finished.set_result(None)

    def _fail_early(self, index: int, target: HttpTarget, error: ErrorClass, detail: str) -> None:
        now = time.perf_counter()
        self._finish(
            index,
            HttpOutcome(
                site_id=target.site_id,
                ts=self._now_utc(now),
                ok=False,
                error=error,
                error_detail=detail,
            ),
        )

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self) -> list[HttpOutcome]:
        """Probe every target; return one outcome per target in the same order."""
        loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        _raise_fd_limit(self.concurrency + 256)
        parsed: list[ProbeUrl | str] = []
        for target in self.targets:
            try:
                parsed.append(parse_probe_url(target.url))
            except ValueError as exc:
                parsed.append(f"{target.url!r}: {exc}")
        resolved = await self._resolve_names(loop, parsed)
        for index, target in enumerate(self.targets):
            url = parsed[index]
            if isinstance(url, str):
                self._fail_early(index, target, ErrorClass.CONFIG, url)
                continue
            if target.method == "HEAD" and target.expect_keyword:
                self._fail_early(
                    index, target, ErrorClass.CONFIG, "a HEAD probe has no body to search"
                )
                continue
            cap = target.throughput_bytes or self.max_body_bytes
            probe = _Probe(index, target, url, cap, self.max_body_bytes)
            self._probes[index] = probe
            if url.literal_family is None:
                found = resolved.get((url.host, url.port))
                if isinstance(found, str):
                    self._fail_early(index, target, ErrorClass.UNREACHABLE, found)
                    continue
                assert found is not None
                probe.family, probe.addr = found
            self._queue.push(probe, slow=target.expect_slow)
        if self._done == len(self.results):
            return self._collect()
        if self._native:
            self.fast = self._fast_path()
        loop.add_reader(self._ep.fileno(), self._on_ready)
        if self.fast is not None:
            loop.add_reader(self.fast.epoll_fd, self._on_fast_ready)
        try:
            self._fill()
            self._schedule_tick(loop)
            await self._finished
        finally:
            loop.remove_reader(self._ep.fileno())
            if self.fast is not None:
                loop.remove_reader(self.fast.epoll_fd)
                self.fast.close()
            if self._tick is not None:
                self._tick.cancel()
            for conn in list(self._conns.values()):
                self._close(conn)
            self._ep.close()
        return self._collect()

    def _fast_path(self) -> fast.HttpFastPath | None:
        """The compiled loop for the probes it can run (plain http:// to an IPv4 literal), or
        None when there are none."""
        rows: list[fast.FastProbe] = []
        chosen: list[_Probe] = []
        for probe in self._probes:
            if (
                probe is None
                or probe.tls
                or probe.family != socket.AF_INET
                or not fast.fits_fast_path(probe.keyword)
            ):
                continue
            chosen.append(probe)
            host, port = probe.addr[0], probe.addr[1]
            rows.append(
                fast.FastProbe(
                    probe.index,
                    host,
                    port,
                    probe.request,
                    probe.keyword,
                    probe.read_cap,
                    probe.keep,
                    probe.target.method == "HEAD",
                )
            )
        if not rows:
            return None
        try:
            fast_path = fast.HttpFastPath(len(self._probes), rows, self.timeout)
        except OSError as exc:  # e.g. no file descriptor left for its epoll set
            log.warning("the compiled HTTP loop could not start (%s): probing in Python", exc)
            return None
        for probe in chosen:
            probe.native = True
        return fast_path

    def _collect(self) -> list[HttpOutcome]:
        out: list[HttpOutcome] = []
        for outcome in self.results:
            assert outcome is not None
            out.append(outcome)
        return out

    async def _resolve_names(
        self, loop: asyncio.AbstractEventLoop, parsed: list[ProbeUrl | str]
    ) -> dict[
        tuple[str, int],
        tuple[socket.AddressFamily, tuple[str, int] | tuple[str, int, int, int]] | str,
    ]:
        """Resolve each distinct host name once (IP literals need nothing)."""
        names = {
            (url.host, url.port)
            for url in parsed
            if not isinstance(url, str) and url.literal_family is None
        }
        out: dict[
            tuple[str, int],
            tuple[socket.AddressFamily, tuple[str, int] | tuple[str, int, int, int]] | str,
        ] = {}

        async def one(host: str, port: int) -> None:
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), self.timeout
                )
            except (OSError, TimeoutError) as exc:
                out[(host, port)] = f"host name {host!r} did not resolve: {exc}"
                return
            family, _, _, _, sockaddr = infos[0]
            out[(host, port)] = (family, sockaddr)  # type: ignore[assignment]

        await asyncio.gather(*(one(h, p) for h, p in names))
        return out

    def _schedule_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._tick = loop.call_later(_TICK_S, self._on_tick, loop)

    def _on_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._expire(time.perf_counter())
        if self.fast is not None:
            self._fast_poll()
        self._fill()
        if self._finished is not None and not self._finished.done():
            self._schedule_tick(loop)

    # -- starting attempts -----------------------------------------------------------------
    def _fill(self) -> None:
        queue = self._queue
        fast_path = self.fast
        while queue and len(self._conns) + (fast_path.live if fast_path else 0) < self.concurrency:
            probe, slow = queue.pop()
            probe.slow = slow
            if fast_path is not None and probe.native:
                self._start_fast(fast_path, probe)
            else:
                self._start(probe)

    def _start_fast(self, fast_path: fast.HttpFastPath, probe: _Probe) -> None:
        probe.attempts += 1
        rc = fast_path.start(probe.index)
        if rc == 0:
            return
        now = time.perf_counter()
        if rc < 0:
            self._slot_freed(probe)
            self._fail_early(
                probe.index, probe.target, ErrorClass.INTERNAL, f"no socket: {os.strerror(-rc)}"
            )
            return
        self._slot_freed(probe)
        error, detail = _errno_failure(rc)
        self._failed(probe, now, now, error, detail)

    def _start(self, probe: _Probe) -> None:
        probe.attempts += 1
        started = time.perf_counter()
        try:
            sock = socket.socket(probe.family, socket.SOCK_STREAM)
        except OSError as exc:
            self._slot_freed(probe)
            self._fail_early(probe.index, probe.target, ErrorClass.INTERNAL, f"no socket: {exc}")
            return
        sock.setblocking(False)
        conn = _Conn(probe, sock, started, started + self.timeout)
        err = sock.connect_ex(probe.addr)
        self._conns[conn.fd] = conn
        heapq.heappush(self._heap, (conn.deadline, next(self._seq), conn))
        if err in (errno.EINPROGRESS, errno.EAGAIN):
            self._ep.register(conn.fd, _EVENTS)
        elif err == 0:
            self._ep.register(conn.fd, _EVENTS)
            self._connected(conn)
        else:
            self._fail_errno(conn, err)

    # -- events ----------------------------------------------------------------------------
    def _on_ready(self) -> None:
        conns = self._conns
        for fd, _events in self._ep.poll(0):
            conn = conns.get(fd)
            if conn is None:
                continue
            phase = conn.phase
            if phase == _READING:
                self._read(conn)
            elif phase == _CONNECTING:
                if conn.probe.tls:
                    err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        self._fail_errno(conn, err)
                    else:
                        self._connected(conn)
                else:
                    self._send_first(conn)  # a failed connect shows as the send's error
            elif phase == _HANDSHAKE:
                self._handshake(conn)
            elif phase == _SENDING:
                self._send(conn)
        self._fill()

    def _on_fast_ready(self) -> None:
        self._fast_poll()
        self._fill()

    def _fast_poll(self) -> None:
        fast_path = self.fast
        assert fast_path is not None
        while True:
            records = fast_path.poll()
            for record in records:
                self._fast_record(fast_path, record)
            if len(records) < fast.RECORDS_PER_POLL:
                return

    def _fast_record(self, fast_path: fast.HttpFastPath, r: fast.FastRecord) -> None:
        """Turn what the compiled loop saw into an outcome, with the rules of ``_fail``,
        ``_eof`` and ``_success``; or carry on with a connection it handed back."""
        probe = self._probes[r.slot]
        assert probe is not None
        started = r.started
        connect_ms = (r.connect_at - started) * 1000.0 if r.flags & fast.FLAG_CONNECTED else None
        ttfb_ms = (r.first_byte_at - started) * 1000.0 if r.first_byte_at else None
        if r.kind == fast.KIND_HANDBACK:
            fast_path.handed += 1
            self._adopt(probe, r, fast_path.handed_bytes(r), connect_ms, ttfb_ms)
            return
        self._slot_freed(probe)
        kind = r.kind
        if kind == fast.KIND_OK:
            self._succeeded(
                probe,
                r.end_at,
                started,
                r.sent_at,
                r.status,
                r.body_bytes,
                bool(r.flags & fast.FLAG_KEYWORD_FOUND) if probe.keyword is not None else None,
                r.kept,
                capped=bool(r.flags & fast.FLAG_CAPPED),
                connect_ms=connect_ms,
                ttfb_ms=ttfb_ms,
            )
            return
        if kind == fast.KIND_ERRNO:
            error, detail = _errno_failure(r.err)
        elif kind == fast.KIND_RESET_MID:
            error = ErrorClass.BAD_RESPONSE
            detail = f"connection reset mid-response ({os.strerror(r.err)})"
        elif kind == fast.KIND_EOF_NO_RESPONSE:
            error, detail = ErrorClass.BAD_RESPONSE, "connection closed without a response"
        elif kind == fast.KIND_EOF_IN_HEADERS:
            error, detail = ErrorClass.BAD_RESPONSE, "connection closed inside the headers"
        elif kind == fast.KIND_EOF_SHORT_BODY:
            error = ErrorClass.BAD_RESPONSE
            detail = f"connection closed before the body was complete ({r.body_bytes} bytes)"
        else:
            phase = _FAST_PHASES.get(r.phase, _READING)
            what = _PHASE_NAMES.get(phase, "no answer")
            if phase == _READING and ttfb_ms is not None:
                what = f"response incomplete ({r.received} bytes read)"
            error, detail = ErrorClass.TIMEOUT, f"{what} within {self.timeout:g} s"
        headers_done = bool(r.flags & fast.FLAG_HEADERS_DONE)
        self._failed(
            probe,
            r.end_at,
            started,
            error,
            detail,
            connect_ms=connect_ms,
            ttfb_ms=ttfb_ms,
            status=r.status or None,
            bytes_read=r.body_bytes if headers_done else None,
        )

    def _adopt(
        self,
        probe: _Probe,
        r: fast.FastRecord,
        data: bytes,
        connect_ms: float | None,
        ttfb_ms: float | None,
    ) -> None:
        """Carry on in Python with a connection the compiled loop handed back: feed llhttp the
        bytes it read, then read on, under the attempt's own deadline."""
        sock = socket.socket(fileno=r.fd)
        sock.setblocking(False)
        conn = _Conn(probe, sock, r.started, r.started + self.timeout)
        conn.connect_ms = connect_ms
        conn.sent_at = r.sent_at
        conn.phase = _READING
        conn.parser = httptools.HttpResponseParser(conn)
        self._conns[conn.fd] = conn
        heapq.heappush(self._heap, (conn.deadline, next(self._seq), conn))
        self._ep.register(conn.fd, _EVENTS)
        if data:
            conn.ttfb_ms = ttfb_ms
            if self._take(conn, data):
                return
        self._read(conn)

    def _connected(self, conn: _Conn) -> None:
        conn.connect_ms = (time.perf_counter() - conn.started) * 1000.0
        if conn.probe.tls:
            try:
                conn.sock = self.tls_context.wrap_socket(
                    conn.sock,
                    server_hostname=conn.probe.server_hostname,
                    do_handshake_on_connect=False,
                )
            except (ssl.SSLError, OSError, ValueError) as exc:
                self._fail(conn, ErrorClass.TLS, f"TLS set-up failed: {exc}")
                return
            conn.phase = _HANDSHAKE
            self._handshake(conn)
        else:
            conn.phase = _SENDING
            self._send(conn)

    def _send_first(self, conn: _Conn) -> None:
        """Plain HTTP: the connect finished (or failed); send the request at once."""
        try:
            sent = conn.sock.send(conn.outbuf)
        except BlockingIOError:
            return  # not connected yet after all; the next edge brings us back
        except OSError as exc:
            self._fail_errno(conn, exc.errno or errno.ECONNREFUSED)
            return
        conn.connect_ms = (time.perf_counter() - conn.started) * 1000.0
        conn.phase = _SENDING
        self._sent(conn, sent)

    def _handshake(self, conn: _Conn) -> None:
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return  # edge-triggered for both directions: the next edge resumes it
        except ssl.SSLCertVerificationError as exc:
            self._fail(conn, ErrorClass.TLS, f"certificate not accepted: {exc.verify_message}")
            return
        except ssl.SSLError as exc:
            self._fail(conn, ErrorClass.TLS, f"TLS handshake failed: {exc.reason or exc}")
            return
        except OSError as exc:
            if exc.errno is None:
                self._fail(conn, ErrorClass.TLS, "connection closed during the TLS handshake")
            else:  # a reset before any answer is a refusal, as for plain HTTP
                self._fail_errno(conn, exc.errno)
            return
        if self.tls_context.verify_mode == ssl.CERT_NONE:
            conn.tls_days_left = _days_left_from_der(sock.getpeercert(binary_form=True))
        else:
            cert = sock.getpeercert()
            conn.tls_days_left = _days_left_from_dict(cert) if cert else None  # type: ignore[arg-type]
        conn.phase = _SENDING
        self._send(conn)

    def _send(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.outbuf)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return
        except OSError as exc:
            self._fail_errno(conn, exc.errno or errno.EPIPE)
            return
        self._sent(conn, sent)

    def _sent(self, conn: _Conn, sent: int) -> None:
        conn.outbuf = conn.outbuf[sent:]
        if conn.outbuf:
            return  # the rest goes on the next writable edge
        conn.phase = _READING
        conn.sent_at = time.perf_counter()
        conn.parser = httptools.HttpResponseParser(conn)  # the answer comes with a new edge

    def _read(self, conn: _Conn) -> None:
        sock = conn.sock
        while True:
            try:
                data = sock.recv(_RECV_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError):
                return
            except ssl.SSLWantWriteError:
                return
            except ssl.SSLError as exc:
                self._fail(conn, ErrorClass.BAD_RESPONSE, f"TLS error while reading: {exc}")
                return
            except OSError as exc:
                if conn.ttfb_ms is None:
                    self._fail_errno(conn, exc.errno or errno.ECONNRESET)
                else:
                    self._fail(
                        conn,
                        ErrorClass.BAD_RESPONSE,
                        f"connection reset mid-response ({os.strerror(exc.errno or 0)})",
                    )
                return
            if not data:
                self._eof(conn)
                return
            if self._take(conn, data):
                return

    def _take(self, conn: _Conn, data: bytes) -> bool:
        """Feed answer bytes to the parser; True when the probe ended (success or failure)."""
        if conn.ttfb_ms is None:
            conn.ttfb_ms = (time.perf_counter() - conn.started) * 1000.0
        conn.received += len(data)
        if not conn.headers_done:
            conn.header_bytes += len(data)
            conn.head += data[: MAX_HEADER_BYTES + 4 - len(conn.head)]
        parser = conn.parser
        assert parser is not None
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            conn.complete = True
        except httptools.HttpParserError as exc:
            if not conn.complete:
                self._fail(conn, ErrorClass.BAD_RESPONSE, f"not a valid HTTP response: {exc}")
                return True
        if conn.complete:
            self._success(conn)
            return True
        if not conn.headers_done and conn.header_bytes > MAX_HEADER_BYTES:
            self._fail(
                conn,
                ErrorClass.BAD_RESPONSE,
                f"no end of headers within {MAX_HEADER_BYTES} bytes",
            )
            return True
        if conn.body_bytes >= conn.probe.read_cap:
            self._success(conn, capped=True)
            return True
        return False

    def _eof(self, conn: _Conn) -> None:
        if conn.ttfb_ms is None:
            self._fail(conn, ErrorClass.BAD_RESPONSE, "connection closed without a response")
        elif not conn.headers_done:
            self._fail(conn, ErrorClass.BAD_RESPONSE, "connection closed inside the headers")
        elif conn.framed:
            self._fail(
                conn,
                ErrorClass.BAD_RESPONSE,
                f"connection closed before the body was complete ({conn.body_bytes} bytes)",
            )
        else:
            self._success(conn)

    # -- endings ---------------------------------------------------------------------------
    def _expire(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, conn = heapq.heappop(heap)
            if conn.phase == _CLOSED:
                continue
            what = _PHASE_NAMES.get(conn.phase, "no answer")
            if conn.phase == _READING and conn.ttfb_ms is not None:
                what = f"response incomplete ({conn.received} bytes read)"
            self._fail(conn, ErrorClass.TIMEOUT, f"{what} within {self.timeout:g} s")

    def _close(self, conn: _Conn) -> None:
        if conn.phase == _CLOSED:
            return
        conn.phase = _CLOSED
        self._conns.pop(conn.fd, None)
        self._slot_freed(conn.probe)
        with contextlib.suppress(OSError):
            conn.sock.close()  # closing removes the fd from the epoll set

    def _slot_freed(self, probe: _Probe) -> None:
        if probe.slow:
            probe.slow = False
            self._queue.slow_done()

    def _fail_errno(self, conn: _Conn, err: int) -> None:
        error, detail = _errno_failure(err)
        self._fail(conn, error, detail)

    def _fail(self, conn: _Conn, error: ErrorClass, detail: str) -> None:
        now = time.perf_counter()
        self._close(conn)
        self._failed(
            conn.probe,
            now,
            conn.started,
            error,
            detail,
            connect_ms=conn.connect_ms,
            ttfb_ms=conn.ttfb_ms,
            status=conn.status,
            tls_days_left=conn.tls_days_left,
            bytes_read=conn.body_bytes if conn.headers_done else None,
        )

    def _failed(
        self,
        probe: _Probe,
        now: float,
        started: float,
        error: ErrorClass,
        detail: str,
        *,
        connect_ms: float | None = None,
        ttfb_ms: float | None = None,
        status: int | None = None,
        tls_days_left: float | None = None,
        bytes_read: int | None = None,
    ) -> None:
        """An attempt failed (its slot is free): retry it, or record the failure."""
        silent = error in (ErrorClass.REFUSED, ErrorClass.UNREACHABLE, ErrorClass.TIMEOUT)
        if silent and connect_ms is None and probe.attempts <= self.retries:
            self._queue.push_front(probe, slow=True)  # silent once: likely silent again
            return
        self._finish(
            probe.index,
            HttpOutcome(
                site_id=probe.target.site_id,
                ts=self._now_utc(now),
                ok=False,
                latency_ms=ttfb_ms,
                error=error,
                error_detail=detail,
                status_code=status,
                connect_ms=connect_ms,
                ttfb_ms=ttfb_ms,
                total_ms=(now - started) * 1000.0,
                tls_days_left=tls_days_left,
                bytes_read=bytes_read,
            ),
        )

    def _success(self, conn: _Conn, *, capped: bool = False) -> None:
        now = time.perf_counter()
        probe = conn.probe
        self._close(conn)
        self._succeeded(
            probe,
            now,
            conn.started,
            conn.sent_at,
            conn.status or 0,
            conn.body_bytes,
            probe.keyword in conn.body if probe.keyword is not None else None,
            len(conn.body),
            capped=capped,
            connect_ms=conn.connect_ms,
            ttfb_ms=conn.ttfb_ms,
            tls_days_left=conn.tls_days_left,
        )

    def _succeeded(
        self,
        probe: _Probe,
        now: float,
        started: float,
        sent_at: float,
        status: int,
        body_bytes: int,
        keyword_found: bool | None,
        kept: int,
        *,
        capped: bool,
        connect_ms: float | None,
        ttfb_ms: float | None,
        tls_days_left: float | None = None,
    ) -> None:
        """A whole answer came (its slot is free): record it; ``kept`` body bytes were
        searched for the keyword."""
        error: ErrorClass | None = None
        detail: str | None = None
        if status >= 400:
            error, detail = ErrorClass.HTTP_STATUS, f"HTTP status {status}"
            keyword_found = None  # not looked for
        elif keyword_found is False:
            error = ErrorClass.KEYWORD_MISSING
            detail = f"{probe.target.expect_keyword!r} not in the first {kept} bytes of the body"
        if capped and error is None:
            detail = f"body read up to the cap of {probe.read_cap} bytes"
        throughput: float | None = None
        if probe.target.throughput_bytes and body_bytes:
            seconds = max(now - sent_at, 1e-6)
            throughput = body_bytes * 8 / seconds / 1e6
        self._finish(
            probe.index,
            HttpOutcome(
                site_id=probe.target.site_id,
                ts=self._now_utc(now),
                ok=error is None,
                latency_ms=ttfb_ms,
                error=error,
                error_detail=detail,
                status_code=status or None,
                connect_ms=connect_ms,
                ttfb_ms=ttfb_ms,
                total_ms=(now - started) * 1000.0,
                tls_days_left=tls_days_left,
                keyword_found=keyword_found,
                throughput_mbps=throughput,
                bytes_read=body_bytes,
            ),
        )


def _errno_failure(err: int) -> tuple[ErrorClass, str]:
    """The error class and detail of a socket error before any answer byte."""
    text = os.strerror(err)
    if err in _REFUSED_ERRNOS:
        phase = "connection refused" if err == errno.ECONNREFUSED else "connection reset"
        return ErrorClass.REFUSED, f"{phase} ({text})"
    if err in _UNREACHABLE_ERRNOS:
        return ErrorClass.UNREACHABLE, text
    if err == errno.ETIMEDOUT:
        return ErrorClass.TIMEOUT, text
    return ErrorClass.UNREACHABLE, f"socket error: {text}"


def _raise_fd_limit(wanted: int) -> None:
    """Raise the soft open-files limit towards ``wanted`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


async def probe_http_many(
    targets: Sequence[HttpTarget],
    *,
    timeout: float = 5.0,
    retries: int = 1,
    concurrency: int = 2000,
    on_outcome: Callable[[HttpOutcome], None] | None = None,
    verify_tls: bool = True,
    ca_file: Path | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    on_outcome_at: Callable[[int, HttpOutcome], None] | None = None,
    native: bool = True,
) -> list[HttpOutcome]:
    """Probe every target over HTTP(S); one outcome per target, same order, never raises.

    ``on_outcome`` sees each outcome as it is ready, ``on_outcome_at`` each with its target's
    index.

    ``timeout`` bounds each attempt (connect + TLS + request + whole response); at most
    ``concurrency`` connections are open at once; a body is read up to ``max_body_bytes``
    (or the target's ``throughput_bytes``). With ``verify_tls`` certificates are checked
    against the system CAs plus ``ca_file``; a failure is error class ``tls``.

    With ``native`` (and probes/native built), plain http:// probes of IPv4 addresses run in
    the compiled loop (``probes.native.http_fast``), with the same outcomes; False runs all
    of them here.
    """
    if not targets:
        return []
    needs_tls = any(t.url.lower().startswith("https:") for t in targets)
    context = tls_client_context(verify=verify_tls, ca_file=ca_file) if needs_tls else None
    engine = HttpEngine(
        targets,
        timeout=timeout,
        retries=retries,
        concurrency=concurrency,
        on_outcome=on_outcome,
        tls_context=context,
        max_body_bytes=max_body_bytes,
        on_outcome_at=on_outcome_at,
        native=native,
    )
    return await engine.run()


async def probe_http(
    target: HttpTarget,
    *,
    timeout: float = 5.0,
    retries: int = 1,
    verify_tls: bool = True,
    ca_file: Path | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> HttpOutcome:
    """Probe one target (see ``probe_http_many``)."""
    outcomes = await probe_http_many(
        [target],
        timeout=timeout,
        retries=retries,
        concurrency=1,
        verify_tls=verify_tls,
        ca_file=ca_file,
        max_body_bytes=max_body_bytes,
    )
    return outcomes[0]


def probe_http_many_sync(
    targets: Sequence[HttpTarget],
    *,
    timeout: float = 5.0,
    retries: int = 1,
    concurrency: int = 2000,
    on_outcome: Callable[[HttpOutcome], None] | None = None,
    verify_tls: bool = True,
    ca_file: Path | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> list[HttpOutcome]:
    """Run ``probe_http_many`` in a new event loop (for the CLI and scripts)."""
    return asyncio.run(
        probe_http_many(
            targets,
            timeout=timeout,
            retries=retries,
            concurrency=concurrency,
            on_outcome=on_outcome,
            verify_tls=verify_tls,
            ca_file=ca_file,
            max_body_bytes=max_body_bytes,
        )
    )


def _probe_in_child(
    jobs: Connection,
    conn: Connection,
    done: Synchronized[int],
) -> None:
    """Child process body: wait for (targets, options) on ``jobs`` (None: end at once), probe,
    sending (index, outcome) batches as they finish on ``conn``, then end.

    The process starts before its targets are known, so its interpreter and imports are
    ready when they come. Outcomes go out every ``STREAM_EVERY_S``, so the parent can use them
    before the last probe ends; ``None`` marks the end. The round waits for this process to
    end, so once everything is sent it ends at once: no final collection and no interpreter
    teardown (0.3-0.4 s with a round's objects alive).
    """
    pending: list[tuple[int, HttpOutcome]] = []

    def collect(index: int, outcome: HttpOutcome) -> None:
        pending.append((index, outcome))
        done.value += 1  # one writer, the parent only reads: no lock needed

    def send() -> None:
        if pending:
            conn.send(pending)
            pending.clear()

    async def probe_and_send(targets: Sequence[HttpTarget], options: dict[str, Any]) -> None:
        async def send_every() -> None:
            while True:
                await asyncio.sleep(STREAM_EVERY_S)
                send()

        sender = asyncio.ensure_future(send_every())
        try:
            await probe_http_many(targets, on_outcome_at=collect, **options)
        finally:
            sender.cancel()
        send()
        conn.send(None)

    gc.disable()  # the engine's garbage is freed by refcounting (core.collector)
    try:
        try:
            job: tuple[list[HttpTarget], dict[str, Any]] | None = jobs.recv()
        except (EOFError, OSError):
            job = None  # the parent went away or gave up on this process
        if job is not None:
            asyncio.run(probe_and_send(*job))
    finally:
        conn.close()
        jobs.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class HttpProbeProcess:
    """A child process for ``probe_http_many``, started before its targets are known.

    A round starts one before it loads its sites, so the process's start and imports overlap
    the load instead of delaying the first HTTP probe; ``probe_http_many_in_process`` then
    hands it the targets. ``close`` ends one that is not used.
    """

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.done = ctx.Value("q", 0, lock=False)
        self.results, results_end = ctx.Pipe(duplex=False)
        jobs_end, self.jobs = ctx.Pipe(duplex=False)
        self.process = ctx.Process(
            target=_probe_in_child,
            args=(jobs_end, results_end, self.done),
            name="conectado-http-probes",
            daemon=True,
        )
        self._child_ends = (jobs_end, results_end)
        self.used = False
        self.closed = False

    def start(self) -> HttpProbeProcess:
        """Start the process (it waits for its targets); return self."""
        self.process.start()
        for end in self._child_ends:
            end.close()
        return self

    def give(self, targets: Sequence[HttpTarget], options: dict[str, Any]) -> None:
        """Hand the process its one job (blocks while the targets are pickled and sent)."""
        self.used = True
        self.jobs.send((list(targets), options))

    def close(self, timeout: float = 5.0) -> None:
        """End the process: tell an unused one there is no job, wait, kill it if it lingers.
        Closing again does nothing."""
        if self.closed:
            return
        self.closed = True
        if not self.used:
            with contextlib.suppress(OSError):
                self.jobs.send(None)
        self.jobs.close()
        self.results.close()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout)


async def probe_http_many_in_process(
    targets: Sequence[HttpTarget],
    *,
    process: HttpProbeProcess | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_outcome: Callable[[HttpOutcome], None] | None = None,
    **options: Any,
) -> list[HttpOutcome]:
    """``probe_http_many`` in a child process, so that it runs on another core.

    ``process`` is one started ahead (``HttpProbeProcess``), else one is started here; either
    way it is ended before this returns. The caller's event loop stays free (the SNMP engine
    runs there meanwhile); ``on_progress`` receives counts of finished probes about four times
    a second, and ``on_outcome`` (on the loop) each outcome, in batches as the child sends
    them. If the child dies, the probes it had not reported are run here instead, so a round
    never loses them.
    """
    loop = asyncio.get_running_loop()
    results: list[HttpOutcome | None] = [None] * len(targets)

    def take(batch: list[tuple[int, HttpOutcome]]) -> None:
        for index, outcome in batch:
            results[index] = outcome
            if on_outcome is not None:
                on_outcome(outcome)

    child = process
    complete = False
    reported = 0
    try:
        if child is None:
            # Off the loop: the SNMP probes sharing it are not held up by the spawn.
            child = await loop.run_in_executor(None, HttpProbeProcess().start)
        # Pickling ~95,000 targets takes a while: off the loop too.
        await loop.run_in_executor(None, child.give, targets, options)
        receiving = loop.run_in_executor(None, _receive, child.results, loop, take)
        while not receiving.done():
            await asyncio.wait([receiving], timeout=0.25)
            if on_progress is not None and child.done.value > reported:
                on_progress(child.done.value - reported)
                reported = child.done.value
        complete = receiving.result()  # every batch was handed to ``take`` before this
    except (OSError, EOFError):
        complete = False  # the child went away before it had its targets: run them here
    finally:
        if child is not None:
            await loop.run_in_executor(None, child.close)  # the SNMP probes share this loop
    missing = [i for i, outcome in enumerate(results) if outcome is None]
    if not complete or missing:
        again = await probe_http_many([targets[i] for i in missing], **options)
        take(list(zip(missing, again, strict=True)))
    if on_progress is not None and len(results) > reported:
        on_progress(len(results) - reported)
    return [outcome for outcome in results if outcome is not None]


def _receive(
    conn: Connection,
    loop: asyncio.AbstractEventLoop,
    take: Callable[[list[tuple[int, HttpOutcome]]], None],
) -> bool:
    """Hand each batch the child sends to ``take`` on ``loop``; True once the end came."""
    while True:
        try:
            batch: list[tuple[int, HttpOutcome]] | None = conn.recv()
        except (EOFError, OSError):
            return False
        if batch is None:
            return True
        loop.call_soon_threadsafe(take, batch)
