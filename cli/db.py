"""``conectado db``: the embedded cluster and migrations."""

from __future__ import annotations

import typer

from cli.common import console, friendly_errors, settings
from core.db import libpq_url
from db.cluster import EmbeddedCluster
from db.connect import database_url
from db.migrate import current_revision, head_revision, upgrade

app = typer.Typer(
    help="The database: embedded PostgreSQL+PostGIS cluster and migrations.", no_args_is_help=True
)


def _cluster() -> EmbeddedCluster:
    cfg = settings()
    if cfg.database_url is not None:
        console.print("CONECTADO_DATABASE_URL is set: the embedded cluster is not used.")
        raise typer.Exit(0)
    return EmbeddedCluster(cfg)


@app.command()
@friendly_errors
def start() -> None:
    """Create (first time) and start the embedded cluster; print its URL."""
    url = _cluster().start()
    console.print(f"Embedded PostgreSQL is running: {libpq_url(url)}")


@app.command()
@friendly_errors
def stop() -> None:
    """Stop the embedded cluster."""
    was_running = _cluster().stop()
    console.print("Stopped." if was_running else "It was not running.")


@app.command()
@friendly_errors
def status() -> None:
    """Say whether the embedded cluster exists and runs, where, and on which port."""
    st = _cluster().status()
    console.print(f"data folder: {st.data_dir}")
    console.print(f"initialised: {'yes' if st.initialised else 'no'}")
    console.print(f"running:     {'yes' if st.running else 'no'}")
    if st.port:
        console.print(f"port:        {st.port}")
    if st.url:
        console.print(f"url:         {libpq_url(st.url)}")
    if st.running:
        url = database_url(settings(), start=False)
        console.print(
            f"schema:      {current_revision(url) or 'not migrated'} (code: {head_revision()})"
        )


@app.command()
@friendly_errors
def url() -> None:
    """Print the database URL (libpq form, usable by psql), starting the cluster if needed."""
    typer.echo(libpq_url(database_url(settings())))


@app.command()
@friendly_errors
def migrate() -> None:
    """Run the alembic migrations up to the newest revision."""
    db_url = database_url(settings())
    before = current_revision(db_url)
    upgrade(db_url)
    after = current_revision(db_url)
    console.print(f"Schema at {after}" + ("" if before == after else f" (was {before})."))
