"""The lab HTTP(S) agent: one server on 0.0.0.0 answering for every 127.x.y.z lab site.

Each accepted connection is matched to its site by the address it was made to
(``getsockname``), and the site's deterministic behaviour (lab.behaviour) decides the answer:

- down, or in the down half of its flapping period: the connection is reset at once (a real
  dead site would be silent; the lab resets so that a full round is not dominated by
  timeouts — silence is covered by the probe tests against real servers);
- slow: the answer comes after ``slow_delay_s`` (1.2-1.8 s);
- ``http_status`` 500/503 for 1 % of sites, else 200 with a page holding the keyword
  ``Conectado`` and the site key;
- ``/bytes?n=N`` sends N bytes (at most 1 GB) for throughput tests;
- https (``https_port``): the certificate is chosen per site after accept (no SNI for IP
  URLs): signed by the lab CA for the site's IP, or expired, or for the wrong host, as the
  site's ``tls_fault`` says. The CA is ``<tls_dir>/ca.pem``; tell the prober to trust it
  with ``CONECTADO_HTTP_CA_FILE``.

Addresses not in the inventory get 404. The server is a raw epoll loop (no asyncio: it must
outrun the prober); ``workers`` processes share the ports with SO_REUSEPORT. Accept is
deferred until the request is in, so a plain-HTTP answer is usually sent and the connection
closed straight from accept, without a round trip through epoll (30 against 42 µs of CPU per
connection, measured against the prober).

With ``native`` (the default where lab/native/_http_fast.so is built; ``CONECTADO_LAB_NATIVE``)
the plain listener's accepts run in C (lab/native/http_fast.c): down sites are reset and
the common answers sent there, and every other connection is handed back to this module's
code at the point its own accept/read would be (23-28 against 35-47 µs of CPU per connection,
nearly all of it now the kernel's: bench/probes_http.py --lab-only). This module stays the
definition of the behaviour; tests/lab/test_lab_native_http.py checks the C answers byte for byte
against it.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import logging
import os
import select
import signal
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import load_pem_x509_certificate

from core.collector import freeze_long_lived
from lab.certs import CertFlaw, LabCa, key_pem, make_ca, new_key, server_cert
from lab.inventory import LabInventory
from lab.native.http_fast import HAND_NEW, HAND_WRITE, HttpFastPath

log = logging.getLogger("conectado.lab.http")

MAX_BYTES: Final = 10**9
MAX_REQUEST: Final = 8192
IDLE_TIMEOUT_S: Final = 30.0
_BLOCK: Final = (b"Conectado " * 6554)[:65536]
_REASONS: Final = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
_LINGER_RESET: Final = struct.pack("ii", 1, 0)

_EVENTS: Final = select.EPOLLIN | select.EPOLLOUT | select.EPOLLET  # registered once
_READING: Final = 0
_HANDSHAKE: Final = 1
_WAITING: Final = 2
_WRITING: Final = 3
_CLOSED: Final = 4


@dataclass(frozen=True)
class TlsFiles:
    """The lab CA and the key every lab server certificate uses."""

    ca_file: Path
    ca_key_file: Path
    server_key_file: Path
    site_dir: Path


def ensure_lab_ca(tls_dir: Path) -> TlsFiles:
    """Create the lab CA and server key in ``tls_dir`` unless they exist; return their paths."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        tls_dir / "ca.pem", tls_dir / "ca.key", tls_dir / "server.key", tls_dir / "sites"
    )
    files.site_dir.mkdir(exist_ok=True)
    if not (files.ca_file.exists() and files.ca_key_file.exists()):
        ca = make_ca()
        files.ca_key_file.write_bytes(key_pem(ca.key))
        files.ca_key_file.chmod(0o600)
        files.ca_file.write_bytes(ca.cert_pem)
    if not files.server_key_file.exists():
        files.server_key_file.write_bytes(key_pem(new_key()))
        files.server_key_file.chmod(0o600)
    return files


