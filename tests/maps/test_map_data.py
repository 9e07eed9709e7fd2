"""Map data and HTML without a browser: uptime, status counts, assets, errors, boundaries."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest
import shapely
from sqlalchemy import Engine, text

from core.errors import InvalidInput, NotFound
from core.settings import Settings
from maps.assets import STATIC_DIR, inline_assets, static_files
from maps.boundaries import TOLERANCE_DEG, display_boundaries_current, ensure_display_boundaries
from maps.coverage_map import render_coverage_map
from maps.health_map import render_health_map
from maps.site_data import site_points, uptime_window
from maps.site_map import render_site_map
from results.status import uptime_by_site
from sites.filters import SiteFilter

CDN_HINTS = ("cdn.", "cdnjs", "jsdelivr", "unpkg", "bootstrapcdn", "code.jquery", "googleapis")


def _no_remote_assets(html: str) -> None:
    assert not any(hint in html for hint in CDN_HINTS)
    # Every <script>/<link> is inline: no src or href that loads anything.
    assert re.search(r"<script[^>]+src=", html) is None
    assert re.search(r"<link[^>]+href=", html) is None


def test_uptime_24h_matches_the_raw_results(maps_engine: Engine, as_of: datetime) -> None:
    with maps_engine.begin() as conn:
        since, until = uptime_window(conn, as_of)
        # Hours before the last two come from the scheduler's rollups, the rest from raw rows.
        assert since < until < as_of
        assert until == as_of.replace(minute=0, second=0) - timedelta(hours=1)
        points = site_points(conn, SiteFilter(state=["22"]), as_of=as_of)
        raw = uptime_by_site(conn, since=since, until=as_of + timedelta(microseconds=1))
        keys: dict[str, int] = dict(conn.execute(text("SELECT site_key, id FROM sites")).all())
        expected_counts: dict[str, int] = dict(
            conn.execute(
                text(
                    "SELECT CASE WHEN s.status IN ('active', 'installed') "
                    "THEN COALESCE(st.state, 'unknown') ELSE 'unmonitored' END, count(*) "
                    "FROM sites s "
                    "LEFT JOIN site_status st ON st.site_id = s.id "
                    "WHERE s.status <> 'retired' GROUP BY 1"
                )
            ).all()
        )
    data = json.loads(points.json_text)
    n = len(data["key"])
    assert n == points.total == sum(expected_counts.values()) > 500
    assert {len(data[k]) for k in ("lat", "lon", "st", "name", "cat", "prov", "up", "seen")} == {n}
    assert points.counts == {k: expected_counts.get(k, 0) for k in points.counts}
    # suspended sites with a planted (stale) state count as unmonitored, not as that state
    assert points.counts["unmonitored"] > 0
    with_history = 0
    for i, key in enumerate(data["key"]):
        site_id = keys[key]
        if site_id in raw:
            _, rounds, pct = raw[site_id]
            assert pct is not None
            assert rounds > 280  # 24 h of 5-minute rounds from the start of the window's hour
            assert abs(data["up"][i] - 10 * pct) <= 0.5 + 1e-9  # per mille
            with_history += 1
        else:
            assert data["up"][i] is None
    assert with_history > 50
    # Status codes and "last seen" follow site_status.
    states = ["up", "degraded", "down", "unknown", "unmonitored"]
    assert {states[c] for c in data["st"]} == set(expected_counts)
    assert min(s for s in data["seen"] if s is not None) >= 0


def test_maps_are_self_contained_html(
    maps_engine: Engine, map_settings: Settings, as_of: datetime
) -> None:
    coverage = render_coverage_map(maps_engine, map_settings, localities=50)
    health = render_health_map(maps_engine, map_settings, as_of=as_of)
    key = _some_site(maps_engine)
    site = render_site_map(maps_engine, map_settings, key, as_of=as_of)
    for html in (coverage, health, site):
        _no_remote_assets(html)
        assert "L.version" in html or 't.version="1.9.4"' in html
        assert "conectado.register(" in html
    marker = "/* leaflet.markercluster.js */"
    assert marker in health and marker not in coverage
    assert key in site
    # With a prefix the same maps reference our files under it, and only them.
    linked = render_health_map(maps_engine, map_settings, as_of=as_of, prefix="/static/maps")
    sources = re.findall(r'(?:src|href)="([^"]+)"', linked)
    assert sources and all(s.startswith("/static/maps/") for s in sources)
    served = {p.relative_to(STATIC_DIR).as_posix() for p in static_files()}
    assert {s.removeprefix("/static/maps/") for s in sources} <= served
    assert "images/layers.png" in served


def test_tiles_come_from_settings(maps_engine: Engine, as_of: datetime) -> None:
    cfg = Settings(tile_url="http://127.0.0.1:9/tiles/{z}/{x}/{y}.png", tile_attribution="Lab")
    html = render_site_map(maps_engine, cfg, _some_site(maps_engine), as_of=as_of)
    assert "http://127.0.0.1:9/tiles/{z}/{x}/{y}.png" in html
    assert "tile.openstreetmap.org" not in html
    plain = render_site_map(
        maps_engine, Settings(tile_url=""), _some_site(maps_engine), as_of=as_of
    )
    assert "L.tileLayer" not in plain


def test_inlining_escapes_and_embeds_images() -> None:
    html = inline_assets(
        '<link rel="stylesheet" href="conectado-asset:/leaflet.css"/>'
        '<script src="conectado-asset:/conectado-maps.js"></script>'
    )
    assert "url(images/" not in html and "data:image/png;base64," in html
    assert "C.register = function" in html


def test_site_names_cannot_break_out_of_the_page(
    maps_engine: Engine, map_settings: Settings, as_of: datetime
) -> None:
    key = _some_site(maps_engine)
    with maps_engine.begin() as conn:
        conn.execute(
            text("UPDATE sites SET name = :n WHERE site_key = :k"),
            {"n": "</script><script>alert(1)</script>", "k": key},
        )
    try:
        html = render_site_map(maps_engine, map_settings, key, as_of=as_of)
        assert "</script><script>alert(1)" not in html
        assert "<\\/script><script>alert(1)<\\/script>" in html
    finally:
        with maps_engine.begin() as conn:
            conn.execute(
                text("UPDATE sites SET name = 'Sitio restaurado' WHERE site_key = :k"), {"k": key}
            )


def test_clear_errors(maps_engine: Engine, map_settings: Settings) -> None:
    with pytest.raises(NotFound, match="No site has the key 'NOPE'"):
        render_site_map(maps_engine, map_settings, "NOPE")
    with pytest.raises(NotFound, match="No sites match"):
        render_health_map(maps_engine, map_settings, site_filter=SiteFilter(state=["05"]))
    with pytest.raises(InvalidInput, match="radius_km"):
        render_site_map(maps_engine, map_settings, _some_site(maps_engine), radius_km=0)
    with pytest.raises(NotFound, match="run 999"):
        render_coverage_map(maps_engine, map_settings, run_id=999)


def test_display_boundaries_share_edges_and_follow_the_geography(engine: Engine) -> None:
    assert ensure_display_boundaries(engine) is True
    assert ensure_display_boundaries(engine) is False
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT d.key, ST_AsBinary(d.geom), ST_NPoints(d.geom), ST_NPoints(m.geom), "
                "ST_IsValid(d.geom) FROM display_boundaries d JOIN municipalities m "
                "ON m.cvegeo = d.key WHERE d.level = 'municipality'"
            )
        ).all()
        assert len(rows) == 2475 and all(r[4] for r in rows)
        assert sum(r[2] for r in rows) < 0.6 * sum(r[3] for r in rows)
        states = conn.execute(
            text("SELECT count(*) FROM display_boundaries WHERE level = 'state'")
        ).scalar_one()
        assert states == 32
        # Neighbours still meet: simplified Aguascalientes and Jesús María share a border
        # line, and overlap no more than INEGI's own (simplified) boundaries do.
        geoms = {r[0]: shapely.from_wkb(bytes(r[1])) for r in rows}
        a, b = geoms["01001"], geoms["01005"]
        a0, b0 = (shapely.from_wkb(_original(engine, k)) for k in ("01001", "01005"))
        assert a.boundary.intersection(b.boundary).length > 0.05
        assert a.intersection(b).area <= 1.05 * a0.intersection(b0).area + 1e-9
        # No gaps open between neighbours: the pair covers what it covered, within 0.1 %.
        assert shapely.union_all([a, b]).area == pytest.approx(
            shapely.union_all([a0, b0]).area, rel=1e-3
        )
        # Every municipality moved by less than the tolerance.
        assert shapely.hausdorff_distance(a, shapely.from_wkb(_original(engine, "01001"))) < (
            2 * TOLERANCE_DEG
        )
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE municipalities SET geom = ST_Multi(ST_Buffer(geom, 0.001)) "
                "WHERE cvegeo = '01001'"
            )
        )
        assert not display_boundaries_current(conn)


def _original(engine: Engine, cvegeo: str) -> bytes:
    with engine.connect() as conn:
        return bytes(
            conn.execute(
                text("SELECT ST_AsBinary(geom) FROM municipalities WHERE cvegeo = :c"),
                {"c": cvegeo},
            ).scalar_one()
        )


def _some_site(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                text(
                    "SELECT site_key FROM sites WHERE status = 'active' AND id % 10 = 0 "
                    "ORDER BY id LIMIT 1"
                )
            ).scalar_one()
        )
