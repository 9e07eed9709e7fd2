"""Each map, rendered from real PostGIS data, opened in headless Debian chromium.

Screenshots go to var/screenshots/. Nothing may be fetched from anywhere but the file itself
(and 127.0.0.1 where a test points the tile layer at a closed loopback port).
"""

from __future__ import annotations

import json
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.settings import Settings
from maps.coverage_map import COVERAGE_LAYER, DENSITY_LAYER, render_coverage_map
from maps.health_map import render_health_map
from maps.site_map import render_site_map
from sites.filters import SiteFilter
from tests.maps.browser import BACKGROUND, count_colour, map_pixels, open_map
from tests.maps.conftest import SCREENSHOTS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

KNOWN = "22014"  # Querétaro (the municipality of the state capital)


def _write(tmp_path: Path, name: str, html: str) -> Path:
    path = tmp_path / f"{name}.html"
    path.write_text(html, encoding="utf-8")
    return path


def _screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def _assert_not_blank(path: Path, *, painted_share: float) -> None:
    colours, painted, stddev = map_pixels(path)
    assert colours >= 6, f"{path.name}: map centre has {colours} colours"
    assert painted > painted_share, f"{path.name}: only {painted:.0%} of the map centre is drawn"
    assert stddev > 5, f"{path.name}: flat image (std {stddev:.1f})"


def _assert_offline(opened: Any, *, tiles: str | None = None) -> None:
    assert opened.blocked == [], f"tried to leave the machine: {opened.blocked[:5]}"
    for url in opened.requests:
        ok = url.startswith(("file://", "data:")) or (tiles is not None and url.startswith(tiles))
        assert ok, f"unexpected request {url}"
    # Failing tiles are the only errors allowed (they are what "no network" looks like).
    errors = opened.console_errors
    if tiles is not None:
        errors = [e for e in errors if "ERR_CONNECTION_REFUSED" not in e]
    assert not errors, errors[:5]


def _closed_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _hover_point(engine: Engine, cvegeo: str) -> tuple[float, float]:
    with engine.connect() as conn:
        lon, lat = conn.execute(
            text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p "
                "FROM display_boundaries WHERE level = 'municipality' AND key = :k) x"
            ),
            {"k": cvegeo},
        ).one()
    return float(lat), float(lon)


def _mouse_at(page: Any, lat: float, lon: float) -> tuple[float, float]:
    xy = page.evaluate(
        """([lat, lon]) => {
            const p = conectado.map.latLngToContainerPoint([lat, lon]);
            const r = conectado.map.getContainer().getBoundingClientRect();
            return [r.left + p.x, r.top + p.y];
        }""",
        [lat, lon],
    )
    return float(xy[0]), float(xy[1])


def test_coverage_map_in_chromium(
    browser: Any, maps_engine: Engine, map_settings: Settings, tmp_path: Path
) -> None:
    html = render_coverage_map(maps_engine, map_settings)
    opened = open_map(browser, _write(tmp_path, "coverage", html))
    try:
        page = opened.page
        shot = _screenshot(page, "coverage-national")
        _assert_not_blank(shot, painted_share=0.2)
        legend = page.locator(".conectado-legend")
        assert legend.is_visible()
        assert "Population within 5 km of a working site" in legend.inner_text()
        assert "No working site in the municipality" in legend.inner_text()
        # The uncovered colour is drawn: only Querétaro has sites, so most of Mexico is red
        # (fill opacity 0.85 over the background).
        r, g, b = (
            round(0.85 * c + 0.15 * bg)
            for c, bg in zip((0xD7, 0x30, 0x1F), BACKGROUND, strict=True)
        )
        red = (r, g, b)
        assert count_colour(shot, red, tolerance=12) > 30_000

        lat, lon = _hover_point(maps_engine, KNOWN)
        page.evaluate("([lat, lon]) => { conectado.map.setView([lat, lon], 10); }", [lat, lon])
        page.wait_for_timeout(400)
        x, y = _mouse_at(page, lat, lon)
        page.mouse.move(x - 3, y - 3)
        page.mouse.move(x, y)
        tooltip = page.locator(".leaflet-tooltip.cx-tooltip")
        tooltip.wait_for(state="visible", timeout=5000)
        text_ = tooltip.inner_text()
        with maps_engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT name, pop_2020, sites, working_sites, covered_pct_census "
                    "FROM coverage_municipality WHERE cvegeo = :k "
                    "AND run_id = (SELECT max(id) FROM coverage_runs)"
                ),
                {"k": KNOWN},
            ).one()
        assert row.name in text_ and KNOWN in text_
        assert f"{row.pop_2020:,}" in text_
        assert f"{row.covered_pct_census:.1f} %" in text_
        assert row.sites > 0 and f"Sites\t{row.sites:,}" in text_.replace(" \t", "\t")
        _screenshot(page, "coverage-tooltip")

        # Switch to sites per 10,000: the legend follows the layer.
        page.get_by_text(DENSITY_LAYER, exact=True).first.click()
        page.wait_for_timeout(300)
        sections = page.locator(".cx-legend-section:visible")
        visible = " ".join(sections.all_inner_texts())
        assert DENSITY_LAYER in visible and "Population within" not in visible
        _screenshot(page, "coverage-density")
        page.get_by_text(COVERAGE_LAYER, exact=True).first.click()
        _assert_offline(opened)
    finally:
        opened.close()


