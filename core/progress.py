"""A small progress interface so domain code can report progress without knowing about rich."""

from __future__ import annotations

from typing import Protocol


class ProgressTask(Protocol):
    """One step of long work."""

    def advance(self, amount: int = 1) -> None:
        """Record ``amount`` more units done."""

    def finish(self) -> None:
        """Mark the step complete."""


class Progress(Protocol):
    """Something that shows progress of named steps (the CLI uses rich)."""

    def task(self, description: str, total: int | None = None) -> ProgressTask:
        """Start a step with an optional known total."""
        ...


class _NullTask:
    def advance(self, amount: int = 1) -> None:
        return None

    def finish(self) -> None:
        return None


class NullProgress:
    """Progress that shows nothing (tests, the API)."""

    def task(self, description: str, total: int | None = None) -> ProgressTask:
        """Return a task that ignores updates."""
        return _NullTask()
