"""API latency under load at 101,322 sites: a site card and a 1,000-site bbox search (GeoJSON).

Builds (once; ``--keep`` keeps it for the next run) a throwaway PostGIS cluster in
var/bench-api-pg with the INEGI geography and the generated national inventory
(``sites.generator`` + ``sites.importer``, 101,322 sites), a current state for every site, and
for 1,000 sites 24 h of raw 5-minute probe results, 30 days of hourly rollups, incidents and
reboots (what the card reads). Then it starts the real server (uvicorn, ``--workers`` worker
processes, default 2 — one per core) and drives it with ``wrk`` (Debian package; 2 threads,
32 connections, a Lua script picking a random request per call, sending Accept-Encoding: gzip
as browsers, QGIS and HTTP libraries do) and prints, per scenario,
requests/s and p50/p95/p99 latency. First with the read cache off, every response built
from the database:

- baseline ``/healthz`` (the server's per-request floor, one trivial query);
- card ``/api/sites/{key}/card`` over the 1,000 sites with history (24 h raw series);
- bbox GeoJSON ``/api/sites?bbox=...&limit=1000&f=geojson`` over 200 bboxes that each hold
  at least 1,000 sites (the extent of a random site's 1,000 nearest neighbours);
- bbox GeoJSON with the cached site JSON emptied too, so every site is serialised per request;

then card and bbox again with the read cache on (``api/cache.py``: a worker reuses a response
until the data behind it changes or 60 s pass), as shipped. Nothing is written during the run,
as between two probe rounds; each cached scenario is measured once each worker has built each
path (≥ 99 % hits over 5 s of load; the time that took is printed).

    .venv/bin/python bench/api_load.py [--workers 2] [--duration 20] [--connections 32] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.auth import Role, create_key
from api.queries.sites_json import refresh_site_docs
from core.db import make_engine
from core.settings import PROJECT_ROOT, Settings
from db.cluster import EmbeddedCluster
from db.migrate import current_revision, head_revision, upgrade
from geo.loader import load_geography
from sites.generator import generate_sites, write_sites_csv
from sites.importer import ImportOptions, import_file

SITES = 101_322
HISTORY_SITES = 1_000
DATA_DIR = PROJECT_ROOT / "var" / "bench-api-pg"

LUA = r"""
local paths = {}
local token = ""
function init(args)
  token = args[1]
  for line in io.lines(args[2]) do paths[#paths + 1] = line end
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end
function request()
  local path = paths[math.random(#paths)]
  return wrk.format("GET", path, {["X-API-Key"] = token, ["Accept-Encoding"] = "gzip"})
end
function done(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT requests=%d seconds=%.3f rps=%.1f p50=%.2f p95=%.2f "
      .. "p99=%.2f max=%.2f errors=%d bytes=%d\n",
      summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
      latency:percentile(50) / 1000, latency:percentile(95) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000, bad, summary.bytes))
end
"""

STATUS_SQL = """
INSERT INTO site_status (site_id, state, state_since, last_probe_at, last_ok_at,
    last_failure_at, last_error, consecutive_failures, latency_ms, in_bps, out_bps, snmp_ok,
    http_ok, http_status, oper_status)
SELECT s.id, st.state, now() - (s.id % 97) * interval '1 hour', now() - interval '2 minutes',
       CASE WHEN st.state = 'down' THEN now() - interval '5 hours' ELSE now() END,
       CASE WHEN st.state = 'down' THEN now() END,
       CASE WHEN st.state = 'down' THEN 'timeout' END,
       CASE WHEN st.state = 'down' THEN 60 ELSE 0 END,
       CASE WHEN st.state = 'down' THEN NULL ELSE 8 + s.id % 40 END,
       CASE WHEN st.state = 'down' THEN NULL ELSE 1e6 * (1 + s.id % 20) END,
       CASE WHEN st.state = 'down' THEN NULL ELSE 2e5 * (1 + s.id % 20) END,
       st.state <> 'down', st.state = 'up', CASE WHEN st.state = 'up' THEN 200 END,
       CASE WHEN st.state = 'degraded' THEN 2 ELSE 1 END
FROM sites s
CROSS JOIN LATERAL (SELECT CASE WHEN s.id % 50 = 0 THEN 'down' WHEN s.id % 37 = 0
                                THEN 'degraded' ELSE 'up' END AS state) st
WHERE s.status IN ('active', 'installed')
"""

HISTORY_SQL = [
    """SELECT ensure_probe_results_partitions((now() AT TIME ZONE 'UTC')::date - 2,
                                              (now() AT TIME ZONE 'UTC')::date + 1)""",
    """CREATE TEMP TABLE bench_sites AS
       SELECT id FROM sites WHERE status IN ('active', 'installed') ORDER BY id
       LIMIT :n""",
    """INSERT INTO probe_results (round_id, site_id, ts, kind, ok, state, latency_ms, error,
           in_bps, out_bps, status_code, sys_uptime, oper_status)
       SELECT md5(b.id::text || g.n::text)::uuid, b.id, g.t, k.kind, g.n % 97 <> 0,
              CASE WHEN g.n % 97 = 0 THEN 'down' ELSE 'up' END,
              CASE WHEN g.n % 97 = 0 THEN NULL ELSE 8 + (b.id + g.n) % 30 END,
              CASE WHEN g.n % 97 = 0 THEN 'timeout' END,
              CASE WHEN k.kind = 'snmp' THEN 3e6 + 2e6 * sin(g.n / 40.0) END,
              CASE WHEN k.kind = 'snmp' THEN 8e5 + 3e5 * cos(g.n / 40.0) END,
              CASE WHEN k.kind = 'http' THEN 200 END,
              CASE WHEN k.kind = 'snmp' THEN g.n * 30000 END,
              CASE WHEN k.kind = 'snmp' THEN 1 END
       FROM bench_sites b
       CROSS JOIN (SELECT n, date_trunc('minute', now()) - n * interval '5 minutes' AS t
                   FROM generate_series(1, 288) n) g
       CROSS JOIN (VALUES ('snmp'), ('http')) k(kind)""",
    """INSERT INTO rollup_site_hourly (site_id, hour, rounds, up_rounds, degraded_rounds,
           down_rounds, uptime_pct, snmp_latency_p50_ms, http_latency_p50_ms, rate_samples,
           in_bps_avg, in_bps_p95, in_bps_max, out_bps_avg, out_bps_p95, out_bps_max)
       SELECT b.id, h.t, 12, 12 - (h.n % 40 = 0)::int, 0, (h.n % 40 = 0)::int,
              100.0 * (12 - (h.n % 40 = 0)::int) / 12, 10, 20, 12,
              3e6, 4.5e6, 5e6, 8e5, 1e6, 1.1e6
       FROM bench_sites b
       CROSS JOIN (SELECT n, date_trunc('hour', now()) - n * interval '1 hour' AS t
                   FROM generate_series(1, 720) n) h""",
    """INSERT INTO reboot_events (site_id, detected_at, reason, prev_uptime, new_uptime)
       SELECT id, now() - (id % 20) * interval '1 day', 'uptime_decreased', 9000000, 500
       FROM bench_sites""",
    """INSERT INTO incidents (kind, site_id, mun_cvegeo, cve_ent, provider, status, cause,
           started_at, opened_at, closed_at, close_reason, failures_at_open, last_error)
       SELECT 'site', s.id, s.mun_cvegeo, s.cve_ent, s.provider, 'closed', 'failures',
              now() - interval '3 days', now() - interval '3 days',
              now() - interval '2 days 23 hours', 'recovered', 3, 'timeout'
       FROM sites s JOIN bench_sites b ON b.id = s.id""",
]


def free_port(preferred: int) -> int:
    """``preferred`` if it is free on 127.0.0.1, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port")


def prepared(engine: Engine) -> bool:
    """True when the database already holds the bench data."""
    try:
        with engine.connect() as conn:
            n = conn.execute(text("SELECT count(*) FROM sites")).scalar_one()
            h = conn.execute(text("SELECT count(*) FROM rollup_site_hourly")).scalar_one()
        return int(n) == SITES and int(h) > 0
    except Exception:
        return False


def prepare(url: str, engine: Engine) -> None:
    """Geography, the generated inventory, states and history (prints the time of each)."""
    t = time.perf_counter()
    upgrade(url)
    load_geography(engine, PROJECT_ROOT / "data" / "inegi")
    print(f"  geography          {time.perf_counter() - t:6.1f} s", flush=True)
    t = time.perf_counter()
    frame = generate_sites(PROJECT_ROOT / "data" / "inegi", count=SITES, seed=42)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sites.csv"
        write_sites_csv(frame, path)
        report = import_file(engine, path, options=ImportOptions(changed_by="bench"))
    print(
        f"  inventory          {time.perf_counter() - t:6.1f} s "
        f"({report.inserted:,} inserted, {report.rejected} rejected)",
        flush=True,
    )
    t = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text(STATUS_SQL))
        for sql in HISTORY_SQL:
            conn.execute(text(sql), {"n": HISTORY_SITES})
    print(f"  states + history   {time.perf_counter() - t:6.1f} s", flush=True)


def bbox_paths(engine: Engine, count: int, rng: random.Random) -> list[str]:
    """Paths of bbox searches that each hold at least 1,000 sites."""
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM sites ORDER BY id"))]
        paths = []
        for site_id in rng.sample(ids, count):
            x1, y1, x2, y2 = conn.execute(
                text(
                    """
                    SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (
                        SELECT ST_Extent(n.geom) AS e FROM sites c
                        CROSS JOIN LATERAL (SELECT geom FROM sites n
                                            ORDER BY n.geom <-> c.geom LIMIT 1000) n
                        WHERE c.id = :id) x
                    """
                ),
                {"id": site_id},
            ).one()
            box = f"{x1 - 1e-6:.6f},{y1 - 1e-6:.6f},{x2 + 1e-6:.6f},{y2 + 1e-6:.6f}"
            paths.append(f"/api/sites?bbox={box}&limit=1000&f=geojson")
    return paths


def card_paths(engine: Engine) -> list[str]:
    """Paths of the cards of the sites with history."""
    with engine.connect() as conn:
        keys = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT s.site_key FROM sites s JOIN (SELECT DISTINCT site_id FROM "
                    "rollup_site_hourly) h ON h.site_id = s.id ORDER BY s.id"
                )
            )
        ]
    return [f"/api/sites/{key}/card" for key in keys]


