"""What every map shares: a folium Map on local assets, tiles from settings, raw JS elements."""

from __future__ import annotations

import json
from typing import Any

import folium
from branca.element import MacroElement
from folium.map import Layer
from folium.template import Template

from core.settings import Settings
from maps.assets import inline_assets, use_local_assets

MEXICO_BOUNDS = [[14.5, -118.4], [32.72, -86.7]]


def js_json(value: Any) -> str:
    """``value`` as JSON that is safe inside a <script> element."""
    return json_text_for_script(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def json_text_for_script(text: str) -> str:
    """JSON text (e.g. built by PostGIS) made safe inside a <script> element."""
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


class JsData(MacroElement):
    """A JavaScript variable holding JSON data, written once and shared by several layers."""

    _template = Template(
        """{% macro script(this, kwargs) %}
        var {{ this.get_name() }} = {{ this.json_text }};
        {% endmacro %}"""
    )

    def __init__(self, json_text: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "data"
        self.json_text = json_text_for_script(json_text)


class JsLayer(Layer):
    """A Leaflet layer made by a JavaScript expression; listed in the layer control by name."""

    _template = Template(
        """{% macro script(this, kwargs) %}
        var {{ this.get_name() }} = {{ this.expression }};
        {% endmacro %}"""
    )

    def __init__(self, expression: str, *, name: str, overlay: bool, show: bool = True) -> None:
        super().__init__(name=name, overlay=overlay, control=True, show=show)
        self._name = "layer"
        self.expression = expression


class JsStatement(MacroElement):
    """A JavaScript statement run after the layers added before it (legend, fit, register)."""

    _template = Template(
        """{% macro script(this, kwargs) %}
        {{ this.code }}
        {% endmacro %}"""
    )

    def __init__(self, code: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "statement"
        self.code = code


def new_map(
    settings: Settings,
    *,
    prefix: str | None,
    cluster: bool = False,
    bounds: list[list[float]] | None = None,
) -> folium.Map:
    """A map on our vendored assets with the configured tiles (none when tile_url is empty).

    Without network the tile layer fails quietly and the plain background shows through.
    """
    fmap = folium.Map(
        location=[23.6, -102.5],
        zoom_start=5,
        tiles=None,
        prefer_canvas=True,
        control_scale=True,
        # Map options (folium's min_zoom/max_zoom only reach its own tile layer); clustering
        # needs a maxZoom even when there is no tile layer at all.
        minZoom=3,
        maxZoom=19,
    )
    use_local_assets(fmap, prefix=prefix, cluster=cluster)
    if settings.tile_url:
        folium.TileLayer(
            tiles=settings.tile_url,
            attr=settings.tile_attribution,
            name="Map tiles",
            overlay=True,
            control=True,
            show=True,
            max_zoom=19,
        ).add_to(fmap)
    JsStatement(f"conectado.register({fmap.get_name()});").add_to(fmap)
    fmap.fit_bounds(bounds or MEXICO_BOUNDS)
    return fmap


def render_html(fmap: folium.Map, *, prefix: str | None) -> str:
    """The map as one HTML page: self-contained when ``prefix`` is None."""
    html: str = fmap.get_root().render()
    return inline_assets(html) if prefix is None else html
