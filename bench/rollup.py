"""How long a full rollup of one day of raw probe results takes (issue 5's measurement).

Generates, in a throwaway PostGIS cluster (var/bench-rollup-pg, fsync off like the test
clusters, otherwise the project's server settings), the geography and N sites (default
101,322) with one UTC day of 5-minute rounds (288) of raw probe results made by SQL
(generate_series + INSERT ... SELECT): ~29 M SNMP rows, or twice that with ``--kinds
snmp,http``. Then it times, in the same run:

- baseline: a plain ``SELECT site_id, count(*) ... GROUP BY site_id`` scan of the day;
- the 24 hourly per-site rollups, the daily per-site rollup and the daily municipality/state/
  provider rollup (results/rollups.py), i.e. everything the scheduler computes for a day;
- one incident evaluation over every site (what runs after each probe batch).

Each timing is repeated ``--repeat`` times (default 2) and every figure is printed. The cluster
is destroyed at the end unless ``--keep``.

    .venv/bin/python bench/rollup.py [--sites 101322] [--rounds 288] [--kinds snmp]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.db import make_engine
from core.settings import PROJECT_ROOT, Settings
from db.cluster import EmbeddedCluster
from db.migrate import upgrade
from geo.loader import load_geography
from results.incidents import evaluate_incidents
from results.rollups import day_start, rollup_day, rollup_hour

DAY = date(2030, 1, 15)
PROVIDERS = ["Telmex", "Totalplay", "Megacable", "Izzi", "Altán", "CFE TEIT", "Axtel"]

SITES_SQL = """
WITH m AS (
    SELECT cvegeo, cve_ent, ST_PointOnSurface(geom) AS p,
           row_number() OVER (ORDER BY cvegeo) - 1 AS i, count(*) OVER () AS n
    FROM municipalities
)
INSERT INTO sites (site_key, name, category, geom, mun_cvegeo, cve_ent, provider, technology,
                   bw_down_mbps, bw_up_mbps, status, mgmt_ip, snmp_version, http_url)
SELECT 'B' || lpad(g::text, 6, '0'), 'Bench site ' || g,
       (ARRAY['school','health','public_space','community','government'])[1 + g % 5],
       m.p, m.cvegeo, m.cve_ent,
       (CAST(:providers AS text[]))[1 + (g * 31) % cardinality(CAST(:providers AS text[]))],
       (ARRAY['fiber','microwave','satellite','dsl','cellular'])[1 + (g * 7) % 5],
       (ARRAY[10, 20, 50, 100, 200])[1 + (g * 13) % 5],
       (ARRAY[2, 4, 10, 20, 40])[1 + (g * 13) % 5],
       'active', ('10.0.0.0'::inet + g), '2c', 'http://10.0.0.1/'
FROM generate_series(1, :n) g
JOIN m ON m.i = (g * 7919) % m.n
"""

# One block of rounds for one kind. 1 % of the sites are down all day; otherwise a round is
# down 2 %, degraded 1 %, up 97 % of the time; rates exist from the second round on.
RAW_SQL = """
INSERT INTO probe_results (round_id, site_id, ts, kind, ok, state, latency_ms, error,
                           in_bps, out_bps, status_code)
SELECT rd.id, s.id, rd.ts + make_interval(secs => s.id % 299 + :kind_offset), :kind,
       st.state <> 'down', st.state,
       CASE WHEN st.state <> 'down' THEN
            CASE WHEN :kind = 'snmp' THEN 2 + 60 * random() ^ 2 ELSE 40 + 400 * random() ^ 2
            END END,
       CASE WHEN st.state = 'down' THEN 'timeout' END,
       CASE WHEN :kind = 'snmp' AND st.state <> 'down' AND rd.r > 0
            THEN s.bw_down_mbps * 1e6 * 0.8 * random() END,
       CASE WHEN :kind = 'snmp' AND st.state <> 'down' AND rd.r > 0
            THEN s.bw_up_mbps * 1e6 * 0.8 * random() END,
       CASE WHEN :kind = 'http' AND st.state <> 'down' THEN 200 END
