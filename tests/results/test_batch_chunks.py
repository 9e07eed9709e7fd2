"""A round built in chunks of sites gives the same rows and summary as one built whole."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from probes.model import ErrorClass, HttpOutcome, SnmpOutcome
from results.batch import ROW_PARTS, ChunkRows, ChunkTotals, build_chunk, round_record
from results.rates import CounterArrays, CounterSample

T0 = datetime(2031, 3, 4, 23, 59, 50, tzinfo=UTC)  # rounds may cross midnight
ROUND_ID = "9b0c1a4e-0000-4000-8000-000000000001"


@dataclass
class Site:
    snmp: SnmpOutcome | None
    http: HttpOutcome | None
    previous: CounterSample | None
    early: bool  # in the first chunk


stamps = st.integers(0, 30_000).map(lambda ms: T0 + timedelta(milliseconds=ms))
latency = st.none() | st.floats(0, 5_000, allow_nan=False)
error_classes = st.sampled_from(list(ErrorClass))
details = st.none() | st.text(max_size=12)


@st.composite
def snmp_outcomes(draw: st.DrawFn, site_id: int) -> SnmpOutcome:
    ts = draw(stamps)
    if not draw(st.booleans()):
        return SnmpOutcome(site_id, ts, False, draw(latency), draw(error_classes), draw(details))
    bits = draw(st.sampled_from([32, 64]))
    counters = st.integers(0, 2**bits - 1)
    return SnmpOutcome(
        site_id,
        ts,
        True,
        draw(latency),
        None,
        draw(st.none() | st.just("ifHC* missing: 32-bit counters")),
        draw(st.none() | st.integers(1, 64)),
        draw(st.none() | st.integers(0, 2**32 - 1)),
        draw(counters),
        draw(counters),
        bits,  # type: ignore[arg-type]
        draw(st.sampled_from([1, 2, None])),
        draw(st.none() | st.integers(0, 10_000)),
    )


@st.composite
def http_outcomes(draw: st.DrawFn, site_id: int) -> HttpOutcome:
    ts = draw(stamps)
    ok = draw(st.booleans())
    return HttpOutcome(
        site_id,
        ts,
        ok,
        draw(latency),
        None if ok else draw(error_classes),
        None if ok else draw(details),
        draw(st.none() | st.sampled_from([200, 301, 404, 503])),
        draw(latency),
        draw(latency),
        draw(latency),
        draw(st.none() | st.floats(-30, 400, allow_nan=False)),
        draw(st.none() | st.booleans()),
        draw(st.none() | st.floats(0, 1_000, allow_nan=False)),
        draw(st.none() | st.integers(0, 10**9)),
    )


@st.composite
def samples(draw: st.DrawFn) -> CounterSample | None:
    if not draw(st.booleans()):
        return None
    bits = draw(st.sampled_from([32, 64]))
    return CounterSample(
        ts=(T0 - timedelta(seconds=draw(st.integers(1, 900)))).timestamp(),
        sys_uptime=draw(st.none() | st.integers(0, 2**32 - 1)),
        in_octets=draw(st.integers(0, 2**bits - 1)),
        out_octets=draw(st.integers(0, 2**bits - 1)),
        bits=bits,
        if_index=draw(st.none() | st.integers(1, 64)),
    )


@st.composite
def sites(draw: st.DrawFn) -> list[Site]:
    out = []
    for site_id in range(1, draw(st.integers(0, 25)) + 1):
        kinds = draw(st.sampled_from(["snmp", "http", "both", "neither"]))
        snmp = draw(snmp_outcomes(site_id)) if kinds in ("snmp", "both") else None
        http = draw(http_outcomes(site_id)) if kinds in ("http", "both") else None
        out.append(Site(snmp, http, draw(samples()), draw(st.booleans())))
    return out


def build(all_sites: list[Site], chosen: list[bool]) -> tuple[ChunkRows, ChunkTotals]:
    """``build_chunk`` over the chosen sites, positions and counters as the round keeps them."""
    ids = list(range(1, len(all_sites) + 1))
    snmp = [(pos, s.snmp) for pos, s in enumerate(all_sites) if s.snmp and chosen[pos]]
    http = [(pos, s.http) for pos, s in enumerate(all_sites) if s.http and chosen[pos]]
    previous = CounterArrays.from_samples([all_sites[pos].previous for pos, _ in snmp])
    return build_chunk(
        round_id=ROUND_ID, site_ids=ids, snmp=snmp, http=http, previous_counters=previous
    )


def record(totals: ChunkTotals) -> object:
    return round_record(
        totals,
        round_id=ROUND_ID,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=31),
        kinds=["http", "snmp"],
        probe_seconds=31.0,
    )


@settings(max_examples=150, deadline=None)
@given(sites())
def test_two_chunks_add_up_to_the_whole_round(all_sites: list[Site]) -> None:
    whole_rows, whole = build(all_sites, [True] * len(all_sites))
    early = [s.early for s in all_sites]
    rows, totals = build(all_sites, early)
    late_rows, late = build(all_sites, [not e for e in early])
    rows.add(late_rows)
    totals.add(late)

    for name in ROW_PARTS:  # the same lines; only their order may differ
        got = Counter(getattr(rows, name).splitlines())
        assert got == Counter(getattr(whole_rows, name).splitlines()), name
    assert sorted(totals.latencies) == sorted(whole.latencies)
    assert (totals.first_ts, totals.last_ts) == (whole.first_ts, whole.last_ts)
    assert totals.days(T0) == whole.days(T0)
    assert record(totals) == record(whole)
    assert whole.sites == sum(1 for s in all_sites if s.snmp or s.http)


def test_a_chunk_leaves_out_the_sites_it_has_no_outcome_for() -> None:
    a = Site(SnmpOutcome(1, T0, False, error=ErrorClass.TIMEOUT), None, None, True)
    b = Site(None, HttpOutcome(2, T0, True, 12.0, status_code=200), None, False)
    rows, totals = build([a, b], [True, False])
    assert rows.status_rows.startswith("1\tdown\t") and rows.status_rows.count("\n") == 1
    assert rows.http_rows == "" and rows.snmp_rows.count("\n") == 1
    assert (totals.sites, totals.down, totals.up) == (1, 1, 0)
    assert totals.errors == Counter({"snmp timeout": 1})
