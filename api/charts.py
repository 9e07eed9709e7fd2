"""A small server-rendered SVG chart of a site's bandwidth and latency series (no JS library)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

WIDTH, HEIGHT, PAD = 600, 140, 4


def format_bps(value: float | None) -> str:
    """Bits per second with a unit, or an em dash."""
    if value is None:
        return "—"
    for unit in ("bit/s", "kbit/s", "Mbit/s"):
        if abs(value) < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} Gbit/s"


def _polyline(points: list[tuple[float, float | None]], top: float, colour: str) -> str:
    if top <= 0:
        return ""
    segments: list[list[str]] = [[]]
    for x, y in points:
        if y is None:
            if segments[-1]:
                segments.append([])
            continue
        sy = HEIGHT - PAD - (HEIGHT - 2 * PAD) * (y / top)
        segments[-1].append(f"{x:.1f},{sy:.1f}")
    return "".join(
        f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{" ".join(s)}"/>'
        for s in segments
        if len(s) > 1
    )


def series_svg(points: list[dict[str, Any]]) -> str:
    """Return an inline SVG of in/out bps (shared scale) and latency (own scale)."""
    if len(points) < 2:
        return '<p class="muted">Not enough data in this period yet.</p>'
    times = [datetime.fromisoformat(p["t"]).timestamp() for p in points]
    t0, t1 = times[0], times[-1]
    span = (t1 - t0) or 1.0

    def xs(values: list[float | None]) -> list[tuple[float, float | None]]:
        return [
            (PAD + (WIDTH - 2 * PAD) * (t - t0) / span, v)
            for t, v in zip(times, values, strict=True)
        ]

    ins = [p.get("in_bps") for p in points]
    outs = [p.get("out_bps") for p in points]
    lat = [p.get("snmp_ms") if p.get("snmp_ms") is not None else p.get("http_ms") for p in points]
    top_bps = max([v for v in ins + outs if v is not None] or [0.0]) * 1.1
    top_lat = max([v for v in lat if v is not None] or [0.0]) * 1.1
    label = f"peak {format_bps(top_bps / 1.1)}" if top_bps else "no traffic data"
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" '
        f'role="img" aria-label="bandwidth and latency, {label}">'
        + _polyline(xs(ins), top_bps, "#0b6bcb")
        + _polyline(xs(outs), top_bps, "#7b3fb5")
        + _polyline(xs(lat), top_lat, "#b7791f")
        + f'<text x="{PAD + 2}" y="14" font-size="11" fill="#5b6675">{label}</text></svg>'
    )
