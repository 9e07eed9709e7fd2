"""The ``--lab`` inventory (``conectado sites generate --lab``) as compact columns keyed by IPv4.

The lab agents answer for every site of this file at its own loopback address, so the reader
insists on what makes that safe and unambiguous: each ``mgmt_ip`` is an IPv4 address inside
127.0.0.0/8 and appears once. Rows without a ``mgmt_ip`` are skipped (nothing to simulate) and
counted. Other columns of the file (name, category, geometry...) are ignored.
"""

from __future__ import annotations

import csv
import ipaddress
import socket
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from core.errors import DataFileError, InvalidInput
from core.settings import LAB_SNMP_PORT, LabPorts
from lab.behaviour import SiteBehaviour, behaviour_for
from probes.model import LAB_COMMUNITY, LAB_FIRST_ADDRESS

REQUIRED_COLUMNS: Final = ("site_key", "mgmt_ip")
KNOWN_COLUMNS: Final = (
    "site_key",
    "mgmt_ip",
    "snmp_port",
    "snmp_community",
    "wan_if_index",
    "wan_if_name",
    "bw_down_mbps",
    "bw_up_mbps",
    "http_url",
)
DEFAULT_BW_MBPS: Final = 10.0
MAX_REPORTED_ERRORS: Final = 20
_LOOPBACK: Final = ipaddress.IPv4Network("127.0.0.0/8")


@dataclass(frozen=True, slots=True)
class LabSite:
    """One row of the lab inventory, as the agents need it."""

    row: int
    site_key: str
    mgmt_ip: str
    snmp_port: int
    community: str
    wan_if_index: int | None
    wan_if_name: str | None
    bw_down_mbps: float
    bw_up_mbps: float
    http_url: str | None

    @property
    def https(self) -> bool:
        """True when the site's probe URL is https."""
        return self.http_url is not None and self.http_url.lower().startswith("https:")


@dataclass(slots=True)
class LabInventory:
    """Columns of the lab inventory (position i is one site) and an index by packed IPv4."""

    site_keys: list[str] = field(default_factory=list)
    addresses: array[int] = field(default_factory=lambda: array("I"))  # host-order IPv4
    snmp_ports: array[int] = field(default_factory=lambda: array("H"))
    communities: list[str] = field(default_factory=list)
    wan_if_indexes: array[int] = field(default_factory=lambda: array("I"))  # 0 = by name
    wan_if_names: list[str | None] = field(default_factory=list)
    bw_down_mbps: array[float] = field(default_factory=lambda: array("d"))
    bw_up_mbps: array[float] = field(default_factory=lambda: array("d"))
    http_urls: list[str | None] = field(default_factory=list)
    rows: array[int] = field(default_factory=lambda: array("I"))
    by_address: dict[bytes, int] = field(default_factory=dict)  # socket.inet_aton form → i
    skipped_rows: int = 0
    _behaviours: list[SiteBehaviour | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.site_keys)

    def find(self, address: str | bytes) -> int | None:
        """Return the position of the site at ``address`` (dotted or packed), or None."""
        packed = socket.inet_aton(address) if isinstance(address, str) else address
        return self.by_address.get(packed)

    def site(self, i: int) -> LabSite:
        """Return site ``i`` as one value."""
        index = self.wan_if_indexes[i]
        return LabSite(
            row=self.rows[i],
            site_key=self.site_keys[i],
            mgmt_ip=socket.inet_ntoa(self.addresses[i].to_bytes(4, "big")),
            snmp_port=self.snmp_ports[i],
            community=self.communities[i],
            wan_if_index=index or None,
            wan_if_name=self.wan_if_names[i],
            bw_down_mbps=self.bw_down_mbps[i],
            bw_up_mbps=self.bw_up_mbps[i],
            http_url=self.http_urls[i],
        )

    def ports(self) -> LabPorts:
        """The ports the inventory's sites name: the most common SNMP port, and the most common
        port of its http and of its https URLs (the defaults where it has none of a kind)."""
        default = LabPorts()
        web: dict[str, Counter[int]] = {"http": Counter(), "https": Counter()}
        for url in self.http_urls:
            if url is None:
                continue
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            if scheme in web:
                try:
                    port = parts.port
                except ValueError:
                    continue
                web[scheme][port or (443 if scheme == "https" else 80)] += 1
        snmp = Counter(self.snmp_ports).most_common(1)
        http = web["http"].most_common(1)
        https = web["https"].most_common(1)
        return LabPorts(
            snmp[0][0] if snmp else default.snmp,
            http[0][0] if http else default.http,
            https[0][0] if https else default.https,
        )

    def wan_index(self, i: int) -> int:
        """Return site ``i``'s WAN ifIndex: the inventory's, or 2-9 drawn from the site key
        when the inventory names the interface instead (``wan_if_name``)."""
        return self.wan_if_indexes[i] or 2 + zlib.crc32(self.site_keys[i].encode()) % 8

    def behaviour(self, i: int) -> SiteBehaviour:
        """Return site ``i``'s deterministic behaviour (computed on first use, then kept)."""
        if len(self._behaviours) != len(self.site_keys):
            self._behaviours = [None] * len(self.site_keys)
        found = self._behaviours[i]
        if found is None:
            url = self.http_urls[i]
            found = behaviour_for(
                self.site_keys[i],
                self.bw_down_mbps[i],
                self.bw_up_mbps[i],
                https=url is not None and url[:6].lower() == "https:",
            )
            self._behaviours[i] = found
        return found

    def behaviours(self) -> list[SiteBehaviour]:
        """Return every site's behaviour, in inventory order."""
        return [self.behaviour(i) for i in range(len(self))]

    def add(self, site: LabSite) -> int:
        """Append one site and return its position; its address must not be taken."""
        packed = socket.inet_aton(site.mgmt_ip)
        if packed in self.by_address:
            raise InvalidInput(
                f"Site {site.site_key!r} uses mgmt_ip {site.mgmt_ip}, already taken by "
                f"{self.site_keys[self.by_address[packed]]!r}; give each lab site its own address."
            )
        i = len(self.site_keys)
        self.site_keys.append(site.site_key)
        self.addresses.append(int.from_bytes(packed, "big"))
        self.snmp_ports.append(site.snmp_port)
        self.communities.append(site.community)
        self.wan_if_indexes.append(site.wan_if_index or 0)
        self.wan_if_names.append(site.wan_if_name)
        self.bw_down_mbps.append(site.bw_down_mbps)
        self.bw_up_mbps.append(site.bw_up_mbps)
        self.http_urls.append(site.http_url)
        self.rows.append(site.row)
        self.by_address[packed] = i
        return i


