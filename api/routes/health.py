"""Liveness and metrics: ``/healthz`` (is the database reachable) and ``/metrics``."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import EngineDep
from api.errors import problem
from api.metrics import render_metrics

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The service is up and its database answered."""

    status: str
    database: str
    schema_revision: str | None
    database_ms: float


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"description": "The database cannot be reached."}},
    summary="Is the service up and its database reachable?",
)
def healthz(engine: EngineDep) -> Health | Response:
    """Answer 200 when the database answers a query, 503 (problem+json) when it does not."""
    start = time.perf_counter()
    try:
        with engine.connect() as conn:
            revision = conn.execute(
                text(
                    "SELECT CASE WHEN to_regclass('alembic_version') IS NULL THEN NULL "
                    "ELSE (SELECT version_num FROM alembic_version LIMIT 1) END"
                )
            ).scalar_one_or_none()
    except SQLAlchemyError:
        return problem(
            503,
            "The database cannot be reached; check that PostgreSQL is running.",
            title="Database unavailable",
            instance="/healthz",
        )
    return Health(
        status="ok",
        database="ok",
        schema_revision=revision,
        database_ms=round((time.perf_counter() - start) * 1e3, 2),
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
    summary="Prometheus metrics: requests, probe rounds, probes/s, sites by status.",
)
def metrics(engine: EngineDep) -> Response:
    """Return every metric in the Prometheus text format (no key needed, as scrapers expect)."""
    return Response(render_metrics(engine), media_type=CONTENT_TYPE_LATEST)
