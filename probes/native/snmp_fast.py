"""The SNMP prober's compiled loop (``snmp_fast.c``): its slots, its records, its calls.

``SnmpFastPath`` owns one IPv4 UDP socket and up to ``slots`` v2c GET stages in progress:
``start`` sends a stage's first attempt from a registered message template, ``poll`` reads
answers, retries and times out attempts, and returns what happened as ``FastRecord`` facts.
``probes.snmp._V2cRound`` turns those into outcomes with its own rules, and runs its own
per-datagram rules on every datagram the C code hands back (``KIND_DATAGRAM``).
"""

from __future__ import annotations

import ctypes
from typing import Final, NamedTuple

import numpy as np

from probes import ber
from probes.native import load_library

RECORDS_PER_POLL: Final = 256
MAX_DATAGRAM: Final = 16_384  # as in snmp_fast.c (and probes.snmp)
MAX_SLOTS: Final = 16_384
MAX_RETRIES: Final = 3
RID_BASE: Final = 0x0100_0000

KIND_ANSWER: Final = 0
KIND_RETRY: Final = 1
KIND_TIMEOUT: Final = 2
KIND_REFUSED: Final = 3
KIND_UNREACHABLE: Final = 4
KIND_SEND_FAILED: Final = 5
KIND_DATAGRAM: Final = 6

FLUSH_RECORDS: Final = 1  # records wait: poll soon
FLUSH_BLOCKED: Final = 2  # datagrams wait for the socket to be writable

_RECORD: Final = np.dtype(
    [
        ("slot", "<i4"),
        ("kind", "<i4"),
        ("err", "<i4"),
        ("tries", "<i4"),
        ("rid", "<u4"),
        ("src_ip", "<u4"),
        ("src_port", "<i4"),
        ("data_len", "<i4"),
        ("data_off", "<i8"),
        ("error_status", "<i8"),
        ("error_index", "<i8"),
        ("v0", "<i8"),
        ("v1", "<i8"),
        ("v2", "<i8"),
        ("v3", "<i8"),
        ("v4", "<i8"),
        ("t0", "u1"),
        ("t1", "u1"),
        ("t2", "u1"),
        ("t3", "u1"),
        ("t4", "u1"),
        ("pad", "V3"),
        ("sent_at", "<f8"),
        ("arrival", "<f8"),
    ]
)
_FIELDS: Final = [name for name in _RECORD.fields or () if name != "pad"]  # FastRecord's


class FastRecord(NamedTuple):
    """What happened to one slot (``record_t`` in snmp_fast.c).

    ``KIND_ANSWER``: ``error_status``, ``error_index``, and tags ``t0..t4`` with values
    ``v0..v4`` (unsigned types as their 64-bit two's-complement pattern; 0 for exceptions
    and NULL). ``tries`` is the retries sent in the stage. ``KIND_DATAGRAM``: ``slot`` is the
    slot the datagram may answer when it arrived (-1: none), ``rid`` the id the C code read
    (0: none), ``src_ip``/``src_port`` its source, and its bytes are at ``data_off`` of the
    poll's arena. Times are wall-clock seconds (``time.time``); ``sent_at`` is the send time
    of the attempt answered.
    """

    slot: int
    kind: int
    err: int
    tries: int
    rid: int
    src_ip: int
    src_port: int
    data_len: int
    data_off: int
    error_status: int
    error_index: int
    v0: int
    v1: int
    v2: int
    v3: int
    v4: int
    t0: int
    t1: int
    t2: int
    t3: int
    t4: int
    sent_at: float
    arrival: float


def _library() -> ctypes.CDLL | None:
    lib = load_library("snmp_fast", "SNMP v2c probes run in the Python engine only")
    if lib is None:
        return None
    lib.snmp_fast_record_size.restype = ctypes.c_size_t
    if lib.snmp_fast_record_size() != _RECORD.itemsize:
        raise RuntimeError(
            "probes/native/_snmp_fast.so does not match snmp_fast.py (record size): run make"
        )
    lib.snmp_fast_new.restype = ctypes.c_void_p
    lib.snmp_fast_new.argtypes = [ctypes.c_int, ctypes.c_double, ctypes.c_int]
    lib.snmp_fast_fd.restype = ctypes.c_int
    lib.snmp_fast_fd.argtypes = [ctypes.c_void_p]
    lib.snmp_fast_template.restype = ctypes.c_int
    lib.snmp_fast_template.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_void_p,
    ]
    lib.snmp_fast_start.restype = ctypes.c_int
    lib.snmp_fast_start.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_uint32,
        ctypes.c_int,
    ]
    lib.snmp_fast_cancel.restype = None
    lib.snmp_fast_cancel.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.snmp_fast_unhold.restype = None
    lib.snmp_fast_unhold.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.snmp_fast_lookup.restype = ctypes.c_int
    lib.snmp_fast_lookup.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.POINTER(ctypes.c_double),
    ]
    lib.snmp_fast_flush.restype = ctypes.c_int
    lib.snmp_fast_flush.argtypes = [ctypes.c_void_p]
    lib.snmp_fast_counters.restype = None
    lib.snmp_fast_counters.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.snmp_fast_poll.restype = ctypes.c_int
    lib.snmp_fast_poll.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.snmp_fast_free.restype = None
    lib.snmp_fast_free.argtypes = [ctypes.c_void_p]
    return lib


