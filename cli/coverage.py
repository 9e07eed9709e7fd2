"""``conectado coverage``: compute, report and export who lives near a working site."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cli.common import console, database, friendly_errors, rich_progress, settings
from geo.coverage import CATEGORIES, CoverageRun, compute_coverage
from geo.coverage_export import LEVELS, export_coverage
from geo.coverage_queries import (
    get_run,
    list_runs,
    municipality_coverage,
    national_coverage,
    uncovered_localities,
)

app = typer.Typer(
    help="Coverage: population within R km of a working site, by municipality and state.",
    no_args_is_help=True,
)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def _num(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _run_line(run: CoverageRun) -> str:
    basis = (
        "probes (working = last successful probe within "
        f"{run.working_hours:g} h of {run.as_of:%Y-%m-%d %H:%M %Z})"
        if run.basis == "probes"
        else "inventory (no probe data yet: working = active in the inventory)"
    )
    return (
        f"Run {run.id}, computed {run.computed_at:%Y-%m-%d %H:%M:%S %Z} in {run.duration_s:.1f} s; "
        f"R = {run.radius_km:g} km; basis: {basis}"
    )


@app.command()
@friendly_errors
def compute(
    radius_km: float = typer.Option(
        None, "--radius-km", help="Coverage radius in km (default CONECTADO_COVERAGE_RADIUS_KM)."
    ),
) -> None:
    """Compute coverage for the whole country and store it as a new run."""
    cfg = settings()
    with database(cfg, migrate=True) as eng:
        with rich_progress() as progress:
            run = compute_coverage(eng, cfg, radius_km=radius_km, progress=progress)
        with eng.connect() as conn:
            nat = national_coverage(conn, run.id)
    console.print(_run_line(run))
    console.print(
        f"{run.localities:,} localities, {run.sites:,} sites ({run.active_sites:,} active, "
        f"{run.working_sites:,} working); covered population {nat.covered_pop:,} = "
        f"{_pct(nat.covered_pct_census)} of the census; {nat.uncovered_municipalities:,} "
        "municipalities without a working site. `conectado coverage report` for details."
    )


@app.command()
@friendly_errors
def report(
    run_id: int = typer.Option(None, "--run", help="Run id (default: the newest)."),
    top: int = typer.Option(20, "--top", min=1, max=2475, help="Municipalities to list."),
    state: str = typer.Option(None, "--state", help="Only this state (CVE_ENT, e.g. 07)."),
) -> None:
    """Print the national summary and the municipalities to serve first."""
    cfg = settings()
    with database(cfg) as eng, eng.connect() as conn:
        run = get_run(conn, run_id)
        nat = national_coverage(conn, run.id)
        munis = municipality_coverage(conn, run.id, cve_ent=state, limit=top)
        locs = uncovered_localities(conn, run.id, cve_ent=state, limit=10)
    console.print(_run_line(run))
    summary = Table(title="National coverage", show_header=False)
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    for label, value in (
        ("Census population 2020", _num(nat.pop_2020)),
        ("Population in localities (with coordinates)", _num(nat.locality_pop)),
        ("Sites (not retired)", _num(nat.sites)),
        (
            "  by category",
            ", ".join(f"{c} {nat.sites_by_category()[c]:,}" for c in CATEGORIES),
        ),
        ("Active sites", _num(nat.active_sites)),
        ("Working sites", _num(nat.working_sites)),
        ("Sites per 10,000 inhabitants", f"{nat.sites_per_10k or 0:.2f}"),
        (f"Population within {run.radius_km:g} km of a working site", _num(nat.covered_pop)),
        ("  % of census population", _pct(nat.covered_pct_census)),
        ("  % of locality population", _pct(nat.covered_pct_localities)),
        ("Uncovered population (census − covered)", _num(nat.uncovered_pop)),
        ("  of which not in located localities", _num(nat.unlocated_pop)),
        (
            "Municipalities without a working site",
            f"{nat.uncovered_municipalities:,} of {nat.municipalities:,}",
        ),
    ):
        summary.add_row(label, value)
    console.print(summary)

    table = Table(title=f"Top {len(munis)} municipalities by priority (uncovered population)")
    for col in ("#", "CVEGEO", "municipality", "state", "population", "uncovered"):
        table.add_column(col, justify="left" if col in ("municipality", "state") else "right")
    for col in ("covered %", "sites", "working", "no site", "priority"):
        table.add_column(col, justify="right")
    for i, m in enumerate(munis, 1):
        table.add_row(
            str(i),
            m.cvegeo,
            m.name,
            m.state_name,
            _num(m.pop_2020 if m.pop_2020 is not None else m.locality_pop),
            _num(m.uncovered_pop),
            _pct(m.covered_pct_census),
            _num(m.sites),
            _num(m.working_sites),
            "yes" if m.uncovered else "",
            f"{m.priority_score:,.0f}",
        )
    console.print(table)

    loc_table = Table(title="Largest localities without a working site within R")
    for col in ("CVEGEO", "locality", "municipality", "population", "nearest working site"):
        loc_table.add_column(col, justify="right" if col == "population" else "left")
    for loc in locs:
        nearest = (
            "none"
            if loc.nearest_distance_m is None
            else f"{loc.nearest_distance_m / 1000:.1f} km ({loc.nearest_site_key})"
        )
        loc_table.add_row(
            loc.cvegeo,
            loc.name,
            f"{loc.municipality}, {loc.state_name}",
            _num(loc.pop_2020),
            nearest,
        )
    console.print(loc_table)
    console.print(
        "Priority = uncovered population × (1 + uncovered share of the population). "
        "Covered % is against the 2020 census population."
    )


@app.command()
@friendly_errors
def export(
    file: Path = typer.Argument(..., help="Output file (.csv, .geojson or .gpkg)."),
    fmt: str = typer.Option(None, "--format", help="csv | geojson | gpkg (default: suffix)."),
    level: str = typer.Option(
        "municipality", "--level", help=f"{' | '.join(LEVELS)} (default municipality)."
    ),
    run_id: int = typer.Option(None, "--run", help="Run id (default: the newest)."),
    uncovered_only: bool = typer.Option(
        False, "--uncovered-only", help="Only uncovered municipalities / localities."
    ),
) -> None:
    """Export a coverage run for GIS or spreadsheets."""
    cfg = settings()
    with database(cfg) as eng, rich_progress() as progress:
        step = progress.task(f"exporting {level} coverage", total=1)
        result = export_coverage(
            eng, file, level=level, fmt=fmt, run_id=run_id, uncovered_only=uncovered_only
        )
        step.finish()
    console.print(
        f"Wrote {result.rows:,} {result.level} rows of run {result.run_id} to {result.path} "
        f"({result.fmt})."
    )


@app.command()
@friendly_errors
def runs(limit: int = typer.Option(20, "--limit", min=1)) -> None:
    """List the kept coverage runs, newest first."""
    cfg = settings()
    with database(cfg) as eng, eng.connect() as conn:
        kept = list_runs(conn, limit=limit)
    table = Table(title="Coverage runs")
    for col in ("id", "computed", "R km", "basis", "working", "seconds"):
        table.add_column(col, justify="right" if col not in ("computed", "basis") else "left")
    for run in kept:
        table.add_row(
            str(run.id),
            f"{run.computed_at:%Y-%m-%d %H:%M:%S}",
            f"{run.radius_km:g}",
            run.basis,
            f"{run.working_sites:,}",
            f"{run.duration_s:.1f}",
        )
    console.print(table)
