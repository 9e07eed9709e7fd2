"""``conectado serve``: run the API and pages with uvicorn."""

from __future__ import annotations

import os
import shutil

import typer
import uvicorn

from cli.common import console, friendly_errors, settings
from core.db import libpq_url
from core.errors import SetupError
from db.connect import database_url
from db.migrate import current_revision, head_revision


@friendly_errors
def serve(
    host: str = typer.Option(None, "--host", help="Address to listen on (CONECTADO_API_HOST)."),
    port: int = typer.Option(None, "--port", help="Port (CONECTADO_API_PORT)."),
    workers: int = typer.Option(
        None, "--workers", min=1, help="uvicorn worker processes (CONECTADO_API_WORKERS)."
    ),
    access_log: bool = typer.Option(True, help="Log one line per request."),
) -> None:
    """Serve the API, docs and pages until interrupted (Ctrl-C)."""
    cfg = settings()
    url = database_url(cfg)
    revision, head = current_revision(url), head_revision()
    if revision != head:
        raise SetupError(
            f"the database schema is at {revision or 'nothing'}, the code needs {head}: "
            "run `conectado db migrate` first."
        )
    host = host or cfg.api_host
    port = port or cfg.api_port
    workers = workers or cfg.api_workers
    # Worker processes read their settings from the environment: hand them the resolved URL
    # so they do not each try to start the embedded cluster.
    os.environ["CONECTADO_DATABASE_URL"] = url
    if workers > 1:
        metrics_dir = cfg.path(cfg.var_dir) / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    console.print(
        f"Conectado API on http://{host}:{port}/  (docs /docs, {workers} worker"
        f"{'s' if workers > 1 else ''}, database {libpq_url(url).split('@')[-1]})"
    )
    uvicorn.run(
        "api.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_level="info",
        server_header=False,
        # A worker importing the app (pandas, geopandas, pysnmp) on a busy 2-core machine can
        # take longer than uvicorn's 5 s default; being killed for it would loop forever.
        timeout_worker_healthcheck=60,
    )
