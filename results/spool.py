"""The local spool: rounds that could not be written wait here until the database returns.

One gzipped JSON file per round in ``<var_dir>/spool`` (written to a temporary name and
renamed, so a crash never leaves half a file), bounded by ``spool_max_rounds`` and
``spool_max_bytes``. When full, the new round is refused with an error in the log naming
what was lost and why; rounds already waiting are never dropped. ``flush_spool`` writes the
waiting rounds oldest first and deletes each file once its round is in the database (or was
already there: the round id in ``probe_rounds`` makes a replay a no-op, so a crash between
commit and delete cannot write twice). A file the database rejects for another reason than
an outage is moved to ``spool/rejected`` so that it does not block the others.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sqlalchemy import Engine

from core.settings import Settings
from results.batch import RoundBatch
from results.store import is_connection_error, write_round

log = logging.getLogger("conectado.spool")

SUFFIX: Final = ".round.json.gz"


def spool_dir(settings: Settings) -> Path:
    """The spool folder (``<var_dir>/spool``)."""
    return settings.path(settings.var_dir) / "spool"


def pending_rounds(settings: Settings) -> list[Path]:
    """Spooled round files, oldest first."""
    folder = spool_dir(settings)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX))


@dataclass
class SpoolUsage:
    """How full the spool is."""

    rounds: int
    bytes: int
    max_rounds: int
    max_bytes: int


def spool_usage(settings: Settings) -> SpoolUsage:
    """Count the waiting rounds and their bytes."""
    files = pending_rounds(settings)
    size = 0
    for path in files:
        try:
            size += path.stat().st_size
        except FileNotFoundError:
            continue
    return SpoolUsage(len(files), size, settings.spool_max_rounds, settings.spool_max_bytes)


def spool_round(settings: Settings, batch: RoundBatch) -> Path | None:
    """Save ``batch`` for a later flush; None (and an error logged) when the spool is full."""
    folder = spool_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    data = batch.to_bytes()
    usage = spool_usage(settings)
    if usage.rounds + 1 > usage.max_rounds or usage.bytes + len(data) > usage.max_bytes:
        log.error(
            "Spool full (%d rounds, %d bytes; limits %d rounds, %d bytes in %s): round %s "
            "(%d sites) is NOT kept and its results are lost. Restore the database, or raise "
            "CONECTADO_SPOOL_MAX_ROUNDS / CONECTADO_SPOOL_MAX_BYTES.",
            usage.rounds,
            usage.bytes,
            usage.max_rounds,
            usage.max_bytes,
            folder,
            batch.round.id,
            batch.round.sites,
        )
        return None
    stamp = batch.round.started_at.replace(":", "").replace("-", "")[:15]
    path = folder / f"{stamp}_{batch.round.id}{SUFFIX}"
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    log.warning(
        "Database unreachable: round %s (%d sites) spooled to %s (%d rounds waiting).",
        batch.round.id,
        batch.round.sites,
        path,
        usage.rounds + 1,
    )
    return path


@dataclass
class FlushReport:
    """What a flush did."""

    written: int = 0
    already_written: int = 0
    rejected: list[str] = field(default_factory=list)
    remaining: int = 0
    error: str | None = None


def flush_spool(engine: Engine, settings: Settings) -> FlushReport:
    """Write every spooled round (oldest first); stop at the first outage and keep the rest."""
    report = FlushReport()
    files = pending_rounds(settings)
    for n, path in enumerate(files):
        try:
            batch = RoundBatch.from_bytes(path.read_bytes())
        except FileNotFoundError:
            continue  # another flusher took it
        except (OSError, ValueError, TypeError, EOFError) as exc:
            _reject(path, f"unreadable spool file: {exc}", report)
            continue
        try:
            written = write_round(engine, batch, from_spool=True)
        except Exception as exc:
            if is_connection_error(exc):
                report.remaining = len(files) - n
                report.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                return report
            _reject(path, f"the database refused round {batch.round.id}: {exc}", report)
            continue
        if written:
            report.written += 1
        else:
            report.already_written += 1
        path.unlink(missing_ok=True)
    return report


def _reject(path: Path, why: str, report: FlushReport) -> None:
    folder = path.parent / "rejected"
    folder.mkdir(exist_ok=True)
    path.replace(folder / path.name)
    log.error("%s; moved to %s for inspection.", why.splitlines()[0], folder / path.name)
    report.rejected.append(path.name)
