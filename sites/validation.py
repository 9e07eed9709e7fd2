"""Row-level validation of an inventory file, vectorised over columns with pandas.

Each rule flags the rows it rejects in one pass; every problem becomes an issue with the data
row, its place in the file, the column as the file names it, the value and the reason. The
cleaned cells come out as the text PostgreSQL reads in COPY (None for NULL).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.errors import DataFileError
from sites.readers import SourceTable
from sites.vocabulary import (
    ALLOWED_VALUES,
    HINT_COLUMNS,
    PUBLIC_COLUMNS,
    REQUIRED_COLUMNS,
    SECRET_COLUMNS,
    canonical_header,
    canonical_value,
    normalise,
)

Severity = Literal["error", "warning"]

# Mexico's extent with a margin, only to recognise swapped or sign-less coordinates; whether a
# point is really in Mexico is decided in PostGIS against the municipalities.
MX_LAT: Final = (14.0, 33.0)
MX_LON: Final = (-119.0, -86.0)
MAX_TEXT: Final = 2_000
MAX_KEY: Final = 100
MIN_V3_KEY: Final = 8
FIRST_YEAR: Final = 1950
LAST_YEAR: Final = 2100

TEXT_COLUMNS: Final = (
    "site_key",
    "name",
    "locality",
    "address",
    "provider",
    "contact_name",
    "contact_phone",
    "access_notes",
    "wan_if_name",
    "snmp_community",
    "v3_user",
    "v3_auth_key",
    "v3_priv_key",
    "mun_cvegeo_hint",
    "municipality_hint",
)
VOCABULARY_COLUMNS: Final = (
    "category",
    "technology",
    "status",
    "snmp_version",
    "v3_auth_proto",
    "v3_priv_proto",
)
STAGE_COLUMNS: Final = (*PUBLIC_COLUMNS, *SECRET_COLUMNS, *HINT_COLUMNS)

_IPV4 = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4_RE: Final = re.compile(rf"{_IPV4}(?:\.{_IPV4}){{3}}")
URL_RE: Final = re.compile(r"https?://[^\s/?#@]+(?:[/?#]\S*)?", re.IGNORECASE)
NUMBER_UNITS_RE: Final = re.compile(
    r"(?i)^\s*([-+]?\d+(?:[.,]\d+)?)\s*(gbps|gb|g|mbps|mb|m|kbps|kb|k)?\s*$"
)
UNIT_FACTORS: Final = {
    "g": 1000.0,
    "gb": 1000.0,
    "gbps": 1000.0,
    "m": 1.0,
    "mb": 1.0,
    "mbps": 1.0,
    "k": 0.001,
    "kb": 0.001,
    "kbps": 0.001,
    "": 1.0,
}
DATE_FORMATS: Final = ("%d/%m/%Y", "%d-%m-%Y", "%Y/%m/%d", "%d.%m.%Y")


@dataclass
class MappedColumns:
    """A file's columns renamed to canonical names, with what the file called each one."""

    frame: pd.DataFrame
    headers: dict[str, str]  # canonical name → header as written in the file
    ignored: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    positions: npt.NDArray[np.int64] | None = None  # file line / feature of each row
    locator: str = "row"


def map_headers(table: SourceTable) -> MappedColumns:
    """Match file headers to canonical columns (Spanish/English aliases, any case or accents).

    Raise DataFileError when a required column is missing or two headers mean the same column.
    """
    headers: dict[str, str] = {}
    ignored: list[str] = []
    unknown: list[str] = []
    rename: dict[str, str] = {}
    for header in table.frame.columns:
        if header == "__geometry_type":
            continue
        canonical = canonical_header(header)
        if canonical is None:
            unknown.append(header)
        elif canonical == "":
            ignored.append(header)
        elif canonical in headers:
            raise DataFileError(
                f"{table.path.name}: columns {headers[canonical]!r} and {header!r} both mean "
                f"{canonical}; keep one of them."
            )
        else:
            headers[canonical] = header
            rename[header] = canonical
    missing = [c for c in REQUIRED_COLUMNS if c not in headers]
    if missing:
        hints = {
            "site_key": "site_key, clave, cct or clues",
            "name": "name or nombre",
            "category": "category or categoria",
            "lat": "lat or latitud (or a point geometry)",
            "lon": "lon or longitud (or a point geometry)",
        }
        found = ", ".join(str(c) for c in table.frame.columns if c != "__geometry_type")
        raise DataFileError(
            f"{table.path.name} lacks required column(s): "
            + "; ".join(hints[m] for m in missing)
            + f". Found: {found or 'no columns'}."
        )
    keep = list(rename) + (["__geometry_type"] if "__geometry_type" in table.frame else [])
    frame = table.frame[keep].rename(columns=rename)
    return MappedColumns(
        frame=frame,
        headers=headers,
        ignored=ignored,
        unknown=unknown,
        positions=table.positions,
        locator=table.locator,
    )