def fast_path_available() -> bool:
    """True when the compiled loop is built and current."""
    return _library() is not None


def fits_fast_path(retries: int, concurrency: int) -> bool:
    """True when a call with these settings can run its IPv4 GETs in C."""
    return 0 <= retries <= MAX_RETRIES and concurrency <= MAX_SLOTS


class SnmpFastPath:
    """The C loop over ``slots`` slots, with one timeout and retry count for all."""

    def __init__(self, slots: int, timeout: float, retries: int) -> None:
        lib = _library()
        if lib is None:
            raise RuntimeError("probes/native/_snmp_fast.so is not built: run make native")
        self._lib = lib
        ctx = lib.snmp_fast_new(slots, timeout, retries)
        if not ctx:
            errno = ctypes.get_errno()
            raise OSError(errno, "the SNMP fast path could not make its socket")
        self._ctx = ctypes.c_void_p(ctx)
        self.fd: int = lib.snmp_fast_fd(self._ctx)
        self._records = np.zeros(RECORDS_PER_POLL, dtype=_RECORD)
        self._arena = np.zeros(RECORDS_PER_POLL * MAX_DATAGRAM, dtype=np.uint8)
        self._records_at = self._records.ctypes.data
        self._arena_at = self._arena.ctypes.data
        self._templates: dict[int, int] = {}  # id(RequestTemplate) -> C template number
        self._kept: list[ber.RequestTemplate] = []  # keeps those ids unique
        self._start = lib.snmp_fast_start
        self._poll = lib.snmp_fast_poll
        self._cancel = lib.snmp_fast_cancel
        self._unhold = lib.snmp_fast_unhold
        self._flush = lib.snmp_fast_flush
        self._sent_at = ctypes.c_double()

    def template(self, template: ber.RequestTemplate) -> int | None:
        """The C number of ``template`` (a GET of five OIDs), registered on first use; None
        for a message too long for the loop's send buffers (a very long community)."""
        number = self._templates.get(id(template))
        if number is None:
            prefix, suffix = template.parts()
            tlvs = template.oid_tlvs
            lengths = (ctypes.c_int32 * len(tlvs))(*(len(t) for t in tlvs))
            message = prefix + bytes(4) + suffix
            number = self._lib.snmp_fast_template(
                self._ctx,
                message,
                len(message),
                len(prefix),
                template.community,
                len(template.community),
                b"".join(tlvs),
                lengths,
            )
            if number == -2:
                return None
            if number < 0:
                raise MemoryError("the SNMP fast path could not keep a message template")
            self._templates[id(template)] = number
            self._kept.append(template)
        return number

    def start(self, slot: int, template: int, ip: int, port: int) -> int:
        """Start a stage of idle ``slot``: its first attempt goes out at the next ``flush`` (or
        poll). 0, or ENOMEM (the slot stays idle)."""
        rc: int = self._start(self._ctx, slot, template, ip, port)
        if rc < 0:
            raise ValueError(f"slot {slot} or template {template} is not valid, or in use")
        return rc

    def cancel(self, slot: int) -> None:
        """Stop waiting for ``slot``: the Python engine took its answer."""
        self._cancel(self._ctx, slot)

    def unhold(self, slot: int) -> None:
        """Go on waiting for ``slot`` if it was held for a handed-back datagram."""
        self._unhold(self._ctx, slot)

    def lookup(self, rid: int) -> tuple[int, float]:
        """(slot, send time) of the attempt ``rid`` names when its stage is in progress, else
        (-1, 0.0)."""
        if not RID_BASE <= rid <= 0xFFFF_FFFF:
            return -1, 0.0
        slot: int = self._lib.snmp_fast_lookup(self._ctx, rid, ctypes.byref(self._sent_at))
        return (slot, self._sent_at.value) if slot >= 0 else (-1, 0.0)

    def flush(self) -> int:
        """Send the attempts started or retried since the last flush, many per system call;
        FLUSH_RECORDS and FLUSH_BLOCKED say what then waits."""
        state: int = self._flush(self._ctx)
        return state

    def poll(self) -> list[FastRecord]:
        """Read answers, handle deadlines, send what was queued; up to RECORDS_PER_POLL
        records (call again while a poll returns that many)."""
        n = self._poll(self._ctx, self._records_at, RECORDS_PER_POLL, self._arena_at)
        if not n:
            return []
        return [FastRecord(*row) for row in self._records[_FIELDS][:n].tolist()]

    def datagram(self, record: FastRecord) -> bytes:
        """The bytes a KIND_DATAGRAM record carries (valid until the next poll)."""
        return self._arena[record.data_off : record.data_off + record.data_len].tobytes()

    def counters(self) -> tuple[int, int, int, int]:
        """(requests sent, oversized datagrams, ICMP errors read, send errors) so far."""
        out = (ctypes.c_int64 * 4)()
        self._lib.snmp_fast_counters(self._ctx, out)
        return out[0], out[1], out[2], out[3]

    def close(self) -> None:
        """Close the socket and free the C context. Closing again does nothing."""
        if self._ctx.value:
            self._lib.snmp_fast_free(self._ctx)
            self._ctx = ctypes.c_void_p(None)
