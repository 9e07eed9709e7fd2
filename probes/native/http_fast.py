"""The HTTP prober's compiled loop (``http_fast.c``): its probe tables, its records, its calls.

``HttpFastPath`` lays out, by target index, what the C code needs to probe a plain http://
IPv4 target (address, port, request bytes, keyword, body cap) and runs its connections in its
own epoll set: ``start`` opens one, ``poll`` handles those that are ready or past their
deadline and returns what happened as ``FastRecord`` facts. ``probes.http.HttpEngine`` turns
those into outcomes with its own rules, and carries on itself with the connections handed
back (``KIND_HANDBACK``: an answer the C code does not fully understand).
"""

from __future__ import annotations

import ctypes
import socket
from collections.abc import Sequence
from typing import Final, NamedTuple

import numpy as np

from probes.native import load_library

HEAD_BUF: Final = 4096  # as in http_fast.c: the head bytes a handed-back record may carry
KW_MAX: Final = 256  # keywords of this many bytes or more are left to the Python engine
RECORDS_PER_POLL: Final = 256

KIND_OK: Final = 0
KIND_ERRNO: Final = 1
KIND_RESET_MID: Final = 2
KIND_EOF_NO_RESPONSE: Final = 3
KIND_EOF_IN_HEADERS: Final = 4
KIND_EOF_SHORT_BODY: Final = 5
KIND_TIMEOUT: Final = 6
KIND_HANDBACK: Final = 7

FLAG_CONNECTED: Final = 1
FLAG_HEADERS_DONE: Final = 2
FLAG_CAPPED: Final = 4
FLAG_KEYWORD_FOUND: Final = 8

PHASE_CONNECTING: Final = 1
PHASE_SENDING: Final = 2
PHASE_READING: Final = 3

_RECORD: Final = np.dtype(
    [
        ("slot", "<i4"),
        ("kind", "<i4"),
        ("err", "<i4"),
        ("status", "<i4"),
        ("fd", "<i4"),
        ("flags", "<i4"),
        ("phase", "<i4"),
        ("hand_len", "<i4"),
        ("received", "<i8"),
        ("body_bytes", "<i8"),
        ("kept", "<i8"),
        ("hand_off", "<i8"),
        ("started", "<f8"),
        ("connect_at", "<f8"),
        ("first_byte_at", "<f8"),
        ("sent_at", "<f8"),
        ("end_at", "<f8"),
    ]
)


class FastRecord(NamedTuple):
    """What happened to one connection of the C loop (``record_t`` in http_fast.c).

    Times are ``time.perf_counter`` seconds (CLOCK_MONOTONIC); 0.0 when it did not happen.
    ``status`` is 0 before the end of the head. ``kept`` is how many body bytes were searched
    for the keyword. ``fd`` and the head bytes (``hand_off``, ``hand_len`` into the poll's
    arena) are set only for ``KIND_HANDBACK``; ``phase`` says where a timeout struck.
    """

    slot: int
    kind: int
    err: int
    status: int
    fd: int
    flags: int
    phase: int
    hand_len: int
    received: int  # answer bytes read, head and body
    body_bytes: int
    kept: int
    hand_off: int
    started: float
    connect_at: float
    first_byte_at: float
    sent_at: float
    end_at: float


class FastProbe(NamedTuple):
    """One target the C loop may probe: its table row."""

    slot: int
    host: str  # an IPv4 literal
    port: int
    request: bytes
    keyword: bytes | None
    cap: int  # body bytes read at most
    keep: int  # body bytes searched for the keyword
    head_only: bool


def _library() -> ctypes.CDLL | None:
    lib = load_library("http_fast", "HTTP probes run in the Python engine only")
    if lib is None:
        return None
    lib.http_fast_record_size.restype = ctypes.c_size_t
    if lib.http_fast_record_size() != _RECORD.itemsize:
        raise RuntimeError(
            "probes/native/_http_fast.so does not match http_fast.py (record size): run make"
        )
    lib.http_fast_new.restype = ctypes.c_void_p
    lib.http_fast_new.argtypes = [ctypes.c_int32] + [ctypes.c_void_p] * 9 + [ctypes.c_double]
    lib.http_fast_start.restype = ctypes.c_int
    lib.http_fast_start.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.http_fast_poll.restype = ctypes.c_int
    lib.http_fast_poll.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.http_fast_epoll_fd.restype = ctypes.c_int
    lib.http_fast_epoll_fd.argtypes = [ctypes.c_void_p]
    lib.http_fast_free.restype = None
    lib.http_fast_free.argtypes = [ctypes.c_void_p]
    return lib


