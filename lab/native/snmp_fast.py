"""The lab SNMP agent's compiled fast path (``snmp_fast.c``): its tables and its two calls.

``SnmpFastPath.for_inventory`` lays the inventory out as the C code reads it (one packed
record per site, the addresses sorted for a binary search, the communities in one buffer);
``pump`` reads, answers and sends a batch of datagrams and returns those the Python agent
must handle; ``answer`` answers one datagram (for the tests that compare it with Python).
"""

from __future__ import annotations

import ctypes
import socket
import struct
from dataclasses import dataclass
from typing import Final

import numpy as np

from lab.behaviour import OMEGA, PEAK_UTC_S
from lab.inventory import LabInventory
from lab.native import address_index, load_library

# One C site_t; the C side reports its size, checked at load.
SITE_DTYPE: Final = np.dtype(
    [
        ("flap_period", "f8"),
        ("flap_phase", "f8"),
        ("slow_delay", "f8"),
        ("reboot_period", "f8"),
        ("reboot_phase", "f8"),
        ("in_mean", "f8"),
        ("in_amp", "f8"),
        ("out_mean", "f8"),
        ("out_amp", "f8"),
        ("counter_offset", "u8"),
        ("high_speed_mbps", "i8"),
        ("wan_index", "i4"),
        ("wan_oper", "i4"),
        ("community_off", "i4"),
        ("community_len", "i4"),
        ("down", "u1"),
        ("bits", "u1"),
        ("pad", "u1", (6,)),
    ],
    align=True,
)
STATS: Final = ("requests", "answered", "silent_down", "handed")
BATCH: Final = 32  # datagrams per pump (BATCH in snmp_fast.c)
_MAX_DATAGRAM: Final = 65536
_RECORD: Final = struct.Struct("=4s2xH4s8xI")  # destination, sockaddr_in (port, address), size


class _Table(ctypes.Structure):
    _fields_ = [
        ("sites", ctypes.c_void_p),
        ("addrs", ctypes.c_void_p),
        ("addr_site", ctypes.c_void_p),
        ("communities", ctypes.c_void_p),
        ("omega", ctypes.c_double),
        ("peak", ctypes.c_double),
        ("n_addrs", ctypes.c_int32),
        ("pad", ctypes.c_int32),
    ]


@dataclass(frozen=True, slots=True)
class Handed:
    """A datagram the C code left to the Python agent."""

    data: bytes
    destination: bytes  # packed IPv4 the request was sent to
    source: tuple[str, int]


def _library() -> ctypes.CDLL | None:
    lib = load_library("snmp_fast")
    if lib is None:
        return None
    lib.snmp_fast_site_size.restype = ctypes.c_size_t
    lib.snmp_fast_table_size.restype = ctypes.c_size_t
    lib.snmp_fast_scratch_size.restype = ctypes.c_size_t
    if (
        lib.snmp_fast_site_size() != SITE_DTYPE.itemsize
        or lib.snmp_fast_table_size() != ctypes.sizeof(_Table)
    ):
        raise RuntimeError(
            "lab/native/_snmp_fast.so does not match lab/native/snmp_fast.py; run make native"
        )
    lib.snmp_fast_answer.restype = ctypes.c_int
    lib.snmp_fast_answer.argtypes = [
        ctypes.POINTER(_Table),
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint32,
        ctypes.c_double,
        ctypes.c_void_p,
        ctypes.c_size_t,
    ]
    lib.snmp_fast_pump.restype = ctypes.c_int
    lib.snmp_fast_pump.argtypes = [
        ctypes.POINTER(_Table),
        ctypes.c_int,
        ctypes.c_double,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_size_t),
    ]
    return lib


SILENT: Final = b""  # answer(): the site stays silent


