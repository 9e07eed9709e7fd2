"""The API's routers, in the order they are mounted."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.routes import coverage, health, keys, maps, ogc, operations, pages, sites
from core.settings import Settings

EXTRA_MODELS: list[type[BaseModel]] = [*sites.EXTRA_MODELS, *ogc.EXTRA_MODELS]


def build_routers(settings: Settings) -> list[APIRouter]:
    """Every router of the API for ``settings``, in mounting order."""
    return [
        health.router,
        keys.router,
        operations.router,
        sites.build_router(settings),
        coverage.build_router(settings),
        ogc.build_router(settings),
        maps.build_router(settings),
        pages.router,
    ]
