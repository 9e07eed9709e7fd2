"""Coverage and maps at national scale: compute time, map sizes, render and open times.

Uses the same throwaway PostGIS cluster as ``bench/api_load.py`` (var/bench-api-pg: the INEGI
geography, the generated 101,322-site inventory and a current state for every site; built
once, ``--keep`` keeps it). Prints, each next to a baseline measured in the same run:

- ``compute_coverage`` for the whole country (2,475 municipalities, 50,514 localities,
  101,322 sites) — goal ≤ 10 s; baseline: the same "population within R km of a working
  site" with geopandas (``sjoin_nearest`` in EPSG:6372 after ``read_postgis``), the library
  way of doing it in Python;
- the national coverage map and health map: render time (goal ≤ 15 s), HTML size (goals
  ≤ 10 MB and ≤ 15 MB) and time until the map is drawn in headless Debian chromium (goal
  ≤ 10 s for the health map); baseline: folium's own ``FastMarkerCluster`` with the same
  101,322 points (assets inlined the same way, so it also opens offline).

    .venv/bin/python bench/coverage_maps.py [--keep] [--screenshots var/bench-maps]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import folium
import geopandas as gpd
from folium.plugins import FastMarkerCluster
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_load import DATA_DIR, free_port, prepare, prepared

from core.db import make_engine
from core.settings import PROJECT_ROOT, Settings
from db.cluster import EmbeddedCluster
from db.migrate import current_revision, head_revision
from geo.coverage import compute_coverage
from maps.assets import inline_assets, use_local_assets
from maps.coverage_map import render_coverage_map
from maps.health_map import render_health_map

CHROMIUM = "/usr/bin/chromium"


def geopandas_baseline(engine: Any, radius_km: float) -> tuple[float, int]:
    """Seconds and covered population computed with geopandas, the way a notebook would."""
    started = time.perf_counter()
    with engine.connect() as conn:
        localities = gpd.read_postgis(
            "SELECT cvegeo, pop_2020, geom FROM localities", conn, geom_col="geom"
        ).to_crs(6372)
        working = gpd.read_postgis(
            "SELECT s.id, s.geom FROM sites s JOIN site_status st ON st.site_id = s.id "
            "WHERE s.status <> 'retired' AND st.last_ok_at >= now() - interval '24 hours'",
            conn,
            geom_col="geom",
        ).to_crs(6372)
    joined = gpd.sjoin_nearest(
        localities, working, how="left", max_distance=radius_km * 1000, distance_col="d"
    )
    covered = joined[joined["d"].notna()].drop_duplicates("cvegeo")
    return time.perf_counter() - started, int(covered["pop_2020"].sum())


def fast_marker_cluster_baseline(engine: Any) -> tuple[float, str]:
    """Seconds to render folium's FastMarkerCluster of every site, and the HTML."""
    started = time.perf_counter()
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT ST_Y(geom), ST_X(geom) FROM sites WHERE status <> 'retired'")
        ).all()
    fmap = folium.Map(location=[23.6, -102.5], zoom_start=5, tiles=None)
    fmap.options["maxZoom"] = 18  # markercluster needs it; folium sets it only with tiles
    use_local_assets(fmap, prefix=None, cluster=True)
    cluster = FastMarkerCluster(  # type: ignore[no-untyped-call]
        [[lat, lon] for lat, lon in rows],
        # The default callback needs Leaflet.awesome-markers; a plain marker is the fair baseline.
        callback="function (row) { return L.marker(new L.LatLng(row[0], row[1])); }",
    )
    # The plugin's own CDN links would not load offline; the map already carries the files.
    cluster.default_js = []
    cluster.default_css = []
    cluster.add_to(fmap)
    html = inline_assets(fmap.get_root().render())
    return time.perf_counter() - started, html


