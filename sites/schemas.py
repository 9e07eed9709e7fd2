"""Pydantic schemas of a site: what may be written (secrets write-only) and what is shown."""

from __future__ import annotations

import ipaddress
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from sites.vocabulary import (
    AuthProto,
    Category,
    PrivProto,
    SnmpVersion,
    Status,
    Technology,
)


def _check_ip(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from exc


def _check_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL with a host")
    return value.strip()


class SiteBase(BaseModel):
    """The inventory fields of a site that anyone with read access may see."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=500)
    category: Category
    lon: float = Field(ge=-180, le=180, description="Longitude, EPSG:4326.")
    lat: float = Field(ge=-90, le=90, description="Latitude, EPSG:4326.")
    locality: str | None = None
    address: str | None = None
    provider: str | None = None
    technology: Technology | None = None
    bw_down_mbps: float | None = Field(default=None, ge=0, description="Contracted download.")
    bw_up_mbps: float | None = Field(default=None, ge=0, description="Contracted upload.")
    status: Status = "planned"
    installed_on: date | None = None
    contact_name: str | None = None
    contact_phone: str | None = None
    access_notes: str | None = Field(default=None, description="Notes for field technicians.")
    mgmt_ip: str | None = Field(default=None, description="Management address (IPv4/IPv6).")
    snmp_version: SnmpVersion | None = None
    snmp_port: int = Field(default=161, ge=1, le=65535)
    wan_if_index: int | None = Field(default=None, gt=0, le=2**31 - 1)
    wan_if_name: str | None = None
    http_url: str | None = Field(default=None, description="URL of the HTTP probe.")

    @field_validator("mgmt_ip")
    @classmethod
    def _ip_valid(cls, value: str | None) -> str | None:
        return _check_ip(value)

    @field_validator("http_url")
    @classmethod
    def _url_valid(cls, value: str | None) -> str | None:
        return _check_url(value)


class SiteSecretsIn(BaseModel):
    """Probe credentials: accepted on create and update, never returned."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    snmp_community: SecretStr | None = None
    v3_user: str | None = None
    v3_auth_proto: AuthProto | None = None
    v3_auth_key: SecretStr | None = None
    v3_priv_proto: PrivProto | None = None
    v3_priv_key: SecretStr | None = None


class SiteCreate(SiteBase, SiteSecretsIn):
    """A new site (or a full replacement) as written through the API or an import."""

    site_key: str = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _v3_needs_user(self) -> SiteCreate:
        if self.snmp_version == "3" and not self.v3_user:
            raise ValueError("snmp_version 3 needs v3_user")
        return self


class SiteUpdate(SiteSecretsIn):
    """A partial change: only the fields given are written; ``None`` clears a field."""

    name: str | None = Field(default=None, min_length=1, max_length=500)
    category: Category | None = None
    lon: float | None = Field(default=None, ge=-180, le=180)
    lat: float | None = Field(default=None, ge=-90, le=90)
    locality: str | None = None
    address: str | None = None
    provider: str | None = None
    technology: Technology | None = None
    bw_down_mbps: float | None = Field(default=None, ge=0)
    bw_up_mbps: float | None = Field(default=None, ge=0)
    status: Status | None = None
    installed_on: date | None = None
    contact_name: str | None = None
    contact_phone: str | None = None
    access_notes: str | None = None
    mgmt_ip: str | None = None
    snmp_version: SnmpVersion | None = None
    snmp_port: int | None = Field(default=None, ge=1, le=65535)
    wan_if_index: int | None = Field(default=None, gt=0, le=2**31 - 1)
    wan_if_name: str | None = None
    http_url: str | None = None

    @field_validator("mgmt_ip")
    @classmethod
    def _ip_valid(cls, value: str | None) -> str | None:
        return _check_ip(value)

    @field_validator("http_url")
    @classmethod
    def _url_valid(cls, value: str | None) -> str | None:
        return _check_url(value)

    @model_validator(mode="after")
    def _coordinates_together(self) -> SiteUpdate:
        if ("lon" in self.model_fields_set) != ("lat" in self.model_fields_set):
            raise ValueError("give lon and lat together")
        return self


class SitePublic(SiteBase):
    """A site as shown to API clients, exports and the CLI: never any secret."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)

    id: int
    site_key: str
    mun_cvegeo: str | None = Field(description="Municipality (INEGI CVEGEO), from coordinates.")
    municipality: str | None = None
    cve_ent: str | None = Field(description="State (INEGI CVE_ENT), from coordinates.")
    state: str | None = None
    snmp_credentials: bool = Field(
        default=False, description="True when SNMP credentials are stored (never shown)."
    )
    distance_m: float | None = Field(
        default=None, description="Metres from the search point, when one was given."
    )
    created_at: datetime
    updated_at: datetime


class SitesPublic(BaseModel):
    """One page of sites in a stable order, and the cursor of the next page."""

    data: list[SitePublic]
    count: int = Field(description="Sites on this page.")
    next_after: int | None = Field(
        default=None, description="Pass as after_id for the next page; None on the last page."
    )


class SiteChangePublic(BaseModel):
    """One entry of a site's change history."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    site_id: int
    site_key: str
    changed_at: datetime
    changed_by: str
    action: str
    changes: dict[str, Any]
