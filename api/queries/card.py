"""A site's card, built by PostgreSQL as one JSON document in one statement.

Inventory fields (never the SNMP secrets, which live in ``site_secrets`` and are not read),
current status, uptime over 24 h / 7 d / 30 d, a bandwidth and latency series for a period,
recent incidents, reboots and the nearest sites. One round trip and no Python per row keep
the card fast (see bench/api_load.py).

Definitions:
- uptime over a window = up rounds / rounds with a result × 100 (results/rollups.py), taking
  the hourly rollups that start inside the window and the raw rounds after the last rolled-up
  hour, so the figure is current even between rollups;
- series: periods up to 48 h come from raw results (one point per probe round), up to 31 days
  from hourly rollups, longer from daily rollups;
- nearby: up to 10 non-retired sites within 10 km, nearest first (metres on the spheroid).
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Connection, text

from results.current import current_state_sql

NEARBY_KM = 10.0
NEARBY_LIMIT = 10
RECENT_LIMIT = 10


class Period(StrEnum):
    """Length of a card's series, counted back from now."""

    H6 = "6h"
    H24 = "24h"
    H48 = "48h"
    D7 = "7d"
    D30 = "30d"
    D90 = "90d"
    D365 = "365d"

    @property
    def interval(self) -> str:
        """The period as a PostgreSQL interval literal."""
        unit = "hours" if self.value.endswith("h") else "days"
        return f"{self.value[:-1]} {unit}"

    @property
    def source(self) -> str:
        """Where its points come from: raw, hourly or daily."""
        if self in (Period.H6, Period.H24, Period.H48):
            return "raw"
        return "hourly" if self in (Period.D7, Period.D30) else "daily"


_SERIES_SQL = {
    "raw": """
        SELECT min(r.ts) AS t, min(r.state) AS state, NULL::double precision AS uptime_pct,
               max(r.in_bps) AS in_bps, max(r.out_bps) AS out_bps,
               NULL::double precision AS in_bps_max, NULL::double precision AS out_bps_max,
               max(r.latency_ms) FILTER (WHERE r.kind = 'snmp') AS snmp_ms,
               max(r.latency_ms) FILTER (WHERE r.kind = 'http') AS http_ms
        FROM probe_results r, s
        WHERE r.site_id = s.id AND r.ts >= now() - CAST(:period AS interval)
        GROUP BY r.round_id
    """,
    "hourly": """
        SELECT h.hour AS t, NULL AS state, h.uptime_pct, h.in_bps_avg AS in_bps,
               h.out_bps_avg AS out_bps, h.in_bps_max, h.out_bps_max,
               h.snmp_latency_p50_ms AS snmp_ms, h.http_latency_p50_ms AS http_ms
        FROM rollup_site_hourly h, s
        WHERE h.site_id = s.id AND h.hour >= date_trunc('hour', now() - CAST(:period AS interval))
    """,
    "daily": """
        SELECT d.day::timestamptz AS t, NULL AS state, d.uptime_pct, d.in_bps_avg AS in_bps,
               d.out_bps_avg AS out_bps, d.in_bps_max, d.out_bps_max,
               d.snmp_latency_p50_ms AS snmp_ms, d.http_latency_p50_ms AS http_ms
        FROM rollup_site_daily d, s
        WHERE d.site_id = s.id
          AND d.day >= ((now() - CAST(:period AS interval)) AT TIME ZONE 'UTC')::date
    """,
}

