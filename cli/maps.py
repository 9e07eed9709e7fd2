"""``conectado map``: write the coverage, health and site maps as self-contained HTML files."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import typer

from cli.common import console, database, friendly_errors, rich_progress, settings
from core.errors import InvalidInput
from maps.coverage_map import DEFAULT_LOCALITIES, render_coverage_map
from maps.health_map import render_health_map
from maps.site_map import NEIGHBOUR_RADIUS_KM, render_site_map
from sites.filters import SiteFilter

app = typer.Typer(
    help="Maps as single HTML files that work offline (Leaflet is inlined; tiles optional).",
    no_args_is_help=True,
)

OUT_HELP = "Output HTML file."


def _check_out(out: Path) -> None:
    if not out.parent.exists():
        raise InvalidInput(f"Cannot write {out}: folder {out.parent} does not exist.")


def _write(out: Path, what: str, render: Callable[[], str]) -> None:
    _check_out(out)
    started = time.perf_counter()
    with rich_progress() as progress:
        step = progress.task(f"rendering the {what} map", total=1)
        html = render()
        step.finish()
    out.write_text(html, encoding="utf-8")
    size = out.stat().st_size / 1e6
    console.print(
        f"Wrote {out} ({size:.1f} MB) in {time.perf_counter() - started:.1f} s. Open it in a "
        "browser; it needs no internet (only the background tiles do, CONECTADO_TILE_URL)."
    )


@app.command()
@friendly_errors
def coverage(
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    run_id: int = typer.Option(None, "--run", help="Coverage run (default: the newest)."),
    localities: int = typer.Option(
        DEFAULT_LOCALITIES, "--localities", min=0, max=5000, help="Uncovered localities shown."
    ),
) -> None:
    """Municipalities by population coverage or sites per 10,000, with state borders."""
    cfg = settings()
    with database(cfg) as eng:
        _write(
            out,
            "coverage",
            lambda: render_coverage_map(eng, cfg, run_id=run_id, localities=localities),
        )


@app.command()
@friendly_errors
def health(
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    state: list[str] = typer.Option(None, "--state", help="Only this state (CVE_ENT); repeat."),
    municipality: list[str] = typer.Option(
        None, "--municipality", help="Only this municipality (CVEGEO); repeat."
    ),
) -> None:
    """Every site coloured by its current state (up, degraded, down, unknown, unmonitored)."""
    cfg = settings()
    try:
        flt = SiteFilter(state=state or [], municipality=municipality or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with database(cfg) as eng:
        _write(out, "health", lambda: render_health_map(eng, cfg, site_filter=flt))


@app.command()
@friendly_errors
def site(
    key: str = typer.Argument(..., help="The site's key (site_key)."),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    radius_km: float = typer.Option(
        NEIGHBOUR_RADIUS_KM, "--radius-km", help="Neighbours within this distance."
    ),
) -> None:
    """One site, its neighbours with their status, and its municipality."""
    cfg = settings()
    with database(cfg) as eng:
        _write(out, "site", lambda: render_site_map(eng, cfg, key, radius_km=radius_km))
