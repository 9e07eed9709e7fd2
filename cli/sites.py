"""``conectado sites``: generate, import, export, find and show the site inventory."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.table import Table
from sqlalchemy import Connection, text

from api.charts import format_bps
from api.display import format_when, oper_status, probe_result, tls_expiry
from cli.common import console, database, err_console, friendly_errors, rich_progress, settings
from core.errors import InvalidInput, NotFound
from results.current import current_state_sql
from results.incidents import list_incidents
from sites.exporter import export_sites
from sites.filters import SiteFilter
from sites.generator import PROGRAMME_TOTAL, generate_sites, write_sites_csv
from sites.history import site_history
from sites.importer import ImportOptions, ImportReport, import_file, write_issue_report
from sites.schemas import SitePublic
from sites.search import count_sites, get_site, search_sites

app = typer.Typer(
    help="Site inventory: generate, import, export, find and show sites.", no_args_is_help=True
)


def _who() -> str:
    try:
        return getpass.getuser()
    except OSError:
        return "cli"


def _split_pair(value: str | None, option: str) -> tuple[float, float] | None:
    if value is None:
        return None
    parts = [p for p in value.replace(";", ",").split(",") if p.strip()]
    try:
        lon, lat = (float(p) for p in parts)
    except ValueError as exc:
        raise InvalidInput(f"{option} must be LON,LAT in decimal degrees; got {value!r}.") from exc
    return lon, lat


def build_filter(**options: Any) -> SiteFilter:
    """Turn command-line options into a SiteFilter; problems name the option to fix."""
    fields: dict[str, Any] = {k: v for k, v in options.items() if v not in (None, [], ())}
    if "near" in fields:
        fields["near"] = _split_pair(fields["near"], "--near")
    if "bbox" in fields:
        try:
            fields["bbox"] = tuple(float(p) for p in fields["bbox"].split(","))
        except ValueError as exc:
            raise InvalidInput(
                "--bbox must be MIN_LON,MIN_LAT,MAX_LON,MAX_LAT in decimal degrees."
            ) from exc
    try:
        return SiteFilter(**fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'-'.join(str(p) for p in e['loc'][:1]).replace('_', '-') or 'filter'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise InvalidInput(problems) from exc


# Filter options shared by find and export.
BBOX = typer.Option(None, "--bbox", help="MIN_LON,MIN_LAT,MAX_LON,MAX_LAT.")
NEAR = typer.Option(None, "--near", help="LON,LAT of a point (for --radius-km or --nearest).")
RADIUS = typer.Option(None, "--radius-km", help="Sites within this many km of --near.")
NEAREST = typer.Option(None, "--nearest", help="The N sites closest to --near, by distance.")
MUNICIPALITY = typer.Option(None, "--municipality", help="Municipality CVEGEO (repeatable).")
STATE = typer.Option(None, "--state", help="State CVE_ENT, e.g. 20 (repeatable).")
CATEGORY = typer.Option(None, "--category", help="school, health, ... (Spanish ok; repeatable).")
STATUS = typer.Option(None, "--status", help="planned, installed, active, suspended, retired.")
PROVIDER = typer.Option(None, "--provider", help="Provider name (repeatable).")
TECHNOLOGY = typer.Option(None, "--technology", help="fiber, microwave, satellite, dsl, ...")
TEXT = typer.Option(None, "--text", help="Part of the name or key (typos tolerated).")


def print_import_report(report: ImportReport, *, show: int) -> None:
    """Print the counts, notes, and the first ``show`` errors and warnings of an import."""
    table = Table(title=f"Import of {report.path.name}", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    detected = report.format
    if report.encoding:
        detected += f", {report.encoding}"
    if report.delimiter:
        detected += f", delimiter {report.delimiter!r}"
    table.add_row("file", detected)
    for label, value in (
        ("rows read", report.rows),
        ("inserted", report.inserted),
        ("updated", report.updated),
        ("unchanged", report.unchanged),
        ("rejected", report.rejected),
        ("warnings", len(report.warnings)),
    ):
        table.add_row(label, f"{value:,}")
    table.add_row("time", f"{report.seconds:.1f} s")
    console.print(table)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
    for title, issues in (("Errors", report.errors), ("Warnings", report.warnings)):
        if not issues:
            continue
        listing = Table(title=f"{title} ({len(issues):,}; first {min(show, len(issues))})")
        for column in ("where", "site_key", "column", "value", "problem"):
            listing.add_column(column, overflow="fold")
        for issue in issues[:show]:
            listing.add_row(issue.where, issue.site_key, issue.column, issue.value, issue.message)
        console.print(listing)


@app.command(name="import")
@friendly_errors
def import_(
    file: Path = typer.Argument(..., help="CSV, GeoJSON, GeoPackage or Shapefile."),
    fmt: str = typer.Option("auto", "--format", help="auto, csv, geojson, gpkg or shp."),
    mode: str = typer.Option(
        "strict",
        "--mode",
        help="strict: any error writes nothing; skip-invalid: write the valid rows.",
    ),
    report_path: Path = typer.Option(
        None, "--report", help="Write every error and warning to this CSV."
    ),
    fix_swapped: bool = typer.Option(
        False, "--fix-swapped", help="Swap latitude/longitude where they are clearly swapped."
    ),
    by: str = typer.Option(None, "--by", help="Name recorded in the change history (OS user)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate only; write nothing."),
    show: int = typer.Option(20, "--show", min=0, help="Errors and warnings to print."),
) -> None:
    """Import sites (upsert by site_key): one transaction, nothing half-written."""
    if mode not in ("strict", "skip-invalid"):
        raise InvalidInput(f"--mode must be strict or skip-invalid; got {mode!r}.")
    options = ImportOptions(
        mode=mode,  # type: ignore[arg-type]
        fix_swapped=fix_swapped,
        changed_by=by or _who(),
        dry_run=dry_run,
    )
    cfg = settings()
    with database(cfg, pool_size=1, migrate=True) as eng, rich_progress() as progress:
        report = import_file(eng, file, fmt=fmt, options=options, progress=progress)
    print_import_report(report, show=show)
    if report_path is not None:
        write_issue_report(report, report_path)
        console.print(f"wrote {len(report.issues):,} issues to {report_path}")
    if not report.written:
        reason = "--dry-run" if dry_run else "strict mode and the file has errors"
        err_console.print(f"[bold red]Nothing was written[/] ({reason}).")
        if report.errors:
            raise typer.Exit(1)


@app.command()
@friendly_errors
def export(
    file: Path = typer.Argument(..., help="Output file: .csv, .geojson or .gpkg."),
    fmt: str = typer.Option("auto", "--format", help="auto, csv, geojson or gpkg."),
    bbox: str = BBOX,
    near: str = NEAR,
    radius_km: float = RADIUS,
    municipality: list[str] = MUNICIPALITY,
    state: list[str] = STATE,
    category: list[str] = CATEGORY,
    status: list[str] = STATUS,
    provider: list[str] = PROVIDER,
    technology: list[str] = TECHNOLOGY,
    text_: str = TEXT,
) -> None:
    """Export sites (filtered), without any secret; the file re-imports with 0 changes."""
    flt = build_filter(
        bbox=bbox,
        near=near,
        radius_km=radius_km,
        municipality=municipality,
        state=state,
        category=category,
        status=status,
        provider=provider,
        technology=technology,
        text=text_,
    )
    with (
        database(settings(), pool_size=1) as eng,
        rich_progress() as progress,
        eng.connect() as conn,
    ):
        report = export_sites(conn, flt, file, fmt=fmt, progress=progress)
    console.print(f"wrote {report.sites:,} sites to {report.path} ({report.format})")


@app.command()
@friendly_errors
def generate(
    count: int = typer.Option(PROGRAMME_TOTAL, "--count", min=0, help="Number of sites."),
    seed: int = typer.Option(42, "--seed", help="Same seed, same file."),
    out: Path = typer.Option(..., "--out", help="CSV file to write."),
    lab: bool = typer.Option(
        False,
        "--lab",
        help="Loopback management addresses and the lab agents' ports (CONECTADO_LAB_*_PORT).",
    ),
) -> None:
    """Write a realistic inventory placed on INEGI's localities (secrets included)."""
    cfg = settings()
    with rich_progress() as progress:
        frame = generate_sites(
            cfg.inegi_dir,
            count=count,
            seed=seed,
            lab=lab,
            lab_ports=cfg.lab_ports,
            progress=progress,
        )
    write_sites_csv(frame, out)
    console.print(f"wrote {len(frame):,} sites to {out}")