@dataclass
class Validated:
    """Cleaned rows ready for staging, the rows already rejected, and every issue found."""

    clean: pd.DataFrame  # STAGE_COLUMNS as COPY text (None = NULL) + "row" (1-based)
    rejected: npt.NDArray[np.bool_]
    issues: pd.DataFrame  # row, column, value, severity, message (column = canonical name)
    present: tuple[str, ...]  # canonical columns the file has


ISSUE_COLUMNS: Final = ("row", "column", "value", "severity", "message")


class _Checker:
    """Collects issues rule by rule; each call handles all rows that break one rule."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.parts: list[pd.DataFrame] = []
        self.rejected = np.zeros(n, dtype=bool)

    def flag(
        self,
        mask: npt.NDArray[np.bool_] | pd.Series,
        column: str,
        values: pd.Series,
        message: str | pd.Series,
        severity: Severity = "error",
    ) -> None:
        where = np.flatnonzero(np.asarray(mask, dtype=bool))
        if len(where) == 0:
            return
        text = message.iloc[where] if isinstance(message, pd.Series) else message
        self.parts.append(
            pd.DataFrame(
                {
                    "row": where + 1,
                    "column": column,
                    "value": values.iloc[where].astype(str).str.slice(0, 200).to_numpy(),
                    "severity": severity,
                    "message": np.asarray(text, dtype=object)
                    if isinstance(text, pd.Series)
                    else text,
                }
            )
        )
        if severity == "error":
            self.rejected[where] = True

    def issues(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in ISSUE_COLUMNS})
        return pd.concat(self.parts, ignore_index=True)


def _strip(series: pd.Series) -> pd.Series:
    stripped = series.astype(str).str.strip()
    return stripped.where(stripped != "", None)


def _arrow(values: pd.Series) -> pa.Array:
    """The cells as one Arrow string array (nulls for missing)."""
    array = pa.array(values, type=pa.string(), from_pandas=True)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _matches(
    values: pd.Series, pattern: str, *, ignore_case: bool = False
) -> npt.NDArray[np.bool_]:
    """True where the whole cell matches ``pattern`` (RE2, vectorised); False for missing."""
    found = pc.match_substring_regex(
        _arrow(values), f"^(?:{pattern})$", ignore_case=ignore_case
    ).fill_null(False)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)


def _map_vocabulary(column: str, values: pd.Series) -> pd.Series:
    """Map every distinct cell once (Spanish and English aliases) and spread the result."""
    encoded = _arrow(values).dictionary_encode()
    mapped = pa.array(
        [canonical_value(column, v) for v in encoded.dictionary.to_pylist()], type=pa.string()
    )
    result = pc.take(mapped, encoded.indices)
    return pd.Series(result.to_numpy(zero_copy_only=False), index=values.index, dtype=object)


def _numbers(values: pd.Series, *, units: bool) -> tuple[pd.Series, npt.NDArray[np.bool_]]:
    """Parse decimal numbers (comma decimals and, for bandwidth, units like "1 Gbps")."""
    present = values.notna().to_numpy()
    try:  # the usual case: every cell is a plain number, parsed in one Arrow cast
        cast = pc.cast(_arrow(values), pa.float64())
        parsed = pd.Series(cast.to_numpy(zero_copy_only=False), index=values.index)
    except pa.ArrowInvalid:
        parsed = pd.to_numeric(values, errors="coerce").astype(float)
    failed = present & (parsed.isna().to_numpy() | ~np.isfinite(parsed.fillna(0).to_numpy()))
    if failed.any():
        parsed = parsed.where(~failed)
        retry = values[failed].str.extract(NUMBER_UNITS_RE)
        number = pd.to_numeric(retry[0].str.replace(",", ".", regex=False), errors="coerce")
        factor = retry[1].fillna("").str.lower().map(UNIT_FACTORS)
        if not units:
            number = number.where(retry[1].isna())
        parsed.loc[failed] = (number * factor).astype(float).to_numpy()
        failed = present & parsed.isna().to_numpy()
    return parsed.astype(float), failed


def _in_mexico(lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    return (lat >= MX_LAT[0]) & (lat <= MX_LAT[1]) & (lon >= MX_LON[0]) & (lon <= MX_LON[1])


def validate_rows(mapped: MappedColumns, *, fix_swapped: bool = False) -> Validated:
    """Check every row of ``mapped`` against the inventory's rules, all at once per rule."""
    frame = mapped.frame
    n = len(frame)
    check = _Checker(n)
    present = tuple(c for c in STAGE_COLUMNS if c in frame.columns)
    raw = {
        c: frame[c].astype(str) if c in frame.columns else pd.Series([""] * n, dtype=object)
        for c in STAGE_COLUMNS
    }
    out: dict[str, pd.Series] = {}

    for column in TEXT_COLUMNS:
        out[column] = (
            _strip(raw[column]) if column in frame.columns else pd.Series([None] * n, dtype=object)
        )
        if column in frame.columns:
            long_text = out[column].str.len().fillna(0).to_numpy() > (
                MAX_KEY if column == "site_key" else MAX_TEXT
            )
            check.flag(
                long_text,
                column,
                out[column],
                f"is longer than {MAX_KEY if column == 'site_key' else MAX_TEXT} characters",
            )

    positions = (
        mapped.positions if mapped.positions is not None else np.arange(1, n + 1, dtype=np.int64)
    )
    _check_key(check, out["site_key"], positions, mapped.locator)
    check.flag(out["name"].isna(), "name", raw["name"], "is empty; every site needs a name")
    _check_vocabulary(check, raw, out, frame)
    _check_coordinates(check, raw, out, frame, fix_swapped=fix_swapped)
    _check_numbers(check, raw, out, frame)
    _check_date(check, raw, out, frame)
    _check_network(check, raw, out, frame)
    _check_v3(check, out, present)

    clean = pd.DataFrame({c: out[c] for c in STAGE_COLUMNS})
    clean.insert(0, "row", np.arange(1, n + 1, dtype=np.int64))
    return Validated(clean=clean, rejected=check.rejected, issues=check.issues(), present=present)


