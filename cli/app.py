"""The root ``conectado`` command: one Typer app with a sub-command per area."""

from __future__ import annotations

import typer

from cli import coverage, db, geo, keys, lab, maps, probe, sites
from cli import scheduler as scheduler_cli
from cli.config import show_config
from cli.demo import demo
from cli.serve import serve

app = typer.Typer(
    help="Conectado: inventory, probing and coverage of Mexico Conectado's sites.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(db.app, name="db")
app.add_typer(geo.app, name="geo")
app.add_typer(coverage.app, name="coverage")
app.add_typer(maps.app, name="map")
app.add_typer(keys.app, name="keys")
app.add_typer(sites.app, name="sites")
app.add_typer(probe.app, name="probe")
app.add_typer(lab.app, name="lab")
app.add_typer(scheduler_cli.app, name="scheduler")
app.add_typer(scheduler_cli.rollup_app, name="rollup")
app.add_typer(scheduler_cli.incidents_app, name="incidents")
app.add_typer(scheduler_cli.maintenance_app, name="maintenance")
app.command(name="demo")(demo)
app.command(name="config")(show_config)
app.command(name="serve")(serve)


def main() -> None:
    """Entry point of the ``conectado`` console script."""
    app()
