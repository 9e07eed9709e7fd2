"""``conectado probe``: run a probe round now, and look after the spool."""

from __future__ import annotations

import typer
from rich.table import Table

from cli.common import console, database, friendly_errors, rich_progress, settings
from core.errors import InvalidInput
from results.rounds import KINDS, RoundSummary, run_round
from results.spool import flush_spool, spool_dir, spool_usage

app = typer.Typer(help="Probe sites over SNMP and HTTP.", no_args_is_help=True)


def parse_kinds(value: str) -> set[str]:
    """``snmp,http`` → {"snmp", "http"}; InvalidInput naming anything else."""
    kinds = {k.strip().lower() for k in value.split(",") if k.strip()}
    unknown = kinds - KINDS
    if unknown or not kinds:
        raise InvalidInput(
            f"--kind: {', '.join(sorted(unknown)) or 'nothing given'} is not a probe kind; "
            "use snmp, http or snmp,http."
        )
    return kinds


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f} ms"


def print_summary(summary: RoundSummary) -> None:
    """Print a round's summary table, its errors by class and what became of it."""
    table = Table(title=f"Probe round {summary.round_id}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    probes = summary.snmp_probes + summary.http_probes
    table.add_row("sites probed", f"{summary.sites:,}")
    table.add_row("probes (snmp / http)", f"{summary.snmp_probes:,} / {summary.http_probes:,}")
    table.add_row("up", f"[green]{summary.up:,}[/]")
    table.add_row("degraded", f"[yellow]{summary.degraded:,}[/]")
    table.add_row("down", f"[red]{summary.down:,}[/]")
    table.add_row(
        "latency p50 / p95", f"{_ms(summary.latency_p50_ms)} / {_ms(summary.latency_p95_ms)}"
    )
    rate = "–" if summary.probes_per_s is None else f"{summary.probes_per_s:,.0f}"
    table.add_row("probes/s", rate)
    table.add_row("rates computed", f"{summary.rates_computed:,}")
    table.add_row("reboots detected", f"{summary.reboots:,}")
    table.add_row("bogus rates discarded", f"{summary.bogus_rates:,}")
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in summary.phases.items())
    table.add_row("time", phases)
    console.print(table)
    if summary.errors:
        console.print(
            "failures by class: "
            + ", ".join(f"{kind} {count:,}" for kind, count in summary.errors.items())
        )
    if summary.flushed and (summary.flushed.written or summary.flushed.already_written):
        console.print(
            f"spool: wrote {summary.flushed.written} waiting round(s) before this one"
            + (
                f" ({summary.flushed.already_written} already written)"
                if summary.flushed.already_written
                else ""
            )
        )
    if summary.written:
        console.print(f"{probes:,} results written.")
    elif summary.spooled:
        console.print(
            "[yellow]The database was unreachable: the round is in the local spool and will "
            "be written when it returns (`conectado probe flush`).[/]"
        )
    elif summary.lost:
        console.print(
            "[bold red]The database was unreachable and the spool is full: "
            "this round's results are lost (see the log).[/]"
        )


@app.command()
@friendly_errors
def run(
    site: list[str] = typer.Option(
        None, "--site", help="Probe only this site key (repeat for more)."
    ),
    kind: str = typer.Option("snmp,http", "--kind", help="snmp, http or snmp,http."),
    limit: int = typer.Option(None, "--limit", min=1, help="Probe at most N sites."),
) -> None:
    """Probe the active/installed sites once, store the results and print a summary."""
    kinds = parse_kinds(kind)
    cfg = settings()
    with database(cfg, migrate=True) as eng, rich_progress() as progress:
        summary = run_round(
            eng, cfg, site_keys=site or None, kinds=kinds, limit=limit, progress=progress
        )
    if summary.sites == 0 and summary.snmp_probes + summary.http_probes == 0:
        console.print(
            "No site to probe: none is active/installed with a mgmt_ip or http_url "
            "(import an inventory with `conectado sites import`)."
        )
        return
    print_summary(summary)


@app.command()
@friendly_errors
def flush() -> None:
    """Write the rounds waiting in the local spool (after a database outage)."""
    cfg = settings()
    with database(cfg) as eng:
        report = flush_spool(eng, cfg)
    console.print(
        f"written {report.written}, already written {report.already_written}, "
        f"still waiting {report.remaining}, rejected {len(report.rejected)}"
    )
    if report.error:
        console.print(f"[yellow]stopped: database unreachable ({report.error})[/]")
    if report.rejected:
        console.print(f"rejected files are in {spool_dir(cfg) / 'rejected'}")


@app.command()
@friendly_errors
def spool() -> None:
    """Show how many rounds wait in the local spool."""
    cfg = settings()
    usage = spool_usage(cfg)
    console.print(
        f"{spool_dir(cfg)}: {usage.rounds} round(s), {usage.bytes / 1e6:,.1f} MB "
        f"(limits {usage.max_rounds} rounds, {usage.max_bytes / 1e9:,.1f} GB)"
    )