def _check_key(
    check: _Checker, key: pd.Series, positions: npt.NDArray[np.int64], locator: str
) -> None:
    check.flag(
        key.isna(),
        "site_key",
        key.fillna(""),
        "is empty; every site needs its key (CCT for schools, CLUES for health units, else "
        "the programme code)",
    )
    dup = key.notna() & key.duplicated(keep=False)
    if dup.any():
        rows = pd.Series(positions, index=key.index)[dup]
        by_key = rows.groupby(key[dup]).agg(lambda r: ", ".join(map(str, r.tolist()[:10])))
        counts = key[dup].map(key[dup].value_counts())
        message = (
            "appears "
            + counts.astype(str)
            + f" times in the file ({locator}s "
            + key[dup].map(by_key)
            + "); keys must be unique, keep one row per site"
        )
        check.flag(
            dup.to_numpy(), "site_key", key.fillna(""), message.reindex(key.index).fillna("")
        )


def _check_vocabulary(
    check: _Checker, raw: dict[str, pd.Series], out: dict[str, pd.Series], frame: pd.DataFrame
) -> None:
    for column in VOCABULARY_COLUMNS:
        given = _strip(raw[column]) if column in frame.columns else pd.Series([None] * check.n)
        mapped = _map_vocabulary(column, given)
        unknown = given.notna() & mapped.isna()
        allowed = ", ".join(ALLOWED_VALUES[column])
        if column == "snmp_version":
            v1 = np.zeros(check.n, dtype=bool)
            odd = np.flatnonzero(np.asarray(unknown, dtype=bool))
            v1[odd] = [normalise(str(v)) in ("1", "v1", "snmpv1") for v in given.iloc[odd]]
            check.flag(v1, column, given, "SNMP v1 is not supported; use 2c or 3")
            unknown = unknown & ~v1
        check.flag(unknown, column, given, f"is not a known {column}; use one of {allowed}")
        if column == "category":
            check.flag(given.isna(), column, given.fillna(""), f"is empty; use one of {allowed}")
        out[column] = mapped.where(mapped.notna(), None)


