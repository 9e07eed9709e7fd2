"""Keeping Python's cyclic garbage collector out of the hot loops.

A probe round holds ~100,000 targets and builds ~200,000 outcomes. CPython's cyclic collector
walks every tracked object on each full collection, and the allocations of a round trigger
several: measured on the HTTP engine against the lab (95,279 probes), the collector took
~4 of 11 CPU-seconds of user time. The hot paths make no reference cycles (refcounting
frees their garbage), so pausing the collector for the duration of a round loses nothing;
it runs once when the round is over.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block; restore it and collect once after.

    Nested use is safe: only the outermost block re-enables the collector (and only if it
    was enabled when that block began).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
            gc.collect()


def freeze_long_lived() -> None:
    """Move every object alive now out of the collector's sight (for servers after start-up).

    A lab agent keeps ~100,000 site objects for its whole life; frozen, they are no longer
    walked by each full collection, while per-request garbage is still collected.
    """
    gc.collect()
    gc.freeze()