def load_lab_ca(files: TlsFiles) -> LabCa:
    """Read the lab CA written by ``ensure_lab_ca``."""
    key = serialization.load_pem_private_key(files.ca_key_file.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return LabCa(key, load_pem_x509_certificate(files.ca_file.read_bytes()))


class _SiteContexts:
    """Server TLS contexts per site address, made on first use (certificate files cached)."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._ca: LabCa | None = None
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._contexts: dict[tuple[str, CertFlaw], ssl.SSLContext] = {}

    def context(self, ip: str, flaw: CertFlaw) -> ssl.SSLContext:
        """The context serving ``ip``'s certificate (broken as ``flaw`` says)."""
        found = self._contexts.get((ip, flaw))
        if found is not None:
            return found
        cert_file = self.files.site_dir / f"{ip}-{flaw.value}.pem"
        if not cert_file.exists():
            if self._ca is None:
                self._ca = load_lab_ca(self.files)
                key = serialization.load_pem_private_key(
                    self.files.server_key_file.read_bytes(), password=None
                )
                assert isinstance(key, ec.EllipticCurvePrivateKey)
                self._key = key
            assert self._key is not None
            tmp = cert_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(server_cert(self._ca, self._key, ip, flaw=flaw))
            tmp.replace(cert_file)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert_file), str(self.files.server_key_file))
        self._contexts[(ip, flaw)] = ctx
        return ctx


def _flaw(fault: str | None) -> CertFlaw:
    if fault == "expired":
        return CertFlaw.EXPIRED
    if fault == "wrong_host":
        return CertFlaw.WRONG_NAME
    return CertFlaw.GOOD


