"""``conectado config``: the effective settings, secrets masked."""

from __future__ import annotations

import typer
from rich.table import Table

from cli.common import console, settings
from core.settings import Settings


def settings_rows(cfg: Settings) -> list[tuple[str, str, str]]:
    """(environment variable, effective value, description) for every setting."""
    rows = []
    for name, field in Settings.model_fields.items():
        value = getattr(cfg, name)
        shown = "**********" if "secret" in type(value).__name__.lower() else str(value)
        rows.append((f"CONECTADO_{name.upper()}", shown, field.description or ""))
    return rows


def markdown_table() -> str:
    """The README's configuration table: every setting with its default and meaning."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "(unset)" if default is None else str(default).replace("|", "\\|")
        if name == "home":
            shown = "the project folder"
        meaning = (field.description or "").replace("|", "\\|")
        lines.append(f"| `CONECTADO_{name.upper()}` | `{shown}` | {meaning} |")
    return "\n".join(lines)


def show_config(
    markdown: bool = typer.Option(False, help="Print the README's configuration table."),
) -> None:
    """Print every CONECTADO_* setting with its effective value and meaning."""
    if markdown:
        typer.echo(markdown_table())
        return
    table = Table(title="Conectado settings")
    for col in ("variable", "value", "meaning"):
        table.add_column(col)
    for row in settings_rows(settings()):
        table.add_row(*row)
    console.print(table)