def lab_address(i: int) -> str:
    """Return the ``i``-th lab address (0-based) from LAB_FIRST_ADDRESS, skipping .0 and .255."""
    first = int(ipaddress.IPv4Address(LAB_FIRST_ADDRESS))
    base, host = divmod(first, 256)
    base, host = divmod(base * 254 + (host - 1) + i, 254)
    address = ipaddress.IPv4Address(base * 256 + host + 1)
    if address not in _LOOPBACK:
        raise InvalidInput(f"Lab address number {i} falls outside 127.0.0.0/8.")
    return str(address)


_IPV4: Final = r"^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$"


def _where(frame: pd.DataFrame, at: object) -> str:
    key = frame.at[at, "site_key"]
    return f"row {int(at) + 1}" + (f" (site_key {key})" if isinstance(key, str) else "")  # type: ignore[call-overload]


def _integers(
    frame: pd.DataFrame, column: str, low: int, high: int, errors: list[str]
) -> pd.Series:
    """The column as nullable integers; bad cells add an error naming row and column."""
    text = frame[column]
    number = pd.to_numeric(text, errors="coerce")
    bad = text.notna() & (number.isna() | (number % 1 != 0))
    for at in frame.index[bad]:
        errors.append(f"{_where(frame, at)}, column {column}: {text[at]!r} is not a whole number.")
    outside = text.notna() & ~bad & ((number < low) | (number > high))
    for at in frame.index[outside]:
        errors.append(
            f"{_where(frame, at)}, column {column}: {int(number[at])} is not in {low}..{high}."
        )
    return number.where(~(bad | outside)).astype("Int64")


def _numbers(frame: pd.DataFrame, column: str, default: float, errors: list[str]) -> pd.Series:
    text = frame[column]
    number = pd.to_numeric(text, errors="coerce")
    bad = text.notna() & ~((number >= 0) & np.isfinite(number))
    for at in frame.index[bad]:
        errors.append(
            f"{_where(frame, at)}, column {column}: {text[at]!r} must be a number ≥ 0 and finite."
        )
    return number.where(text.notna() & ~bad, default).astype(float)