def _sites_table(sites: list[SitePublic], *, distance: bool) -> Table:
    table = Table()
    for column in ("id", "site_key", "name", "category", "municipality", "state", "status"):
        table.add_column(column, overflow="fold")
    table.add_column("provider / technology", overflow="fold")
    if distance:
        table.add_column("km", justify="right")
    for s in sites:
        row = [
            str(s.id),
            s.site_key,
            s.name,
            s.category,
            f"{s.municipality or ''} ({s.mun_cvegeo or '?'})",
            s.state or "",
            s.status,
            f"{s.provider or '—'} / {s.technology or '—'}",
        ]
        if distance:
            row.append("" if s.distance_m is None else f"{s.distance_m / 1000:,.2f}")
        table.add_row(*row)
    return table


@app.command()
@friendly_errors
def find(
    bbox: str = BBOX,
    near: str = NEAR,
    radius_km: float = RADIUS,
    nearest: int = NEAREST,
    municipality: list[str] = MUNICIPALITY,
    state: list[str] = STATE,
    category: list[str] = CATEGORY,
    status: list[str] = STATUS,
    provider: list[str] = PROVIDER,
    technology: list[str] = TECHNOLOGY,
    text_: str = TEXT,
    limit: int = typer.Option(20, "--limit", min=1, max=10_000, help="Rows to show."),
    after: int = typer.Option(None, "--after", help="Show sites after this id (next page)."),
) -> None:
    """Find sites and print them as a table (ordered by id, or by distance for --nearest)."""
    flt = build_filter(
        bbox=bbox,
        near=near,
        radius_km=radius_km,
        nearest=nearest,
        municipality=municipality,
        state=state,
        category=category,
        status=status,
        provider=provider,
        technology=technology,
        text=text_,
    )
    with database(settings(), pool_size=1) as eng, eng.connect() as conn:
        page = search_sites(conn, flt, after_id=after, limit=limit)
        total = count_sites(conn, flt)
    console.print(_sites_table(page.data, distance=flt.near is not None))
    shown = f"{page.count:,} of {total:,} matching sites"
    if page.next_after is not None:
        shown += f"; next page: --after {page.next_after}"
    console.print(shown)