def run_wrk(
    base: str, token: str, paths: list[str], *, connections: int, duration: int, lua: Path
) -> dict[str, float]:
    """Run wrk over ``paths`` and return its RESULT figures."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(paths) + "\n")
        listing = handle.name
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{min(2, connections)}",
                f"-c{connections}",
                f"-d{duration}s",
                "--timeout",
                "10s",
                "-s",
                str(lua),
                base,
                "--",
                token,
                listing,
            ],
            capture_output=True,
            text=True,
            timeout=duration + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(listing)
    match = re.search(r"RESULT (.*)", out)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    return {k: float(v) for k, v in (kv.split("=") for kv in match.group(1).split())}


def check_responses(base: str, token: str, card: str, bbox: str) -> None:
    """Fail early unless a card and a bbox answer 200 with the expected content."""
    headers = {"X-API-Key": token}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        r = client.get(card)
        r.raise_for_status()
        assert r.json()["series"]["points"], "card without series"
        r = client.get(bbox)
        r.raise_for_status()
        assert r.json()["numberReturned"] == 1000, r.text[:300]
        again = client.get(bbox)
        assert again.content == r.content, "a cached search differs from the built one"


def start_server(
    url: str, port: int, workers: int, *, cache_seconds: float
) -> subprocess.Popen[bytes]:
    """Start uvicorn with ``workers`` processes on 127.0.0.1:``port``."""
    env = dict(os.environ)
    env.update(
        CONECTADO_DATABASE_URL=url,
        CONECTADO_API_CACHE_SECONDS=str(cache_seconds),
        CONECTADO_API_DOCS_REFRESH_SECONDS="0",
        CONECTADO_API_POOL_SIZE="20",
        PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(prefix="bench-prom-"),
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.app:create_app_from_env",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=PROJECT_ROOT,
    )


def wait_ready(base: str, seconds: float = 60) -> None:
    """Wait until /healthz answers 200."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the server did not start")


