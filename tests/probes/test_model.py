"""HTTP targets and outcomes cross processes by pickle: every field survives, in its place."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from probes.model import ErrorClass, HttpOutcome, HttpTarget, SnmpOutcome

maybe_float = st.none() | st.floats(allow_nan=False)
maybe_int = st.none() | st.integers(min_value=0, max_value=2**64 - 1)
maybe_text = st.none() | st.text(max_size=40)
errors = st.none() | st.sampled_from(list(ErrorClass))
stamps = st.datetimes(timezones=st.just(UTC))
# The fields both outcome kinds share.
common = {
    "site_id": st.integers(min_value=1),
    "ts": stamps,
    "ok": st.booleans(),
    "latency_ms": maybe_float,
    "error": errors,
    "error_detail": maybe_text,
}


@given(
    st.builds(
        HttpOutcome,
        **common,
        status_code=st.none() | st.integers(100, 599),
        connect_ms=maybe_float,
        ttfb_ms=maybe_float,
        total_ms=maybe_float,
        tls_days_left=maybe_float,
        keyword_found=st.none() | st.booleans(),
        throughput_mbps=maybe_float,
        bytes_read=maybe_int,
    )
)
def test_http_outcome_pickles_to_an_equal_outcome(outcome: HttpOutcome) -> None:
    back = pickle.loads(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    assert back == outcome and type(back.error) is type(outcome.error)


@given(
    st.builds(
        SnmpOutcome,
        **common,
        if_index=st.none() | st.integers(1, 2**31 - 1),
        sys_uptime=maybe_int,
        in_octets=maybe_int,
        out_octets=maybe_int,
        counter_bits=st.none() | st.sampled_from([32, 64]),
        oper_status=st.none() | st.integers(1, 7),
        high_speed_mbps=maybe_int,
    )
)
def test_snmp_outcome_pickles_to_an_equal_outcome(outcome: SnmpOutcome) -> None:
    assert pickle.loads(pickle.dumps(outcome)) == outcome


@given(
    st.builds(
        HttpTarget,
        site_id=st.integers(min_value=1),
        url=st.text(max_size=60),
        method=st.sampled_from(["GET", "HEAD"]),
        expect_keyword=maybe_text,
        throughput_bytes=st.none() | st.integers(1, 10**9),
        expect_slow=st.booleans(),
    )
)
def test_http_target_pickles_to_an_equal_target(target: HttpTarget) -> None:
    assert pickle.loads(pickle.dumps(target)) == target


def test_pickle_is_positional_and_smaller_than_the_default() -> None:
    outcome = HttpOutcome(7, datetime(2026, 12, 7, tzinfo=UTC), True, 1.5, status_code=200)
    reduced = outcome.__reduce__()
    assert reduced[0] is HttpOutcome and reduced[1][:4] == (7, outcome.ts, True, 1.5)
    assert b"status_code" not in pickle.dumps(outcome)  # no field names in the bytes
