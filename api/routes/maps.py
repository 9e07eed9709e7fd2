"""The three maps as HTML pages (folium, assets served locally under /static/maps).

The national health map of 101,322 sites takes seconds to render, so rendered maps are kept
per worker: the health map for ``api_map_cache_seconds`` (status changes every probe round),
the coverage map until a newer coverage run exists. One render per map at a time; other
requests for the same map wait for it instead of rendering it again.
"""

# No `from __future__ import annotations`: FastAPI reads the parameter annotations at runtime.

import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from api.deps import CoverageReader, EngineDep, Reader, SettingsDep
from api.params import ProviderNames
from api.routes.sites import filter_from_query
from core.settings import Settings
from geo.coverage_queries import latest_run
from maps.coverage_map import render_coverage_map
from maps.health_map import render_health_map
from maps.site_map import render_site_map

ASSET_PREFIX = "/static/maps"
HTML_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}}, "description": "The map as HTML."}
}


class MapCache:
    """Rendered maps by key, each valid until its deadline; one render per key at a time."""

    def __init__(self) -> None:
        self._maps: dict[tuple[object, ...], tuple[float, str]] = {}
        self._locks: dict[tuple[object, ...], threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: tuple[object, ...], ttl: float, render: Callable[[], str]) -> str:
        """Return the cached HTML for ``key`` or render it (others wait for that render)."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            hit = self._maps.get(key)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
            html = render()
            if ttl > 0:
                if len(self._maps) > 64:
                    self._maps.clear()
                self._maps[key] = (time.monotonic() + ttl, html)
            return html


def build_router(settings: Settings) -> APIRouter:
    """The /maps routes."""
    router = APIRouter(prefix="/maps", tags=["maps"])
    cache = MapCache()

    @router.get(
        "/health",
        response_class=HTMLResponse,
        responses=HTML_RESPONSE,
        summary="Health map: every site coloured by current state",
    )
    def health(
        engine: EngineDep,
        cfg: SettingsDep,
        caller: Reader,
        state: Annotated[list[str] | None, Query(description="CVE_ENT codes.")] = None,
        category: Annotated[list[str] | None, Query()] = None,
        provider: ProviderNames = None,
    ) -> HTMLResponse:
        """The clustered map of every non-retired site (or a state's, a category's...)."""
        flt = filter_from_query(
            bbox=None,
            near=None,
            radius_km=None,
            nearest=None,
            municipality=None,
            state=state,
            category=category,
            status=None,
            technology=None,
            provider=provider,
            text=None,
        )
        key = ("health", flt.model_dump_json())
        html = cache.get(
            key,
            cfg.api_map_cache_seconds,
            lambda: render_health_map(engine, cfg, site_filter=flt, prefix=ASSET_PREFIX),
        )
        return HTMLResponse(html)

    @router.get(
        "/coverage",
        response_class=HTMLResponse,
        responses=HTML_RESPONSE,
        summary="Coverage map by municipality",
    )
    def coverage(
        engine: EngineDep,
        cfg: SettingsDep,
        caller: CoverageReader,
        run_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    ) -> HTMLResponse:
        """Coverage % and sites per 10,000 people by municipality, uncovered ones marked."""
        run = _run_id(engine, run_id)
        html = cache.get(
            ("coverage", run),
            24 * 3600.0,
            lambda: render_coverage_map(engine, cfg, run_id=run, prefix=ASSET_PREFIX),
        )
        return HTMLResponse(html)

    @router.get(
        "/sites/{site_key}",
        response_class=HTMLResponse,
        responses=HTML_RESPONSE,
        summary="Site map: the site, its neighbours within 10 km, its municipality",
    )
    def site(
        engine: EngineDep,
        cfg: SettingsDep,
        caller: Reader,
        site_key: Annotated[str, Path(min_length=1, max_length=100)],
    ) -> HTMLResponse:
        """The technician's map around one site (rendered on every request: it is small)."""
        return HTMLResponse(render_site_map(engine, cfg, site_key, prefix=ASSET_PREFIX))

    return router


def _run_id(engine: Engine, run_id: int | None) -> int | None:
    if run_id is not None:
        return run_id
    with engine.connect() as conn:
        run = latest_run(conn)
    return None if run is None else run.id
