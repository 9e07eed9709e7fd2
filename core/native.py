"""Loading the project's compiled fast paths (C, built by ``make native``, loaded with ctypes).

Each lives beside its Python package as ``<package>/native/<name>.c`` and builds to
``_<name>.so`` there. A library that is missing, or older than its source, is not loaded: the
caller then runs its pure-Python path, which defines the behaviour the C code is tested
against.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

log = logging.getLogger("conectado.native")


def load_compiled(directory: Path, name: str, without: str) -> ctypes.CDLL | None:
    """Return the library ``directory/_<name>.so``, or None (logged, saying ``without``: what
    runs instead) when it is not built, is older than ``directory/<name>.c``, or cannot be
    loaded."""
    path = directory / f"_{name}.so"
    source = directory / f"{name}.c"
    shown = f"{directory.parent.name}/{directory.name}/{path.name}"
    if not path.exists():
        log.warning("%s is not built (run make native): %s", shown, without)
        return None
    if source.exists() and source.stat().st_mtime > path.stat().st_mtime:
        log.warning("%s is older than %s (run make native): %s", shown, source.name, without)
        return None
    try:
        return ctypes.CDLL(str(path), use_errno=True)
    except OSError as exc:  # a broken build, or no file descriptor left to open it
        log.warning("%s cannot be loaded (%s): %s", shown, exc, without)
        return None