def fast_path_available() -> bool:
    """True when the compiled loop is built and current."""
    return _library() is not None


def fits_fast_path(keyword: bytes | None) -> bool:
    """True when a plain http:// IPv4 probe with this keyword can run in C."""
    return keyword is None or len(keyword) < KW_MAX


class HttpFastPath:
    """The C loop over ``count`` slots, of which ``probes`` may be started (by their slot)."""

    def __init__(self, count: int, probes: Sequence[FastProbe], timeout: float) -> None:
        lib = _library()
        if lib is None:
            raise RuntimeError("probes/native/_http_fast.so is not built: run make native")
        self._lib = lib
        slots = [p.slot for p in probes]
        ip = np.zeros(count, dtype=np.uint32)
        ip[slots] = [int.from_bytes(socket.inet_aton(p.host), "big") for p in probes]
        port = np.zeros(count, dtype=np.uint16)
        port[slots] = [p.port for p in probes]
        cap = np.zeros(count, dtype=np.int64)
        cap[slots] = [p.cap for p in probes]
        keep = np.zeros(count, dtype=np.int64)
        keep[slots] = [p.keep for p in probes]
        head_only = np.zeros(count, dtype=np.uint8)
        head_only[slots] = [p.head_only for p in probes]
        requests: list[bytes] = [b""] * count
        keywords: list[bytes] = [b""] * count
        for p in probes:
            requests[p.slot] = p.request
            keywords[p.slot] = p.keyword or b""
        req_off = _offsets(requests)
        kw_off = _offsets(keywords)
        req_blob = b"".join(requests)
        kw_blob = b"".join(keywords)
        # Kept as attributes: the C code reads these for the life of its context.
        self._tables = (ip, port, req_off, kw_off, cap, keep, head_only)
        self._req_blob = ctypes.create_string_buffer(req_blob, len(req_blob) or 1)
        self._kw_blob = ctypes.create_string_buffer(kw_blob, len(kw_blob) or 1)
        self._ctx = ctypes.c_void_p(
            lib.http_fast_new(
                count,
                ip.ctypes.data,
                port.ctypes.data,
                req_off.ctypes.data,
                ctypes.addressof(self._req_blob),
                kw_off.ctypes.data,
                ctypes.addressof(self._kw_blob),
                cap.ctypes.data,
                keep.ctypes.data,
                head_only.ctypes.data,
                timeout,
            )
        )
        if not self._ctx.value:
            raise OSError("the HTTP fast path could not make its epoll set")
        self._records = np.zeros(RECORDS_PER_POLL, dtype=_RECORD)
        self._arena = np.zeros(RECORDS_PER_POLL * HEAD_BUF, dtype=np.uint8)
        self._records_at = self._records.ctypes.data
        self._arena_at = self._arena.ctypes.data
        self._start = lib.http_fast_start
        self._poll = lib.http_fast_poll
        self.epoll_fd: int = lib.http_fast_epoll_fd(self._ctx)
        self.live = 0  # connections open in the C loop
        self.started = 0  # connections it opened
        self.handed = 0  # connections it handed back to the Python engine

    def start(self, slot: int) -> int:
        """Open a connection for ``slot``: 0 when under way (``live`` counts it), a positive
        errno when the connect failed at once, a negative errno when there was no socket."""
        rc: int = self._start(self._ctx, slot)
        if rc == 0:
            self.live += 1
            self.started += 1
        return rc

    def poll(self) -> list[FastRecord]:
        """Handle ready connections and expired deadlines; up to RECORDS_PER_POLL records
        (call again while a poll returns that many)."""
        n = self._poll(self._ctx, self._records_at, RECORDS_PER_POLL, self._arena_at)
        self.live -= n
        return [FastRecord(*row) for row in self._records[:n].tolist()]

    def handed_bytes(self, record: FastRecord) -> bytes:
        """The head bytes a KIND_HANDBACK record carries (valid until the next poll)."""
        return self._arena[record.hand_off : record.hand_off + record.hand_len].tobytes()

    def close(self) -> None:
        """Close every connection still open and free the C context. Closing again does
        nothing."""
        if self._ctx.value:
            self._lib.http_fast_free(self._ctx)
            self._ctx = ctypes.c_void_p(None)
            self.live = 0


def _offsets(parts: list[bytes]) -> np.ndarray:
    out = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in parts], out=out[1:])
    return out
