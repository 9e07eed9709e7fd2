"""Open a map file in headless chromium, record every request, screenshot and measure it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from PIL import Image, ImageStat

BACKGROUND = (0xDD, 0xE5, 0xEA)  # .conectado-map background in conectado-maps.css


@dataclass
class OpenedMap:
    """A loaded map page and what happened while it loaded."""

    page: Any
    context: Any
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    open_s: float = 0.0

    def close(self) -> None:
        """Close the page's browser context."""
        self.context.close()


def _local(url: str, allowed_hosts: tuple[str, ...]) -> bool:
    parsed = urlparse(url)
    if parsed.scheme in ("file", "data", "blob", "about"):
        return True
    return parsed.hostname in allowed_hosts


def open_map(
    browser: Any,
    path: Path,
    *,
    ready: str = "window.conectado && conectado.map && !conectado.pending",
    allowed_hosts: tuple[str, ...] = ("127.0.0.1",),
    viewport: tuple[int, int] = (1280, 860),
    timeout_s: float = 30.0,
) -> OpenedMap:
    """Load ``path`` and wait until ``ready`` is true; requests to other hosts are blocked."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    opened = OpenedMap(page=page, context=context)
    page.on("request", lambda request: opened.requests.append(request.url))
    page.on(
        "console",
        lambda msg: opened.console_errors.append(msg.text) if msg.type == "error" else None,
    )
    page.on("pageerror", lambda exc: opened.console_errors.append(str(exc)))

    def route(route: Any) -> None:
        if _local(route.request.url, allowed_hosts):
            route.continue_()
        else:
            opened.blocked.append(route.request.url)
            route.abort()

    context.route("**/*", route)
    started = time.perf_counter()
    page.goto(path.resolve().as_uri(), wait_until="load", timeout=timeout_s * 1000)
    page.wait_for_function(ready, timeout=timeout_s * 1000)
    opened.open_s = time.perf_counter() - started
    return opened


def map_pixels(path: Path) -> tuple[int, float, float]:
    """Centre of a screenshot: (distinct colours, share not background, mean std deviation)."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    centre = image.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4))
    colours = centre.getcolors(maxcolors=1 << 22) or []
    total = centre.size[0] * centre.size[1]
    background = sum(
        n
        for n, rgb in colours
        if isinstance(rgb, tuple)
        and all(abs(a - b) <= 3 for a, b in zip(rgb, BACKGROUND, strict=True))
    )
    stddev = sum(ImageStat.Stat(centre).stddev) / 3
    return len(colours), 1 - background / total, stddev


def count_colour(path: Path, rgb: tuple[int, int, int], tolerance: int = 12) -> int:
    """How many pixels of a screenshot are within ``tolerance`` of ``rgb`` on every channel."""
    image = Image.open(path).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 22) or []
    return sum(
        n
        for n, c in colours
        if isinstance(c, tuple)
        and all(abs(a - b) <= tolerance for a, b in zip(c, rgb, strict=True))
    )
