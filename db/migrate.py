"""Run alembic migrations programmatically (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from core.db import sqlalchemy_url
from db.trigram import reprice_similarity_tests

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    """Return an alembic Config pointing at our migrations and ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision`` (default: the newest).

    At the newest revision it also restores what a dump and restore drops (``db.trigram``).
    """
    command.upgrade(alembic_config(url), revision)
    if revision == "head":
        engine = create_engine(sqlalchemy_url(url))
        try:
            with engine.begin() as conn:
                reprice_similarity_tests(conn)
        finally:
            engine.dispose()


def head_revision() -> str | None:
    """The newest migration revision in the code."""
    return ScriptDirectory.from_config(alembic_config("postgresql://x/y")).get_current_head()


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at, or None when never migrated."""
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
