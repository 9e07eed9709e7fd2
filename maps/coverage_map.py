"""The planners' map: municipalities by population coverage or sites per 10,000 inhabitants."""

from __future__ import annotations

from html import escape

import folium
from sqlalchemy import Connection, Engine, text

from core.settings import Settings
from geo.coverage_queries import get_run, uncovered_localities
from maps.base import JsData, JsLayer, JsStatement, js_json, new_map, render_html
from maps.boundaries import ensure_display_boundaries, states_geojson

UNCOVERED_COLOR = "#d7301f"
NULL_COLOR = "#bdbdbd"
COVERAGE_BINS = [20.0, 40.0, 60.0, 80.0, 95.0]
COVERAGE_COLORS = ["#ffffcc", "#c7e9b4", "#7fcdbb", "#41b6c4", "#2c7fb8", "#253494"]
DENSITY_BINS = [1.0, 2.5, 5.0, 10.0, 20.0]
DENSITY_COLORS = ["#f2f0f7", "#dadaeb", "#bcbddc", "#9e9ac8", "#756bb1", "#54278f"]
COVERAGE_LAYER = "Population coverage"
DENSITY_LAYER = "Sites per 10,000 inhabitants"
DEFAULT_LOCALITIES = 500

_MUNICIPALITIES_SQL = """
SELECT json_build_object('type', 'FeatureCollection', 'features', COALESCE(json_agg(
    json_build_object(
        'type', 'Feature',
        'geometry', ST_AsGeoJSON(d.geom, 4)::json,
        'properties', json_build_object(
            'k', c.cvegeo, 'n', c.name, 'e', s.name,
            'p', COALESCE(c.pop_2020, c.locality_pop), 's', c.sites, 'w', c.working_sites,
            'c', round(c.covered_pct_census::numeric, 1), 'cp', c.covered_pop,
            'd', round(c.sites_per_10k::numeric, 2), 'u', c.uncovered, 'up', c.uncovered_pop
        )
    ) ORDER BY c.cvegeo), '[]'))::text
FROM coverage_municipality c
JOIN display_boundaries d ON d.level = 'municipality' AND d.key = c.cvegeo
JOIN states s ON s.cve_ent = c.cve_ent
WHERE c.run_id = :run_id
"""


def _bin_legend(title: str, bins: list[float], colors: list[str], unit: str) -> str:
    edges = [0.0, *bins]
    rows = []
    for i, color in enumerate(colors):
        label = f"{edges[i]:g}–{edges[i + 1]:g}{unit}" if i < len(bins) else f"≥ {edges[i]:g}{unit}"
        rows.append(f'<div><span class="cx-swatch" style="background:{color}"></span>{label}</div>')
    return f"<h4>{escape(title)}</h4>" + "".join(rows)


def _localities_rows(conn: Connection, run_id: int, limit: int) -> list[list[object]]:
    return [
        [
            round(loc.lat, 5),
            round(loc.lon, 5),
            loc.pop_2020,
            loc.name,
            loc.municipality,
            loc.state_name,
            None if loc.nearest_distance_m is None else round(loc.nearest_distance_m),
        ]
        for loc in uncovered_localities(conn, run_id, limit=limit)
    ]


def coverage_map(
    engine: Engine,
    settings: Settings,
    *,
    run_id: int | None = None,
    prefix: str | None = None,
    localities: int = DEFAULT_LOCALITIES,
) -> folium.Map:
    """The folium map of a coverage run (default: the newest); see ``render_coverage_map``."""
    ensure_display_boundaries(engine)
    with engine.connect() as conn:
        run = get_run(conn, run_id)
        municipalities = conn.execute(text(_MUNICIPALITIES_SQL), {"run_id": run.id}).scalar_one()
        states = states_geojson(conn)
        largest = _localities_rows(conn, run.id, localities)

    fmap = new_map(settings, prefix=prefix)
    name = fmap.get_name()
    data = JsData(municipalities)
    data.add_to(fmap)
    radius = f"{run.radius_km:g}"
    common = {"uncoveredColor": UNCOVERED_COLOR, "nullColor": NULL_COLOR, "radiusKm": radius}
    JsLayer(
        f"conectado.coverageLayer({name}, {data.get_name()}, "
        + js_json({**common, "field": "c", "bins": COVERAGE_BINS, "colors": COVERAGE_COLORS})
        + ")",
        name=COVERAGE_LAYER,
        overlay=False,
        show=True,
    ).add_to(fmap)
    JsLayer(
        f"conectado.coverageLayer({name}, {data.get_name()}, "
        + js_json({**common, "field": "d", "bins": DENSITY_BINS, "colors": DENSITY_COLORS})
        + ")",
        name=DENSITY_LAYER,
        overlay=False,
        show=False,
    ).add_to(fmap)
    state_data = JsData(states)
    state_data.add_to(fmap)
    JsLayer(
        f"conectado.stateBorders({name}, {state_data.get_name()})",
        name="State borders",
        overlay=True,
    ).add_to(fmap)
    JsLayer(
        f"conectado.localitiesLayer({name}, {js_json(largest)}, {js_json(radius)})",
        name=f"Largest uncovered localities ({len(largest)})",
        overlay=True,
    ).add_to(fmap)
    folium.LayerControl(collapsed=False, position="topright").add_to(fmap)

    basis = (
        f"working = answered probes in the last {run.working_hours:g} h"
        if run.basis == "probes"
        else "no probe data yet: working = active in the inventory"
    )
    header = (
        f"<b>Coverage run {run.id}</b> · R = {radius} km<br>"
        f"{escape(basis)}<br>computed {run.computed_at:%Y-%m-%d %H:%M %Z}"
    )
    shared = (
        f'<div><span class="cx-swatch" style="background:{UNCOVERED_COLOR}"></span>'
        "No working site in the municipality</div>"
        f'<div><span class="cx-swatch" style="background:{NULL_COLOR}"></span>'
        "No census population (created after 2020)</div>"
        '<div><span class="cx-line"></span>State border</div>'
        '<div><span class="cx-dot" style="background:#ffd400"></span>'
        f"Largest localities with no working site within {radius} km</div>"
    )
    sections = {
        COVERAGE_LAYER: _bin_legend(
            f"Population within {radius} km of a working site",
            COVERAGE_BINS,
            COVERAGE_COLORS,
            " %",
        ),
        DENSITY_LAYER: _bin_legend(DENSITY_LAYER, DENSITY_BINS, DENSITY_COLORS, ""),
        "*": shared,
    }
    JsStatement(
        f"conectado.legend({name}, {js_json(header)}, {js_json(sections)}, "
        f"{js_json(COVERAGE_LAYER)});"
    ).add_to(fmap)
    return fmap


def render_coverage_map(
    engine: Engine,
    settings: Settings,
    *,
    run_id: int | None = None,
    prefix: str | None = None,
    localities: int = DEFAULT_LOCALITIES,
) -> str:
    """The coverage map as HTML: self-contained, or with assets under ``prefix`` (a URL)."""
    fmap = coverage_map(engine, settings, run_id=run_id, prefix=prefix, localities=localities)
    return render_html(fmap, prefix=prefix)