def test_coverage_map_on_a_phone_starts_with_its_controls_folded(
    browser: Any, maps_engine: Engine, map_settings: Settings, tmp_path: Path
) -> None:
    """At desktop size the coverage map's layer switcher is open; on a phone it starts as its
    icon (the list covered the top of the map) and a tap opens it, the legend likewise."""
    html = render_coverage_map(maps_engine, map_settings)
    path = _write(tmp_path, "coverage-sizes", html)
    for viewport, expanded in (((1280, 860), 1), ((360, 640), 0)):
        opened = open_map(browser, path, viewport=viewport)
        try:
            page = opened.page
            assert page.locator(".leaflet-control-layers-expanded").count() == expanded
            assert page.locator(".cx-legend-section").first.is_visible() == bool(expanded)
            if not expanded:
                _screenshot(page, "coverage-phone")
                page.hover(".leaflet-control-layers")  # the icon opens the list
                assert page.locator(".leaflet-control-layers-expanded").count() == 1
                page.get_by_text(DENSITY_LAYER, exact=True).first.click()
                page.click(".cx-legend-toggle")
                visible = " ".join(page.locator(".cx-legend-section:visible").all_inner_texts())
                assert DENSITY_LAYER in visible
        finally:
            opened.close()


def test_health_map_in_chromium(
    browser: Any, maps_engine: Engine, map_settings: Settings, as_of: datetime, tmp_path: Path
) -> None:
    html = render_health_map(
        maps_engine, map_settings, site_filter=SiteFilter(state=["22"]), as_of=as_of
    )
    opened = open_map(browser, _write(tmp_path, "health", html))
    try:
        page = opened.page
        page.wait_for_selector(".cx-cluster")
        page.wait_for_timeout(700)  # let the initial zoom animation finish
        shot = _screenshot(page, "health-queretaro")
        _assert_not_blank(shot, painted_share=0.05)
        legend = page.locator(".conectado-legend").inner_text()
        with maps_engine.connect() as conn:
            counts: dict[str, int] = dict(
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
            site = conn.execute(
                text(
                    "SELECT s.site_key, s.name, ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat "
                    "FROM sites s JOIN site_status st ON st.site_id = s.id "
                    "WHERE st.state = 'up' AND s.id % 10 = 0 ORDER BY s.id LIMIT 1"
                )
            ).one()
        for state, n in counts.items():
            assert f"{state}\t{n:,}" in legend.replace(" \t", "\t")
        # Clusters hold every site.
        total = page.evaluate(
            "() => Array.from(document.querySelectorAll('.cx-cluster span'))"
            ".reduce((a, e) => a + Number(e.textContent.replace(/,/g, '')), 0)"
        )
        assert 0 < total <= sum(counts.values())
        # Zoom onto one site (clustering stops at 15) and click it: the popup has its details.
        page.evaluate(
            "([lat, lon]) => { conectado.map.setView([lat, lon], 17, {animate: false}); }",
            [site.lat, site.lon],
        )
        page.wait_for_timeout(600)
        x, y = _mouse_at(page, site.lat, site.lon)
        page.mouse.click(x, y)
        popup = page.locator(".leaflet-popup-content")
        popup.wait_for(state="visible", timeout=5000)
        body = popup.inner_text()
        assert site.site_key in body and site.name in body
        assert "Uptime 24 h" in body and "%" in body.split("Uptime 24 h")[1]
        assert "Last seen" in body and "min ago" in body
        _screenshot(page, "health-popup")
        _assert_offline(opened)
    finally:
        opened.close()


def test_site_map_in_chromium_with_unreachable_tiles(
    browser: Any, maps_engine: Engine, as_of: datetime, tmp_path: Path
) -> None:
    # Tiles from a closed loopback port: every tile fails, the map must still draw.
    tiles = f"http://127.0.0.1:{_closed_loopback_port()}/"
    cfg = Settings(tile_url=tiles + "{z}/{x}/{y}.png", tile_attribution="none")
    with maps_engine.connect() as conn:
        key, mun = conn.execute(
            text(
                "SELECT s.site_key, m.name FROM sites s JOIN municipalities m "
                "ON m.cvegeo = s.mun_cvegeo WHERE s.mun_cvegeo = :k AND s.status = 'active' "
                "ORDER BY s.id LIMIT 1"
            ),
            {"k": KNOWN},
        ).one()
    html = render_site_map(maps_engine, cfg, key, as_of=as_of)
    opened = open_map(browser, _write(tmp_path, "site", html))
    try:
        page = opened.page
        page.wait_for_timeout(500)
        shot = _screenshot(page, "site-technician")
        _assert_not_blank(shot, painted_share=0.05)
        popup = page.locator(".leaflet-popup-content").inner_text()
        assert key in popup
        legend = page.locator(".conectado-legend").inner_text()
        assert key in legend and mun in legend and "10 km" in legend
        # The municipality outline and the focus ring are drawn in their blue.
        assert count_colour(shot, (0x0B, 0x53, 0x94), tolerance=25) > 300
        assert any(u.startswith(tiles) for u in opened.requests)
        _assert_offline(opened, tiles=tiles)
        data = json.loads(html.split("var data_", 1)[1].split(" = ", 1)[1].split(";\n", 1)[0])
        assert max(data["dist"]) <= 10_000 and 0 in data["dist"]
    finally:
        opened.close()


@pytest.mark.parametrize(
    "viewport",
    [(360, 640), (540, 420)],
    ids=["phone", "site-page-frame"],  # the frame: half of the site page at 1280 px, 420 high
)
def test_site_map_on_a_phone_keeps_the_map_visible(
    browser: Any, maps_engine: Engine, as_of: datetime, tmp_path: Path, viewport: tuple[int, int]
) -> None:
    """On a small map (a phone, or the site page's frame on a desktop) the legend starts folded
    and no popup is open, so the site and its ring are not covered; the legend unfolds on a
    tap, the site's popup opens on a tap on the site."""
    cfg = Settings(tile_url="", tile_attribution="none")
    with maps_engine.connect() as conn:
        key, lon, lat = conn.execute(
            text(
                "SELECT site_key, ST_X(geom), ST_Y(geom) FROM sites "
                "WHERE mun_cvegeo = :k AND status = 'active' ORDER BY id LIMIT 1"
            ),
            {"k": KNOWN},
        ).one()
    html = render_site_map(maps_engine, cfg, key, as_of=as_of)
    opened = open_map(browser, _write(tmp_path, "site-phone", html), viewport=viewport)
    try:
        page = opened.page
        page.wait_for_timeout(300)
        assert page.locator(".leaflet-popup").count() == 0
        legend = page.locator(".conectado-legend")
        assert not page.locator(".cx-legend-section").first.is_visible()
        box = legend.bounding_box()
        assert box is not None and box["width"] * box["height"] < 0.05 * viewport[0] * viewport[1]
        _screenshot(page, f"site-{viewport[0]}x{viewport[1]}")
        page.click(".cx-legend-toggle")
        assert key in legend.inner_text() and "10 km" in legend.inner_text()
        page.click(".cx-legend-toggle")  # folds again
        assert not page.locator(".cx-legend-section").first.is_visible()
        page.mouse.click(*_mouse_at(page, float(lat), float(lon)))
        popup = page.locator(".leaflet-popup-content")
        popup.wait_for(state="visible", timeout=5000)
        assert key in popup.inner_text()
        _assert_offline(opened)
    finally:
        opened.close()
