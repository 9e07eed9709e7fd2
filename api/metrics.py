"""Prometheus metrics: API requests (per worker, merged across workers) and platform state.

Request counters and latency histograms live in this process (or, when ``conectado serve``
runs several workers, in prometheus_client's multiprocess files, merged at scrape time).
Platform figures — sites by inventory status and by probe state, probe rounds, probes and
the last round's probes per second — are read from PostgreSQL at scrape time, so every
worker reports the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from api.queries.status import state_counts
from results.current import probe_freshness
from results.incidents import last_evaluation

REQUESTS = Counter(
    "conectado_http_requests",
    "API requests answered, by method, route template and status code.",
    ["method", "route", "status"],
    registry=None,
)
LATENCY = Histogram(
    "conectado_http_request_duration_seconds",
    "Time to answer API requests, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=None,
)
CACHE = Counter(
    "conectado_api_cache_lookups",
    "Site cards and searches answered from the worker's read cache (hit) or built (miss).",
    ["result"],
    registry=None,
)


def record_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request and its duration."""
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)


def _table_exists(conn: Connection, name: str) -> bool:
    return bool(conn.execute(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name}).scalar())


def platform_metrics(conn: Connection) -> Iterator[Metric]:
    """Yield the platform gauges and counters read from the database."""
    by_status = GaugeMetricFamily(
        "conectado_sites", "Sites in the inventory, by inventory status.", labels=["status"]
    )
    for status, count in conn.execute(
        text("SELECT status, count(*) FROM sites GROUP BY status ORDER BY status")
    ):
        by_status.add_metric([status], count)
    yield by_status

    by_state = GaugeMetricFamily(
        "conectado_sites_probe_state",
        "Non-retired sites by current state (unknown: probed, no result yet; unmonitored: "
        "planned or suspended), every state present.",
        labels=["state"],
    )
    for state, count in state_counts(conn).items():
        by_state.add_metric([state], count)
    yield by_state

    rounds = conn.execute(
        text(
            "SELECT count(*) AS n, coalesce(sum(snmp_probes), 0) AS snmp, "
            "coalesce(sum(http_probes), 0) AS http FROM probe_rounds"
        )
    ).one()
    yield CounterMetricFamily("conectado_probe_rounds", "Probe rounds written.", value=rounds.n)
    probes = CounterMetricFamily("conectado_probes", "Probes run, by kind.", labels=["kind"])
    probes.add_metric(["snmp"], rounds.snmp)
    probes.add_metric(["http"], rounds.http)
    yield probes

    last = conn.execute(
        text(
            "SELECT probes_per_s, extract(epoch FROM finished_at) AS finished, "
            "extract(epoch FROM finished_at - started_at) AS seconds, sites "
            "FROM probe_rounds ORDER BY started_at DESC LIMIT 1"
        )
    ).one_or_none()
    if last is not None:
        yield GaugeMetricFamily(
            "conectado_last_round_probes_per_second",
            "Probes per second of the last probe round.",
            value=float(last.probes_per_s or 0.0),
        )
        yield GaugeMetricFamily(
            "conectado_last_round_finished_timestamp_seconds",
            "When the last probe round finished (Unix time).",
            value=float(last.finished),
        )
        yield GaugeMetricFamily(
            "conectado_last_round_duration_seconds",
            "How long the last probe round took.",
            value=float(last.seconds),
        )
        yield GaugeMetricFamily(
            "conectado_last_round_sites", "Sites in the last probe round.", value=last.sites
        )

    fresh = probe_freshness(conn)
    if fresh.oldest_probe_at is not None:
        yield GaugeMetricFamily(
            "conectado_oldest_probe_timestamp_seconds",
            "The oldest last probe of a probeable active or installed site (Unix time); "
            "alert when time() - this exceeds a few probe intervals.",
            value=fresh.oldest_probe_at.timestamp(),
        )
    yield GaugeMetricFamily(
        "conectado_sites_never_probed",
        "Probeable active or installed sites with no probe result yet.",
        value=fresh.never_probed,
    )
    yield GaugeMetricFamily(
        "conectado_sites_without_probe_target",
        "Active or installed sites with neither a management address nor a probe URL.",
        value=fresh.no_probe_target,
    )

    if _table_exists(conn, "incidents"):
        open_incidents = conn.execute(
            text("SELECT count(*) FROM incidents WHERE status = 'open'")
        ).scalar_one()
        yield GaugeMetricFamily(
            "conectado_open_incidents", "Incidents not yet closed.", value=open_incidents
        )
    evaluated = last_evaluation(conn) if _table_exists(conn, "incident_evaluation") else None
    if evaluated is not None:
        yield GaugeMetricFamily(
            "conectado_incidents_evaluated_timestamp_seconds",
            "When incidents were last evaluated (Unix time); alert when time() - this exceeds "
            "a few probe batches: incidents neither open nor close meanwhile.",
            value=evaluated.started_at.timestamp(),
        )
        yield GaugeMetricFamily(
            "conectado_incidents_evaluation_duration_seconds",
            "How long the last incident evaluation took.",
            value=evaluated.seconds,
        )


class PlatformCollector(Collector):
    """Collects platform_metrics from the database at scrape time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterable[Metric]:
        """Return the platform metrics, or an ``up``-style 0 if the database fails."""
        try:
            with self.engine.connect() as conn:
                metrics = list(platform_metrics(conn))
            ok = 1.0
        except SQLAlchemyError:
            metrics, ok = [], 0.0
        metrics.append(
            GaugeMetricFamily(
                "conectado_database_up", "1 if the database answered this scrape.", value=ok
            )
        )
        return metrics


def render_metrics(engine: Engine) -> bytes:
    """Return every metric in the Prometheus text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(REQUESTS)
        registry.register(LATENCY)
        registry.register(CACHE)
    registry.register(PlatformCollector(engine))
    return generate_latest(registry)