@app.command()
@friendly_errors
def show(
    site: str = typer.Argument(..., help="site_key (or numeric id)."),
    history: int = typer.Option(10, "--history", min=0, max=1000, help="Changes to list."),
) -> None:
    """Show one site (no secrets) and its latest changes."""
    with database(settings(), pool_size=1) as eng, eng.connect() as conn:
        try:
            found = get_site(conn, site)
        except NotFound:
            if not site.isdigit():
                raise
            found = get_site(conn, int(site))
        changes = site_history(conn, found.id, limit=history) if history else []
        probes = _probe_rows(conn, found.id)
        incidents = list_incidents(conn, status="open", site_key=found.site_key, limit=5)
    detail = Table(title=f"{found.site_key} — {found.name}", show_header=False)
    detail.add_column("field")
    detail.add_column("value", overflow="fold")
    for name, value in found.model_dump(exclude={"distance_m"}).items():
        detail.add_row(name, "" if value is None else str(value))
    console.print(detail)
    seen = Table(title="What the probes saw", show_header=False)
    seen.add_column("field")
    seen.add_column("value", overflow="fold")
    for name, value in probes:
        seen.add_row(name, value)
    for inc in incidents:
        seen.add_row(
            "open incident",
            f"#{inc.id} {inc.cause} since {format_when(inc.started_at)}"
            + (f", acknowledged by {inc.acknowledged_by}" if inc.acknowledged_by else ""),
        )
    console.print(seen)
    if changes:
        log = Table(title="Changes (newest first)")
        for column in ("when", "by", "action", "what"):
            log.add_column(column, overflow="fold")
        for change in changes:
            log.add_row(
                f"{change.changed_at:%Y-%m-%d %H:%M}",
                change.changed_by,
                change.action,
                ", ".join(f"{k}: {v}" for k, v in change.changes.items()),
            )
        console.print(log)


def _probe_rows(conn: Connection, site_id: int) -> list[tuple[str, str]]:
    """The site's current state and what its last probes saw, as (field, words) rows."""
    row = conn.execute(
        text(
            f"SELECT {current_state_sql('s', 'st')} AS current, st.* FROM sites s "
            "LEFT JOIN site_status st ON st.site_id = s.id WHERE s.id = :id"
        ),
        {"id": site_id},
    ).one()
    rows = [("state now", str(row.current))]
    if row.last_probe_at is None:
        return [*rows, ("last probe", "never probed")]
    if row.current == "unmonitored":
        rows.append(("last probe state", f"{row.state} (history: the site is not probed now)"))
    rows += [
        ("since", format_when(row.state_since)),
        ("last probe", format_when(row.last_probe_at)),
        ("last ok", format_when(row.last_ok_at)),
        ("last error", row.last_error or "—"),
        ("latency", "—" if row.latency_ms is None else f"{row.latency_ms:.1f} ms"),
        (
            "snmp",
            probe_result(row.snmp_ok, row.snmp_error)
            + (
                "" if row.oper_status is None else f"; WAN interface {oper_status(row.oper_status)}"
            ),
        ),
        (
            "http",
            probe_result(row.http_ok, row.http_error, f"status {row.http_status}")
            + (
                ""
                if row.tls_days_left is None
                else f"; TLS certificate {tls_expiry(row.tls_days_left)}"
            ),
        ),
        (
            "traffic in / out",
            f"{format_bps(row.in_bps)} / {format_bps(row.out_bps)}"
            + (f", measured {format_when(row.rates_at)}" if row.rates_at else ""),
        ),
    ]
    return rows
