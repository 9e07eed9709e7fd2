"""The FastAPI application factory: ``create_app(settings)``.

The engine is opened in the lifespan and kept on ``app.state`` with the settings; routes get
them through ``api.deps``. Docs (Swagger UI and ReDoc) are served from vendored assets under
/static/docs so they work with no internet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from api.cache import GZIP_LEVEL, ReadCache, listen_for_changes
from api.deps import PrincipalCache
from api.errors import install_error_handlers
from api.middleware import RequestRecorder
from api.openapi import install_openapi
from api.params import reject_unknown_query
from api.queries.sites_json import refresh_site_docs
from api.routes import EXTRA_MODELS, build_routers
from core.settings import Settings, load_settings
from db.connect import open_engine
from maps.assets import STATIC_DIR as MAP_ASSETS

log = logging.getLogger("conectado.api")

STATIC_DIR = Path(__file__).parent / "static"
VERSION = "0.1.0"

DESCRIPTION = """
One service for Mexico Conectado's operators, planners and field technicians: the site
inventory, live status and probes, incidents and maintenance, coverage, maps, and an
OGC API – Features endpoint for GIS clients.

**Authentication**: every endpoint except `/healthz`, `/metrics`, the docs and the OGC landing
needs an API key in the `X-API-Key` header (or `Authorization: Bearer`). Keys have a role —
viewer, technician, planner, operator or admin — that decides what they may do.

**Errors** are `application/problem+json` (RFC 9457) with a `detail` that says what to fix.
"""


def _refresh_docs(engine: Engine) -> int:
    with engine.begin() as conn:
        return refresh_site_docs(conn)


async def _refresh_docs_forever(engine: Engine, interval: float) -> None:
    """Keep api_site_docs current: a cheap check when nothing changed, a rebuild after imports."""
    while True:
        try:
            written = await run_in_threadpool(_refresh_docs, engine)
            if written:
                log.info("rebuilt the cached JSON of %d sites", written)
        except SQLAlchemyError as exc:
            log.warning("could not refresh the cached site JSON: %s", exc)
        await asyncio.sleep(interval)


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    """Build the API for ``settings``; use ``engine`` if given, else open one at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = engine is None
        app.state.engine = (
            open_engine(
                settings, pool_size=settings.api_pool_size, application_name="conectado-api"
            )
            if engine is None
            else engine
        )
        refresher = (
            asyncio.create_task(_refresh_docs_forever(app.state.engine, interval))
            if (interval := settings.api_docs_refresh_seconds) > 0
            else None
        )
        listener = (
            asyncio.create_task(
                listen_for_changes(
                    app.state.read_cache,
                    app.state.engine.url.render_as_string(hide_password=False),
                )
            )
            if app.state.read_cache.configured
            else None
        )
        try:
            yield
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            if refresher is not None:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
            if own:
                app.state.engine.dispose()

    app = FastAPI(
        title="Conectado API",
        version=VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        dependencies=[Depends(reject_unknown_query)],
    )
    app.state.settings = settings
    if engine is not None:  # usable even by clients that skip the lifespan (ASGI test tools)
        app.state.engine = engine
    app.state.principal_cache = PrincipalCache(settings.api_key_cache_seconds)
    app.state.read_cache = ReadCache(
        settings.api_cache_seconds,
        settings.api_cache_probe_lag_seconds,
        settings.api_cache_mb << 20,
    )
    install_error_handlers(app)
    # Field technicians are often on slow links: a 1,000-site page or a map shrinks ~8x.
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=GZIP_LEVEL)
    app.add_middleware(RequestRecorder)
    app.mount("/static/maps", StaticFiles(directory=MAP_ASSETS), name="map-assets")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in build_routers(settings):
        app.include_router(router)
    install_openapi(app, EXTRA_MODELS)

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Conectado API — Swagger UI",
            swagger_js_url="/static/docs/swagger-ui-bundle.js",
            swagger_css_url="/static/docs/swagger-ui.css",
            swagger_favicon_url="/static/docs/favicon-32x32.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="Conectado API — ReDoc",
            redoc_js_url="/static/docs/redoc.standalone.js",
            redoc_favicon_url="/static/docs/favicon-32x32.png",
            with_google_fonts=False,
        )

    return app


def create_app_from_env() -> FastAPI:
    """Build the API from ``CONECTADO_*`` environment variables (uvicorn's factory)."""
    return create_app(load_settings())
