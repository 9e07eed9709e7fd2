"""A per-worker cache of read responses (site cards, site searches), kept honest by the
database's change notifications.

Every statement that writes a table those responses read sends ``NOTIFY conectado_changes``
with the table's name (migration 0007); each API worker listens on its own connection.
- An edit empties the cache at once: what a person changed shows in the next read, from any
  worker. Edits are writes to sites, secrets, maintenance windows or the geography (from the
  CLI or anywhere), and every successful write through the API (an acknowledgement, a live
  probe...), which the API announces itself and also applies to its own worker before the
  response leaves.
- New probe data (results, site states, reboots, rollups, the incidents the scheduler opens
  and closes) arrives in batches every second or two while a round runs, so it does not empty
  the cache: it makes every entry built before it expire ``api_cache_probe_lag_seconds`` after
  that entry was built. A card therefore shows
  new probe results at most that late; while nothing is probed, entries live
  ``api_cache_seconds``, which also bounds values relative to now (an open incident's
  duration).
While the listening connection is down the cache is off: it serves nothing rather than
something possibly stale.

Authentication and authorisation run before the cache is asked, so a cached response is only
returned to a caller allowed to see it; cached responses hold no secrets (they never did) and
do not depend on the caller's role.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import psycopg
from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from api.metrics import CACHE
from core.db import libpq_url

log = logging.getLogger("conectado.api")

CHANNEL = "conectado_changes"
CACHE_STATUS = "Cache-Status"  # RFC 9211
GZIP_LEVEL = 3  # ~6x faster than 9 on site JSON (6 ms for 1,000 sites), 27 % larger
PROBE_DATA = frozenset(
    {
        "probe_results",
        "site_status",
        "reboot_events",
        "rollup_site_hourly",
        "rollup_site_daily",
        "api_site_docs",
        # Opened and closed by the scheduler after every probe batch (its statements run even
        # when they change nothing); people's acknowledgements come through the API, whose
        # writes are announced as edits (api.middleware).
        "incidents",
        "incident_sites",
    }
)
EDIT_ANNOUNCEMENT = "api_write"


@dataclass(slots=True, frozen=True)
class Stamp:
    """When a response began to be built, and the cache generation at that moment."""

    generation: int
    taken_at: float


@dataclass(slots=True, frozen=True)
class Cached:
    """One stored response body (gzip-compressed), its media type, and when the data in it
    was read."""

    body: bytes
    media_type: str
    as_of: float


class ReadCache:
    """Bounded LRU of response bodies; see the module's docstring for when entries expire."""

    def __init__(self, ttl_seconds: float, probe_lag_seconds: float, max_bytes: int) -> None:
        self.ttl = ttl_seconds
        self.probe_lag = min(probe_lag_seconds, ttl_seconds)
        self.max_bytes = max_bytes
        self.live = False
        self._generation = 0
        self._probe_data_at = float("-inf")
        self._entries: OrderedDict[Hashable, Cached] = OrderedDict()
        self._bytes = 0

    @property
    def configured(self) -> bool:
        """True when settings turn the cache on."""
        return self.ttl > 0 and self.max_bytes > 0

    @property
    def enabled(self) -> bool:
        """True when the cache may serve: configured on and listening for changes."""
        return self.live and self.configured

    def stamp(self) -> Stamp:
        """Take before reading the database; pass to :meth:`put` with what was read."""
        return Stamp(self._generation, time.monotonic())

    def get(self, key: Hashable) -> Cached | None:
        """Return the entry for ``key`` if it is still fresh, else None."""
        if not self.enabled:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = time.monotonic() - entry.as_of
        if age > self.ttl or (entry.as_of < self._probe_data_at and age > self.probe_lag):
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: Hashable, stamp: Stamp, body: bytes, media_type: str) -> None:
        """Store ``body`` unless an edit arrived since ``stamp`` was taken (it may be stale)."""
        if (
            not self.enabled
            or stamp.generation != self._generation
            or len(body) > self.max_bytes // 4
        ):
            return
        self._drop(key)
        self._entries[key] = Cached(body, media_type, stamp.taken_at)
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def invalidate(self) -> None:
        """Forget every entry and refuse to store responses being built now (an edit)."""
        self._generation += 1
        self._entries.clear()
        self._bytes = 0

    def probe_data_changed(self) -> None:
        """Note that probe data changed now: older entries expire after ``probe_lag``."""
        self._probe_data_at = time.monotonic()

    def changed(self, table: str) -> None:
        """React to a change notification naming ``table``."""
        if table in PROBE_DATA:
            self.probe_data_changed()
        else:
            self.invalidate()

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry.body)


async def listen_for_changes(cache: ReadCache, url: str, *, retry_seconds: float = 1.0) -> None:
    """Keep ``cache`` in step with the database until cancelled.

    Listens on ``conectado_changes`` and hands each notification to the cache. When the
    connection fails the cache is turned off and emptied, and listening resumes (and the cache
    turns back on) once the database answers again.
    """
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                libpq_url(url), autocommit=True, application_name="conectado-api-cache"
            ) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                cache.invalidate()
                cache.live = True
                async for note in conn.notifies():
                    cache.changed(note.payload)
        except (psycopg.Error, OSError) as exc:
            if cache.live:
                log.warning("read cache off: lost the change notifications (%s)", exc)
            cache.live = False
            cache.invalidate()
            await asyncio.sleep(retry_seconds)
        finally:
            cache.live = False


def accepts_gzip(request: Request) -> bool:
    """True when the client takes gzip (the same test as Starlette's GZipMiddleware)."""
    return "gzip" in request.headers.get("Accept-Encoding", "")


def _respond(request: Request, compressed: bytes, media_type: str, status: str) -> Response:
    headers = {CACHE_STATUS: status, "Vary": "Accept-Encoding"}
    if accepts_gzip(request):
        headers["Content-Encoding"] = "gzip"
        return Response(compressed, media_type=media_type, headers=headers)
    return Response(gzip.decompress(compressed), media_type=media_type, headers=headers)


async def cached_or_built(
    request: Request, key: Hashable, build: Callable[[], tuple[str, str] | None]
) -> Response | None:
    """Answer from the worker's read cache, or run ``build`` (blocking; in a worker thread)
    for (body, media type), store it and answer it. None when ``build`` finds nothing.

    Bodies are kept gzip-compressed (a 1,000-site GeoJSON page shrinks from ~930 KB to ~100
    KB, so more of them fit and they leave faster) and sent so to clients that take gzip.
    Call it only after the caller has been authorised for the resource.
    """
    cache: ReadCache = request.app.state.read_cache
    hit = cache.get(key)
    CACHE.labels("miss" if hit is None else "hit").inc()
    if hit is not None:
        return _respond(request, hit.body, hit.media_type, "conectado; hit")
    stamp = cache.stamp()

    def build_compressed() -> tuple[bytes, str] | None:
        built = build()
        if built is None:
            return None
        return gzip.compress(built[0].encode(), compresslevel=GZIP_LEVEL, mtime=0), built[1]

    made = await run_in_threadpool(build_compressed)
    if made is None:
        return None
    compressed, media_type = made
    cache.put(key, stamp, compressed, media_type)
    return _respond(request, compressed, media_type, "conectado; fwd=miss")