_CARD_SQL = """
WITH s AS (
    SELECT * FROM sites WHERE site_key = :key
),
hourly AS (
    -- One pass over the 30-day window (index-only, on ix_rollup_site_hourly_uptime) for all
    -- three windows and for where the rollups end.
    SELECT max(h.hour) + interval '1 hour' AS until,
           sum(h.rounds) FILTER (WHERE h.hour >= date_trunc('hour', now() - interval '24 hours'))
               AS rounds_24h,
           sum(h.up_rounds) FILTER (WHERE h.hour >= date_trunc('hour', now() - interval '24 hours'))
               AS up_24h,
           sum(h.rounds) FILTER (WHERE h.hour >= date_trunc('hour', now() - interval '7 days'))
               AS rounds_7d,
           sum(h.up_rounds) FILTER (WHERE h.hour >= date_trunc('hour', now() - interval '7 days'))
               AS up_7d,
           sum(h.rounds) AS rounds_30d,
           sum(h.up_rounds) AS up_30d
    FROM rollup_site_hourly h, s
    WHERE h.site_id = s.id AND h.hour >= date_trunc('hour', now() - interval '30 days')
),
raw_rounds AS (
    SELECT r.round_id, min(r.ts) AS ts, bool_or(r.state = 'up') AS up
    FROM probe_results r, s, hourly
    WHERE r.site_id = s.id
      AND r.ts >= greatest(coalesce(hourly.until, '-infinity'::timestamptz),
                           now() - interval '30 days')
    GROUP BY r.round_id
),
raw AS (
    SELECT count(*) FILTER (WHERE x.ts >= now() - interval '24 hours') AS rounds_24h,
           count(*) FILTER (WHERE x.ts >= now() - interval '24 hours' AND x.up) AS up_24h,
           count(*) FILTER (WHERE x.ts >= now() - interval '7 days') AS rounds_7d,
           count(*) FILTER (WHERE x.ts >= now() - interval '7 days' AND x.up) AS up_7d,
           count(*) AS rounds_30d,
           count(*) FILTER (WHERE x.up) AS up_30d
    FROM raw_rounds x
),
uptime(name, rounds, up) AS (
    SELECT '24h', coalesce(h.rounds_24h, 0) + r.rounds_24h, coalesce(h.up_24h, 0) + r.up_24h
    FROM hourly h, raw r
    UNION ALL
    SELECT '7d', coalesce(h.rounds_7d, 0) + r.rounds_7d, coalesce(h.up_7d, 0) + r.up_7d
    FROM hourly h, raw r
    UNION ALL
    SELECT '30d', coalesce(h.rounds_30d, 0) + r.rounds_30d, coalesce(h.up_30d, 0) + r.up_30d
    FROM hourly h, raw r
),
series AS ({series})
SELECT json_build_object(
    'site', (
        SELECT row_to_json(x) FROM (
            SELECT s.id, s.site_key, s.name, s.category, ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat,
                   s.mun_cvegeo, m.name AS municipality, s.cve_ent, e.name AS state,
                   s.locality, s.address, s.provider, s.technology, s.bw_down_mbps,
                   s.bw_up_mbps, s.status, s.installed_on, s.contact_name, s.contact_phone,
                   s.access_notes, host(s.mgmt_ip) AS mgmt_ip, s.snmp_version, s.snmp_port,
                   s.wan_if_index, s.wan_if_name, s.http_url,
                   EXISTS (SELECT 1 FROM site_secrets k WHERE k.site_id = s.id
                           AND (k.snmp_community IS NOT NULL OR k.v3_user IS NOT NULL))
                       AS snmp_credentials,
                   s.created_at, s.updated_at
            FROM s
            LEFT JOIN municipalities m ON m.cvegeo = s.mun_cvegeo
            LEFT JOIN states e ON e.cve_ent = s.cve_ent
        ) x
    ),
    'state', (SELECT {current} FROM s LEFT JOIN site_status st ON st.site_id = s.id),
    'status', (
        SELECT row_to_json(x) FROM (
            SELECT st.state, st.state_since, st.last_probe_at, st.last_ok_at,
                   st.last_failure_at, st.last_error, st.consecutive_failures, st.latency_ms,
                   st.in_bps, st.out_bps, st.rates_at, st.snmp_ok, st.snmp_error, st.http_ok,
                   st.http_error, st.http_status, st.oper_status, st.tls_days_left
            FROM site_status st, s WHERE st.site_id = s.id
        ) x
    ),
    'in_maintenance', EXISTS (
        SELECT 1 FROM maintenance_windows w, s
        WHERE w.starts_at <= now() AND w.ends_at > now()
          AND ((w.scope = 'site' AND w.site_id = s.id)
               OR (w.scope = 'municipality' AND w.mun_cvegeo = s.mun_cvegeo)
               OR (w.scope = 'provider' AND w.provider = s.provider))
    ),
    'uptime', (
        SELECT json_object_agg(u.name, json_build_object(
                   'rounds', u.rounds,
                   'uptime_pct', CASE WHEN u.rounds > 0
                                      THEN round(100.0 * u.up / u.rounds, 2)::float8 END))
        FROM uptime u
    ),
    'series', json_build_object(
        'period', CAST(:period_name AS text),
        'source', CAST(:source AS text),
        'points', coalesce((
            SELECT json_agg(row_to_json(p) ORDER BY p.t) FROM series p
        ), '[]'::json)
    ),
    'incidents', coalesce((
        SELECT json_agg(row_to_json(x) ORDER BY x.started_at DESC) FROM (
            SELECT i.id, i.kind, i.status, i.cause, i.started_at, i.closed_at,
                   coalesce(i.duration_s, extract(epoch FROM now() - i.started_at))::float8
                       AS duration_s,
                   i.last_error, i.acknowledged_by, i.acknowledged_at, i.comment
            FROM incidents i
            WHERE i.id IN (
                -- Two index lookups (its own incidents, municipal ones it belongs to), not an
                -- OR that would scan every incident.
                (SELECT i2.id FROM incidents i2, s WHERE i2.site_id = s.id
                 ORDER BY i2.started_at DESC LIMIT :recent)
                UNION
                (SELECT z.incident_id FROM incident_sites z, s WHERE z.site_id = s.id
                 ORDER BY z.joined_at DESC LIMIT :recent))
            ORDER BY i.started_at DESC LIMIT :recent
        ) x
    ), '[]'::json),
    'reboots', coalesce((
        SELECT json_agg(row_to_json(x) ORDER BY x.detected_at DESC) FROM (
            SELECT b.detected_at, b.reason, b.prev_uptime, b.new_uptime
            FROM reboot_events b, s WHERE b.site_id = s.id
            ORDER BY b.detected_at DESC LIMIT :recent
        ) x
    ), '[]'::json),
    'nearby', coalesce((
        SELECT json_agg(row_to_json(x) ORDER BY x.distance_m) FROM (
            SELECT n.site_key, n.name, n.category, n.provider, n.technology,
                   {nearby_state} AS state,
                   round(ST_Distance(n.geom::geography, s.geom::geography)::numeric, 1)::float8
                       AS distance_m,
                   ST_X(n.geom) AS lon, ST_Y(n.geom) AS lat
            FROM s
            JOIN LATERAL (
                SELECT * FROM sites n2
                WHERE n2.id <> s.id AND n2.status <> 'retired'
                  AND ST_DWithin(n2.geom::geography, s.geom::geography, :nearby_m)
                ORDER BY n2.geom::geography <-> s.geom::geography
                LIMIT :nearby_limit
            ) n ON true
            LEFT JOIN site_status nst ON nst.site_id = n.id
        ) x
    ), '[]'::json)
)::text
FROM s
"""


def site_card_json(conn: Connection, site_key: str, *, period: Period = Period.H24) -> str | None:
    """Return the card of ``site_key`` as JSON text, or None if no site has that key."""
    sql = (
        _CARD_SQL.replace("{series}", _SERIES_SQL[period.source])
        .replace("{current}", current_state_sql("s", "st"))
        .replace("{nearby_state}", current_state_sql("n", "nst"))
    )
    value = conn.execute(
        text(sql),
        {
            "key": site_key,
            "period": period.interval,
            "period_name": period.value,
            "source": period.source,
            "recent": RECENT_LIMIT,
            "nearby_m": NEARBY_KM * 1000.0,
            "nearby_limit": NEARBY_LIMIT,
        },
    ).scalar_one_or_none()
    return None if value is None else str(value)
