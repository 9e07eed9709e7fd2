"""The one filter definition for sites, shared by search, export, the API, maps and the CLI."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import ColumnElement, and_, func, literal, or_, true
from sqlalchemy.sql.functions import Function

from sites.models import sites_table
from sites.vocabulary import (
    ALLOWED_VALUES,
    Category,
    Status,
    Technology,
    canonical_value,
)

MAX_NEAREST = 10_000
MAX_RADIUS_KM = 4_000.0
MIN_TEXT = 2
MAX_TEXT = 200


def as_list(value: Any) -> Any:
    """A filter field's value as a list: None → [], "a, b" → ["a", "b"], a list as it is."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _vocab_list(column: str) -> BeforeValidator:
    def convert(value: Any) -> Any:
        items = as_list(value)
        if not isinstance(items, list | tuple):
            return items
        out: list[Any] = []
        for item in items:
            if isinstance(item, str):
                mapped = canonical_value(column, item)
                if mapped is None:
                    allowed = ", ".join(ALLOWED_VALUES[column])
                    raise ValueError(f"unknown {column} {item!r}; use one of {allowed}")
                out.append(mapped)
            else:
                out.append(item)
        return out

    return BeforeValidator(convert)


def _padded_codes(width: int, what: str) -> BeforeValidator:
    def convert(value: Any) -> Any:
        items = as_list(value)
        if not isinstance(items, list | tuple):
            return items
        out: list[str] = []
        for item in items:
            code = str(item).strip()
            if not code.isdigit() or len(code) > width:
                raise ValueError(f"{what} {code!r} is not a code of up to {width} digits")
            out.append(code.zfill(width))
        return out

    return BeforeValidator(convert)


class SiteFilter(BaseModel):
    """Which sites to return; every field narrows the result (AND), list values mean any-of.

    ``near`` with ``radius_km`` keeps sites within that distance; ``near`` with ``nearest``
    keeps the N closest (ordered by distance). Distances are metres on the WGS84 spheroid.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    bbox: tuple[float, float, float, float] | None = Field(
        default=None, description="min_lon, min_lat, max_lon, max_lat (EPSG:4326)."
    )
    near: tuple[float, float] | None = Field(
        default=None, description="lon, lat of a point for radius_km or nearest."
    )
    radius_km: float | None = Field(default=None, gt=0, le=MAX_RADIUS_KM)
    nearest: int | None = Field(default=None, ge=1, le=MAX_NEAREST)
    municipality: Annotated[list[str], _padded_codes(5, "municipality")] = Field(
        default_factory=list, description="Municipality CVEGEO codes (5 digits)."
    )
    state: Annotated[list[str], _padded_codes(2, "state")] = Field(
        default_factory=list, description="State codes CVE_ENT (2 digits)."
    )
    category: Annotated[list[Category], _vocab_list("category")] = Field(default_factory=list)
    status: Annotated[list[Status], _vocab_list("status")] = Field(default_factory=list)
    technology: Annotated[list[Technology], _vocab_list("technology")] = Field(default_factory=list)
    provider: Annotated[list[str], BeforeValidator(as_list)] = Field(
        default_factory=list, description="Provider names, compared without regard to case."
    )
    site_key: Annotated[list[str], BeforeValidator(as_list)] = Field(
        default_factory=list, description="Exact site keys."
    )
    text: str | None = Field(
        default=None,
        min_length=MIN_TEXT,
        max_length=MAX_TEXT,
        description="Part of the name or key; near misses of the name match too (trigram).",
    )

    @field_validator("bbox")
    @classmethod
    def _bbox_ordered(
        cls, value: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if value is None:
            return None
        min_lon, min_lat, max_lon, max_lat = value
        if not (-180 <= min_lon < max_lon <= 180 and -90 <= min_lat < max_lat <= 90):
            raise ValueError(
                "bbox must be min_lon,min_lat,max_lon,max_lat with min < max, "
                "longitudes in -180..180 and latitudes in -90..90"
            )
        return value

    @field_validator("near")
    @classmethod
    def _near_valid(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not (-180 <= value[0] <= 180 and -90 <= value[1] <= 90):
            raise ValueError("near must be lon,lat with lon in -180..180 and lat in -90..90")
        return value

    @field_validator("text")
    @classmethod
    def _text_stripped(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if len(value) < MIN_TEXT:
            raise ValueError(f"text must have at least {MIN_TEXT} characters")
        return value

    @model_validator(mode="after")
    def _point_needed(self) -> SiteFilter:
        if (self.radius_km is not None or self.nearest is not None) and self.near is None:
            raise ValueError("radius_km and nearest need near=lon,lat")
        return self

    @property
    def by_distance(self) -> bool:
        """True when results are the nearest N, ordered by distance rather than by id."""
        return self.nearest is not None

    def point(self) -> Function[Any] | None:
        """The ``near`` point as a PostGIS geography expression, or None."""
        if self.near is None:
            return None
        lon, lat = self.near
        return func.geography(func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326))

    def where(self) -> ColumnElement[bool]:
        """Return the SQL condition on ``sites`` (one AND of every field given)."""
        s = sites_table.c
        clauses: list[ColumnElement[bool]] = []
        if self.bbox is not None:
            clauses.append(s.geom.op("&&")(func.ST_MakeEnvelope(*self.bbox, 4326)))
        point = self.point()
        if point is not None and self.radius_km is not None:
            clauses.append(func.ST_DWithin(func.geography(s.geom), point, self.radius_km * 1000))
        if self.municipality:
            clauses.append(s.mun_cvegeo.in_(self.municipality))
        if self.state:
            clauses.append(s.cve_ent.in_(self.state))
        if self.category:
            clauses.append(s.category.in_(self.category))
        if self.status:
            clauses.append(s.status.in_(self.status))
        if self.technology:
            clauses.append(s.technology.in_(self.technology))
        if self.provider:
            clauses.append(func.lower(s.provider).in_([p.lower() for p in self.provider]))
        if self.site_key:
            clauses.append(s.site_key.in_(self.site_key))
        if self.text is not None:
            pattern = "%" + _escape_like(self.text) + "%"
            clauses.append(
                or_(
                    s.name.ilike(pattern, escape="\\"),
                    s.site_key.ilike(pattern, escape="\\"),
                    literal(self.text).op("<%")(s.name),
                )
            )
        return and_(true(), *clauses)

    def distance(self) -> ColumnElement[float] | None:
        """Metres from ``near`` to each site (geodesic), or None without a point."""
        point = self.point()
        if point is None:
            return None
        return func.ST_Distance(func.geography(sites_table.c.geom), point)

    def knn_order(self) -> ColumnElement[Any] | None:
        """The index-assisted KNN ordering (``<->`` on geography) for nearest N, or None."""
        point = self.point()
        if point is None:
            return None
        return func.geography(sites_table.c.geom).op("<->")(point)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
