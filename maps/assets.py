"""The vendored Leaflet assets: referenced under a URL prefix, or inlined into one HTML file.

Folium's defaults load Leaflet, jQuery, Bootstrap and Font Awesome from CDNs; our maps use only
the files in ``maps/static`` (see its README for versions and licences), so they work with no
internet.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import folium

STATIC_DIR = Path(__file__).resolve().parent / "static"

# (folium resource name, file) in load order.
BASE_JS = [("leaflet", "leaflet.js")]
CLUSTER_JS = [("markercluster", "leaflet.markercluster.js")]
OWN_JS = [("conectado", "conectado-maps.js")]
BASE_CSS = [("leaflet_css", "leaflet.css")]
CLUSTER_CSS = [
    ("markercluster_css", "MarkerCluster.css"),
    ("markercluster_default_css", "MarkerCluster.Default.css"),
]
OWN_CSS = [("conectado_css", "conectado-maps.css")]

# Inline rendering first writes links with this prefix, then swaps each for the file's text.
INLINE_PREFIX = "conectado-asset:/"
_SCRIPT_LINK = re.compile(
    r'<script src="' + re.escape(INLINE_PREFIX) + r'([\w.-]+)"></script>', re.IGNORECASE
)
_CSS_LINK = re.compile(
    r'<link rel="stylesheet" href="' + re.escape(INLINE_PREFIX) + r'([\w.-]+)"\s*/?>',
    re.IGNORECASE,
)
_CSS_IMAGE = re.compile(r"url\((images/[\w.-]+\.png)\)")


def use_local_assets(fmap: folium.Map, *, prefix: str | None, cluster: bool = False) -> None:
    """Point ``fmap`` at our own files only: under ``prefix`` (a URL), or inline when None."""
    base = INLINE_PREFIX if prefix is None else prefix.rstrip("/") + "/"
    js = BASE_JS + (CLUSTER_JS if cluster else []) + OWN_JS
    css = BASE_CSS + (CLUSTER_CSS if cluster else []) + OWN_CSS
    fmap.default_js = [(name, base + file) for name, file in js]
    fmap.default_css = [(name, base + file) for name, file in css]


def _read(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")


def _data_uri(match: re.Match[str]) -> str:
    data = base64.b64encode((STATIC_DIR / match.group(1)).read_bytes()).decode("ascii")
    return f"url(data:image/png;base64,{data})"


def _inline_script(match: re.Match[str]) -> str:
    # A literal "</script" inside the code would end the element early.
    code = _read(match.group(1)).replace("</script", "<\\/script")
    return f"<script>/* {match.group(1)} */\n{code}\n</script>"


def _inline_css(match: re.Match[str]) -> str:
    css = _CSS_IMAGE.sub(_data_uri, _read(match.group(1)))
    return f"<style>/* {match.group(1)} */\n{css}\n</style>"


def inline_assets(html: str) -> str:
    """Replace every placeholder asset link in ``html`` by the asset's content."""
    html = _SCRIPT_LINK.sub(_inline_script, html)
    return _CSS_LINK.sub(_inline_css, html)


def static_files() -> list[Path]:
    """The files to serve under the prefix given to ``use_local_assets`` (API, static sites)."""
    return sorted(p for p in STATIC_DIR.rglob("*") if p.is_file() and p.suffix != ".md")
