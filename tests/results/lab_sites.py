"""Test sites: a small ``--lab`` inventory file, the same sites inserted with SQL, row counts."""

from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy import Engine, text

from lab.inventory import lab_address
from probes.model import LAB_COMMUNITY

COLUMNS = [
    "site_key",
    "mgmt_ip",
    "snmp_port",
    "snmp_community",
    "wan_if_index",
    "wan_if_name",
    "bw_down_mbps",
    "bw_up_mbps",
    "http_url",
]


def write_lab_csv(
    path: Path,
    count: int,
    *,
    snmp_port: int,
    http_port: int,
    https_port: int,
    https_every: int = 10,
    first: int = 0,
) -> list[dict[str, str]]:
    """Write ``count`` lab sites (every ``https_every``-th with an https URL); return rows."""
    rows = []
    for i in range(first, first + count):
        ip = lab_address(i)
        https = https_every and i % https_every == 3
        url = f"https://{ip}:{https_port}/" if https else f"http://{ip}:{http_port}/"
        by_name = i % 20 == 5
        rows.append(
            {
                "site_key": f"TST{i:06d}",
                "mgmt_ip": ip,
                "snmp_port": str(snmp_port),
                "snmp_community": LAB_COMMUNITY,
                "wan_if_index": "" if by_name else "1",
                "wan_if_name": "wan0" if by_name else "",
                "bw_down_mbps": str(20 + i % 80),
                "bw_up_mbps": str(5 + i % 20),
                "http_url": url,
            }
        )
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def insert_sites(engine: Engine, rows: list[dict[str, str]], *, status: str = "active") -> None:
    """Insert the rows as sites (placed near Aguascalientes) with their SNMP communities."""
    with engine.begin() as conn:
        for row in rows:
            site_id = conn.execute(
                text(
                    """
                    INSERT INTO sites (site_key, name, category, geom, status, mgmt_ip,
                        snmp_version, snmp_port, wan_if_index, wan_if_name, http_url,
                        bw_down_mbps, bw_up_mbps)
                    VALUES (:key, :key, 'school', ST_SetSRID(ST_MakePoint(-102.3, 21.9), 4326),
                        :status, CAST(:ip AS inet), '2c', :port, :idx, :name, :url, :down, :up)
                    RETURNING id
                    """
                ),
                {
                    "key": row["site_key"],
                    "status": status,
                    "ip": row["mgmt_ip"],
                    "port": int(row["snmp_port"]),
                    "idx": int(row["wan_if_index"]) if row["wan_if_index"] else None,
                    "name": row["wan_if_name"] or None,
                    "url": row["http_url"] or None,
                    "down": float(row["bw_down_mbps"]),
                    "up": float(row["bw_up_mbps"]),
                },
            ).scalar_one()
            conn.execute(
                text("INSERT INTO site_secrets (site_id, snmp_community) VALUES (:id, :c)"),
                {"id": site_id, "c": row["snmp_community"]},
            )


def round_counts(engine: Engine) -> tuple[int, int, int]:
    """Rows in probe_rounds, probe_results and site_status."""
    with engine.connect() as conn:
        return (
            conn.execute(text("SELECT count(*) FROM probe_rounds")).scalar_one(),
            conn.execute(text("SELECT count(*) FROM probe_results")).scalar_one(),
            conn.execute(text("SELECT count(*) FROM site_status")).scalar_one(),
        )


def writer_has_written(engine: Engine, table: str) -> bool:
    """True when another backend's open transaction has written into ``table``."""
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                    "WHERE c.relname = :table AND l.mode = 'RowExclusiveLock' "
                    "AND l.granted AND l.pid <> pg_backend_pid()"
                ),
                {"table": table},
            ).scalar_one()
        )
