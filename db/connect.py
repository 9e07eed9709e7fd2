"""Resolve which database to use: the user's URL, or the embedded cluster, started on demand."""

from __future__ import annotations

from sqlalchemy import Engine

from core.db import make_engine
from core.settings import Settings
from db.cluster import EmbeddedCluster


def database_url(settings: Settings, *, start: bool = True) -> str:
    """Return the database URL: ``CONECTADO_DATABASE_URL`` if set, else the embedded cluster's.

    With ``start`` the embedded cluster is created and started when it is not running.
    """
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    cluster = EmbeddedCluster(settings)
    return cluster.start() if start else cluster.url()


def open_engine(
    settings: Settings,
    *,
    pool_size: int = 10,
    application_name: str = "conectado",
) -> Engine:
    """Return an engine on the configured database, starting the embedded one if needed."""
    return make_engine(
        database_url(settings), pool_size=pool_size, application_name=application_name
    )
