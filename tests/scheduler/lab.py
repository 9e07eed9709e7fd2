"""A running lab (real SNMP and HTTP agents on loopback) and its sites sorted by behaviour."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from core.settings import Settings
from lab.behaviour import behaviour_for
from lab.runner import start_lab, stop_lab
from tests.ports import free_port
from tests.results.lab_sites import insert_sites, write_lab_csv

Row = dict[str, str]


@dataclass
class Lab:
    """Lab sites that always answer well (steady) and that never answer (dead)."""

    steady: list[Row]
    dead: list[Row]

    def take(self, steady: int = 0, dead: int = 0) -> list[Row]:
        """Remove and return dead then steady sites (no two tests share a lab address)."""
        got = self.dead[:dead] + self.steady[:steady]
        del self.steady[:steady]
        del self.dead[:dead]
        return got


def _steady(row: Row) -> bool:
    b = behaviour_for(row["site_key"], float(row["bw_down_mbps"]), float(row["bw_up_mbps"]))
    return (
        not b.down
        and b.flap_period_s is None
        and b.slow_delay_s == 0
        and b.wan_oper_status == 1
        and b.http_status == 200
        and not b.fast_rebooter
    )


def _dead(row: Row) -> bool:
    b = behaviour_for(row["site_key"], float(row["bw_down_mbps"]), float(row["bw_up_mbps"]))
    return b.down


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Start real lab agents for 800 sites (plain http) for the tests of one module."""
    tmp = tmp_path_factory.mktemp("lab")
    settings = Settings(var_dir=tmp / "var")
    snmp_port = free_port(socket.SOCK_DGRAM)
    http_port, https_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    rows = write_lab_csv(
        tmp / "lab.csv",
        800,
        snmp_port=snmp_port,
        http_port=http_port,
        https_port=https_port,
        https_every=0,
        first=120_000,
    )
    start_lab(
        settings, tmp / "lab.csv", snmp_port=snmp_port, http_port=http_port, https_port=https_port
    )
    try:
        yield Lab([r for r in rows if _steady(r)], [r for r in rows if _dead(r)])
    finally:
        stop_lab(settings)


def add_lab_sites(engine: Engine, rows: list[Row], *, mun: str | None = None) -> list[int]:
    """Insert lab sites (optionally in municipality ``mun``) and return their ids."""
    insert_sites(engine, rows)
    keys = [r["site_key"] for r in rows]
    with engine.begin() as conn:
        if mun is not None:
            conn.execute(
                text(
                    "UPDATE sites SET mun_cvegeo = m.cvegeo, cve_ent = m.cve_ent, "
                    "geom = ST_PointOnSurface(m.geom) FROM municipalities m "
                    "WHERE m.cvegeo = :m AND sites.site_key = ANY(:keys)"
                ),
                {"m": mun, "keys": keys},
            )
        ids = conn.execute(
            text("SELECT id FROM sites WHERE site_key = ANY(:keys) ORDER BY id"), {"keys": keys}
        ).scalars()
        return [int(i) for i in ids]


def point_site_at(engine: Engine, site_id: int, row: Row) -> None:
    """Make a site's probes reach the lab device of ``row`` (heals or breaks it for real)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE sites SET mgmt_ip = CAST(:ip AS inet), http_url = :url, "
                "snmp_port = :port WHERE id = :id"
            ),
            {
                "ip": row["mgmt_ip"],
                "url": row["http_url"],
                "port": int(row["snmp_port"]),
                "id": site_id,
            },
        )


def fast_settings(settings: Settings, **extra: object) -> Settings:
    """Second-scale scheduling and short probe timeouts for tests."""
    values: dict[str, object] = {
        "probe_interval": 2,
        "probe_batches": 2,
        "snmp_timeout": 1.0,
        "http_timeout": 1.0,
        "probe_retries": 0,
        "scheduler_workers": 4,
        "incident_evaluation_gap_s": 0.0,  # evaluate after every batch of these quick rounds
    }
    values.update(extra)
    return settings.model_copy(update=values)


def settings_env(settings: Settings, var_dir: Path) -> dict[str, str]:
    """CONECTADO_* variables that give a subprocess the same scheduler settings."""
    assert settings.database_url is not None
    return {
        "CONECTADO_DATABASE_URL": settings.database_url.get_secret_value(),
        "CONECTADO_VAR_DIR": str(var_dir),
        "CONECTADO_SNMP_TIMEOUT": str(settings.snmp_timeout),
        "CONECTADO_HTTP_TIMEOUT": str(settings.http_timeout),
        "CONECTADO_PROBE_RETRIES": str(settings.probe_retries),
        "CONECTADO_INCIDENT_EVALUATION_GAP_S": str(settings.incident_evaluation_gap_s),
    }
