"""``conectado scheduler``, ``rollup``, ``incidents`` and ``maintenance``: run and inspect."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, date, datetime, timedelta

import typer
from rich.table import Table

import scheduler as sched
from cli.common import console, database, friendly_errors, rich_progress, settings
from core.errors import InvalidInput
from results.batches import recent_batch_runs
from results.current import (
    PROBES_LATE_INTERVALS,
    ProbeFreshness,
    probe_freshness,
    probes_behind,
)
from results.incidents import (
    Incident,
    LastEvaluation,
    acknowledge_incident,
    count_open_incidents,
    get_incident,
    incident_members,
    last_evaluation,
    list_incidents,
)
from results.maintenance import add_window, list_windows, remove_window
from results.retention import apply_retention, list_partitions
from results.rollups import rollup_day_parallel, rollup_hours, utc_hour

app = typer.Typer(help="The scheduler: probe rounds, rollups, retention.", no_args_is_help=True)
rollup_app = typer.Typer(
    help="Rollups of raw probe results (UTC hours and days).", no_args_is_help=True
)
incidents_app = typer.Typer(
    help="Incidents: failing, flapping and grouped outages.", no_args_is_help=True
)
maintenance_app = typer.Typer(
    help="Maintenance windows that suppress incidents.", no_args_is_help=True
)


def parse_when(value: str, field: str) -> datetime:
    """Parse ISO 8601 (``now`` allowed); a time without an offset is taken as UTC."""
    if value.strip().lower() == "now":
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"{field} '{value}' is not a date-time; use ISO 8601 such as 2030-05-01T22:00 "
            "(UTC) or 2030-05-01T16:00-06:00."
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _fmt(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s"


# -- scheduler ------------------------------------------------------------------------------


@app.command()
@friendly_errors
def run(
    interval: int = typer.Option(
        None, min=1, help="Seconds between probes of a site (default CONECTADO_PROBE_INTERVAL)."
    ),
    batches: int = typer.Option(
        None, min=1, help="Batches per interval (default CONECTADO_PROBE_BATCHES or automatic)."
    ),
) -> None:
    """Run the scheduler in the foreground with logs; SIGTERM/Ctrl-C finish batches, then exit."""
    cfg = settings()
    update: dict[str, object] = {}
    if interval is not None:
        update["probe_interval"] = interval
    if batches is not None:
        update["probe_batches"] = batches
    if update:
        cfg = cfg.model_copy(update=update)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    with database(cfg, pool_size=cfg.scheduler_workers + 2, migrate=True) as eng:
        code = sched.run_forever(eng, cfg)
    raise typer.Exit(code)


@app.command()
@friendly_errors
def status(limit: int = typer.Option(10, help="How many recent batch runs to show.")) -> None:
    """Show how current the probes are, the timetable, the latest batch runs, open incidents
    and raw partitions."""
    cfg = settings()
    with database(cfg) as eng:
        jobs = sched.stored_jobs(eng)
        with eng.connect() as conn:
            runs = recent_batch_runs(conn, limit=limit)
            open_sites, open_municipal = count_open_incidents(conn)
            evaluated = last_evaluation(conn)
            parts = list_partitions(conn)
            fresh = probe_freshness(conn)
    now = datetime.now(UTC)
    batches = [j for j in jobs if j.id.startswith(sched.PROBE_JOB_PREFIX)]
    times = sorted(j.next_run_time for j in batches if j.next_run_time is not None)
    # The running scheduler's own spacing (its settings may differ from this shell's).
    spacing = (times[-1] - times[0]).total_seconds() / (len(times) - 1) if len(times) > 1 else None
    interval = spacing * len(times) if spacing else cfg.probe_interval
    console.print(_freshness_line(fresh, now, interval))
    table = Table(title=f"Scheduled jobs ({len(jobs)})")
    table.add_column("job")
    table.add_column("next run (UTC)")
    if batches:
        first = batches[0]  # soonest first
        every = f", one every {spacing:.3g} s" if spacing else ""
        table.add_row(
            f"probe batches ({len(batches)}{every})",
            f"{_fmt(first.next_run_time)}  ({first.id})",
        )
    for job in jobs:
        if not job.id.startswith(sched.PROBE_JOB_PREFIX):
            table.add_row(job.id, _fmt(job.next_run_time))
    console.print(table if jobs else "No jobs stored: `conectado scheduler run` creates them.")
    day = now.date()
    runs_table = Table(title="Latest batch runs (UTC)")
    for col in ("batch", "slot", "took", "outcome", "sites", "up", "degr.", "down", "by"):
        runs_table.add_column(col)
    for r in runs:
        took = (r.finished_at - r.started_at).total_seconds() if r.finished_at else None
        slot = r.slot_start.astimezone(UTC)
        runs_table.add_row(
            f"{r.batch + 1}/{r.batches}",
            slot.strftime("%H:%M:%S" if slot.date() == day else "%m-%d %H:%M"),
            "—" if took is None else f"{took:.2f} s",
            r.outcome if not r.error else f"{r.outcome}: {r.error[:60]}",
            *(f"{v:,}" if v is not None else "—" for v in (r.sites, r.up, r.degraded, r.down)),
            r.runner,
        )
    console.print(runs_table if runs else "No batch has run yet.")
    console.print(
        f"open incidents: {open_sites + open_municipal:,} "
        f"({open_sites:,} of sites, {open_municipal:,} municipal)"
    )
    console.print(_evaluation_line(evaluated, now))
    if parts:
        console.print(
            f"raw partitions: {len(parts)} days, {parts[0].day} … {parts[-1].day} "
            f"(kept {cfg.raw_retention_days} days)"
        )


def _freshness_line(fresh: ProbeFreshness, now: datetime, interval_s: float) -> str:
    """One line on how current the probes are, flagged when the oldest result is late."""
    if not fresh.probeable:
        text = "No active or installed site has a management address or a probe URL."
    else:
        text = f"{fresh.probeable:,} probeable sites" + (
            f", {fresh.never_probed:,} with no result yet"
            if fresh.never_probed
            else ", all with a result"
        )
        if fresh.oldest_probe_at is not None:
            age = (now - fresh.oldest_probe_at).total_seconds()
            text += f"; the oldest result is {_duration(age)} old"
            if probes_behind(fresh, interval_s, now):
                text = (
                    f"[bold red]Probing is behind[/]: {text}, more than {PROBES_LATE_INTERVALS} "
                    f"probe intervals ({_duration(PROBES_LATE_INTERVALS * interval_s)}). Is "
                    "`conectado scheduler run` running?"
                )
    if fresh.no_probe_target:
        text += (
            f"\n{fresh.no_probe_target:,} active or installed sites have neither a management "
            "address nor a probe URL: nothing to probe."
        )
    return text


def _evaluation_line(last: LastEvaluation | None, now: datetime) -> str:
    """When incidents were last evaluated, what that took and what it changed."""
    if last is None:
        return "incidents: not evaluated yet (probe batches do it)"
    age = max((now - last.started_at).total_seconds(), 0.0)
    return (
        f"incidents last evaluated {_duration(age)} ago, in {last.seconds:.2f} s: "
        f"{last.opened:,} opened, {last.closed:,} closed"
    )


@app.command()
@friendly_errors
def retention() -> None:
    """Drop raw partitions older than CONECTADO_RAW_RETENTION_DAYS now (rollups are kept)."""
    cfg = settings()
    with database(cfg) as eng:
        report = apply_retention(eng, cfg, now=datetime.now(UTC))
    console.print(f"cutoff: {_fmt(report.cutoff)} UTC")
    console.print(f"dropped: {', '.join(report.dropped) or 'nothing'}")
    if report.rolled_up_first:
        console.print("rolled up before dropping: " + ", ".join(map(str, report.rolled_up_first)))
    console.print(f"partitions created ahead: {report.partitions_created}")


# -- rollups --------------------------------------------------------------------------------


@rollup_app.command("run")
@friendly_errors
def rollup_run(
    hour: str = typer.Option(None, help="One UTC hour, e.g. 2030-05-01T10 (also: now)."),
    day: str = typer.Option(None, help="One UTC day, e.g. 2030-05-01: sites and groups."),
    since: str = typer.Option(None, "--from", help="Every hour from this time …"),
    until: str = typer.Option(None, "--to", help="… up to this time (default now)."),
) -> None:
    """Recompute rollups (idempotent): an hour, a day, or every hour of a period."""
    chosen = sum(x is not None for x in (hour, day, since))
    if chosen != 1:
        raise InvalidInput("Give exactly one of --hour, --day or --from (with optional --to).")
    cfg = settings()
    with database(cfg) as eng:
        if day is not None:
            try:
                the_day = date.fromisoformat(day)
            except ValueError as exc:
                raise InvalidInput(f"--day '{day}' is not a date like 2030-05-01.") from exc
            r = rollup_day_parallel(eng, the_day, workers=cfg.rollup_workers)
            console.print(
                f"{the_day}: {r.site_rows:,} sites and {r.group_rows:,} municipality/state/"
                f"provider rows from {r.raw_rows:,} raw rows in {r.seconds:.1f} s"
            )
            return
        if hour is not None:
            start = utc_hour(parse_when(hour, "--hour"))
            end = start + timedelta(hours=1)
        else:
            start = parse_when(since, "--from")
            end = parse_when(until or "now", "--to")
        with rich_progress() as progress:
            results = rollup_hours(eng, start, end, progress=progress)
    for r in results:
        console.print(
            f"{_fmt(r.start)}: {r.site_rows:,} sites from {r.raw_rows:,} raw rows "
            f"in {r.seconds:.2f} s"
        )


# -- incidents ------------------------------------------------------------------------------


def short_error(last_error: str | None) -> str:
    """Each problem of a ``last_error`` ("snmp timeout: no answer …; http refused: …") by its
    kind and class ("snmp timeout; http refused"), keeping a detail short enough to read at a
    glance ("http http_status: HTTP status 503"). `incidents show` has the whole text."""
    if not last_error:
        return ""
    parts = []
    for problem in last_error.split("; "):
        head, sep, detail = problem.partition(": ")
        parts.append(problem if not sep or len(detail) <= 20 else head)
    return "; ".join(parts)


def _incident_table(rows: list[Incident], title: str) -> Table:
    table = Table(title=title)
    for col in ("id", "what", "where", "provider", "cause", "started (UTC)", "status"):
        table.add_column(col)
    for col in ("duration", "ack"):
        table.add_column(col)
    table.add_column("error", overflow="fold")
    for i in rows:
        if i.kind == "municipality":
            what = f"{i.municipality} ({i.mun_cvegeo}): {i.sites_down}/{i.sites_total} sites"
        else:
            what = f"{i.site_key} {i.site_name or ''}".strip()
        duration = i.duration_s
        if duration is None:
            duration = (datetime.now(UTC) - i.started_at).total_seconds()
        where = ", ".join(p for p in (i.municipality, i.state_name) if p) or "—"
        table.add_row(
            str(i.id),
            what,
            where if i.kind != "municipality" else (i.state_name or "—"),
            i.provider or "—",
            i.cause + (" (flapping)" if i.flapping and i.cause != "flapping" else ""),
            _fmt(i.started_at),
            i.status if i.status == "open" else f"closed: {i.close_reason}",
            _duration(duration),
            i.acknowledged_by or "",
            short_error(i.last_error),
        )
    return table


@incidents_app.command("list")
@friendly_errors
def incidents_list(
    state: str = typer.Option("open", "--status", help="open, closed or all."),
    site: str = typer.Option(None, help="Only incidents of this site key."),
    provider: str = typer.Option(None, help="Only this provider's sites (exact name)."),
    in_state: str = typer.Option(None, "--state", help="Only this state (INEGI code, 01-32)."),
    municipality: str = typer.Option(None, help="Only this municipality (CVEGEO, 5 digits)."),
    unacked: bool = typer.Option(False, "--unacked", help="Only those not acknowledged yet."),
    limit: int = typer.Option(50, help="How many, newest first."),
) -> None:
    """List incidents, newest first (grouped municipal outages count their sites)."""
    if in_state is not None and not (len(in_state) == 2 and in_state.isdigit()):
        raise InvalidInput(f"--state {in_state!r} is not an INEGI state code such as 09 or 20.")
    if municipality is not None and not (len(municipality) == 5 and municipality.isdigit()):
        raise InvalidInput(
            f"--municipality {municipality!r} is not an INEGI CVEGEO of 5 digits such as 20067."
        )
    cfg = settings()
    with database(cfg) as eng, eng.connect() as conn:
        rows = list_incidents(
            conn,
            status=state,
            site_key=site,
            provider=provider,
            cve_ent=in_state,
            mun_cvegeo=municipality,
            acknowledged=False if unacked else None,
            limit=limit,
        )
    if not rows:
        console.print(f"No {state if state != 'all' else ''} incidents match.".replace("  ", " "))
        return
    console.print(_incident_table(rows, f"Incidents ({state})"))


@incidents_app.command("show")
@friendly_errors
def incidents_show(incident_id: int = typer.Argument(..., help="Incident id.")) -> None:
    """Show one incident and, for a municipal outage, its member sites."""
    cfg = settings()
    with database(cfg) as eng, eng.connect() as conn:
        inc = get_incident(conn, incident_id)
        members = incident_members(conn, incident_id)
    console.print(_incident_table([inc], f"Incident {inc.id}"))
    if inc.comment:
        console.print(f"comment: {inc.comment}")
    if members:
        table = Table(title=f"{len(members)} member sites")
        for col in ("site", "name", "down since", "recovered"):
            table.add_column(col)
        for m in members:
            table.add_row(m.site_key, m.name, _fmt(m.down_since), _fmt(m.recovered_at))
        console.print(table)


@incidents_app.command("ack")
@friendly_errors
def incidents_ack(
    incident_id: int = typer.Argument(..., help="Incident id."),
    by: str = typer.Option(..., help="Who acknowledges it."),
    comment: str = typer.Option(None, help="What is being done."),
) -> None:
    """Acknowledge an incident (the first acknowledgement is kept; the comment is updated)."""
    cfg = settings()
    with database(cfg) as eng, eng.begin() as conn:
        inc = acknowledge_incident(conn, incident_id, by=by, now=datetime.now(UTC), comment=comment)
    console.print(
        f"Incident {inc.id} acknowledged by {inc.acknowledged_by} at "
        f"{_fmt(inc.acknowledged_at)} UTC."
    )


# -- maintenance ----------------------------------------------------------------------------


@maintenance_app.command("add")
@friendly_errors
def maintenance_add(
    site: str = typer.Option(None, help="A site key."),
    municipality: str = typer.Option(None, help="A municipality CVEGEO (5 digits)."),
    provider: str = typer.Option(None, help="A provider name."),
    start: str = typer.Option("now", help="Start, ISO 8601 (UTC without offset) or now."),
    end: str = typer.Option(None, help="End, ISO 8601."),
    hours: float = typer.Option(None, help="Or: length in hours from the start."),
    reason: str = typer.Option(..., help="Why (shown to operators)."),
    by: str = typer.Option(..., help="Who creates it."),
) -> None:
    """Add a maintenance window for a site, a municipality or a provider."""
    targets = [
        (s, t)
        for s, t in (("site", site), ("municipality", municipality), ("provider", provider))
        if t
    ]
    if len(targets) != 1:
        raise InvalidInput("Give exactly one of --site, --municipality or --provider.")
    if (end is None) == (hours is None):
        raise InvalidInput("Give exactly one of --end or --hours.")
    starts = parse_when(start, "--start")
    ends = parse_when(end, "--end") if end else starts + timedelta(hours=hours)
    cfg = settings()
    with database(cfg) as eng, eng.begin() as conn:
        w = add_window(
            conn,
            scope=targets[0][0],
            target=targets[0][1],
            starts_at=starts,
            ends_at=ends,
            reason=reason,
            created_by=by,
        )
    console.print(
        f"Maintenance window {w.id}: {w.scope} {w.target} ({w.sites} sites), "
        f"{_fmt(w.starts_at)} – {_fmt(w.ends_at)} UTC: {w.reason}"
    )


@maintenance_app.command("list")
@friendly_errors
def maintenance_list(
    all_: bool = typer.Option(False, "--all", help="Include windows that have ended."),
) -> None:
    """List current and upcoming maintenance windows (all with --all)."""
    cfg = settings()
    with database(cfg) as eng, eng.connect() as conn:
        rows = list_windows(conn, now=datetime.now(UTC), include_past=all_)
    if not rows:
        console.print("No maintenance windows.")
        return
    table = Table(title="Maintenance windows (UTC)")
    for col in ("id", "scope", "target", "sites", "from", "to", "reason", "by"):
        table.add_column(col)
    for w in rows:
        table.add_row(
            str(w.id),
            w.scope,
            w.target,
            str(w.sites),
            _fmt(w.starts_at),
            _fmt(w.ends_at),
            w.reason,
            w.created_by,
        )
    console.print(table)


@maintenance_app.command("remove")
@friendly_errors
def maintenance_remove(window_id: int = typer.Argument(..., help="Window id.")) -> None:
    """Remove a maintenance window."""
    cfg = settings()
    with database(cfg) as eng, eng.begin() as conn:
        w = remove_window(conn, window_id)
    console.print(f"Removed maintenance window {w.id} ({w.scope} {w.target}).")
