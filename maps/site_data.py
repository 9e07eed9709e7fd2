"""Sites with their probe status and 24-hour uptime, as compact column JSON built by PostGIS.

Uptime 24 h follows the probe engine's definition (up rounds / rounds with a result) over the
window from the start of the hour 24 hours ago until ``as_of``: hourly rollups for the hours
already rolled up, raw probe results after the last rolled-up hour (as the API's site card).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, MetaData, Table, insert, select, text

from results.current import CURRENT_STATES, current_state_sql
from sites.filters import SiteFilter
from sites.models import sites_table
from sites.vocabulary import CATEGORIES

STATUS_CODES = CURRENT_STATES  # the code of a state is its index

_selected = Table("map_selected_sites", MetaData(), Column("id", BigInteger, primary_key=True))

_DATA_SQL = """
WITH s AS (
    SELECT s.id, s.site_key, s.name, s.category, s.provider, s.mun_cvegeo, s.geom,
           array_position(CAST(:states AS text[]), {state}) - 1 AS code,
           st.last_ok_at
    FROM sites s
    JOIN map_selected_sites x ON x.id = s.id
    LEFT JOIN site_status st ON st.site_id = s.id
),
hourly AS (
    SELECT h.site_id, sum(h.rounds) AS rounds, sum(h.up_rounds) AS up
    FROM rollup_site_hourly h JOIN map_selected_sites x ON x.id = h.site_id
    WHERE h.hour >= :since AND h.hour < :until
    GROUP BY h.site_id
),
raw AS (
    SELECT site_id, count(*) AS rounds, count(*) FILTER (WHERE up) AS up
    FROM (
        SELECT r.site_id, r.round_id, bool_or(r.state = 'up') AS up
        FROM probe_results r JOIN map_selected_sites x ON x.id = r.site_id
        WHERE r.ts >= :until AND r.ts <= :as_of
        GROUP BY r.site_id, r.round_id
    ) rounds
    GROUP BY site_id
),
rows AS (
    SELECT s.*,
           dense_rank() OVER (ORDER BY s.provider) - 1 AS prov_ix,
           dense_rank() OVER (ORDER BY s.mun_cvegeo) - 1 AS mun_ix,
           COALESCE(h.rounds, 0) + COALESCE(w.rounds, 0) AS rounds,
           COALESCE(h.up, 0) + COALESCE(w.up, 0) AS up_rounds,
           CASE WHEN CAST(:lon AS float8) IS NULL THEN NULL ELSE round(ST_Distance(
               s.geom::geography,
               ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography)) END AS dist
    FROM s
    LEFT JOIN hourly h ON h.site_id = s.id
    LEFT JOIN raw w ON w.site_id = s.id
    ORDER BY s.id
)
-- Every array is aggregated in one pass over the same sorted rows, so index i of each array
-- describes the same site.
SELECT json_build_object(
    'as_of', CAST(:as_of AS timestamptz),
    'scale', 100000,
    'lat', COALESCE(json_agg(round(ST_Y(geom) * 100000)::int), '[]'),
    'lon', COALESCE(json_agg(round(ST_X(geom) * 100000)::int), '[]'),
    'st', COALESCE(json_agg(code), '[]'),
    'key', COALESCE(json_agg(site_key), '[]'),
    'name', COALESCE(json_agg(name), '[]'),
    'cat', COALESCE(json_agg(array_position(CAST(:cats AS text[]), category) - 1),
                    '[]'),
    'cats', CAST(:cats AS text[]),
    'prov', COALESCE(json_agg(prov_ix), '[]'),
    'provs', (SELECT COALESCE(json_agg(p ORDER BY p NULLS LAST), '[]')
              FROM (SELECT DISTINCT provider AS p FROM s) x),
    'mun', COALESCE(json_agg(mun_ix), '[]'),
    'muns', (SELECT COALESCE(json_agg(m.name || ', ' || e.abbrev ORDER BY x.c NULLS LAST), '[]')
             FROM (SELECT DISTINCT mun_cvegeo AS c FROM s) x
             LEFT JOIN municipalities m ON m.cvegeo = x.c
             LEFT JOIN states e ON e.cve_ent = m.cve_ent),
    'seen', COALESCE(json_agg(
        GREATEST(0, round(extract(epoch FROM CAST(:as_of AS timestamptz) - last_ok_at) / 60))
       ), '[]'),
    'up', COALESCE(json_agg(
        CASE WHEN rounds > 0 THEN round(1000.0 * up_rounds / rounds) END), '[]'),
    'dist', CASE WHEN CAST(:lon AS float8) IS NULL THEN NULL
                 ELSE COALESCE(json_agg(dist), '[]') END
)::text AS data,
    count(*) FILTER (WHERE code = 0) AS up,
    count(*) FILTER (WHERE code = 1) AS degraded,
    count(*) FILTER (WHERE code = 2) AS down,
    count(*) FILTER (WHERE code = 3) AS unknown,
    count(*) FILTER (WHERE code = 4) AS unmonitored,
    min(ST_Y(geom)) AS south, min(ST_X(geom)) AS west,
    max(ST_Y(geom)) AS north, max(ST_X(geom)) AS east
