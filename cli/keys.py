"""``conectado keys``: API keys with roles (the token is printed once, stored hashed)."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta

import typer
from rich.table import Table

from api.auth import Role, create_key, list_keys, parse_role, revoke_key
from cli.common import console, database, err_console, friendly_errors, settings

app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)

_ROLES = ", ".join(r.value for r in Role)


def _who() -> str:
    try:
        return "cli:" + getpass.getuser()
    except OSError:
        return "cli"


@app.command()
@friendly_errors
def create(
    role: str = typer.Option(..., "--role", help=f"One of: {_ROLES}."),
    name: str = typer.Option(..., "--name", help="Who or what uses the key."),
    expires_days: int = typer.Option(
        None, "--expires-days", min=1, help="Make the key stop working after this many days."
    ),
) -> None:
    """Create a key and print its token once (only its hash is stored)."""
    parsed = parse_role(role)
    expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
    with database(settings(), pool_size=1) as eng, eng.begin() as conn:
        created = create_key(conn, name=name, role=parsed, created_by=_who(), expires_at=expires)
    err_console.print(
        f"Created key {created.info.id} '{created.info.name}' with role "
        f"{created.info.role.value}. Store the token now; it is not shown again:"
    )
    print(created.token)


@app.command(name="list")
@friendly_errors
def list_(
    all_: bool = typer.Option(False, "--all", help="Include revoked keys."),
) -> None:
    """List keys (never their tokens)."""
    with database(settings(), pool_size=1) as eng, eng.connect() as conn:
        keys = list_keys(conn, include_revoked=all_)
    table = Table(title="API keys")
    for col in ("id", "prefix", "name", "role", "created", "by", "last used", "state"):
        table.add_column(col)
    for k in keys:
        state = "revoked" if k.revoked_at else "active"
        if k.expires_at and not k.revoked_at:
            state = f"expires {k.expires_at:%Y-%m-%d}"
        table.add_row(
            str(k.id),
            k.prefix,
            k.name,
            k.role.value,
            f"{k.created_at:%Y-%m-%d %H:%M}",
            k.created_by,
            f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never",
            state,
        )
    console.print(
        table if keys else "No keys yet: `conectado keys create --role admin --name NAME`."
    )


@app.command()
@friendly_errors
def revoke(ref: str = typer.Argument(..., help="The key's id, prefix or name.")) -> None:
    """Revoke a key; it and its page sessions stop working (API workers cache ≤ 10 s)."""
    with database(settings(), pool_size=1) as eng, eng.begin() as conn:
        info = revoke_key(conn, ref=ref, revoked_by=_who())
    console.print(f"Revoked key {info.id} '{info.name}' ({info.role.value}).")