class SnmpFastPath:
    """The compiled GET path over one inventory (read-only; share it between threads)."""

    def __init__(self, lib: ctypes.CDLL, inventory: LabInventory) -> None:
        self.lib = lib
        n = len(inventory)
        sites = np.zeros(n, dtype=SITE_DTYPE)
        behaviours = inventory.behaviours()
        sites["flap_period"] = [b.flap_period_s or 0.0 for b in behaviours]
        for name, attr in (
            ("flap_phase", "flap_phase_s"),
            ("slow_delay", "slow_delay_s"),
            ("reboot_period", "reboot_period_s"),
            ("reboot_phase", "reboot_phase_s"),
            ("in_mean", "in_mean_bps"),
            ("in_amp", "in_amp_bps"),
            ("out_mean", "out_mean_bps"),
            ("out_amp", "out_amp_bps"),
            ("counter_offset", "counter_offset"),
            ("high_speed_mbps", "high_speed_mbps"),
            ("wan_oper", "wan_oper_status"),
            ("down", "down"),
            ("bits", "counter_bits"),
        ):
            sites[name] = [getattr(b, attr) for b in behaviours]
        sites["wan_index"] = [inventory.wan_index(i) for i in range(n)]
        encoded = [c.encode("utf-8") for c in inventory.communities]
        lengths = np.array([len(c) for c in encoded], dtype=np.int64)
        sites["community_len"] = lengths
        sites["community_off"] = np.concatenate(([0], np.cumsum(lengths)[:-1])) if n else []
        self._communities = ctypes.create_string_buffer(b"".join(encoded) or b"\0")
        self._sites = sites
        self._addrs, self._addr_site = address_index(inventory)
        self.table = _Table(
            self._sites.ctypes.data,
            self._addrs.ctypes.data,
            self._addr_site.ctypes.data,
            ctypes.addressof(self._communities),
            OMEGA,
            PEAK_UTC_S,
            n,
            0,
        )

    @classmethod
    def for_inventory(cls, inventory: LabInventory) -> SnmpFastPath | None:
        """Return the fast path over ``inventory``, or None when the library is not built."""
        lib = _library()
        return None if lib is None else cls(lib, inventory)

    def answer(self, data: bytes, destination: bytes, now: float) -> bytes | None:
        """Answer one datagram sent to ``destination`` (packed IPv4) at ``now``.

        Returns the answer, ``SILENT`` when the site stays silent, or None when the Python
        agent must decide.
        """
        out = ctypes.create_string_buffer(4096)
        size = self.lib.snmp_fast_answer(
            ctypes.byref(self.table),
            data,
            len(data),
            int.from_bytes(destination, "big"),
            now,
            out,
            len(out),
        )
        if size < 0:
            return SILENT
        return out.raw[:size] if size > 0 else None


class SnmpPump:
    """One serving loop's buffers for ``SnmpFastPath`` (not to be shared between threads)."""

    def __init__(self, path: SnmpFastPath) -> None:
        self.path = path
        self.stats = np.zeros(len(STATS), dtype=np.int64)
        self._scratch = ctypes.create_string_buffer(path.lib.snmp_fast_scratch_size())
        self._left = ctypes.create_string_buffer(BATCH * (_RECORD.size + _MAX_DATAGRAM))
        self._left_len = ctypes.c_size_t(0)

    def native_stats(self) -> dict[str, int]:
        """What the C code did so far, by name (``STATS``)."""
        return dict(zip(STATS, self.stats.tolist(), strict=True))

    def pump(self, sock: socket.socket, now: float) -> tuple[int, list[Handed]]:
        """Read up to ``BATCH`` datagrams from ``sock``, answer and send what the C code can
        answer at ``now``; return how many were read and those left to the Python agent.

        Raises OSError on a socket error other than "nothing to read".
        """
        got = self.path.lib.snmp_fast_pump(
            ctypes.byref(self.path.table),
            sock.fileno(),
            now,
            self.stats.ctypes.data,
            self._scratch,
            self._left,
            len(self._left),
            ctypes.byref(self._left_len),
        )
        if got < 0:
            err = ctypes.get_errno()
            raise OSError(err, "recvmmsg failed")
        handed: list[Handed] = []
        size = self._left_len.value
        if size:
            raw = ctypes.string_at(self._left, size)
            at = 0
            while at < size:
                destination, port, source, length = _RECORD.unpack_from(raw, at)
                at += _RECORD.size
                handed.append(
                    Handed(
                        raw[at : at + length],
                        destination,
                        (socket.inet_ntoa(source), socket.ntohs(port)),
                    )
                )
                at += length
        return got, handed