def _response(status: int, body: bytes, *, head: bool = False, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    header = (
        b"HTTP/1.1 %d %s\r\nServer: conectado-lab\r\nContent-Type: text/html\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n"
        % (status, _REASONS.get(status, b"Status"), size)
    )
    return header if head else header + body


class _Client:
    __slots__ = ("due", "fd", "inbuf", "out", "remaining", "site", "sock", "state")

    def __init__(self, sock: socket.socket, site: int | None) -> None:
        self.sock: socket.socket | ssl.SSLSocket = sock
        self.fd = sock.fileno()
        self.site = site
        self.state = _READING
        self.inbuf = b""
        self.out = b""
        self.remaining = 0  # /bytes body still to stream after ``out``
        self.due = 0.0


class HttpAgent:
    """One worker's epoll loop over the plain and TLS listeners."""

    def __init__(
        self,
        inventory: LabInventory,
        listeners: list[tuple[socket.socket, bool]],
        contexts: _SiteContexts | None,
        *,
        clock: float | None = None,
        native: bool = True,
    ) -> None:
        """Serve ``listeners`` (socket, is-TLS) for ``inventory``.

        ``clock`` fixes the time the behaviours are evaluated at (tests). With ``native`` the
        plain listeners' accepts run in the compiled fast path when it is built
        (``self.native`` is then not None); else, and for TLS, everything runs in Python.
        """
        self.inventory = inventory
        self.native = HttpFastPath.for_inventory(inventory) if native else None
        self.listeners = {sock.fileno(): (sock, tls) for sock, tls in listeners}
        self.contexts = contexts
        self.clients: dict[int, _Client] = {}
        self.timers: list[tuple[float, int, _Client]] = []
        self.ep = select.epoll()
        self.stopping = False
        self.served = 0
        self._seq = 0
        self._fixed_clock = clock
        for fd in self.listeners:
            self.ep.register(fd, select.EPOLLIN)

    def now(self) -> float:
        """Wall time the behaviour model is evaluated at."""
        return self._fixed_clock if self._fixed_clock is not None else time.time()

    def serve_forever(self) -> None:
        """Run until ``stopping`` is set (SIGTERM/SIGINT set it)."""
        while not self.stopping:
            timeout = 0.5
            if self.timers:
                timeout = max(0.0, min(timeout, self.timers[0][0] - time.monotonic()))
            try:
                events = self.ep.poll(timeout)
            except InterruptedError:
                continue
            for fd, ev in events:
                listener = self.listeners.get(fd)
                if listener is not None:
                    self._accept(*listener)
                    continue
                client = self.clients.get(fd)
                if client is not None:
                    self._on_event(client, ev)
            if self.timers:
                self._run_timers(time.monotonic())
        for client in list(self.clients.values()):
            self._close(client)
        self.ep.close()

    # -- connections -----------------------------------------------------------------------
    def _accept(self, listener: socket.socket, tls: bool) -> None:
        if self.native is not None and not tls:
            self._accept_native(self.native, listener)
            return
        for _ in range(256):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.error("accept failed: %s", exc)
                    return
                continue
            self._admit(sock, tls)

    def _admit(self, sock: socket.socket, tls: bool) -> None:
        """Take one accepted connection from its start: find its site, reset or serve it."""
        sock.setblocking(False)
        ip_packed = socket.inet_aton(sock.getsockname()[0])
        site = self.inventory.by_address.get(ip_packed)
        if site is not None and not self.inventory.behaviour(site).answers(self.now()):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            sock.close()
            return
        client = _Client(sock, site)
        if not tls:
            # The listener defers accept until the request's first bytes are in, so most
            # connections are answered and closed here, never entering the epoll set.
            self._read(client)
            if client.state == _CLOSED:
                return
        self._enlist(client)
        if tls:  # readiness already there shows as an event: epoll reports it on ADD
            self._start_tls(client, socket.inet_ntoa(ip_packed))

    def _accept_native(self, native: HttpFastPath, listener: socket.socket) -> None:
        """Accept in C; carry on with each connection it handed back where C left it."""
        answered, handed, err = native.accept(listener, self.now())
        self.served += answered
        if err:
            log.error("accept failed: %s", os.strerror(err))
        for conn in handed:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, conn.fd)
            if conn.kind == HAND_NEW:
                self._admit(sock, False)
                continue
            sock.setblocking(False)
            client = _Client(sock, conn.site)
            if conn.kind == HAND_WRITE:
                self._respond(client, conn.data)
            elif not conn.data or not self._received(client, conn.data):
                self._read(client)
            if client.state != _CLOSED:
                self._enlist(client)

    def _enlist(self, client: _Client) -> None:
        """Watch a connection that is not done with in the epoll set, under a timer."""
        self.clients[client.fd] = client
        self.ep.register(client.fd, _EVENTS)
        if client.state != _WAITING:  # a slow answer's own timer is already set
            self._timer(time.monotonic() + IDLE_TIMEOUT_S, client)

    def _start_tls(self, client: _Client, ip: str) -> None:
        if self.contexts is None:
            self._close(client)
            return
        fault = None if client.site is None else self.inventory.behaviour(client.site).tls_fault
        try:
            ctx = self.contexts.context(ip, _flaw(fault))
            client.sock = ctx.wrap_socket(
                client.sock, server_side=True, do_handshake_on_connect=False
            )
        except (OSError, ssl.SSLError) as exc:
            log.error("TLS set-up for %s failed: %s", ip, exc)
            self._close(client)
            return
        client.state = _HANDSHAKE

    def _on_event(self, client: _Client, ev: int) -> None:
        state = client.state
        if state == _READING:
            self._read(client)
        elif state == _WRITING:
            self._write(client)
        elif state == _HANDSHAKE:
            self._handshake(client)
        elif ev & (select.EPOLLHUP | select.EPOLLERR):
            self._close(client)

    def _handshake(self, client: _Client) -> None:
        sock = client.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return  # the next edge resumes it
        except (ssl.SSLError, OSError):
            self._close(client)  # the prober rejected our certificate, or went away
            return
        client.state = _READING
        self._read(client)

    def _read(self, client: _Client) -> None:
        while True:  # edge-triggered: read until it would block or the request is complete
            try:
                data = client.sock.recv(MAX_REQUEST)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError:
                self._close(client)
                return
            if not data:
                self._close(client)
                return
            if self._received(client, data):
                return

    def _received(self, client: _Client, data: bytes) -> bool:
        """Add ``data`` to the request; answer once it is complete (or too large). Return
        True when the request is complete, False when more must be read."""
        client.inbuf += data
        end = client.inbuf.find(b"\r\n\r\n")
        if end >= 0:
            self._answer(client, client.inbuf[:end])
            return True
        if len(client.inbuf) > MAX_REQUEST:
            self._respond(client, _response(431, b"request headers too large"))
            return True
        return False

    def _answer(self, client: _Client, head: bytes) -> None:
        line = head.split(b"\r\n", 1)[0].split(b" ")
        if len(line) != 3 or not line[2].startswith(b"HTTP/1."):
            self._respond(client, _response(400, b"bad request"))
            return
        method, target = line[0], line[1]
        is_head = method == b"HEAD"
        if client.site is None:
            self._respond(client, _response(404, b"no lab site at this address", head=is_head))
            return
        behaviour = self.inventory.behaviour(client.site)
        path, _, query = target.partition(b"?")
        if behaviour.http_status != 200:
            out = _response(behaviour.http_status, b"site error", head=is_head)
        elif path == b"/bytes":
            n = 1000
            for part in query.split(b"&"):
                if part.startswith(b"n="):
                    with contextlib.suppress(ValueError):
                        n = max(0, min(int(part[2:]), MAX_BYTES))
            out = _response(200, b"", head=is_head, length=n)
            client.remaining = 0 if is_head else n
        else:
            key = self.inventory.site_keys[client.site].encode()
            body = b"<html><body><h1>Conectado</h1><p>site %s</p></body></html>" % key
            out = _response(200, body, head=is_head)
        if behaviour.slow_delay_s > 0:
            client.out = out
            client.state = _WAITING
            self._timer(time.monotonic() + behaviour.slow_delay_s, client)
            return
        self._respond(client, out)

    def _respond(self, client: _Client, out: bytes) -> None:
        client.out = out
        client.state = _WRITING
        self._write(client)

    def _write(self, client: _Client) -> None:
        sock = client.sock
        while True:
            if not client.out:
                if client.remaining <= 0:
                    self.served += 1
                    self._close(client)
                    return
                take = min(client.remaining, len(_BLOCK))
                client.out = _BLOCK[:take]
                client.remaining -= take
            try:
                sent = sock.send(client.out)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return  # the next writable edge continues
            except OSError:
                self._close(client)  # the prober stopped reading (cap reached) or reset
                return
            client.out = client.out[sent:]

    # -- timers ----------------------------------------------------------------------------
    def _timer(self, due: float, client: _Client) -> None:
        self._seq += 1
        client.due = due
        heapq.heappush(self.timers, (due, self._seq, client))

    def _run_timers(self, now: float) -> None:
        timers = self.timers
        while timers and timers[0][0] <= now:
            due, _, client = heapq.heappop(timers)
            if client.state == _CLOSED or due != client.due:
                continue
            if client.state == _WAITING:
                self._timer(now + IDLE_TIMEOUT_S, client)
                self._respond(client, client.out)
            else:
                self._close(client)  # idle too long

    def _close(self, client: _Client) -> None:
        if client.state == _CLOSED:
            return
        client.state = _CLOSED
        self.clients.pop(client.fd, None)
        with contextlib.suppress(OSError):
            client.sock.close()


