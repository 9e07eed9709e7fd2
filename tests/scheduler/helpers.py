"""Small SQL helpers shared by the scheduler tests (sites, statuses, raw results)."""

from __future__ import annotations

from sqlalchemy import Connection, text


def add_site(
    conn: Connection,
    key: str,
    *,
    mun: str = "09015",
    provider: str | None = "Telmex",
    status: str = "active",
    bw_down: float | None = 50.0,
    bw_up: float | None = 10.0,
    mgmt_ip: str | None = None,
    http_url: str | None = None,
) -> int:
    """Insert one site in municipality ``mun`` and return its id."""
    return int(
        conn.execute(
            text(
                "INSERT INTO sites (site_key, name, category, geom, mun_cvegeo, cve_ent, status, "
                "provider, bw_down_mbps, bw_up_mbps, mgmt_ip, snmp_version, http_url) "
                "SELECT :k, 'Site ' || :k, 'school', ST_PointOnSurface(m.geom), m.cvegeo, "
                "m.cve_ent, :st, :p, :bd, :bu, CAST(:ip AS inet), "
                "CASE WHEN :ip IS NULL THEN NULL ELSE '2c' END, :url "
                "FROM municipalities m WHERE m.cvegeo = :m RETURNING id"
            ),
            {
                "k": key,
                "m": mun,
                "st": status,
                "p": provider,
                "bd": bw_down,
                "bu": bw_up,
                "ip": mgmt_ip,
                "url": http_url,
            },
        ).scalar_one()
    )


def insert_raw_results(conn: Connection, rows: list[dict[str, object]]) -> None:
    """Write raw probe rows (dicts with probe_results columns) into their daily partitions."""
    if not rows:
        return
    days = sorted({r["ts"].date() for r in rows})  # type: ignore[attr-defined]
    conn.execute(
        text("SELECT ensure_probe_results_partitions(:a, :b)"), {"a": days[0], "b": days[-1]}
    )
    cols = list(rows[0])
    conn.execute(
        text(
            f"INSERT INTO probe_results ({', '.join(cols)}) "
            f"VALUES ({', '.join(':' + c for c in cols)})"
        ),
        rows,
    )


def record_round(conn: Connection, states: dict[int, str], at: object) -> None:
    """Write one round's states into site_status as results/store.py does (state_since moves
    when the state changes; consecutive_failures counts rounds that are not up)."""
    for site_id, state in states.items():
        conn.execute(
            text(
                "INSERT INTO site_status (site_id, state, state_since, last_probe_at, "
                "consecutive_failures, last_error) VALUES (:id, :st, :at, :at, "
                "CASE WHEN :st = 'up' THEN 0 ELSE 1 END, "
                "CASE WHEN :st = 'down' THEN 'timeout' WHEN :st = 'degraded' THEN 'http_status' "
                "END) "
                "ON CONFLICT (site_id) DO UPDATE SET state = excluded.state, "
                "state_since = CASE WHEN site_status.state = excluded.state "
                "THEN site_status.state_since ELSE excluded.state_since END, "
                "last_probe_at = excluded.last_probe_at, "
                "consecutive_failures = CASE WHEN excluded.state = 'up' THEN 0 "
                "ELSE site_status.consecutive_failures + 1 END, "
                "last_error = excluded.last_error"
            ),
            {"id": site_id, "st": state, "at": at},
        )
