"""Seed a test database with sites, status, results, rollups, incidents and reboots (SQL only).

Sites sit on the most populated localities so they fall inside real municipalities. Every
site carries the planted secrets so that tests can prove they never leave the server. Their
management addresses are loopback (127.77.x.y, port 9, nothing listens) so that a live probe
of a seeded site never sends traffic off the machine.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, text

SECRET_COMMUNITY = "pl4nted-s3cret-community"
SECRET_V3_AUTH = "pl4nted-v3-auth-key"
SECRET_V3_PRIV = "pl4nted-v3-priv-key"
SECRETS = (SECRET_COMMUNITY, SECRET_V3_AUTH, SECRET_V3_PRIV)

CATEGORIES = ("school", "health", "public_space", "community", "government", "research")
PROVIDERS = ("Telmex", "Altán Redes", "Eutelsat", "Megacable")
TECHNOLOGIES = ("fiber", "microwave", "satellite", "cellular")


def site_key(i: int) -> str:
    """Key of the i-th seeded site (1-based)."""
    return f"TST{i:05d}"


def seed_sites(conn: Connection, count: int = 120) -> None:
    """Insert ``count`` sites; i % 10 decides the state: 0–6 up, 7 degraded, 8 down, 9 none.

    i % 40 = 39 is planned (no status), i % 40 = 18 suspended with the status it had before
    (down: history, not a current state), the last one retired.
    """
    conn.execute(
        text(
            """
            INSERT INTO sites (site_key, name, category, geom, mun_cvegeo, cve_ent, locality,
                address, provider, technology, bw_down_mbps, bw_up_mbps, status, installed_on,
                contact_name, contact_phone, access_notes, mgmt_ip, snmp_version, snmp_port,
                wan_if_index, http_url)
            SELECT 'TST' || lpad(l.i::text, 5, '0'),
                   'Sitio ' || l.name || ' ' || l.i,
                   (CAST(:cats AS text[]))[1 + l.i % 6],
                   ST_SetSRID(ST_MakePoint(ST_X(l.geom) + 0.0005 * (l.i % 3),
                                           ST_Y(l.geom) + 0.0004 * (l.i % 2)), 4326),
                   l.mun_cvegeo, l.cve_ent, l.name, 'Calle ' || l.i,
                   (CAST(:provs AS text[]))[1 + l.i % 4],
                   (CAST(:techs AS text[]))[1 + l.i % 4],
                   20 + l.i % 5 * 10, 5 + l.i % 3,
                   CASE WHEN l.i % 40 = 39 THEN 'planned'
                        WHEN l.i % 40 = 18 THEN 'suspended'
                        WHEN l.i = :count THEN 'retired' ELSE 'active' END,
                   DATE '2021-01-01' + l.i::int,
                   'Contacto ' || l.i, '55 5555 ' || lpad(l.i::text, 4, '0'), 'Pedir llave',
                   ('127.77.' || (l.i / 250) || '.' || (1 + l.i % 250))::inet,
                   CASE WHEN l.i % 5 = 0 THEN '3' ELSE '2c' END, 9, 1,
                   'http://127.77.' || (l.i / 250) || '.' || (1 + l.i % 250) || '\\:9/'
            FROM (SELECT row_number() OVER (ORDER BY pop_2020 DESC NULLS LAST, cvegeo) AS i,
                         name, geom, mun_cvegeo, cve_ent
                  FROM localities ORDER BY pop_2020 DESC NULLS LAST, cvegeo LIMIT :count) l
            """
        ),
        {
            "cats": list(CATEGORIES),
            "provs": list(PROVIDERS),
            "techs": list(TECHNOLOGIES),
            "count": count,
        },
    )
    conn.execute(
        text(
            """
            INSERT INTO site_secrets (site_id, snmp_community, v3_user, v3_auth_proto,
                v3_auth_key, v3_priv_proto, v3_priv_key)
            SELECT id, :c,
                   CASE WHEN snmp_version = '3' THEN 'conectado' END,
                   CASE WHEN snmp_version = '3' THEN 'SHA' END,
                   CASE WHEN snmp_version = '3' THEN :a END,
                   CASE WHEN snmp_version = '3' THEN 'AES' END,
                   CASE WHEN snmp_version = '3' THEN :p END
            FROM sites
            """
        ),
        {"c": SECRET_COMMUNITY, "a": SECRET_V3_AUTH, "p": SECRET_V3_PRIV},
    )
    conn.execute(
        text(
            """
            INSERT INTO site_status (site_id, state, state_since, last_probe_at, last_ok_at,
                last_failure_at, last_error, consecutive_failures, latency_ms, in_bps, out_bps,
                rates_at, snmp_ok, http_ok, http_status, oper_status)
            SELECT s.id, st.state, now() - interval '3 hours', now() - interval '2 minutes',
                   CASE WHEN st.state = 'down' THEN now() - interval '3 hours'
                        ELSE now() - interval '2 minutes' END,
                   CASE WHEN st.state = 'down' THEN now() - interval '2 minutes' END,
                   CASE WHEN st.state = 'down' THEN 'timeout' END,
                   CASE WHEN st.state = 'down' THEN 36 ELSE 0 END,
                   CASE WHEN st.state = 'down' THEN NULL ELSE 12.5 + s.id % 7 END,
                   CASE WHEN st.state = 'down' THEN NULL ELSE 4e6 + s.id * 1000 END,
                   CASE WHEN st.state = 'down' THEN NULL ELSE 1e6 + s.id * 100 END,
                   CASE WHEN st.state = 'down' THEN NULL ELSE now() - interval '2 minutes' END,
                   st.state <> 'down', st.state = 'up',
                   CASE WHEN st.state = 'up' THEN 200 END,
                   CASE WHEN st.state = 'degraded' THEN 2 ELSE 1 END
            FROM sites s
            CROSS JOIN LATERAL (SELECT CASE
                WHEN s.id % 10 <= 6 THEN 'up' WHEN s.id % 10 = 7 THEN 'degraded'
                WHEN s.id % 10 = 8 THEN 'down' END AS state) st
            WHERE st.state IS NOT NULL AND s.status <> 'planned'
            """
        )
    )


def seed_history(conn: Connection, site_id: int = 1) -> None:
    """Give one site 24 h of raw results, 30 days of rollups, incidents and reboots."""
    conn.execute(
        text(
            "SELECT ensure_probe_results_partitions("
            "(now() AT TIME ZONE 'UTC')::date - 2, (now() AT TIME ZONE 'UTC')::date + 1)"
        )
    )
    conn.execute(
        text(
            """
            INSERT INTO probe_results (round_id, site_id, ts, kind, ok, state, latency_ms,
                error, in_bps, out_bps, status_code, sys_uptime, oper_status)
            SELECT md5(g.t::text)::uuid, :site, g.t, k.kind,
                   NOT (g.n BETWEEN 100 AND 105),
                   CASE WHEN g.n BETWEEN 100 AND 105 THEN 'down' ELSE 'up' END,
                   CASE WHEN g.n BETWEEN 100 AND 105 THEN NULL ELSE 10 + g.n % 9 END,
                   CASE WHEN g.n BETWEEN 100 AND 105 THEN 'timeout' END,
                   CASE WHEN k.kind = 'snmp' AND NOT g.n BETWEEN 100 AND 105
                        THEN 2e6 + 1e6 * sin(g.n / 20.0) END,
                   CASE WHEN k.kind = 'snmp' AND NOT g.n BETWEEN 100 AND 105
                        THEN 5e5 + 2e5 * cos(g.n / 20.0) END,
                   CASE WHEN k.kind = 'http' AND NOT g.n BETWEEN 100 AND 105 THEN 200 END,
                   CASE WHEN k.kind = 'snmp' THEN g.n * 30000 END,
                   CASE WHEN k.kind = 'snmp' THEN 1 END
            FROM (SELECT n, date_trunc('minute', now()) - (n * interval '5 minutes') AS t
                  FROM generate_series(1, 288) n) g
            CROSS JOIN (VALUES ('snmp'), ('http')) k(kind)
            """
        ),
        {"site": site_id},
    )
    conn.execute(
        text(
            """
            INSERT INTO rollup_site_hourly (site_id, hour, rounds, up_rounds, degraded_rounds,
                down_rounds, uptime_pct, rate_samples,
                in_bps_avg, in_bps_p95, in_bps_max, out_bps_avg, out_bps_p95, out_bps_max)
            SELECT :site, h, 12, CASE WHEN n % 50 = 0 THEN 6 ELSE 12 END, 0,
                   CASE WHEN n % 50 = 0 THEN 6 ELSE 0 END,
                   CASE WHEN n % 50 = 0 THEN 50.0 ELSE 100.0 END, 12,
                   2e6, 3e6, 3.5e6, 5e5, 7e5, 8e5
            FROM (SELECT n, date_trunc('hour', now()) - n * interval '1 hour' AS h
                  FROM generate_series(1, 30 * 24) n) g
            """
        ),
        {"site": site_id},
    )
    conn.execute(
        text(
            """
            INSERT INTO rollup_site_daily (site_id, day, rounds, up_rounds, degraded_rounds,
                down_rounds, uptime_pct, rate_samples,
                in_bps_avg, in_bps_p95, in_bps_max, out_bps_avg, out_bps_p95, out_bps_max)
            SELECT :site, (now() AT TIME ZONE 'UTC')::date - n, 288, 280, 0, 8, 97.22,
                   288, 2e6, 3e6, 3.5e6, 5e5, 7e5, 8e5
            FROM generate_series(1, 60) n
            """
        ),
        {"site": site_id},
    )
    conn.execute(
        text(
            """
            INSERT INTO reboot_events (site_id, detected_at, reason, prev_uptime, new_uptime)
            VALUES (:site, now() - interval '5 hours', 'uptime_decreased', 8640000, 3000),
                   (:site, now() - interval '3 days', 'counter_decreased', NULL, NULL)
            """
        ),
        {"site": site_id},
    )
    conn.execute(
        text(
            """
            INSERT INTO incidents (kind, site_id, mun_cvegeo, cve_ent, provider, status, cause,
                started_at, opened_at, closed_at, close_reason, failures_at_open, last_error)
            SELECT 'site', id, mun_cvegeo, cve_ent, provider, 'closed', 'failures',
                   now() - interval '9 hours', now() - interval '8 hours 50 minutes',
                   now() - interval '8 hours 30 minutes', 'recovered', 3, 'timeout'
            FROM sites WHERE id = :site
            """
        ),
        {"site": site_id},
    )


def seed_open_incidents(conn: Connection) -> None:
    """Open one incident for every site that is down now."""
    conn.execute(
        text(
            """
            INSERT INTO incidents (kind, site_id, mun_cvegeo, cve_ent, provider, status, cause,
                started_at, opened_at, failures_at_open, last_error)
            SELECT 'site', s.id, s.mun_cvegeo, s.cve_ent, s.provider, 'open', 'failures',
                   now() - interval '3 hours', now() - interval '2 hours 50 minutes', 3,
                   'timeout'
            FROM sites s JOIN site_status st ON st.site_id = s.id WHERE st.state = 'down'
            """
        )
    )


def seed_all(conn: Connection, count: int = 120) -> None:
    """Sites, status, one site's history and the open incidents."""
    seed_sites(conn, count)
    seed_history(conn, 1)
    seed_open_incidents(conn)


def probe_coverage(conn: Connection) -> tuple[int, int, datetime | None]:
    """(probeable, never probed, oldest last probe) of the active or installed sites, straight
    from the tables (every seeded site has a management address)."""
    probeable, never, oldest = conn.execute(
        text(
            "SELECT count(*), count(*) FILTER (WHERE st.site_id IS NULL), min(st.last_probe_at) "
            "FROM sites s LEFT JOIN site_status st ON st.site_id = s.id "
            "WHERE s.status IN ('active', 'installed')"
        )
    ).one()
    return int(probeable), int(never), oldest
