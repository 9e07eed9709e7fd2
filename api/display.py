"""How the pages show times: to the minute in UTC, with how long ago (the maps' popups agree)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def ago(minutes: float) -> str:
    """How long ago ``minutes`` is, in the maps' words: "just now", "12 min ago", "3.0 h ago"."""
    if minutes < 1:
        return "just now"
    if minutes < 90:
        return f"{round(minutes)} min ago"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f} h ago"
    return f"{round(minutes / 1440)} days ago"


def format_when(value: str | datetime | None, now: datetime | None = None) -> str:
    """``value`` (ISO text or an aware datetime) as "2026-12-07 12:59 UTC (3 min ago)"; "—" if None.

    A time ahead of ``now`` (clock skew between hosts) is shown without the "ago" part.
    """
    if value is None or value == "":
        return "—"
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    shown = when.strftime("%Y-%m-%d %H:%M UTC")
    minutes = ((now or datetime.now(UTC)) - when).total_seconds() / 60
    return shown if minutes < 0 else f"{shown} ({ago(minutes)})"


_CAUSES = {
    "failures": "failed rounds in a row",
    "flapping": "flapping",
    "municipal_outage": "municipal outage",
}


def incident_cause(cause: str) -> str:
    """An incident's cause (results.incidents) in operators' words; unknown causes as they are."""
    return _CAUSES.get(cause, cause)


def format_duration(value: timedelta) -> str:
    """A duration in words: "45 s", "15 min", "2 h", "1.5 h", "3 days"."""
    seconds = value.total_seconds()
    if seconds < 90:
        return f"{seconds:g} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:g} min"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600, 1):g} h"
    return f"{round(seconds / 86400, 1):g} days"


_OPER_STATUS = {
    1: "up",
    2: "down",
    3: "testing",
    4: "unknown",
    5: "dormant",
    6: "not present",
    7: "lower layer down",
}


def oper_status(code: int | None) -> str:
    """IF-MIB ifOperStatus in words ("up", "down", "lower layer down"); "—" if not read."""
    if code is None:
        return "—"
    return _OPER_STATUS.get(code, f"code {code}")


def tls_expiry(days_left: float | None) -> str:
    """A certificate's expiry in words: "in 43 days", "in 5 hours", "3 days ago"; "—" if none."""
    if days_left is None:
        return "—"
    if days_left < 0:
        return f"expired {format_duration(timedelta(days=-days_left))} ago"
    return f"expires in {format_duration(timedelta(days=days_left))}"


def probe_result(ok: bool | None, error: str | None, answer: str = "answered") -> str:
    """One probe kind's last result in words: ``answer`` when it succeeded, its error when it
    failed, "not probed" when the site has none of that kind (page and CLI say the same)."""
    if ok is None:
        return "not probed"
    return answer if ok else (error or "failed")
