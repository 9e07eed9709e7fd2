"""Find sites: ordered, keyset-paginated queries built from one SiteFilter, run in PostGIS."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, exists, func, or_, select

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


def ordered_sites(flt: SiteFilter, *, after_id: int | None = None) -> Select[Any]:
    """The filtered SELECT in its stable order: by distance for nearest N, else by id.

    Nearest N takes its candidates from the geography index (``<->``, spherical distance)
    without a tie-breaker so the index can stream them, keeps a margin of extra candidates,
    and orders those by exact spheroid distance, then id.
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
    query = ordered_sites(flt, after_id=after_id)
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
