"""The lab HTTP agent's compiled accept loop (``http_fast.c``): its tables and its call.

``HttpFastPath.for_inventory`` lays the inventory out as the C code reads it (the addresses
sorted for a binary search with each one's site beside it, per-site flags, status and flap
period and phase, the site keys in one buffer) together with the slots where the C code
leaves the connections it hands back. ``accept`` runs one batch of accepts on the plain-HTTP
listener and returns what the Python agent (lab/http_agent.py) must carry on with.
"""

from __future__ import annotations

import ctypes
import socket
from dataclasses import dataclass
from typing import Final

import numpy as np

from lab.inventory import LabInventory
from lab.native import address_index, load_library

ACCEPTS_PER_CALL: Final = 256  # as HttpAgent._accept's pure-Python loop
NATIVE_STATUSES: Final = frozenset({200, 500, 503})  # those http_fast.c knows the reason of
MAX_NATIVE_KEY: Final = 1024  # longer site keys are answered by Python (see MAX_RESPONSE)
COUNTS: Final = ("accepted", "answered", "reset", "handed", "dropped")

SITE_DOWN: Final = 1
SITE_NATIVE: Final = 2
HAND_READ: Final = 0  # data: the request bytes read so far (maybe none)
HAND_WRITE: Final = 1  # data: the answer bytes still to send
HAND_NEW: Final = 2  # nothing was done (not even the site lookup)
_ACCEPT_ERRNO: Final = 5  # counts[] index of the errno that stopped the accept loop


class _Table(ctypes.Structure):
    """table_t in http_fast.c (its size is checked at load)."""

    _fields_ = [
        ("addrs", ctypes.c_void_p),
        ("addr_site", ctypes.c_void_p),
        ("flags", ctypes.c_void_p),
        ("status", ctypes.c_void_p),
        ("flap_period", ctypes.c_void_p),
        ("flap_phase", ctypes.c_void_p),
        ("keys", ctypes.c_void_p),
        ("key_offsets", ctypes.c_void_p),
        ("hand_fd", ctypes.c_void_p),
        ("hand_site", ctypes.c_void_p),
        ("hand_kind", ctypes.c_void_p),
        ("hand_len", ctypes.c_void_p),
        ("hand_buf", ctypes.c_void_p),
        ("counts", ctypes.c_int64 * 6),
        ("n_addrs", ctypes.c_int32),
        ("max_accept", ctypes.c_int32),
    ]


@dataclass(frozen=True, slots=True)
class Handed:
    """An accepted connection the C code left to the Python agent.

    ``kind`` says what ``data`` is: HAND_READ the request bytes already read (the agent goes
    on reading and answers), HAND_WRITE the answer bytes not yet sent (the agent sends them
    and closes), HAND_NEW nothing done yet (the agent looks the site up itself).
    """

    fd: int
    site: int | None  # None: the address is not in the inventory
    kind: int
    data: bytes


def _library() -> ctypes.CDLL | None:
    lib = load_library("http_fast")
    if lib is None:
        return None
    lib.http_fast_table_size.restype = ctypes.c_size_t
    lib.http_fast_max_request.restype = ctypes.c_size_t
    if lib.http_fast_table_size() != ctypes.sizeof(_Table):
        raise RuntimeError(
            "lab/native/_http_fast.so does not match lab/native/http_fast.py; run make native"
        )
    lib.http_fast_accept.restype = ctypes.c_int
    lib.http_fast_accept.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_double]
    lib.http_fast_py_mod.restype = ctypes.c_double
    lib.http_fast_py_mod.argtypes = [ctypes.c_double, ctypes.c_double]
    return lib


