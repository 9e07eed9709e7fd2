"""The technician's map: one site, its neighbours within 10 km with status, its municipality."""

from __future__ import annotations

import math
from datetime import datetime
from html import escape

import folium
from sqlalchemy import Engine, text

from core.errors import InvalidInput, NotFound
from core.settings import Settings
from maps.base import JsData, JsLayer, JsStatement, js_json, new_map, render_html
from maps.site_data import STATUS_CODES, site_points
from sites.filters import SiteFilter

NEIGHBOUR_RADIUS_KM = 10.0

_SITE_SQL = """
SELECT s.site_key, s.name, ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat, m.cvegeo, m.name AS mun,
       e.name AS state, ST_AsGeoJSON(m.geom, 5) AS outline
FROM sites s
LEFT JOIN LATERAL (
    SELECT mm.cvegeo, mm.name, mm.cve_ent, mm.geom FROM municipalities mm
    WHERE mm.cvegeo = s.mun_cvegeo
       OR s.mun_cvegeo IS NULL AND mm.geom && ST_Expand(s.geom, 0.02)
          AND ST_DWithin(mm.geom::geography, s.geom::geography, 1000)
    ORDER BY mm.cvegeo = s.mun_cvegeo DESC, mm.geom <-> s.geom, mm.cvegeo
    LIMIT 1
) m ON true
LEFT JOIN states e ON e.cve_ent = m.cve_ent
WHERE s.site_key = :key
"""


def _circle_bounds(lon: float, lat: float, radius_km: float) -> list[list[float]]:
    dlat = radius_km / 111.32
    dlon = radius_km / (111.32 * max(math.cos(math.radians(lat)), 0.01))
    return [[lat - dlat, lon - dlon], [lat + dlat, lon + dlon]]


def site_map(
    engine: Engine,
    settings: Settings,
    site_key: str,
    *,
    radius_km: float = NEIGHBOUR_RADIUS_KM,
    as_of: datetime | None = None,
    prefix: str | None = None,
) -> folium.Map:
    """The folium map around ``site_key``; NotFound when no site has that key."""
    if not 0 < radius_km <= 100:
        raise InvalidInput(f"radius_km={radius_km!r}: the neighbourhood must be 0–100 km.")
    with engine.begin() as conn:
        site = conn.execute(text(_SITE_SQL), {"key": site_key}).one_or_none()
        if site is None:
            raise NotFound(
                f"No site has the key {site_key!r}. Keys are exact (e.g. 20DPR0123X); "
                "`conectado sites find TEXT` searches by name or part of the key."
            )
        lon, lat = float(site.lon), float(site.lat)
        points = site_points(
            conn,
            SiteFilter(near=(lon, lat), radius_km=radius_km),
            as_of=as_of,
            distance_from=(lon, lat),
        )
    fmap = new_map(settings, prefix=prefix, bounds=_circle_bounds(lon, lat, radius_km))
    name = fmap.get_name()
    if site.outline is not None:
        JsLayer(
            f"conectado.outline({name}, {site.outline})",
            name=f"Municipality: {escape(site.mun)}",
            overlay=True,
        ).add_to(fmap)
    JsLayer(
        f"L.circle([{lat!r}, {lon!r}], {{radius: {radius_km * 1000!r}, color: '#444', "
        "weight: 1.5, dashArray: '6 6', fill: false, interactive: false})",
        name=f"{radius_km:g} km around the site",
        overlay=True,
    ).add_to(fmap)
    data = JsData(points.json_text)
    data.add_to(fmap)
    JsLayer(
        f"conectado.sitesLayer({name}, {data.get_name()}, {{radius: 7}})",
        name=f"Sites within {radius_km:g} km ({points.total})",
        overlay=True,
    ).add_to(fmap)
    folium.LayerControl(collapsed=True, position="topright").add_to(fmap)
    place = f"{site.mun}, {site.state}" if site.mun else "outside every municipality"
    header = (
        f"<h4>{escape(site.name)}</h4><code>{escape(site.site_key)}</code> · {escape(place)}"
        f"<br>{points.total - 1} other sites within {radius_km:g} km"
    )
    counts = [points.counts[k] for k in STATUS_CODES]
    symbols = (
        '<div><span class="cx-line" style="border-color:#0b5394"></span>Municipality</div>'
        '<div><span class="cx-line" style="border-top-style:dashed;border-color:#444"></span>'
        f"{radius_km:g} km</div>"
    )
    JsStatement(
        f"conectado.legend({name}, {js_json(header)}, "
        f"{{'*': conectado.statusLegend({js_json(counts)}) + {js_json(symbols)}}}, '*');\n"
        f"conectado.focusSite({name}, {data.get_name()}, {js_json(site.site_key)});"
    ).add_to(fmap)
    return fmap


def render_site_map(
    engine: Engine,
    settings: Settings,
    site_key: str,
    *,
    radius_km: float = NEIGHBOUR_RADIUS_KM,
    as_of: datetime | None = None,
    prefix: str | None = None,
) -> str:
    """The site map as HTML: self-contained, or with assets under ``prefix`` (a URL)."""
    fmap = site_map(engine, settings, site_key, radius_km=radius_km, as_of=as_of, prefix=prefix)
    return render_html(fmap, prefix=prefix)
