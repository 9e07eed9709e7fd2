"""The change history of sites: what each import or edit changed, by whom and when.

``changes`` is a JSON object: for an insert where the site came from (``{"source": file}``);
for an update ``{"field": [old, new], ...}`` with only the fields that changed, so walking
the updates back from the current row rebuilds any earlier state. Secret fields never carry
a value: they appear as ``"changed"``.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Connection, select

from core.errors import InvalidInput
from sites.models import site_changes_table, sites_table
from sites.schemas import SiteChangePublic

MAX_HISTORY: Final = 1000
# NOT NULL columns where an empty cell means "keep what is stored" (or the default if new).
KEEP_WHEN_EMPTY: Final = {"status": "'planned'", "snmp_port": "161"}


def new_value_sql(column: str, stored: str | None = None) -> str:
    """SQL for the value a staged row gives ``column`` (n = staged row, a = its assignment).

    ``stored`` is the SQL of the stored value, kept when a NOT NULL column's cell is empty.
    """
    if column in ("mun_cvegeo", "cve_ent"):
        return f"a.{column}"
    if column in KEEP_WHEN_EMPTY:
        return f"coalesce(n.{column}, {stored or KEEP_WHEN_EMPTY[column]})"
    return f"n.{column}"


def update_changes_sql(site_cols: list[str], secret_cols: list[str]) -> str:
    """SQL jsonb of ``{field: [old, new]}`` for changed fields (s = stored, sec = its secrets)."""
    pairs: list[str] = []
    for column in site_cols:
        if column == "geom":
            for name, axis in (("lon", "ST_X"), ("lat", "ST_Y")):
                pairs += [
                    f"'{name}'",
                    f"CASE WHEN abs({axis}(s.geom) - {axis}(n.geom)) > 1e-9 "
                    f"THEN jsonb_build_array({axis}(s.geom), {axis}(n.geom)) END",
                ]
            continue
        new = new_value_sql(column, f"s.{column}")
        pairs += [
            f"'{column}'",
            f"CASE WHEN s.{column} IS DISTINCT FROM {new} "
            f"THEN jsonb_build_array(s.{column}, {new}) END",
        ]
    for column in secret_cols:
        pairs += [
            f"'{column}'",
            f"CASE WHEN sec.{column} IS DISTINCT FROM n.{column} THEN 'changed' END",
        ]
    # jsonb_strip_nulls drops the unchanged fields (NULL values); nulls inside the [old, new]
    # arrays are kept, so a cleared field shows as [old, null].
    return f"jsonb_strip_nulls(jsonb_build_object({', '.join(pairs)}))"


def site_history(conn: Connection, site: int | str, *, limit: int = 100) -> list[SiteChangePublic]:
    """Return the newest ``limit`` changes of a site (by id or site_key), newest first."""
    if not 1 <= limit <= MAX_HISTORY:
        raise InvalidInput(f"limit must be between 1 and {MAX_HISTORY}; got {limit}.")
    c = site_changes_table.c
    if isinstance(site, int):
        where = c.site_id == site
    else:
        ids = select(sites_table.c.id).where(sites_table.c.site_key == site).scalar_subquery()
        where = (c.site_id == ids) | (c.site_key == site)
    rows = conn.execute(
        select(site_changes_table)
        .where(where)
        .order_by(c.changed_at.desc(), c.id.desc())
        .limit(limit)
    ).mappings()
    return [SiteChangePublic(**r) for r in rows]