FROM (SELECT r, CAST(:day AS timestamptz) + r * interval '5 minutes' AS ts,
             md5(r::text)::uuid AS id
      FROM generate_series(CAST(:r0 AS integer), CAST(:r1 AS integer)) r) rd
CROSS JOIN sites s
CROSS JOIN LATERAL (
    SELECT CASE WHEN s.id % 100 = 0 THEN 'down'
                WHEN x < 0.02 THEN 'down' WHEN x < 0.03 THEN 'degraded' ELSE 'up' END AS state
    FROM (SELECT random() + 0 * s.id + 0 * rd.r AS x) q
) st
"""


def timed(label: str, repeat: int, fn: Callable[[], object]) -> list[float]:
    """Run ``fn`` ``repeat`` times, print every time and return them."""
    times = []
    for n in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        print(f"  {label} [{n + 1}/{repeat}]: {times[-1]:.1f} s", flush=True)
    return times


def generate(engine: Engine, sites: int, rounds: int, kinds: list[str]) -> int:
    """Make the sites and one day of raw results; return the number of raw rows.

    The day is loaded into a plain table that is indexed and attached as the day's partition
    afterwards (the usual bulk-load order: much faster than maintaining indexes row by row).
    """
    part = f"probe_results_p{DAY:%Y%m%d}"
    with engine.begin() as conn:
        conn.execute(text(SITES_SQL), {"n": sites, "providers": PROVIDERS})
        conn.execute(text(f"DROP TABLE IF EXISTS {part}"))
        conn.execute(
            text(
                f"CREATE TABLE {part} (LIKE probe_results INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            )
        )
    block = 24
    t0 = time.perf_counter()
    for r0 in range(0, rounds, block):
        r1 = min(rounds, r0 + block) - 1
        for kind in kinds:
            with engine.begin() as conn:
                conn.execute(
                    text(RAW_SQL.replace("INSERT INTO probe_results", f"INSERT INTO {part}")),
                    {
                        "day": day_start(DAY),
                        "r0": r0,
                        "r1": r1,
                        "kind": kind,
                        "kind_offset": 0.0 if kind == "snmp" else 0.4,
                    },
                )
        done = r1 + 1
        rate = done * sites * len(kinds) / (time.perf_counter() - t0)
        print(f"  generated rounds {done}/{rounds} ({rate:,.0f} rows/s)", flush=True)
    t1 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            text(
                f"ALTER TABLE probe_results ATTACH PARTITION {part} "
                f"FOR VALUES FROM ('{day_start(DAY).isoformat()}') "
                f"TO ('{(day_start(DAY) + timedelta(days=1)).isoformat()}')"
            )
        )
    print(f"  indexed and attached as a partition in {time.perf_counter() - t1:.0f} s")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"VACUUM ANALYZE {part}"))
        conn.execute(text("ANALYZE sites"))
        rows = int(conn.execute(text("SELECT count(*) FROM probe_results")).scalar_one())
        size = conn.execute(
            text(f"SELECT pg_size_pretty(pg_total_relation_size('{part}'))")
        ).scalar_one()
    print(f"  {rows:,} raw rows, partition with indexes: {size}", flush=True)
    return rows


def site_status_from_last_round(engine: Engine) -> None:
    """Fill site_status from the day's last round so incidents have something to evaluate."""
    with engine.begin() as conn:
        conn.execute(
            text(
                """
                INSERT INTO site_status (site_id, state, state_since, last_probe_at,
                                         consecutive_failures, last_error)
                SELECT DISTINCT ON (site_id) site_id, state, ts, ts,
                       CASE WHEN state = 'down' THEN 3 ELSE 0 END, error
                FROM probe_results WHERE ts >= :a AND kind = 'snmp'
                ORDER BY site_id, ts DESC
                """
            ),
            {"a": day_start(DAY) + timedelta(hours=23)},
        )


