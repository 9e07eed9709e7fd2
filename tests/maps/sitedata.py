"""Put realistic sites and probe status into a test database (real rows, no mocks).

Sites come from the inventory engineer's seeded generator (placed on the real INEGI
localities); municipality and state are assigned in PostGIS from the coordinates, as the
importer does. Status is planted deterministically from the site id so tests know it.
"""

from __future__ import annotations

import io
from datetime import datetime

from sqlalchemy import Engine, text

from core.settings import PROJECT_ROOT
from sites.generator import generate_sites

SITE_COLUMNS = (
    "site_key",
    "name",
    "category",
    "lat",
    "lon",
    "locality",
    "address",
    "provider",
    "technology",
    "bw_down_mbps",
    "bw_up_mbps",
    "status",
)


def insert_generated_sites(
    engine: Engine, *, count: int, seed: int = 42, states: tuple[str, ...] | None = None
) -> int:
    """Insert ``count`` generated sites (only those in ``states`` if given); return how many."""
    frame = generate_sites(PROJECT_ROOT / "data" / "inegi", count=count, seed=seed)
    if states:
        with engine.connect() as conn:
            x0, y0, x1, y1 = conn.execute(
                text(
                    "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                    "(SELECT ST_Extent(geom) AS e FROM states WHERE cve_ent = ANY(:s)) x"
                ),
                {"s": list(states)},
            ).one()
        frame = frame[frame["lon"].between(x0, x1) & frame["lat"].between(y0, y1)]
    buffer = io.StringIO()
    frame[list(SITE_COLUMNS)].to_csv(buffer, index=False, header=False)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(
            "CREATE TEMP TABLE gen_sites (site_key text, name text, category text, lat float8, "
            "lon float8, locality text, address text, provider text, technology text, "
            "bw_down_mbps float8, bw_up_mbps float8, status text)"
        )
        with cur.copy(
            f"COPY gen_sites ({', '.join(SITE_COLUMNS)}) FROM STDIN WITH (FORMAT csv)"
        ) as copy:
            copy.write(buffer.getvalue())
        wanted = list(states) if states else None
        cur.execute(
            """
            INSERT INTO sites (site_key, name, category, geom, mun_cvegeo, cve_ent, locality,
                               address, provider, technology, bw_down_mbps, bw_up_mbps, status)
            SELECT g.site_key, g.name, g.category, g.geom, m.cvegeo, m.cve_ent, g.locality,
                   g.address, g.provider, NULLIF(g.technology, ''), g.bw_down_mbps,
                   g.bw_up_mbps, g.status
            FROM (
                SELECT x.*, ST_SetSRID(ST_MakePoint(x.lon, x.lat), 4326) AS geom
                FROM gen_sites x
            ) g
            JOIN LATERAL (
                SELECT cvegeo, cve_ent FROM municipalities mm
                WHERE ST_Intersects(mm.geom, g.geom) ORDER BY cvegeo LIMIT 1
            ) m ON true
            WHERE %(states)s::text[] IS NULL
               OR g.geom && (SELECT ST_Extent(geom) FROM states WHERE cve_ent = ANY(%(states)s))
                  AND m.cve_ent = ANY(%(states)s)
            """,
            {"states": wanted},
        )
        inserted = int(cur.rowcount)
        cur.execute("DROP TABLE gen_sites")
        cur.execute("ANALYZE sites")
        raw.commit()
    finally:
        raw.close()
    return inserted


def plant_status(engine: Engine, *, as_of: datetime) -> dict[str, int]:
    """Give every probed site a status by ``id % 20``; return the count per state.

    0–1 down (last ok 30 h before ``as_of``: not working), 2 degraded (ok 10 min ago),
    3 unknown (never answered), 4 down but ok 2 h ago (still working), others up (ok 2 min ago).
    Sites that are planned or retired are not probed and get no row.
    """
    with engine.begin() as conn:
        conn.execute(
            text(
                """
                INSERT INTO site_status (site_id, state, state_since, last_probe_at, last_ok_at)
                SELECT id,
                       CASE WHEN id % 20 IN (0, 1, 4) THEN 'down' WHEN id % 20 = 2 THEN 'degraded'
                            WHEN id % 20 = 3 THEN 'unknown' ELSE 'up' END,
                       CAST(:as_of AS timestamptz) - interval '1 hour',
                       CAST(:as_of AS timestamptz) - interval '2 minutes',
                       CASE WHEN id % 20 IN (0, 1) THEN CAST(:as_of AS timestamptz)
                                                        - interval '30 hours'
                            WHEN id % 20 = 2 THEN CAST(:as_of AS timestamptz) - interval '10 min'
                            WHEN id % 20 = 3 THEN NULL
                            WHEN id % 20 = 4 THEN CAST(:as_of AS timestamptz) - interval '2 hours'
                            ELSE CAST(:as_of AS timestamptz) - interval '2 minutes' END
                FROM sites WHERE status IN ('active', 'installed', 'suspended')
                ON CONFLICT (site_id) DO NOTHING
                """
            ),
            {"as_of": as_of},
        )
        rows = conn.execute(text("SELECT state, count(*) FROM site_status GROUP BY state"))
        return {str(r[0]): int(r[1]) for r in rows}


def plant_history(
    engine: Engine, *, as_of: datetime, where: str = "id % 10 = 0", hours: int = 24
) -> int:
    """Raw 5-minute probe results for the sites ``where`` selects over ``hours`` before ``as_of``.

    A round is down when (site id + round number) % 7 == 0, otherwise up, so every site has
    its own known uptime. Returns the number of rows written.
    """
    with engine.begin() as conn:
        conn.execute(
            text(
                "SELECT ensure_probe_results_partitions("
                "CAST(:a AS date) - :days, CAST(:a AS date) + 1)"
            ),
            {"a": as_of, "days": hours // 24 + 2},
        )
        result = conn.execute(
            text(
                f"""
                INSERT INTO probe_results (round_id, site_id, ts, kind, ok, state, latency_ms)
                SELECT md5(n::text)::uuid, s.id, t.ts, 'snmp',
                       (s.id + n) % 7 <> 0,
                       CASE WHEN (s.id + n) % 7 = 0 THEN 'down' ELSE 'up' END, 12
                FROM sites s,
                     LATERAL (
                         SELECT ts, (extract(epoch FROM ts) / 300)::bigint AS n
                         FROM generate_series(
                             CAST(:a AS timestamptz) - make_interval(hours => :h),
                             CAST(:a AS timestamptz), interval '5 minutes') ts
                     ) t
                WHERE {where}
                """
            ),
            {"a": as_of, "h": hours},
        )
        return int(result.rowcount)