def listen(port: int, host: str = "0.0.0.0") -> socket.socket:
    """A non-blocking SO_REUSEPORT listener on ``host:port`` that accepts once data came.

    With TCP_DEFER_ACCEPT the kernel hands over a connection only when the client's first
    bytes (request or TLS hello) are there; a client that sends nothing is still handed over
    after the defer period, and then meets the idle timeout.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def run_http_agent(
    inventory: LabInventory,
    *,
    port: int,
    https_port: int | None,
    tls_dir: Path,
    workers: int = 1,
    host: str = "0.0.0.0",
    native: bool = True,
) -> None:
    """Serve the lab sites until SIGTERM/SIGINT; ``workers`` processes share the ports.

    ``native`` answers the common plain-HTTP connections with the compiled fast path when it
    is built (lab.native); false serves everything in Python.
    """
    files = ensure_lab_ca(tls_dir) if https_port else None
    contexts = _SiteContexts(files) if files else None
    # Behaviours and TLS contexts (~1.5 ms per https site) are made once before forking, so
    # workers share them and the first round does not stall on that work.
    inventory.behaviours()
    if contexts is not None:
        for i, url in enumerate(inventory.http_urls):
            if url is not None and url[:6].lower() == "https:":
                ip = socket.inet_ntoa(inventory.addresses[i].to_bytes(4, "big"))
                contexts.context(ip, _flaw(inventory.behaviour(i).tls_fault))
    if threading.current_thread() is threading.main_thread():
        freeze_long_lived()  # an agent process; not a test's thread
    children: list[int] = []
    for _ in range(max(1, workers) - 1):
        pid = os.fork()
        if pid == 0:
            try:
                _serve(inventory, port, https_port, contexts, host, native)
            finally:
                os._exit(0)
        children.append(pid)

    def stop_children(*_: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    try:
        _serve(inventory, port, https_port, contexts, host, native)
    finally:
        stop_children()
        for child in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child, 0)


def _serve(
    inventory: LabInventory,
    port: int,
    https_port: int | None,
    contexts: _SiteContexts | None,
    host: str,
    native: bool,
) -> None:
    listeners = [(listen(port, host), False)]
    if https_port and contexts is not None:
        listeners.append((listen(https_port, host), True))
    agent = HttpAgent(inventory, listeners, contexts, native=native)

    def stop(*_: object) -> None:
        agent.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "lab HTTP agent pid %d serving %d sites on %s:%d (%s)",
        os.getpid(),
        len(inventory),
        host,
        port,
        "compiled fast path" if agent.native is not None else "pure Python",
    )
    try:
        agent.serve_forever()
    finally:
        for sock, _ in listeners:
            sock.close()
        if agent.native is not None:
            log.info("served %d; compiled fast path: %s", agent.served, agent.native.counts)