def _check_coordinates(
    check: _Checker,
    raw: dict[str, pd.Series],
    out: dict[str, pd.Series],
    frame: pd.DataFrame,
    *,
    fix_swapped: bool,
) -> None:
    lat_s = _strip(raw["lat"])
    lon_s = _strip(raw["lon"])
    lat, lat_bad = _numbers(lat_s, units=False)
    lon, lon_bad = _numbers(lon_s, units=False)
    if "__geometry_type" in frame.columns:
        kind = frame["__geometry_type"].astype(str)
        not_point = ((kind != "Point") & (kind != "")).to_numpy()
        check.flag(
            not_point,
            "geometry",
            kind,
            "is a " + kind + "; each site must be a Point",
        )
        lat_bad = lat_bad & ~not_point
        lon_bad = lon_bad & ~not_point
        missing = lat_s.isna().to_numpy() & ~not_point
        check.flag(missing, "geometry", kind, "is empty; the site has no coordinates")
    else:
        check.flag(
            lat_s.isna(), "lat", raw["lat"], "is empty; give the latitude in decimal degrees"
        )
        check.flag(
            lon_s.isna(), "lon", raw["lon"], "is empty; give the longitude in decimal degrees"
        )
    check.flag(lat_bad, "lat", raw["lat"], "is not a number; use decimal degrees like 19.4326")
    check.flag(lon_bad, "lon", raw["lon"], "is not a number; use decimal degrees like -99.1332")

    la = lat.to_numpy(dtype=float)
    lo = lon.to_numpy(dtype=float)
    known = ~np.isnan(la) & ~np.isnan(lo)
    here = known & _in_mexico(la, lo)
    swapped = known & ~here & _in_mexico(lo, la)
    if fix_swapped:
        la, lo = np.where(swapped, lo, la), np.where(swapped, la, lo)
        check.flag(
            swapped,
            "lat",
            raw["lat"] + ", " + raw["lon"],
            "latitude and longitude were swapped; fixed (--fix-swapped)",
            severity="warning",
        )
    else:
        check.flag(
            swapped,
            "lat",
            raw["lat"] + ", " + raw["lon"],
            "latitude and longitude look swapped (in Mexico latitude is 14 to 33 and longitude "
            "-118 to -86); swap the columns or import with --fix-swapped",
        )
    rest = known & ~here & ~swapped
    positive = rest & _in_mexico(la, -lo)
    check.flag(
        positive,
        "lon",
        raw["lon"],
        "is positive, but Mexico's longitudes are west (negative); was the minus sign lost?",
    )
    rest = rest & ~positive
    check.flag(rest & (np.abs(la) > 90), "lat", raw["lat"], "is outside -90 to 90")
    check.flag(rest & (np.abs(lo) > 180), "lon", raw["lon"], "is outside -180 to 180")
    out["lat"] = pd.Series(la)
    out["lon"] = pd.Series(lo)


def _check_numbers(
    check: _Checker, raw: dict[str, pd.Series], out: dict[str, pd.Series], frame: pd.DataFrame
) -> None:
    for column in ("bw_down_mbps", "bw_up_mbps"):
        given = _strip(raw[column]) if column in frame.columns else pd.Series([None] * check.n)
        value, bad = _numbers(given, units=True)
        check.flag(bad, column, raw[column], "is not a number of Mbps (like 50, 50.5 or 1 Gbps)")
        negative = value.fillna(0).to_numpy() < 0
        check.flag(negative, column, raw[column], "is negative; bandwidth must be 0 or more")
        out[column] = value
    for column, low, high in (("snmp_port", 1, 65535), ("wan_if_index", 1, 2**31 - 1)):
        given = _strip(raw[column]) if column in frame.columns else pd.Series([None] * check.n)
        value, bad = _numbers(given, units=False)
        whole = value.dropna()
        not_whole = pd.Series(False, index=value.index)
        not_whole.loc[whole.index] = whole != np.floor(whole)
        out_of_range = value.notna() & ~not_whole & ((value < low) | (value > high))
        check.flag(bad | not_whole.to_numpy(), column, raw[column], "is not a whole number")
        check.flag(out_of_range, column, raw[column], f"is not between {low} and {high}")
        out[column] = value.where(~bad & ~not_whole.to_numpy()).round().astype("Int64")


