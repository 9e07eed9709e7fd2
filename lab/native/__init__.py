"""Compiled fast paths of the lab agents (C, loaded with ctypes), and where to find them.

The lab's agents stand in for 100,000 remote devices on the prober's own machine, so every
CPU-second they spend is taken from the round they help to measure; in the field that CPU is
the devices'. Their common cases (a GET of a site's counters, a plain HTTP page) are answered
by small C loops. Everything else (slow and silent sites, walks, TLS, unknown addresses,
malformed requests...) is handed to the Python agents, which define the behaviour; the C
answers are tested byte for byte against theirs (``tests/lab/test_lab_native_snmp.py`` and
``tests/lab/test_lab_native_http.py``).

``make`` builds each library (``lab/native/_<name>.so`` from ``<name>.c``, with gcc). When one
is missing, or ``CONECTADO_LAB_NATIVE=false``, the agents run in pure Python.
"""

from __future__ import annotations

import ctypes
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from core.native import load_compiled

if TYPE_CHECKING:
    from lab.inventory import LabInventory

NATIVE_DIR: Final = Path(__file__).resolve().parent


@cache
def load_library(name: str) -> ctypes.CDLL | None:
    """Return the compiled library ``name``, or None (logged once) when it is not built.

    A library older than its source is not used either: it would answer with the old code.
    """
    return load_compiled(NATIVE_DIR, name, "the agent runs in pure Python")


def address_index(inventory: LabInventory) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int32]]:
    """Return the inventory's host-order IPv4 addresses sorted, and each one's site index: the
    table the C code finds a site in by binary search (``lab_find_site`` in lab_common.h)."""
    if not len(inventory):
        return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int32)
    addresses = np.frombuffer(inventory.addresses, dtype=np.uint32)
    order = np.argsort(addresses, kind="stable")
    return (
        np.ascontiguousarray(addresses[order], dtype=np.uint32),
        np.ascontiguousarray(order, dtype=np.int32),
    )
