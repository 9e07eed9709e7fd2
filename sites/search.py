"""Find sites: ordered, keyset-paginated queries built from one SiteFilter, run in PostGIS."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Select,
    exists,
    func,
    literal,
    or_,
    select,
    union_all,
)

from core.errors import InvalidInput, NotFound
from sites.filters import SiteFilter
from sites.models import (
    municipalities_table,
    site_secrets_table,
    sites_table,
    states_table,
)
from sites.schemas import SitePublic, SitesPublic

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
KNN_MARGIN = 10  # extra index candidates re-ranked by exact spheroid distance
TEXT_WINDOW = 2_000  # sites tested in id order before a text page turns to the trigram index
_MAX_ID = 2**63 - 1


def public_columns() -> list[ColumnElement[Any]]:
    """Every column a reader may see, labelled as SitePublic names them (no secrets)."""
    s = sites_table.c
    sec = site_secrets_table.c
    return [
        s.id,
        s.site_key,
        s.name,
        s.category,
        func.ST_X(s.geom).label("lon"),
        func.ST_Y(s.geom).label("lat"),
        s.mun_cvegeo,
        municipalities_table.c.name.label("municipality"),
        s.cve_ent,
        states_table.c.name.label("state"),
        s.locality,
        s.address,
        s.provider,
        s.technology,
        s.bw_down_mbps,
        s.bw_up_mbps,
        s.status,
        s.installed_on,
        s.contact_name,
        s.contact_phone,
        s.access_notes,
        func.host(s.mgmt_ip).label("mgmt_ip"),
        s.snmp_version,
        s.snmp_port,
        s.wan_if_index,
        s.wan_if_name,
        s.http_url,
        exists()
        .where(
            sec.site_id == s.id,
            or_(sec.snmp_community.is_not(None), sec.v3_user.is_not(None)),
        )
        .label("snmp_credentials"),
        s.created_at,
        s.updated_at,
    ]


def select_sites(flt: SiteFilter) -> Select[Any]:
    """The filtered SELECT of public columns (with distance_m when a point is given), unordered."""
    columns = public_columns()
    distance = flt.distance()
    if distance is not None:
        columns.append(distance.label("distance_m"))
    return (
        select(*columns)
        .select_from(
            sites_table.outerjoin(
                municipalities_table,
                municipalities_table.c.cvegeo == sites_table.c.mun_cvegeo,
            ).outerjoin(states_table, states_table.c.cve_ent == sites_table.c.cve_ent)
        )
        .where(flt.where())
    )


def _text_page_ids(flt: SiteFilter, after_id: int | None, page_size: int) -> Select[Any]:
    """The ids of the first ``page_size`` text matches after ``after_id``, in two bounded steps.

    The planner cannot know where in id order the matches of a text lie: a national import
    arrives grouped by category, so every health unit comes after 68,806 schools. Scanning in
    id order until a page is full then tests ~70,000 names for ``centro de salud`` (~0.5 s),
    while the trigram index finds its matches directly. The index, in turn, rechecks every
    match of a very common word (``escuela``: 37,902, ~0.3 s) where the id scan stops after a
    few hundred names. So: test the next ``TEXT_WINDOW`` sites in id order (a few ms); only
    when that does not fill the page, take the rest from the trigram index (``id + 0``, so no
    id-ordered plan is possible) beyond that window. Both parts are in id order and disjoint,
    so the page is exactly the one the plain id-ordered query returns.
    """
    s = sites_table.c
    start = after_id if after_id is not None else -1
    window_end = func.coalesce(
        select(s.id)
        .where(s.id > start)
        .order_by(s.id)
        .offset(TEXT_WINDOW - 1)
        .limit(1)
        .scalar_subquery(),
        literal(_MAX_ID, BigInteger),
    )
    where = flt.where()
    window = (
        select(s.id)
        .where(where, s.id > start, s.id <= window_end)
        .order_by(s.id)
        .limit(page_size)
        .cte("text_window")
    )
    short = select(func.count()).select_from(window).scalar_subquery() < page_size
    rest = select(s.id).where(where, s.id > window_end, short).order_by(s.id + 0).limit(page_size)
    return union_all(select(window.c.id), rest).subquery("text_page").select()


def ordered_sites(
    flt: SiteFilter, *, after_id: int | None = None, page_size: int | None = None
) -> Select[Any]:
    """The filtered SELECT in its stable order: by distance for nearest N, else by id.

    Nearest N takes its candidates from the geography index (``<->``, spherical distance)
    without a tie-breaker so the index can stream them, keeps a margin of extra candidates,
    and orders those by exact spheroid distance, then id.

    ``page_size`` promises that the caller reads at most that many rows; with a text filter
    the matches are then found in bounded steps (``_text_page_ids``). Rows and order are the
    same either way.
    """
    query = select_sites(flt)
    if flt.by_distance:
        if after_id is not None:
            raise InvalidInput(
                "after_id cannot page a nearest-N search: its results are one page ordered by "
                "distance. Use radius_km to list every site within a distance instead."
            )
        order = flt.knn_order()
        distance = flt.distance()
        assert order is not None and distance is not None and flt.nearest is not None
        candidates = (
            select(sites_table.c.id)
            .where(flt.where())
            .order_by(order)
            .limit(2 * flt.nearest + KNN_MARGIN)
        )
        return (
            query.where(sites_table.c.id.in_(candidates.scalar_subquery()))
            .order_by(distance, sites_table.c.id)
            .limit(flt.nearest)
        )
    if flt.text is not None and page_size is not None:
        ids = _text_page_ids(flt, after_id, page_size)
        return query.where(sites_table.c.id.in_(ids.scalar_subquery())).order_by(sites_table.c.id)
    if after_id is not None:
        query = query.where(sites_table.c.id > after_id)
    return query.order_by(sites_table.c.id)


def search_sites(
    conn: Connection,
    flt: SiteFilter,
    *,
    after_id: int | None = None,
    limit: int = DEFAULT_LIMIT,
) -> SitesPublic:
    """Return one page of matching sites, ordered by id (or by distance for nearest N).

    The next page starts after ``next_after``; pages never repeat or skip a site, even while
    sites are added. A nearest-N search is a single page of at most ``min(nearest, limit)``.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}; got {limit}.")
    query = ordered_sites(flt, after_id=after_id, page_size=limit + 1)
    if flt.by_distance:
        assert flt.nearest is not None
        rows = conn.execute(query.limit(min(limit, flt.nearest))).mappings().all()
        return SitesPublic(data=[SitePublic(**r) for r in rows], count=len(rows))
    rows = conn.execute(query.limit(limit + 1)).mappings().all()
    more = len(rows) > limit
    data = [SitePublic(**r) for r in rows[:limit]]
    return SitesPublic(
        data=data, count=len(data), next_after=data[-1].id if more and data else None
    )


def count_sites(conn: Connection, flt: SiteFilter) -> int:
    """Return how many sites match ``flt`` (for nearest N, at most N)."""
    query = select(func.count()).select_from(sites_table).where(flt.where())
    total = int(conn.execute(query).scalar_one())
    return min(total, flt.nearest) if flt.nearest is not None else total


def get_site(conn: Connection, site: int | str) -> SitePublic:
    """Return one site by id (int) or site_key (str); NotFound names what was asked for."""
    column = sites_table.c.id if isinstance(site, int) else sites_table.c.site_key
    row = conn.execute(select_sites(SiteFilter()).where(column == site)).mappings().first()
    if row is None:
        what = f"id {site}" if isinstance(site, int) else f"key {site!r}"
        raise NotFound(f"No site with {what}. Search with `conectado sites find --text ...`.")
    return SitePublic(**row)
