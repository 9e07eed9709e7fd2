"""The root ``conectado`` command: one Typer app with a sub-command per area.

Sub-commands are imported only when they run: the areas pull in geopandas, folium, FastAPI and
the probe engine, and ``conectado db url`` should not wait seconds for all of them.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer._click import Command, Context, HelpFormatter  # typer vendors its own click
from typer.core import TyperGroup

# name -> (module, attribute, is a single command, one-line help for the listing)
LAZY: dict[str, tuple[str, str, bool, str]] = {
    "db": ("cli.db", "app", False, "The database: start, stop, status, url, migrate."),
    "geo": ("cli.geo", "app", False, "INEGI geography: load states, municipalities, localities."),
    "sites": ("cli.sites", "app", False, "Site inventory: import, export, generate, find, show."),
    "probe": ("cli.probe", "app", False, "Probe sites now (one round) and manage the spool."),
    "lab": ("cli.lab", "app", False, "Simulated SNMP and HTTP devices for a --lab inventory."),
    "scheduler": ("cli.scheduler", "app", False, "Scheduled rounds, rollups, incidents."),
    "rollup": ("cli.scheduler", "rollup_app", False, "Recompute hourly and daily rollups."),
    "incidents": ("cli.scheduler", "incidents_app", False, "List, show, acknowledge incidents."),
    "maintenance": ("cli.scheduler", "maintenance_app", False, "Maintenance windows."),
    "coverage": ("cli.coverage", "app", False, "Coverage for planners: compute, report, export."),
    "map": ("cli.maps", "app", False, "Coverage, health and site maps as offline HTML files."),
    "keys": ("cli.keys", "app", False, "API keys: create, list, revoke."),
    "serve": ("cli.serve", "serve", True, "Run the API and pages (uvicorn)."),
    "demo": ("cli.demo", "demo", True, "Run the whole platform on the lab inventory."),
    "config": ("cli.config", "show_config", True, "Every setting and its value in effect."),
}


class LazyGroup(TyperGroup):
    """A Typer group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: Context) -> list[str]:
        """Every sub-command name, in the order of ``LAZY``."""
        return list(LAZY)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        """Import and build the sub-command ``cmd_name`` (None when there is none)."""
        if cmd_name not in LAZY:
            return None
        module, attr, single, _ = LAZY[cmd_name]
        target: Any = getattr(importlib.import_module(module), attr)
        if single:
            sub = typer.Typer(pretty_exceptions_show_locals=False)
            sub.command(name=cmd_name)(target)
            command = typer.main.get_command(sub)
        else:
            # A group even when it has one command (`conectado geo load`): get_command would
            # collapse a one-command Typer into that command.
            command = typer.main.get_group(target)
        command.name = cmd_name
        return command

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        """List the sub-commands with their one-line help, without importing them."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, spec[3]) for name, spec in LAZY.items()])


app = typer.Typer(
    cls=LazyGroup,
    help="Conectado: inventory, probing and coverage of Mexico Conectado's sites.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)


@app.callback()
def root() -> None:
    """Conectado: inventory, probing and coverage of Mexico Conectado's sites."""


def main() -> None:
    """Entry point of the ``conectado`` console script."""
    app()