def open_seconds(browser: Any, path: Path, ready: str, shot: Path | None) -> float:
    """Seconds from navigation until ``ready`` is true in headless chromium (no network)."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    context.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.split(":", 1)[0] in ("file", "data", "blob", "about")
            else route.abort()
        ),
    )
    started = time.perf_counter()
    page.goto(path.resolve().as_uri(), wait_until="load", timeout=120_000)
    page.wait_for_function(ready, timeout=120_000)
    seconds = time.perf_counter() - started
    if shot is not None:
        page.wait_for_timeout(500)
        page.screenshot(path=str(shot))
    context.close()
    return seconds


def main() -> None:
    """Prepare, compute, render, open, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the bench cluster")
    parser.add_argument("--radius-km", type=float, default=5.0)
    parser.add_argument("--screenshots", type=Path, default=PROJECT_ROOT / "var" / "bench-maps")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    settings = Settings(pg_data_dir=DATA_DIR, pg_port=free_port(57432))
    cluster = EmbeddedCluster(settings, data_dir=DATA_DIR, unsafe_fast=True)
    url = cluster.start()
    engine = make_engine(url)
    out = Path(tempfile.mkdtemp(prefix="bench-maps-"))
    args.screenshots.mkdir(parents=True, exist_ok=True)
    try:
        if not (prepared(engine) and current_revision(url) == head_revision()):
            print("Preparing the bench database (101,322 sites):", flush=True)
            prepare(url, engine)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))

        print(f"\nCoverage, whole country, radius {args.radius_km:g} km")
        compute_coverage(engine, settings, radius_km=args.radius_km)  # warm caches
        times = []
        for _ in range(3):
            t = time.perf_counter()
            run = compute_coverage(engine, settings, radius_km=args.radius_km)
            times.append(time.perf_counter() - t)
        with engine.connect() as conn:
            covered = conn.execute(
                text("SELECT covered_pop, locality_pop FROM coverage_national WHERE run_id = :r"),
                {"r": run.id},
            ).one()
        base_s, base_pop = geopandas_baseline(engine, args.radius_km)
        print(
            f"  conectado (PostGIS)   best {min(times):6.2f} s  of {len(times)} "
            f"(goal ≤ 10 s); population covered {covered[0]:,} of {covered[1]:,}"
        )
        print(f"  baseline geopandas    {base_s:11.2f} s  population covered {base_pop:,}")

        print("\nMaps (national)")
        renders: dict[str, tuple[float, Path]] = {}
        jobs: list[tuple[str, Callable[[], str]]] = [
            ("coverage", lambda: render_coverage_map(engine, settings)),
            ("health", lambda: render_health_map(engine, settings)),
        ]
        for name, render in jobs:
            render()  # warm
            t = time.perf_counter()
            html = render()
            seconds = time.perf_counter() - t
            path = out / f"{name}.html"
            path.write_text(html, encoding="utf-8")
            renders[name] = (seconds, path)
        seconds, html = fast_marker_cluster_baseline(engine)
        path = out / "fastmarkercluster.html"
        path.write_text(html, encoding="utf-8")
        renders["baseline"] = (seconds, path)

        ready = "window.conectado && conectado.map && !conectado.pending"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            opened = {
                "coverage": open_seconds(
                    browser, renders["coverage"][1], ready, args.screenshots / "coverage.png"
                ),
                "health": open_seconds(
                    browser, renders["health"][1], ready, args.screenshots / "health.png"
                ),
                "baseline": open_seconds(
                    browser,
                    renders["baseline"][1],
                    "document.querySelectorAll('.marker-cluster').length > 0",
                    args.screenshots / "fastmarkercluster.png",
                ),
            }
            browser.close()
        print(f"  {'map':<36}{'render s':>9}{'MB':>7}{'open s':>8}   goals")
        goals = {
            "coverage": "render ≤ 15 s, ≤ 10 MB",
            "health": "render ≤ 15 s, ≤ 15 MB, open ≤ 10 s",
            "baseline": "",
        }
        labels = {
            "coverage": "coverage (2,475 municipalities)",
            "health": "health (101,322 sites)",
            "baseline": "baseline folium FastMarkerCluster",
        }
        for name, (seconds, path) in renders.items():
            size = path.stat().st_size / 1e6
            print(
                f"  {labels[name]:<36}{seconds:>9.2f}{size:>7.1f}{opened[name]:>8.2f}   "
                f"{goals[name]}"
            )
        print(f"\nScreenshots in {args.screenshots}")
    finally:
        engine.dispose()
        shutil.rmtree(out, ignore_errors=True)
        if not args.keep:
            cluster.stop()
            shutil.rmtree(DATA_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
