"""Values that flow through the probe engine: targets in, outcomes out (never exceptions)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, TypeVar

_C = TypeVar("_C", bound=type)


def pickled_by_position(cls: _C) -> _C:
    """Make a dataclass pickle as its constructor and one tuple of field values.

    A round's ~95,000 HTTP targets go to the HTTP prober's process, and their outcomes come
    back, each in one pickle; the state that slotted dataclasses pickle by default costs 2-3×
    the time on both sides (targets: 0.27 s to dump and 0.26 s to load, against 0.09 and
    0.14 s; outcomes: 0.32 and 0.27 s against 0.15 and 0.15 s).
    """
    values: Callable[[Any], tuple[Any, ...]] = operator.attrgetter(*(f.name for f in fields(cls)))

    def reduce(self: Any) -> tuple[type, tuple[Any, ...]]:
        return cls, values(self)

    cls.__reduce__ = reduce  # type: ignore[assignment,method-assign]
    return cls


class ErrorClass(StrEnum):
    """Why a probe failed; stored in ``probe_results.error`` and shown to operators."""

    TIMEOUT = "timeout"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"
    AUTH = "auth"
    BAD_RESPONSE = "bad_response"
    HTTP_STATUS = "http_status"
    TLS = "tls"
    KEYWORD_MISSING = "keyword_missing"
    NO_SUCH_INTERFACE = "no_such_interface"
    CONFIG = "config"
    INTERNAL = "internal"


def _masked(value: str | None) -> str:
    return "None" if value is None else "**********"


@dataclass(frozen=True, slots=True)
class V3Credentials:
    """SNMPv3 USM user with authPriv keys; repr never shows the keys."""

    user: str
    auth_proto: str = "SHA"
    auth_key: str | None = field(default=None, repr=False)
    priv_proto: str = "AES"
    priv_key: str | None = field(default=None, repr=False)
    context: str = ""  # SNMPv3 context name; empty for the default context

    def __repr__(self) -> str:
        return (
            f"V3Credentials(user={self.user!r}, auth_proto={self.auth_proto!r}, "
            f"auth_key={_masked(self.auth_key)}, priv_proto={self.priv_proto!r}, "
            f"priv_key={_masked(self.priv_key)}, context={self.context!r})"
        )


@dataclass(frozen=True, slots=True)
class SnmpTarget:
    """One site's SNMP agent and WAN interface."""

    site_id: int
    host: str
    port: int = 161
    version: Literal["2c", "3"] = "2c"
    community: str | None = field(default=None, repr=False)
    v3: V3Credentials | None = None
    if_index: int | None = None
    if_name: str | None = None
    # A scheduling hint (it was down, failing or slow last round): see probes.lanes.
    expect_slow: bool = False

    def __repr__(self) -> str:
        return (
            f"SnmpTarget(site_id={self.site_id}, host={self.host!r}, port={self.port}, "
            f"version={self.version!r}, community={_masked(self.community)}, v3={self.v3!r}, "
            f"if_index={self.if_index}, if_name={self.if_name!r})"
        )


@pickled_by_position
@dataclass(frozen=True, slots=True)
class HttpTarget:
    """One site's HTTP probe: URL, optional keyword and optional throughput test."""

    site_id: int
    url: str
    method: Literal["GET", "HEAD"] = "GET"
    expect_keyword: str | None = None
    throughput_bytes: int | None = None
    # A scheduling hint (it was down, failing or slow last round): see probes.lanes.
    expect_slow: bool = False


@pickled_by_position
@dataclass(slots=True)
class SnmpOutcome:
    """What one SNMP GET of a site's WAN interface saw. ``ok`` False carries ``error``."""

    site_id: int
    ts: datetime
    ok: bool
    latency_ms: float | None = None
    error: ErrorClass | None = None
    error_detail: str | None = None
    if_index: int | None = None
    sys_uptime: int | None = None  # hundredths of a second (TimeTicks)
    in_octets: int | None = None
    out_octets: int | None = None
    counter_bits: Literal[32, 64] | None = None
    oper_status: int | None = None  # IF-MIB ifOperStatus: 1 up, 2 down, ...
    high_speed_mbps: int | None = None  # ifHighSpeed (or ifSpeed/1e6 for 32-bit agents)


@pickled_by_position
@dataclass(slots=True)
class HttpOutcome:
    """What one HTTP probe of a site saw. ``ok`` False carries ``error``."""

    site_id: int
    ts: datetime
    ok: bool
    latency_ms: float | None = None
    error: ErrorClass | None = None
    error_detail: str | None = None
    status_code: int | None = None
    connect_ms: float | None = None
    ttfb_ms: float | None = None
    total_ms: float | None = None
    tls_days_left: float | None = None
    keyword_found: bool | None = None
    throughput_mbps: float | None = None
    bytes_read: int | None = None


# The lab (simulated devices) and the `--lab` inventory agree on these (the ports are settings).
LAB_COMMUNITY = "conectado-lab"
LAB_FIRST_ADDRESS = "127.64.0.1"
