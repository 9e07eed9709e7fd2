"""Boundaries simplified for display, kept in ``display_boundaries`` and rebuilt when stale.

Municipalities are simplified as one coverage (shapely's ``coverage_simplify``, GEOS 3.12+),
so neighbours keep sharing their edges: no slivers or gaps at any zoom. PostGIS 3.3 has no
coverage simplification (``ST_CoverageSimplify`` arrives in 3.4) and simplifying each polygon
alone opens gaps between neighbours. State outlines are the union of their simplified
municipalities, made in PostGIS, so they sit exactly on municipal edges.
"""

from __future__ import annotations

import geopandas as gpd
import shapely
from sqlalchemy import Connection, Engine, text

# About 550 m: finer than a pixel up to zoom 8 and the national map stays a few MB.
TOLERANCE_DEG = 0.005
METRES_PER_DEGREE = 111_320.0

SOURCE_SQL = """
    SELECT md5(string_agg(cvegeo || md5(ST_AsBinary(geom)), ',' ORDER BY cvegeo))
           || ':' || CAST(:tol AS text)
    FROM municipalities
"""


def _source(conn: Connection) -> str | None:
    value = conn.execute(text(SOURCE_SQL), {"tol": TOLERANCE_DEG}).scalar_one()
    return None if value is None else str(value)


def display_boundaries_current(conn: Connection) -> bool:
    """True when the stored display boundaries were built from today's municipalities."""
    source = _source(conn)
    stored = conn.execute(
        text(
            "SELECT count(*) FILTER (WHERE level = 'municipality'), min(source), max(source) "
            "FROM display_boundaries"
        )
    ).one()
    munis = conn.execute(text("SELECT count(*) FROM municipalities")).scalar_one()
    return bool(stored[0] == munis and stored[1] == stored[2] == source and source is not None)


def ensure_display_boundaries(engine: Engine) -> bool:
    """Build the display boundaries if missing or stale; return True when it rebuilt them."""
    with engine.begin() as conn:
        # One builder at a time; the others wait and then find them current.
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('conectado.display_boundaries'))"))
        if display_boundaries_current(conn):
            return False
        source = _source(conn)
        frame = gpd.read_postgis(
            text("SELECT cvegeo, geom FROM municipalities ORDER BY cvegeo"), conn, geom_col="geom"
        )
        simple = shapely.make_valid(shapely.coverage_simplify(frame.geometry.values, TOLERANCE_DEG))
        conn.execute(text("DELETE FROM display_boundaries"))
        conn.execute(
            text(
                """
                INSERT INTO display_boundaries (level, key, geom, tolerance_m, source)
                SELECT 'municipality', k,
                       ST_Multi(ST_CollectionExtract(ST_GeomFromWKB(w, 4326), 3)), :tol_m, :src
                FROM unnest(CAST(:keys AS text[]), CAST(:wkbs AS bytea[])) AS x(k, w)
                """
            ),
            {
                "keys": frame["cvegeo"].tolist(),
                "wkbs": [shapely.to_wkb(g) for g in simple],
                "tol_m": TOLERANCE_DEG * METRES_PER_DEGREE,
                "src": source,
            },
        )
        conn.execute(
            text(
                """
                INSERT INTO display_boundaries (level, key, geom, tolerance_m, source)
                SELECT 'state', m.cve_ent,
                       ST_Multi(ST_CollectionExtract(ST_UnaryUnion(ST_Collect(d.geom)), 3)),
                       :tol_m, :src
                FROM display_boundaries d JOIN municipalities m ON m.cvegeo = d.key
                WHERE d.level = 'municipality'
                GROUP BY m.cve_ent
                """
            ),
            {"tol_m": TOLERANCE_DEG * METRES_PER_DEGREE, "src": source},
        )
    return True


def states_geojson(conn: Connection, *, cve_ent: list[str] | None = None) -> str:
    """State outlines for display as GeoJSON text (all, or the states listed)."""
    return str(
        conn.execute(
            text(
                """
                SELECT json_build_object('type', 'FeatureCollection', 'features',
                    COALESCE(json_agg(json_build_object(
                        'type', 'Feature', 'geometry', ST_AsGeoJSON(d.geom, 4)::json,
                        'properties', json_build_object('k', d.key)) ORDER BY d.key), '[]'))
                FROM display_boundaries d
                WHERE d.level = 'state' AND (CAST(:ents AS text[]) IS NULL OR d.key = ANY(:ents))
                """
            ),
            {"ents": cve_ent or None},
        ).scalar_one()
    )