def main() -> None:
    """Prepare, serve, load, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--keep", action="store_true", help="keep the bench cluster")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk (scripts/system-packages.sh test)")

    settings = Settings(pg_data_dir=DATA_DIR, pg_port=free_port(57432))
    cluster = EmbeddedCluster(settings, data_dir=DATA_DIR, unsafe_fast=True)
    url = cluster.start()
    engine = make_engine(url)
    server = None
    try:
        if not prepared(engine):
            print("Preparing the bench database (101,322 sites):", flush=True)
            prepare(url, engine)
        elif current_revision(url) != head_revision():
            upgrade(url)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM api_keys WHERE name = 'bench'"))
            token = create_key(conn, name="bench", role=Role.VIEWER, created_by="bench").token
        t = time.perf_counter()
        with engine.begin() as conn:
            built = refresh_site_docs(conn)
        print(f"  cached site JSON   {time.perf_counter() - t:6.1f} s ({built:,} rebuilt)")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))

        rng = random.Random(7)
        bboxes = bbox_paths(engine, 200, rng)
        cards = card_paths(engine)
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
            handle.write(LUA)
            lua = Path(handle.name)
        print(
            f"\nuvicorn {args.workers} workers, wrk 2 threads × {args.connections} "
            f"connections × {args.duration} s per scenario (after a warm-up), "
            f"{os.cpu_count()} cores shared by PostgreSQL, the server and wrk"
        )
        print(f"{'scenario':<44}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")

        def cache_lookups() -> tuple[float, float]:
            text_ = httpx.get(base + "/metrics", timeout=30).text
            found = dict.fromkeys(("hit", "miss"), 0.0)
            for result in found:
                match = re.search(
                    rf'^conectado_api_cache_lookups_total{{result="{result}"}} (\S+)$', text_, re.M
                )
                found[result] = float(match.group(1)) if match else 0.0
            return found["hit"], found["miss"]

        def warm(paths: list[str]) -> str:
            """Load until every worker has built (nearly) every path: ≥ 99 % hits over 5 s."""
            started = time.perf_counter()
            while time.perf_counter() - started < 120:
                hits, misses = cache_lookups()
                run_wrk(base, token, paths, connections=args.connections, duration=5, lua=lua)
                hits2, misses2 = cache_lookups()
                if hits2 - hits >= 0.99 * (hits2 - hits + misses2 - misses):
                    break
            return f"  (warm after {time.perf_counter() - started:.0f} s)"

        def load(name: str, paths: list[str], *, cached: bool = False) -> None:
            note = ""
            if cached:
                note = warm(paths)
            else:
                run_wrk(base, token, paths, connections=args.connections, duration=3, lua=lua)
            hits, misses = cache_lookups()
            r = run_wrk(
                base, token, paths, connections=args.connections, duration=args.duration, lua=lua
            )
            hits2, misses2 = cache_lookups()
            looked = hits2 - hits + misses2 - misses
            ratio = f"  hits {100 * (hits2 - hits) / looked:.1f} %" if hits2 > hits else ""
            print(
                f"{name:<44}{r['rps']:>8.0f}{r['p50']:>9.1f}{r['p95']:>9.1f}{r['p99']:>9.1f}"
                f"{int(r['errors']):>8}{ratio}{note}",
                flush=True,
            )

        port = free_port(18900)
        base = f"http://127.0.0.1:{port}"
        # First every response built from the database (the read cache off), then the
        # shipped configuration, where a worker reuses a card or search until the data behind
        # it changes (api/cache.py); nothing changes during the run, as between probe rounds.
        server = start_server(url, port, args.workers, cache_seconds=0)
        wait_ready(base)
        check_responses(base, token, cards[0], bboxes[0])
        load("baseline: /healthz", ["/healthz"])
        load("card (24 h raw series), built every time", cards)
        load("bbox 1,000 GeoJSON, built every time", bboxes)
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE api_site_docs"))
        load("bbox, built, no cached site JSON either", bboxes)
        with engine.begin() as conn:
            refresh_site_docs(conn)
        server.terminate()
        server.wait(timeout=20)

        server = start_server(url, port, args.workers, cache_seconds=60)
        wait_ready(base)
        check_responses(base, token, cards[0], bboxes[0])
        load("card (24 h raw series), read cache on", cards, cached=True)
        load("bbox 1,000 GeoJSON, read cache on", bboxes, cached=True)
        lua.unlink()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)
        engine.dispose()
        if not args.keep:
            cluster.stop()
            shutil.rmtree(DATA_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
