"""Real HTTP servers on loopback for the HTTP probe tests.

``http.server`` (stdlib) plays the well-behaved server, wrapped in TLS with certificates from
lab.certs for the https cases; raw socket servers play the misbehaving ones (the network
edge: slowloris, resets, garbage, silence, huge bodies).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from lab.certs import CertFlaw, LabCa, key_pem, new_key, server_cert, server_context

PAGE = b"<html><body>Conectado: escuela conectada</body></html>"


class LabHandler(BaseHTTPRequestHandler):
    """Paths: / (keyword page), /status/N, /chunked, /bytes?n=N, /redirect."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return None

    def _send(self, code: int, body: bytes, *, head: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._send(200, PAGE, head=True)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/":
            self._send(200, PAGE)
        elif url.path.startswith("/status/"):
            code = int(url.path.rsplit("/", 1)[1])
            self._send(code, f"status {code}".encode())
        elif url.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            for part in (b"<html>first part, ", b"x" * 5000, b" Conectado at the end</html>"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif url.path == "/bytes":
            n = int(parse_qs(url.query).get("n", ["1000"])[0])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.send_header("Connection", "close")
            self.end_headers()
            block = (b"Conectado " * 6554)[:65536]
            left = n
            while left > 0:
                chunk = block[: min(left, len(block))]
                self.wfile.write(chunk)
                left -= len(chunk)
        elif url.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/")
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
        else:
            self._send(404, b"not found")


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog is 5: a burst of concurrent probes overflows it, the
    # kernel drops their SYNs, and the client's retransmission comes after its timeout.
    request_queue_size = 512
    daemon_threads = True


@contextlib.contextmanager
def stdlib_server(
    host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> Iterator[tuple[str, int]]:
    """Run ``LabHandler`` on ``host`` (optionally behind TLS); yield (host, port)."""
    server = _Server((host, 0), LabHandler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield host, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def tls_server(
    tmp: Path, ca: LabCa, host: str, flaw: CertFlaw = CertFlaw.GOOD
) -> Iterator[tuple[str, int]]:
    """A stdlib server behind TLS with a certificate for ``host`` broken as ``flaw`` says."""
    key = new_key()
    key_file = tmp / f"{host}-{flaw}.key"
    key_file.write_bytes(key_pem(key))
    ctx = server_context(
        server_cert(ca, key, host, flaw=flaw), key_file, tmp / f"{host}-{flaw}.pem"
    )
    with stdlib_server(host, ctx) as addr:
        yield addr


Behaviour = Callable[[socket.socket, threading.Event], None]


@contextlib.contextmanager
def raw_server(behaviour: Behaviour, host: str = "127.0.0.1") -> Iterator[tuple[str, int]]:
    """Accept connections on ``host`` and hand each to ``behaviour`` in its own thread."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, 0))
    listener.listen(512)
    listener.settimeout(0.05)
    stop = threading.Event()
    workers: list[threading.Thread] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(10)
            worker = threading.Thread(target=_run, args=(behaviour, conn, stop), daemon=True)
            worker.start()
            workers.append(worker)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield host, listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for worker in workers:
            worker.join(5)


def _run(behaviour: Behaviour, conn: socket.socket, stop: threading.Event) -> None:
    with contextlib.suppress(OSError), conn:
        behaviour(conn, stop)


def read_request(conn: socket.socket) -> bytes:
    """Read until the end of the request headers."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def reset(conn: socket.socket) -> None:
    """Close with RST (SO_LINGER 0)."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def slowloris(conn: socket.socket, stop: threading.Event) -> None:
    """Headers promising a body, then one byte every 50 ms, forever."""
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    while not stop.is_set():
        conn.sendall(b"C")
        time.sleep(0.05)


def slow_headers(conn: socket.socket, stop: threading.Event) -> None:
    """Status line, then one header byte every 50 ms, forever."""
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    while not stop.is_set():
        conn.sendall(b"X")
        time.sleep(0.05)


def silent(conn: socket.socket, stop: threading.Event) -> None:
    """Accept, read the request, never answer."""
    read_request(conn)
    stop.wait(30)


def late_answer(conn: socket.socket, stop: threading.Event) -> None:
    """Read the request, wait 1.5 s, then answer 200 with a small page."""
    read_request(conn)
    if not stop.wait(1.5):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nConectado ok.")


def reset_at_once(conn: socket.socket, stop: threading.Event) -> None:
    """Accept and reset at once."""
    reset(conn)


def reset_mid_body(conn: socket.socket, stop: threading.Event) -> None:
    """Send part of a body, then reset."""
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nConectado partial")
    time.sleep(0.05)
    reset(conn)


def close_at_once(conn: socket.socket, stop: threading.Event) -> None:
    """Read the request and close without a byte."""
    read_request(conn)


def close_mid_body(conn: socket.socket, stop: threading.Event) -> None:
    """Promise 1000 bytes, send 10, close cleanly."""
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")


def garbage(conn: socket.socket, stop: threading.Event) -> None:
    """Answer with bytes that are not HTTP."""
    read_request(conn)
    conn.sendall(b"\x00\xff\x13SSH-2.0-OpenSSH_9.2 not http\r\n\r\n")


def endless_headers(conn: socket.socket, stop: threading.Event) -> None:
    """A status line and then header lines without end, as fast as possible."""
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    line = b"X-Filler: " + b"y" * 1000 + b"\r\n"
    with contextlib.suppress(OSError):
        for _ in range(200):
            conn.sendall(line)


def huge_body(conn: socket.socket, stop: threading.Event) -> None:
    """Announce 1 GB and stream it until the client goes away."""
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
    block = b"Conectado " * 6000
    with contextlib.suppress(OSError):
        for _ in range(20000):
            conn.sendall(block)


def close_delimited(conn: socket.socket, stop: threading.Event) -> None:
    """HTTP/1.0 style: no length, body ends when the connection closes."""
    read_request(conn)
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello Conectado, bye")


def closed_port(host: str = "127.0.0.1") -> int:
    """A port with no listener (bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def full_listener(host: str = "127.0.0.1") -> Iterator[int]:
    """A listener whose accept queue is full, so that it drops further SYNs and a connect()
    to it hangs; yield its port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((host, 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers: list[socket.socket] = []
    try:
        for _ in range(4):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            filler.connect_ex((host, port))
            fillers.append(filler)
        time.sleep(0.2)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
