from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from api.display import (
    format_duration,
    format_when,
    incident_cause,
    oper_status,
    probe_result,
    tls_expiry,
)

NOW = datetime(2026, 12, 7, 13, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("back", "shown"),
    [
        (timedelta(seconds=20), "2026-12-07 13:00 UTC (just now)"),
        (timedelta(minutes=2), "2026-12-07 12:58 UTC (2 min ago)"),
        (timedelta(minutes=89), "2026-12-07 11:31 UTC (89 min ago)"),
        (timedelta(hours=3), "2026-12-07 10:00 UTC (3.0 h ago)"),
        (timedelta(hours=47), "2026-12-05 14:00 UTC (47.0 h ago)"),
        (timedelta(days=9), "2026-11-28 13:00 UTC (9 days ago)"),
    ],
)
def test_a_past_time_shows_to_the_minute_with_how_long_ago(back: timedelta, shown: str) -> None:
    assert format_when(NOW - back, NOW) == shown
    assert format_when((NOW - back).isoformat(), NOW) == shown


def test_times_in_other_zones_and_text_from_the_api_are_shown_in_utc() -> None:
    mexico_city = timezone(timedelta(hours=-6))
    assert format_when(datetime(2026, 12, 7, 6, 58, tzinfo=mexico_city), NOW) == (
        "2026-12-07 12:58 UTC (2 min ago)"
    )
    assert format_when("2026-12-07T12:59:01.77422+00:00", NOW) == "2026-12-07 12:59 UTC (1 min ago)"
    naive = "2026-12-07T12:58:00"  # read as UTC
    assert format_when(naive, NOW) == "2026-12-07 12:58 UTC (2 min ago)"


def test_no_time_is_a_dash_and_a_time_ahead_has_no_ago() -> None:
    assert format_when(None, NOW) == "—"
    assert format_when("", NOW) == "—"
    assert format_when(NOW + timedelta(minutes=5), NOW) == "2026-12-07 13:05 UTC"


def test_incident_causes_read_as_words_and_unknown_ones_pass_through() -> None:
    assert incident_cause("failures") == "failed rounds in a row"
    assert incident_cause("municipal_outage") == "municipal outage"
    assert incident_cause("something_new") == "something_new"


@pytest.mark.parametrize(
    ("span", "shown"),
    [
        (timedelta(seconds=45), "45 s"),
        (timedelta(minutes=15), "15 min"),
        (timedelta(hours=2), "2 h"),
        (timedelta(minutes=90), "1.5 h"),
        (timedelta(days=3), "3 days"),
    ],
)
def test_durations_read_in_words(span: timedelta, shown: str) -> None:
    assert format_duration(span) == shown


def test_interface_status_and_certificate_expiry_in_words() -> None:
    assert [oper_status(c) for c in (1, 2, 7, 99, None)] == [
        "up",
        "down",
        "lower layer down",
        "code 99",
        "—",
    ]
    assert tls_expiry(43) == "expires in 43 days"
    assert tls_expiry(0.25) == "expires in 6 h"
    assert tls_expiry(-3) == "expired 3 days ago"
    assert tls_expiry(None) == "—"


def test_a_probe_result_reads_the_same_on_the_page_and_in_the_cli() -> None:
    assert probe_result(None, None) == "not probed"
    assert probe_result(True, None) == "answered"
    assert probe_result(True, None, "status 200") == "status 200"
    assert probe_result(False, "timeout: no answer") == "timeout: no answer"
    assert probe_result(False, None) == "failed"