FROM rows
"""


def uptime_window(conn: Connection, as_of: datetime) -> tuple[datetime, datetime]:
    """(since, until): the 24-hour window's start and the end of its rolled-up hours.

    Hours in [since, until) come from hourly rollups, results in [until, as_of] from raw rows.
    """
    row = conn.execute(
        text(
            """
            SELECT w.since, COALESCE((SELECT max(h.hour) FROM rollup_site_hourly h
                                      WHERE h.hour >= w.since AND h.hour < :as_of)
                                     + interval '1 hour', w.since) AS until
            FROM (SELECT date_trunc('hour', CAST(:as_of AS timestamptz) - interval '24 hours')
                         AS since) w
            """
        ),
        {"as_of": as_of},
    ).one()
    return row.since, row.until


@dataclass(frozen=True)
class SitePoints:
    """Selected sites as column JSON for ``conectado.siteMarkers``, with counts and extent.

    Coordinates are integers in units of 1e-5 degree (``scale``), about a metre.
    """

    json_text: str
    counts: dict[str, int]
    bounds: list[list[float]] | None

    @property
    def total(self) -> int:
        """How many sites the JSON holds."""
        return sum(self.counts.values())


def site_points(
    conn: Connection,
    flt: SiteFilter,
    *,
    as_of: datetime | None = None,
    distance_from: tuple[float, float] | None = None,
) -> SitePoints:
    """The sites ``flt`` selects (retired ones only when asked for by status) with status.

    ``distance_from`` (lon, lat) adds each site's geodesic distance in metres.
    """
    moment = as_of or conn.execute(text("SELECT now()")).scalar_one()
    conn.execute(
        text("CREATE TEMP TABLE map_selected_sites (id bigint PRIMARY KEY) ON COMMIT DROP")
    )
    where: list[Any] = [flt.where()]
    if not flt.status:
        where.append(sites_table.c.status != "retired")
    conn.execute(insert(_selected).from_select(["id"], select(sites_table.c.id).where(*where)))
    conn.execute(text("ANALYZE map_selected_sites"))
    since, until = uptime_window(conn, moment)
    lon, lat = distance_from if distance_from is not None else (None, None)
    row = conn.execute(
        text(_DATA_SQL.replace("{state}", current_state_sql("s", "st"))),
        {
            "as_of": moment,
            "since": since,
            "until": until,
            "cats": list(CATEGORIES),
            "states": list(STATUS_CODES),
            "lon": lon,
            "lat": lat,
        },
    ).one()
    conn.execute(text("DROP TABLE map_selected_sites"))
    counts = {name: int(getattr(row, name)) for name in STATUS_CODES}
    bounds = (
        None
        if row.south is None
        else [[float(row.south), float(row.west)], [float(row.north), float(row.east)]]
    )
    return SitePoints(json_text=str(row.data), counts=counts, bounds=bounds)