def _inventory_from_frame(frame: pd.DataFrame) -> LabInventory:
    """Validate the text columns of the inventory (vectorised) and build the columns."""
    frame = frame.reset_index(drop=True)
    for column in KNOWN_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    frame = frame[list(KNOWN_COLUMNS)].astype(object)
    for column in KNOWN_COLUMNS:
        cells = frame[column]
        if cells.isna().all():
            frame[column] = None
            continue
        text = cells.astype(str).str.strip().where(cells.notna())
        frame[column] = text.where(text.notna() & (text != ""), None)
    errors: list[str] = []
    for at in frame.index[frame["site_key"].isna()]:
        errors.append(f"row {int(at) + 1}, column site_key: empty; every site needs its key.")
    has_ip = frame["mgmt_ip"].notna()
    skipped = int((~has_ip).sum())
    ip = frame["mgmt_ip"]
    valid = ip.str.match(_IPV4).fillna(False).astype(bool)
    for at in frame.index[has_ip & ~valid]:
        errors.append(
            f"{_where(frame, at)}, column mgmt_ip: {ip[at]!r} is not an IPv4 address; the lab "
            "needs 127.x.y.z addresses (generate the file with `conectado sites generate --lab`)."
        )
    outside = has_ip & valid & ~ip.str.startswith("127.").fillna(False).astype(bool)
    for at in frame.index[outside]:
        errors.append(
            f"{_where(frame, at)}, column mgmt_ip: {ip[at]} is outside 127.0.0.0/8; the lab only "
            "simulates loopback addresses (generate the file with `--lab`)."
        )
    usable = has_ip & valid & ~outside
    duplicated = usable & ip.duplicated(keep=False)
    if duplicated.any():
        first_of = frame[duplicated].groupby("mgmt_ip").head(1).set_index("mgmt_ip")["site_key"]
        for at in frame.index[duplicated & ip.duplicated(keep="first")]:
            errors.append(
                f"{_where(frame, at)}: site {frame.at[at, 'site_key']!r} uses mgmt_ip {ip[at]}, "
                f"already taken by {first_of[ip[at]]!r}; give each lab site its own address."
            )
    ports = _integers(frame, "snmp_port", 1, 65535, errors)
    indexes = _integers(frame, "wan_if_index", 1, 2**31 - 1, errors)
    down = _numbers(frame, "bw_down_mbps", DEFAULT_BW_MBPS, errors)
    up = _numbers(frame, "bw_up_mbps", DEFAULT_BW_MBPS, errors)
    urls = frame["http_url"]
    bad_url = urls.notna() & ~urls.str.lower().str.startswith(("http://", "https://")).fillna(
        False
    ).astype(bool)
    for at in frame.index[bad_url]:
        errors.append(f"{_where(frame, at)}, column http_url: {urls[at]!r} is not an http(s) URL.")
    if errors:
        errors.sort(key=lambda e: int(e.split()[1].rstrip(",:")))
        shown = errors[:MAX_REPORTED_ERRORS]
        more = f" (the first {MAX_REPORTED_ERRORS} shown)" if len(errors) > len(shown) else ""
        raise InvalidInput(
            f"The lab inventory has {len(errors)} invalid value(s){more}:\n- " + "\n- ".join(shown)
        )
    keep = frame.index[has_ip]
    names = frame["wan_if_name"]
    indexes = indexes.mask(indexes.isna() & names.isna(), 1).fillna(0)
    inventory = LabInventory(skipped_rows=skipped)
    inventory.site_keys = frame.loc[keep, "site_key"].tolist()
    addresses = frame.loc[keep, "mgmt_ip"].tolist()
    packed = [socket.inet_aton(a) for a in addresses]
    inventory.addresses = array("I", (int.from_bytes(p, "big") for p in packed))
    inventory.snmp_ports = array("H", ports[keep].fillna(LAB_SNMP_PORT).astype(int).tolist())
    inventory.communities = frame.loc[keep, "snmp_community"].fillna(LAB_COMMUNITY).tolist()
    inventory.wan_if_indexes = array("I", indexes[keep].astype(int).tolist())
    inventory.wan_if_names = [n if isinstance(n, str) else None for n in names[keep].tolist()]
    inventory.bw_down_mbps = array("d", down[keep].tolist())
    inventory.bw_up_mbps = array("d", up[keep].tolist())
    inventory.http_urls = [u if isinstance(u, str) else None for u in urls[keep].tolist()]
    inventory.rows = array("I", (int(at) + 1 for at in keep))
    inventory.by_address = dict(zip(packed, range(len(packed)), strict=True))
    return inventory


def inventory_from_rows(rows: Iterable[Mapping[str, str | None]]) -> LabInventory:
    """Build the inventory from CSV-like rows; raise InvalidInput naming the bad rows."""
    return _inventory_from_frame(pd.DataFrame(list(rows), dtype=object))


def read_lab_inventory(path: Path) -> LabInventory:
    """Read a ``--lab`` inventory CSV (UTF-8, comma or semicolon) into compact columns."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header = handle.readline()
    except OSError as exc:
        raise DataFileError(
            f"Cannot read the lab inventory {path}: {exc.strerror}. Generate one with "
            "`conectado sites generate --lab --out FILE`."
        ) from exc
    except UnicodeDecodeError as exc:
        raise DataFileError(f"The lab inventory {path} is not UTF-8 text ({exc}).") from exc
    delimiter = ";" if header.count(";") > header.count(",") else ","
    columns = [
        c.strip().lstrip("\ufeff") for c in next(csv.reader([header], delimiter=delimiter), [])
    ]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise DataFileError(
            f"The lab inventory {path} lacks column(s) {', '.join(missing)} (found: "
            f"{', '.join(columns) or 'no header'}); generate it with `--lab`."
        )
    try:
        frame = pd.read_csv(
            path,
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
            usecols=lambda name: name.strip() in KNOWN_COLUMNS,
        )
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataFileError(f"The lab inventory {path} cannot be read as CSV ({exc}).") from exc
    frame.columns = [c.strip() for c in frame.columns]
    return _inventory_from_frame(frame)