def main() -> None:
    """Generate the day, time the baseline and the rollups, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=101_322)
    parser.add_argument("--rounds", type=int, default=288)
    parser.add_argument("--kinds", default="snmp", help="snmp or snmp,http")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="Keep the cluster afterwards.")
    parser.add_argument("--data-dir", type=Path, default=PROJECT_ROOT / "var" / "bench-rollup-pg")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]

    print(f"free disk on {PROJECT_ROOT}: {shutil.disk_usage(PROJECT_ROOT).free / 1e9:.0f} GB")
    cfg = Settings(pg_data_dir=args.data_dir, pg_port=57432)
    cluster = EmbeddedCluster(cfg, data_dir=args.data_dir, unsafe_fast=True)
    fresh = not cluster.initialised
    url = cluster.start()
    engine = make_engine(url)
    try:
        t0 = time.perf_counter()
        upgrade(url)
        with engine.connect() as conn:
            have_geo = conn.execute(text("SELECT count(*) FROM municipalities")).scalar_one()
            have_rows = conn.execute(text("SELECT count(*) FROM probe_results")).scalar_one()
        if not have_geo:
            load_geography(engine, cfg.inegi_dir)
        print(
            f"set-up ({'new' if fresh else 'existing'} cluster): {time.perf_counter() - t0:.0f} s"
        )
        if have_rows:
            with engine.connect() as conn:
                have_sites = conn.execute(text("SELECT count(*) FROM sites")).scalar_one()
            if have_sites != args.sites:
                raise SystemExit(
                    f"The kept cluster in {args.data_dir} holds {have_sites:,} sites, not "
                    f"{args.sites:,}: remove that folder (or run without --keep) first."
                )
            rows = int(have_rows)
            print(f"reusing {rows:,} raw rows already generated (--keep run)")
        else:
            t0 = time.perf_counter()
            rows = generate(engine, args.sites, args.rounds, kinds)
            print(f"generation: {time.perf_counter() - t0:.0f} s")

        start, end = day_start(DAY), day_start(DAY) + timedelta(days=1)
        print(f"\nOne day: {args.sites:,} sites × {args.rounds} rounds × {kinds} = {rows:,} rows")

        def baseline() -> None:
            with engine.connect() as conn:
                conn.execute(
                    text(
                        "SELECT site_id, count(*) FROM probe_results "
                        "WHERE ts >= :a AND ts < :b GROUP BY site_id"
                    ),
                    {"a": start, "b": end},
                ).all()

        def hourly() -> None:
            for h in range(24):
                with engine.begin() as conn:
                    rollup_hour(conn, start + timedelta(hours=h))

        def daily() -> None:
            with engine.begin() as conn:
                r = rollup_day(conn, DAY)
            print(f"    daily: {r.site_rows:,} site rows, {r.group_rows:,} group rows")

        print("baseline (plain GROUP BY site_id count over the day):")
        base = timed("baseline scan", args.repeat, baseline)
        print("rollups:")
        hour_t = timed("24 hourly per-site rollups", args.repeat, hourly)
        day_t = timed("daily per-site + municipality/state/provider rollup", args.repeat, daily)

        site_status_from_last_round(engine)
        settings = Settings(database_url=url)

        def incidents() -> None:
            with engine.begin() as conn:
                evaluate_incidents(conn, settings, now=end)

        print("incident evaluation over every site:")
        inc_t = timed("evaluate_incidents", max(args.repeat, 3), incidents)

        full = statistics.median(hour_t) + statistics.median(day_t)
        print("\nSUMMARY (median of runs)")
        print(f"  raw rows of the day:                  {rows:,}")
        print(f"  baseline GROUP BY scan:               {statistics.median(base):7.1f} s")
        print(f"  24 hourly rollups:                    {statistics.median(hour_t):7.1f} s")
        print(f"  daily site + group rollups:           {statistics.median(day_t):7.1f} s")
        print(
            f"  full rollup of the day (hourly+daily): {full:7.1f} s "
            f"({full / statistics.median(base):.1f}× the baseline scan)"
        )
        print(f"  incident evaluation, {args.sites:,} sites: {statistics.median(inc_t):6.2f} s")
    finally:
        engine.dispose()
        if args.keep:
            print(f"cluster kept in {args.data_dir} (port {cluster.port})")
        else:
            cluster.destroy()
            print("throwaway cluster destroyed")


if __name__ == "__main__":
    main()
