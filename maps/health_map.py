"""The operators' map: every site coloured by its current status, clustered."""

from __future__ import annotations

from datetime import datetime
from html import escape

import folium
from sqlalchemy import Engine

from core.errors import NotFound
from core.settings import Settings
from maps.base import JsData, JsLayer, JsStatement, js_json, new_map, render_html
from maps.boundaries import ensure_display_boundaries, states_geojson
from maps.site_data import STATUS_CODES, site_points
from sites.filters import SiteFilter


def health_map(
    engine: Engine,
    settings: Settings,
    *,
    site_filter: SiteFilter | None = None,
    as_of: datetime | None = None,
    prefix: str | None = None,
) -> folium.Map:
    """The folium map of the sites ``site_filter`` selects (default: all but retired)."""
    flt = site_filter or SiteFilter()
    ensure_display_boundaries(engine)
    with engine.begin() as conn:
        points = site_points(conn, flt, as_of=as_of)
        states = states_geojson(conn)
    if points.total == 0 and (flt.state or flt.municipality):
        raise NotFound(
            "No sites match the filter (state "
            f"{', '.join(flt.state) or 'any'}, municipality {', '.join(flt.municipality) or 'any'}"
            "); check the codes (CVE_ENT is 2 digits, CVEGEO 5)."
        )
    fmap = new_map(settings, prefix=prefix, cluster=True, bounds=points.bounds)
    name = fmap.get_name()
    borders = JsData(states)
    borders.add_to(fmap)
    JsLayer(
        f"conectado.stateBorders({name}, {borders.get_name()})", name="State borders", overlay=True
    ).add_to(fmap)
    data = JsData(points.json_text)
    data.add_to(fmap)
    JsLayer(
        f"conectado.healthLayer({name}, {data.get_name()})",
        name=f"Sites ({points.total:,})",
        overlay=True,
    ).add_to(fmap)
    folium.LayerControl(collapsed=True, position="topright").add_to(fmap)
    scope = "all states" if not flt.state else "state " + ", ".join(flt.state)
    header = f"<h4>Site status now</h4>{escape(scope)} · {points.total:,} sites"
    counts = [points.counts[k] for k in STATUS_CODES]
    footer = "Clusters show their mix of states; click a site for details."
    JsStatement(
        f"conectado.legend({name}, {js_json(header)}, "
        f"{{'*': conectado.statusLegend({js_json(counts)}) + {js_json(footer)}}}, '*');"
    ).add_to(fmap)
    return fmap


def render_health_map(
    engine: Engine,
    settings: Settings,
    *,
    site_filter: SiteFilter | None = None,
    as_of: datetime | None = None,
    prefix: str | None = None,
) -> str:
    """The health map as HTML: self-contained, or with assets under ``prefix`` (a URL)."""
    fmap = health_map(engine, settings, site_filter=site_filter, as_of=as_of, prefix=prefix)
    return render_html(fmap, prefix=prefix)
