"""OGC API – Features (Part 1: Core, GeoJSON, OpenAPI 3.0) under /ogc, for QGIS and friends.

``/`` is the operators' dashboard, so the OGC landing page lives at ``/ogc`` and every OGC
path below it: ``/ogc/conformance``, ``/ogc/collections``, ``/ogc/collections/sites/items``,
``/ogc/collections/municipalities/items``. In QGIS: Layer › Add WFS / OGC API – Features
layer, URL ``http://HOST:PORT/ogc``, with an API key sent as the ``X-API-Key`` header
(Authentication › API Header).
"""

# No `from __future__ import annotations`: the page-size cap comes from the settings.

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import Engine, text

from api.cache import cached_or_built
from api.deps import Conn, CoverageReader, Reader
from api.openapi import ref
from api.params import ProviderNames, parse_floats
from api.queries.sites_json import page_json
from api.routes.sites import SiteFeature, filter_from_query
from core.errors import NotFound
from core.settings import Settings
from geo.coverage_queries import latest_run
from sites.search import count_sites

GEOJSON = "application/geo+json"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
]
MEXICO_BBOX = [-118.6, 14.3, -86.5, 32.8]


class Link(BaseModel):
    """A typed link (OGC API)."""

    href: str
    rel: str
    type: str | None = None
    title: str | None = None


class Landing(BaseModel):
    """The OGC API landing page."""

    title: str
    description: str
    links: list[Link]


class Conformance(BaseModel):
    """The conformance classes this API implements."""

    conformsTo: list[str]  # noqa: N815 - OGC member name


class SpatialExtent(BaseModel):
    """Bounding box of a collection (CRS84)."""

    bbox: list[list[float]]
    crs: str = CRS84


class Extent(BaseModel):
    """Extent of a collection."""

    spatial: SpatialExtent


class Collection(BaseModel):
    """One feature collection."""

    id: str
    title: str
    description: str
    itemType: str = "feature"  # noqa: N815
    crs: list[str] = [CRS84]
    extent: Extent
    links: list[Link]


class Collections(BaseModel):
    """The feature collections."""

    collections: list[Collection]
    links: list[Link]


class OgcSitesPage(BaseModel):
    """A page of sites as an OGC API FeatureCollection."""

    type: Literal["FeatureCollection"]
    features: list[SiteFeature]
    numberMatched: int  # noqa: N815
    numberReturned: int  # noqa: N815
    timeStamp: str  # noqa: N815
    links: list[Link]


class MunicipalityFeature(BaseModel):
    """A municipality with its coverage figures (geometry simplified for display)."""

    type: Literal["Feature"]
    id: str
    geometry: dict[str, Any] | None
    properties: dict[str, Any]


class OgcMunicipalitiesPage(BaseModel):
    """A page of municipalities as an OGC API FeatureCollection."""

    type: Literal["FeatureCollection"]
    features: list[MunicipalityFeature]
    numberMatched: int  # noqa: N815
    numberReturned: int  # noqa: N815
    timeStamp: str  # noqa: N815
    links: list[Link]


EXTRA_MODELS: list[type[BaseModel]] = [
    OgcSitesPage,
    OgcMunicipalitiesPage,
    SiteFeature,
    MunicipalityFeature,
]

_MUNICIPALITY_SQL = """
WITH run AS (SELECT CAST(:run_id AS bigint) AS id),
matched AS (
    SELECT m.cvegeo FROM municipalities m
    WHERE (CAST(:bbox AS text) IS NULL OR m.geom && ST_MakeEnvelope(
              CAST(:x1 AS float8), CAST(:y1 AS float8), CAST(:x2 AS float8),
              CAST(:y2 AS float8), 4326))
      AND (CAST(:key AS text) IS NULL OR m.cvegeo = :key)
),
page AS (
    SELECT cvegeo FROM matched ORDER BY cvegeo LIMIT :limit OFFSET :offset
)
SELECT (SELECT count(*) FROM matched),
       (SELECT count(*) FROM page),
       coalesce((
           SELECT string_agg(json_build_object(
               'type', 'Feature',
               'id', m.cvegeo,
               'geometry', ST_AsGeoJSON(coalesce(d.geom, m.geom), 5)::json,
               'properties', json_build_object(
                   'cvegeo', m.cvegeo, 'name', m.name, 'cve_ent', m.cve_ent,
                   'state_name', e.name, 'pop_2020', m.pop_2020, 'area_km2', m.area_km2,
                   'run_id', c.run_id, 'uncovered', c.uncovered, 'sites', c.sites,
                   'active_sites', c.active_sites, 'working_sites', c.working_sites,
                   'sites_per_10k', c.sites_per_10k, 'working_per_10k', c.working_per_10k,
                   'locality_pop', c.locality_pop, 'covered_pop', c.covered_pop,
                   'covered_pct_census', c.covered_pct_census,
                   'covered_pct_localities', c.covered_pct_localities,
                   'uncovered_pop', c.uncovered_pop, 'priority_score', c.priority_score)
           )::text, ',' ORDER BY m.cvegeo)
           FROM page p
           JOIN municipalities m ON m.cvegeo = p.cvegeo
           JOIN states e ON e.cve_ent = m.cve_ent
           LEFT JOIN display_boundaries d ON d.level = 'municipality' AND d.key = m.cvegeo
           LEFT JOIN coverage_municipality c ON c.run_id = (SELECT id FROM run)
                                             AND c.cvegeo = m.cvegeo
       ), '')
"""


