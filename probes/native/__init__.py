"""The prober's compiled fast paths (C, loaded with ctypes): ``probes.native.http_fast`` and
``probes.native.snmp_fast``.

``make native`` builds ``probes/native/_<name>.so`` from ``<name>.c`` with gcc. Without them,
or with ``CONECTADO_HTTP_NATIVE=false`` / ``CONECTADO_SNMP_NATIVE=false``, every probe runs in
the Python engines (``probes.http``, ``probes.snmp``), which define the behaviour the C code is
tested against.
"""

from __future__ import annotations

import ctypes
from functools import cache
from pathlib import Path
from typing import Final

from core.native import load_compiled

NATIVE_DIR: Final = Path(__file__).resolve().parent


@cache
def load_library(name: str, without: str) -> ctypes.CDLL | None:
    """Return the compiled library ``name``, or None (logged once, saying ``without``: what
    runs instead) when it is not built."""
    return load_compiled(NATIVE_DIR, name, without)
