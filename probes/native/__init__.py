"""The prober's compiled fast path (C, loaded with ctypes): see ``probes.native.http_fast``.

``make native`` builds ``probes/native/_http_fast.so`` from ``http_fast.c`` with gcc. Without
it, or with ``CONECTADO_HTTP_NATIVE=false``, every HTTP probe runs in the Python engine
(``probes.http``), which defines the behaviour the C code is tested against.
"""

from __future__ import annotations

import ctypes
from functools import cache
from pathlib import Path
from typing import Final

from core.native import load_compiled

NATIVE_DIR: Final = Path(__file__).resolve().parent


@cache
def load_library(name: str) -> ctypes.CDLL | None:
    """Return the compiled library ``name``, or None (logged once) when it is not built."""
    return load_compiled(NATIVE_DIR, name, "HTTP probes run in the Python engine only")