def _links(request: Request, *, matched: int, returned: int, offset: int, limit: int) -> str:
    url = request.url
    links = [
        {"href": str(url), "rel": "self", "type": GEOJSON, "title": "this page"},
    ]
    if offset + returned < matched:
        nxt = url.include_query_params(offset=offset + limit, limit=limit)
        links.append({"href": str(nxt), "rel": "next", "type": GEOJSON, "title": "next page"})
    if offset > 0:
        prev = url.include_query_params(offset=max(offset - limit, 0), limit=limit)
        links.append({"href": str(prev), "rel": "prev", "type": GEOJSON, "title": "previous"})
    return json.dumps(links)


def _collection(base: str, cid: str, title: str, description: str) -> Collection:
    return Collection(
        id=cid,
        title=title,
        description=description,
        extent=Extent(spatial=SpatialExtent(bbox=[MEXICO_BBOX])),
        links=[
            Link(href=f"{base}/ogc/collections/{cid}", rel="self", type="application/json"),
            Link(
                href=f"{base}/ogc/collections/{cid}/items",
                rel="items",
                type=GEOJSON,
                title=f"{title} as GeoJSON",
            ),
        ],
    )


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def build_router(settings: Settings) -> APIRouter:
    """The /ogc routes."""
    router = APIRouter(prefix="/ogc", tags=["OGC API – Features"])
    cap = settings.page_size_max
    Limit = Annotated[  # noqa: N806
        int, Query(ge=1, le=cap, description=f"Features per page (≤ {cap}).")
    ]
    Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Features to skip.")]  # noqa: N806
    Bbox = Annotated[  # noqa: N806
        str | None, Query(description="min_lon,min_lat,max_lon,max_lat (CRS84).")
    ]

    def collections_of(request: Request) -> list[Collection]:
        base = _base(request)
        return [
            _collection(
                base,
                "sites",
                "Sites",
                "Mexico Conectado's connected public sites "
                "with their inventory fields and current probe state.",
            ),
            _collection(
                base,
                "municipalities",
                "Municipalities",
                "INEGI municipalities with "
                "the newest coverage figures (needs a planner, operator or admin key).",
            ),
        ]

    @router.get("", response_model=Landing, summary="OGC API landing page")
    def landing(request: Request) -> Landing:
        """Links to the API definition, conformance and the collections (no key needed)."""
        base = _base(request)
        return Landing(
            title="Conectado — OGC API – Features",
            description="The Mexico Conectado inventory and coverage as OGC API – Features.",
            links=[
                Link(href=f"{base}/ogc", rel="self", type="application/json"),
                Link(
                    href=f"{base}/openapi.json",
                    rel="service-desc",
                    type="application/vnd.oai.openapi+json;version=3.0",
                    title="API definition",
                ),
                Link(href=f"{base}/docs", rel="service-doc", type="text/html", title="Docs"),
                Link(href=f"{base}/ogc/conformance", rel="conformance", type="application/json"),
                Link(href=f"{base}/ogc/collections", rel="data", type="application/json"),
            ],
        )

    @router.get("/conformance", response_model=Conformance, summary="Conformance classes")
    def conformance() -> Conformance:
        """The OGC conformance classes implemented (no key needed)."""
        return Conformance(conformsTo=CONFORMANCE)

    @router.get("/collections", response_model=Collections, summary="Feature collections")
    def collections(request: Request, caller: Reader) -> Collections:
        """The sites and municipalities collections."""
        base = _base(request)
        return Collections(
            collections=collections_of(request),
            links=[Link(href=f"{base}/ogc/collections", rel="self", type="application/json")],
        )

    @router.get("/collections/{collection_id}", response_model=Collection, summary="One collection")
    def collection(
        request: Request,
        caller: Reader,
        collection_id: Annotated[str, Path(max_length=50)],
    ) -> Collection:
        """Metadata of one collection."""
        for item in collections_of(request):
            if item.id == collection_id:
                return item
        raise NotFound(f"collection {collection_id!r}: use sites or municipalities.")

    @router.get(
        "/collections/sites/items",
        response_class=Response,
        summary="Sites as GeoJSON features",
        responses={200: {"content": {GEOJSON: {"schema": ref(OgcSitesPage)}}}},
    )
    async def site_items(
        request: Request,
        caller: Reader,
        bbox: Bbox = None,
        limit: Limit = 10,
        offset: Offset = 0,
        category: Annotated[list[str] | None, Query()] = None,
        status: Annotated[list[str] | None, Query()] = None,
        state: Annotated[list[str] | None, Query()] = None,
        provider: ProviderNames = None,
        f: Annotated[Literal["json", "geojson"] | None, Query()] = None,
    ) -> Response:
        """A page of sites ordered by id with numberMatched/numberReturned and next/prev links;
        category, status, state and provider filter on properties."""
        flt = filter_from_query(
            bbox=bbox,
            near=None,
            radius_km=None,
            nearest=None,
            municipality=None,
            state=state,
            category=category,
            status=status,
            technology=None,
            provider=provider,
            text=None,
        )
        engine: Engine = request.app.state.engine

        def build() -> tuple[str, str]:
            with engine.begin() as conn:
                page = page_json(conn, flt, offset=offset, limit=limit, geojson=True)
                matched = count_sites(conn, flt)
            links = _links(
                request, matched=matched, returned=page.returned, offset=offset, limit=limit
            )
            stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            body = (
                f'{{"type":"FeatureCollection","numberMatched":{matched},'
                f'"numberReturned":{page.returned},"timeStamp":"{stamp}","links":{links},'
                f'"features":[{page.items}]}}'
            )
            return body, GEOJSON

        # QGIS asks again for the same extents as the user pans and zooms back.
        response = await cached_or_built(request, ("ogc-sites", str(request.url)), build)
        assert response is not None  # build always answers
        return response

    @router.get(
        "/collections/sites/items/{feature_id}",
        response_class=Response,
        summary="One site as a GeoJSON feature",
        responses={200: {"content": {GEOJSON: {"schema": ref(SiteFeature)}}}},
    )
    def site_item(
        conn: Conn,
        caller: Reader,
        feature_id: Annotated[str, Path(min_length=1, max_length=100)],
    ) -> Response:
        """The site whose key is ``feature_id``."""
        flt = filter_from_query(
            bbox=None,
            near=None,
            radius_km=None,
            nearest=None,
            municipality=None,
            state=None,
            category=None,
            status=None,
            technology=None,
            provider=None,
            text=None,
        ).model_copy(update={"site_key": [feature_id]})
        page = page_json(conn, flt, limit=1, geojson=True)
        if not page.returned:
            raise NotFound(f"feature {feature_id!r}: no site has that key.")
        return Response(page.items, media_type=GEOJSON)

    def municipality_page(
        conn: Any, *, bbox: str | None, key: str | None, limit: int, offset: int
    ) -> tuple[int, int, str]:
        box = parse_floats("bbox", bbox, 4, "min_lon,min_lat,max_lon,max_lat")
        run = latest_run(conn)
        x1, y1, x2, y2 = box if box else (None, None, None, None)
        matched, returned, items = conn.execute(
            text(_MUNICIPALITY_SQL),
            {
                "run_id": run.id if run else None,
                "bbox": bbox,
                "x1": x1,
                "y1": y1,
                "x2": x2,
                "y2": y2,
                "key": key,
                "limit": limit,
                "offset": offset,
            },
        ).one()
        return int(matched), int(returned), str(items)

    @router.get(
        "/collections/municipalities/items",
        response_class=Response,
        summary="Municipalities with coverage as GeoJSON features",
        responses={200: {"content": {GEOJSON: {"schema": ref(OgcMunicipalitiesPage)}}}},
    )
    def municipality_items(
        request: Request,
        conn: Conn,
        caller: CoverageReader,
        bbox: Bbox = None,
        limit: Limit = 10,
        offset: Offset = 0,
        f: Annotated[Literal["json", "geojson"] | None, Query()] = None,
    ) -> Response:
        """A page of municipalities ordered by CVEGEO with the newest coverage run's figures
        (null when coverage was never computed)."""
        matched, returned, items = municipality_page(
            conn, bbox=bbox, key=None, limit=limit, offset=offset
        )
        links = _links(request, matched=matched, returned=returned, offset=offset, limit=limit)
        stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        body = (
            f'{{"type":"FeatureCollection","numberMatched":{matched},'
            f'"numberReturned":{returned},"timeStamp":"{stamp}","links":{links},'
            f'"features":[{items}]}}'
        )
        return Response(body, media_type=GEOJSON)

    @router.get(
        "/collections/municipalities/items/{feature_id}",
        response_class=Response,
        summary="One municipality as a GeoJSON feature",
        responses={200: {"content": {GEOJSON: {"schema": ref(MunicipalityFeature)}}}},
    )
    def municipality_item(
        conn: Conn,
        caller: CoverageReader,
        feature_id: Annotated[str, Path(pattern=r"^\d{5}$")],
    ) -> Response:
        """The municipality whose CVEGEO is ``feature_id``."""
        _, returned, items = municipality_page(conn, bbox=None, key=feature_id, limit=1, offset=0)
        if not returned:
            raise NotFound(f"feature {feature_id!r}: no municipality has that CVEGEO.")
        return Response(items, media_type=GEOJSON)

    return router