class HttpFastPath:
    """The compiled accept loop over one inventory, with its own hand-back slots.

    One per serving loop (the slots are overwritten by each ``accept``); the tables are
    owned here and stay alive as long as this object.
    """

    def __init__(self, lib: ctypes.CDLL, inventory: LabInventory) -> None:
        self.lib = lib
        self.max_request = int(lib.http_fast_max_request())
        n = len(inventory)
        behaviours = inventory.behaviours()
        encoded = [key.encode() for key in inventory.site_keys]
        self._flags = np.array(
            [
                SITE_DOWN
                if b.down
                else SITE_NATIVE
                if b.slow_delay_s == 0
                and b.http_status in NATIVE_STATUSES
                and len(key) <= MAX_NATIVE_KEY
                else 0
                for b, key in zip(behaviours, encoded, strict=True)
            ],
            dtype=np.uint8,
        )
        self._status = np.array([b.http_status for b in behaviours], dtype=np.int32)
        self._flap_period = np.array([b.flap_period_s or 0.0 for b in behaviours], dtype=np.float64)
        self._flap_phase = np.array([b.flap_phase_s for b in behaviours], dtype=np.float64)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(key) for key in encoded], out=offsets[1:])
        if offsets[-1] >= 2**32:
            raise ValueError("the site keys take more than 4 GB")
        self._key_offsets = offsets.astype(np.uint32)
        self._keys = np.frombuffer(b"".join(encoded) or b"\0", dtype=np.uint8)
        self._addrs, self._addr_site = address_index(inventory)
        self._hand_fd = np.zeros(ACCEPTS_PER_CALL, dtype=np.int32)
        self._hand_site = np.zeros(ACCEPTS_PER_CALL, dtype=np.int32)
        self._hand_kind = np.zeros(ACCEPTS_PER_CALL, dtype=np.int32)
        self._hand_len = np.zeros(ACCEPTS_PER_CALL, dtype=np.int32)
        self._hand_buf = np.zeros(ACCEPTS_PER_CALL * self.max_request, dtype=np.uint8)
        self.table = _Table(
            addrs=self._addrs.ctypes.data,
            addr_site=self._addr_site.ctypes.data,
            flags=self._flags.ctypes.data,
            status=self._status.ctypes.data,
            flap_period=self._flap_period.ctypes.data,
            flap_phase=self._flap_phase.ctypes.data,
            keys=self._keys.ctypes.data,
            key_offsets=self._key_offsets.ctypes.data,
            hand_fd=self._hand_fd.ctypes.data,
            hand_site=self._hand_site.ctypes.data,
            hand_kind=self._hand_kind.ctypes.data,
            hand_len=self._hand_len.ctypes.data,
            hand_buf=self._hand_buf.ctypes.data,
            n_addrs=n,
            max_accept=ACCEPTS_PER_CALL,
        )
        self._table_address = ctypes.addressof(self.table)
        self._accept = lib.http_fast_accept
        self.counts = dict.fromkeys(COUNTS, 0)

    @classmethod
    def for_inventory(cls, inventory: LabInventory) -> HttpFastPath | None:
        """Return the fast path over ``inventory``, or None when the library is not built."""
        lib = _library()
        return None if lib is None else cls(lib, inventory)

    def py_mod(self, x: float, y: float) -> float:
        """Python's ``x % y`` for ``y > 0`` as the C code computes it (for the tests)."""
        return float(self.lib.http_fast_py_mod(x, y))

    def accept(self, listener: socket.socket, now: float) -> tuple[int, list[Handed], int]:
        """Accept up to ``ACCEPTS_PER_CALL`` connections from the non-blocking plain-HTTP
        ``listener`` and serve them as the sites behave at ``now`` (Unix seconds).

        Returns how many the C code answered completely (the agent's ``served``), the
        connections handed back (each an open descriptor the caller now owns), and the errno
        (out of descriptors or memory) that stopped the accepts, else 0. ``counts`` adds up
        every call's counts.
        """
        handed = self._accept(self._table_address, listener.fileno(), now)
        counts = self.table.counts
        for name, value in zip(COUNTS, counts, strict=False):
            self.counts[name] += value
        out: list[Handed] = []
        if handed:
            size = self.max_request
            buf = self._hand_buf
            for slot, fd, site, kind, length in zip(
                range(handed),
                self._hand_fd[:handed].tolist(),
                self._hand_site[:handed].tolist(),
                self._hand_kind[:handed].tolist(),
                self._hand_len[:handed].tolist(),
                strict=True,
            ):
                at = slot * size
                data = buf[at : at + length].tobytes()
                out.append(Handed(fd, site if site >= 0 else None, kind, data))
        return int(counts[1]), out, int(counts[_ACCEPT_ERRNO])
