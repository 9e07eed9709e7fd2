"""ORM models of the inventory tables (created by migration 0002_sites, never at run time)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import INET, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class Site(Base):
    """One connected public place: where it is, how it is connected and how it is probed."""

    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    site_key: Mapped[str] = mapped_column(Text, unique=True)
    name: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(Text)
    geom: Mapped[Any] = mapped_column(
        Geometry("POINT", srid=4326, spatial_index=False), nullable=False
    )
    # References to municipalities/states are enforced by the database (migration 0002).
    mun_cvegeo: Mapped[str | None] = mapped_column(String(5))
    cve_ent: Mapped[str | None] = mapped_column(String(2))
    locality: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str | None] = mapped_column(Text)
    technology: Mapped[str | None] = mapped_column(Text)
    bw_down_mbps: Mapped[float | None] = mapped_column(Float)
    bw_up_mbps: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(Text, server_default="planned")
    installed_on: Mapped[date | None] = mapped_column(Date)
    contact_name: Mapped[str | None] = mapped_column(Text)
    contact_phone: Mapped[str | None] = mapped_column(Text)
    access_notes: Mapped[str | None] = mapped_column(Text)
    mgmt_ip: Mapped[Any] = mapped_column(INET)  # psycopg returns ipaddress objects
    snmp_version: Mapped[str | None] = mapped_column(Text)
    snmp_port: Mapped[int] = mapped_column(Integer, server_default="161")
    wan_if_index: Mapped[int | None] = mapped_column(Integer)
    wan_if_name: Mapped[str | None] = mapped_column(Text)
    http_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default="now()")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default="now()")


class SiteSecret(Base):
    """A site's probe credentials, kept in their own table so no inventory query returns them."""

    __tablename__ = "site_secrets"

    site_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    snmp_community: Mapped[str | None] = mapped_column(Text)
    v3_user: Mapped[str | None] = mapped_column(Text)
    v3_auth_proto: Mapped[str | None] = mapped_column(Text)
    v3_auth_key: Mapped[str | None] = mapped_column(Text)
    v3_priv_proto: Mapped[str | None] = mapped_column(Text)
    v3_priv_key: Mapped[str | None] = mapped_column(Text)


class SiteChange(Base):
    """One change to a site: who, when, what (secrets appear only as "changed")."""

    __tablename__ = "site_changes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    site_id: Mapped[int] = mapped_column(BigInteger)
    site_key: Mapped[str] = mapped_column(Text)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default="now()")
    changed_by: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    changes: Mapped[dict[str, Any]] = mapped_column(JSONB)


# The geography tables (migration 0001), described here only as far as the inventory reads them;
# a MetaData of their own so a later geography model cannot clash with these definitions.
geography_metadata = MetaData()
municipalities_table = Table(
    "municipalities",
    geography_metadata,
    Column("cvegeo", String(5), primary_key=True),
    Column("cve_ent", String(2)),
    Column("name", Text),
    Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)),
)
states_table = Table(
    "states",
    geography_metadata,
    Column("cve_ent", String(2), primary_key=True),
    Column("name", Text),
    Column("abbrev", Text),
)


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


sites_table: Table = _table(Site)
site_secrets_table: Table = _table(SiteSecret)
site_changes_table: Table = _table(SiteChange)