def _check_date(
    check: _Checker, raw: dict[str, pd.Series], out: dict[str, pd.Series], frame: pd.DataFrame
) -> None:
    column = "installed_on"
    if column not in frame.columns:
        out[column] = pd.Series([None] * check.n, dtype=object)
        return
    given = _strip(raw[column])
    parsed = pd.to_datetime(given.str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
    for fmt in DATE_FORMATS:
        retry = given.notna() & parsed.isna()
        if not retry.any():
            break
        parsed.loc[retry] = pd.to_datetime(given[retry], format=fmt, errors="coerce")
    bad = given.notna() & parsed.isna()
    check.flag(bad, column, raw[column], "is not a date; use YYYY-MM-DD (or DD/MM/YYYY)")
    years = parsed.dt.year
    odd = parsed.notna() & ((years < FIRST_YEAR) | (years > LAST_YEAR))
    check.flag(odd, column, raw[column], f"is not between {FIRST_YEAR} and {LAST_YEAR}")
    text = parsed.dt.strftime("%Y-%m-%d")
    out[column] = text.where(parsed.notna(), None).astype(object)


def _check_network(
    check: _Checker, raw: dict[str, pd.Series], out: dict[str, pd.Series], frame: pd.DataFrame
) -> None:
    ip = _strip(raw["mgmt_ip"]) if "mgmt_ip" in frame.columns else pd.Series([None] * check.n)
    v4 = _matches(ip, IPV4_RE.pattern)
    other = ip.notna().to_numpy() & ~v4
    normal = ip.copy()
    bad = np.zeros(check.n, dtype=bool)
    for i in np.flatnonzero(other):
        try:
            normal.iloc[i] = str(ipaddress.ip_address(str(ip.iloc[i])))
        except ValueError:
            bad[i] = True
    check.flag(
        bad,
        "mgmt_ip",
        raw["mgmt_ip"],
        "is not an IPv4 or IPv6 address (write it like 10.20.30.40, without a /prefix)",
    )
    out["mgmt_ip"] = normal.where(~bad, None)
    if "mgmt_ip" in frame.columns and "snmp_port" in out:
        port = out["snmp_port"].fillna(161).astype(str)
        endpoint = out["mgmt_ip"].astype(object) + ":" + port.astype(object)
        shared = out["mgmt_ip"].notna() & endpoint.duplicated(keep=False)
        check.flag(
            shared,
            "mgmt_ip",
            raw["mgmt_ip"],
            "is used by another row with the same SNMP port; probes cannot tell the sites apart",
            severity="warning",
        )
    url = _strip(raw["http_url"]) if "http_url" in frame.columns else pd.Series([None] * check.n)
    bad_url = url.notna().to_numpy() & ~_matches(url, URL_RE.pattern, ignore_case=True)
    check.flag(
        bad_url, "http_url", raw["http_url"], "is not an http:// or https:// URL with a host"
    )
    out["http_url"] = url.where(~bad_url, None)


def _check_v3(check: _Checker, out: dict[str, pd.Series], present: Iterable[str]) -> None:
    v3 = (out["snmp_version"] == "3").to_numpy()
    if "v3_user" in present:
        check.flag(
            v3 & out["v3_user"].isna().to_numpy(),
            "v3_user",
            out["v3_user"].fillna(""),
            "is empty but snmp_version is 3; SNMPv3 needs a user name",
        )
    for column in ("v3_auth_key", "v3_priv_key"):
        short = out[column].notna() & (out[column].str.len() < MIN_V3_KEY)
        check.flag(
            short,
            column,
            out[column].fillna("").str.replace(r".", "*", regex=True),
            f"is shorter than {MIN_V3_KEY} characters; SNMPv3 keys need at least {MIN_V3_KEY}",
        )
