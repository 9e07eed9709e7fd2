"""``conectado geo``: load the INEGI geography."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cli.common import console, database, friendly_errors, rich_progress, settings
from geo.loader import GeoLoadReport, load_geography

app = typer.Typer(
    help="Geography: INEGI states, municipalities and localities.", no_args_is_help=True
)


def print_geo_report(report: GeoLoadReport) -> None:
    """Print counts, totals and skipped rows of a geography load."""
    table = Table(title="Geography load", show_lines=False)
    for col in ("table", "inserted", "updated", "unchanged"):
        table.add_column(col, justify="right" if col != "table" else "left")
    for name, counts in (
        ("states", report.states),
        ("municipalities", report.municipalities),
        ("localities", report.localities),
    ):
        table.add_row(name, f"{counts.inserted:,}", f"{counts.updated:,}", f"{counts.unchanged:,}")
    console.print(table)
    console.print(
        f"states: {report.state_count}   municipalities: {report.municipality_count:,}"
        f"   Σ population 2020: {report.municipality_population:,}"
    )
    if report.municipalities_without_population:
        console.print(
            "municipalities without 2020 population (created after the census): "
            + ", ".join(report.municipalities_without_population)
        )
    console.print(
        f"localities: {report.locality_count:,}   Σ population 2020: {report.locality_population:,}"
    )
    if report.skipped:
        reasons = ", ".join(f"{n} {r}" for r, n in report.skipped_by_reason().items())
        console.print(f"skipped {len(report.skipped)} localities ({reasons}); for example:")
        for row in report.skipped[:5]:
            console.print(f"  line {row.line}: {row.key} {row.name or '(no name)'} — {row.reason}")
    console.print(
        "No changes: the database already matched the files."
        if report.changed == 0
        else f"{report.changed:,} rows written."
    )


@app.command()
@friendly_errors
def load(
    directory: Path = typer.Option(
        None, "--dir", help="Folder with the INEGI files (default data/inegi)."
    ),
) -> None:
    """Load (or refresh) the geography; a second run changes nothing."""
    cfg = settings()
    with database(cfg, migrate=True) as eng, rich_progress() as progress:
        report = load_geography(eng, directory or cfg.inegi_dir, progress=progress)
    print_geo_report(report)
