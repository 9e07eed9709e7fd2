"""What every command shares: settings, the engine, rich progress and people-first errors."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import psycopg
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from core.errors import ConectadoError
from core.progress import ProgressTask
from core.settings import Settings, load_settings
from db.connect import database_url, open_engine
from db.migrate import upgrade

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)

P = ParamSpec("P")
R = TypeVar("R")


def settings() -> Settings:
    """Build settings from the environment, turning validation errors into a clear message."""
    try:
        return load_settings()
    except ValidationError as exc:
        lines = [
            f"  CONECTADO_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        ]
        err_console.print("[bold red]Invalid configuration:[/]\n" + "\n".join(lines))
        raise typer.Exit(2) from exc


@contextmanager
def database(cfg: Settings, *, pool_size: int = 10, migrate: bool = False) -> Iterator[Engine]:
    """Yield an engine on the configured database (starting the embedded one if needed, and
    migrating it first with ``migrate``); the engine is disposed of when the block ends."""
    if migrate:
        upgrade(database_url(cfg))
    eng = open_engine(cfg, pool_size=pool_size, application_name="conectado-cli")
    try:
        yield eng
    finally:
        eng.dispose()


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors (and an unreachable database) into a message and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ConectadoError as exc:
            err_console.print(f"[bold red]{exc.title}:[/] {exc.message}")
            raise typer.Exit(1) from exc
        except OperationalError as exc:
            err_console.print(
                "[bold red]Database unavailable:[/] could not connect or the connection was "
                f"lost ({str(exc.orig).strip().splitlines()[0] if exc.orig else exc}). Check "
                "CONECTADO_DATABASE_URL, or `conectado db status` for the embedded cluster."
            )
            raise typer.Exit(1) from exc
        except ProgrammingError as exc:
            if not isinstance(exc.orig, psycopg.errors.UndefinedTable):
                raise
            err_console.print(
                "[bold red]Database not set up:[/] "
                f"{str(exc.orig).strip().splitlines()[0]}. Run `conectado db migrate` "
                "(and `conectado geo load`) first."
            )
            raise typer.Exit(1) from exc

    return wrapper


class _RichTask:
    def __init__(self, progress: Progress, task_id: Any) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, amount: int = 1) -> None:
        self._progress.advance(self._id, amount)

    def finish(self) -> None:
        task = self._progress.tasks[self._id]
        if task.total is None:
            self._progress.update(
                self._id, total=max(task.completed, 1), completed=max(task.completed, 1)
            )
        else:
            self._progress.update(self._id, completed=task.total)


class RichProgress:
    """core.progress.Progress shown as rich progress bars."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def task(self, description: str, total: int | None = None) -> ProgressTask:
        """Add a bar for ``description``."""
        return _RichTask(self._progress, self._progress.add_task(description, total=total))


@contextmanager
def rich_progress() -> Iterator[RichProgress]:
    """Show progress bars while the block runs (plain, non-animated when not a terminal)."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not sys.stdout.isatty() and False,
    ) as progress:
        yield RichProgress(progress)
