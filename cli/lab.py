"""``conectado lab``: simulated SNMP and HTTP devices for a ``--lab`` inventory."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cli.common import console, friendly_errors, settings
from lab.runner import LabState, lab_status, start_lab, stop_lab

app = typer.Typer(
    help="Lab agents that simulate every site of a --lab inventory.", no_args_is_help=True
)


def print_state(state: LabState) -> None:
    """Print the lab's agents and how to point the prober at it."""
    table = Table(title=f"Lab: {state.sites:,} sites from {state.sites_file}")
    for col in ("agent", "pid", "ports", "alive", "log"):
        table.add_column(col)
    for agent in state.agents:
        table.add_row(
            agent.name,
            str(agent.pid),
            ", ".join(map(str, agent.ports)),
            "[green]yes[/]" if agent.alive else "[red]no[/]",
            agent.log,
        )
    console.print(table)
    console.print(f"started {state.started_at}; {state.https_sites:,} https sites")
    if state.https_sites:
        console.print(
            f"The lab's https sites use certificates of its own CA: "
            f"export CONECTADO_HTTP_CA_FILE={state.ca_file}"
        )


@app.command()
@friendly_errors
def start(
    sites: Path = typer.Option(..., "--sites", help="Inventory written by `sites generate --lab`."),
    snmp_port: int | None = typer.Option(
        None, "--snmp-port", min=1, max=65535, help="Default: the port the inventory names."
    ),
    http_port: int | None = typer.Option(
        None, "--http-port", min=1, max=65535, help="Default: the port the inventory names."
    ),
    https_port: int | None = typer.Option(
        None, "--https-port", min=1, max=65535, help="Default: the port the inventory names."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, max=16, help="Processes per agent (default: one per core, ≤ 4)."
    ),
) -> None:
    """Start the lab agents in the background; returns once they answer."""
    cfg = settings()
    console.print(f"Starting the lab for {sites} ...")
    state = start_lab(
        cfg,
        sites,
        snmp_port=snmp_port,
        http_port=http_port,
        https_port=https_port,
        http_workers=workers,
        snmp_workers=workers,
    )
    print_state(state)


@app.command()
@friendly_errors
def stop() -> None:
    """Stop the lab agents started by `conectado lab start`."""
    stopped = stop_lab(settings())
    if not stopped:
        console.print("No lab agent was running.")
        return
    console.print("Stopped " + ", ".join(f"{a.name} (pid {a.pid})" for a in stopped) + ".")


@app.command()
@friendly_errors
def status() -> None:
    """Show the lab agents and whether they are alive."""
    state = lab_status(settings())
    if state is None:
        console.print("The lab is not running (`conectado lab start --sites FILE`).")
        raise typer.Exit(1)
    print_state(state)
    if not state.running:
        raise typer.Exit(1)
