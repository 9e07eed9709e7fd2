"""Import of the generated 101,322-site inventory, against a bare COPY of the same file.

Set-up (not timed): a throwaway embedded PostgreSQL cluster in var/bench-sites (fsync on, as
in production), migrations, the INEGI geography, and ``sites generate --count 101322 --seed
42`` written once to var/bench-sites/sites-101322.csv (its generation time is printed too).

Each run measures, in the same database and the same minute:
- baseline: a bare ``COPY ... FROM STDIN (FORMAT csv)`` of the file's bytes into an
  unindexed, unconstrained table with the same column types, committed;
- import: ``import_file`` end to end into an empty inventory (read, validate, COPY to
  staging, spatial assignment, upsert with history, commit);
- re-import of the same file (0 changes) and of a copy with 1 % of rows changed.
Then search timings at 101,322 sites (median of repeated calls).
Goals: import ≤ 15 s and ≤ 2x the bare COPY.

Usage: python bench/import_sites.py [--count 101322] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd
import psycopg
from sqlalchemy import Engine, text

from core.db import libpq_url, make_engine
from core.settings import PROJECT_ROOT, Settings
from db.cluster import EmbeddedCluster
from db.migrate import upgrade
from geo.loader import load_geography
from sites.filters import SiteFilter
from sites.generator import generate_sites, write_sites_csv
from sites.importer import ImportOptions, ImportReport, import_file
from sites.search import search_sites

ROOT = PROJECT_ROOT / "var" / "bench-sites"
INEGI = PROJECT_ROOT / "data" / "inegi"
BARE_TYPES = {
    "lat": "double precision",
    "lon": "double precision",
    "bw_down_mbps": "double precision",
    "bw_up_mbps": "double precision",
    "installed_on": "date",
    "mgmt_ip": "inet",
    "snmp_port": "integer",
    "wan_if_index": "integer",
}


class PhaseClock:
    """core.progress.Progress that records how long each named step took."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}

    def task(self, description: str, total: int | None = None) -> PhaseClock._Task:
        return PhaseClock._Task(self, description)

    class _Task:
        def __init__(self, clock: PhaseClock, name: str) -> None:
            self.clock, self.name, self.start = clock, name, time.perf_counter()

        def advance(self, amount: int = 1) -> None:
            return None

        def finish(self) -> None:
            self.clock.phases[self.name] = time.perf_counter() - self.start


def prepare(count: int) -> tuple[EmbeddedCluster, str, Path]:
    cluster = EmbeddedCluster(
        Settings(pg_data_dir=ROOT / "pg", pg_port=58532), data_dir=ROOT / "pg"
    )
    url = cluster.start()
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            loaded = conn.execute(text("SELECT count(*) FROM municipalities")).scalar_one()
        if loaded != 2475:
            t = time.perf_counter()
            load_geography(engine, INEGI)
            print(f"set-up: geography loaded in {time.perf_counter() - t:.0f} s")
    finally:
        engine.dispose()
    path = ROOT / f"sites-{count}.csv"
    t = time.perf_counter()
    frame = generate_sites(INEGI, count=count, seed=42)
    generated = time.perf_counter() - t
    write_sites_csv(frame, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    written = time.perf_counter() - t - generated
    size = path.stat().st_size / 1e6
    print(
        f"generate: {count:,} sites in {generated:.2f} s (+{written:.2f} s to write {size:.1f} MB)"
    )
    return cluster, url, path


def bare_copy(url: str, path: Path) -> float:
    """Seconds to COPY the file's bytes into an unindexed table of the same types, committed."""
    header = path.read_text(encoding="utf-8").split("\n", 1)[0].split(",")
    columns = ", ".join(f"{c} {BARE_TYPES.get(c, 'text')}" for c in header)
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_bare_copy")
        conn.execute(f"CREATE TABLE bench_bare_copy ({columns})")
        conn.commit()
        start = time.perf_counter()
        data = path.read_bytes()
        with (
            conn.cursor() as cur,
            cur.copy("COPY bench_bare_copy FROM STDIN (FORMAT csv, HEADER true)") as copy,
        ):
            for offset in range(0, len(data), 1 << 20):
                copy.write(data[offset : offset + (1 << 20)])
        conn.commit()
        seconds = time.perf_counter() - start
        conn.execute("DROP TABLE bench_bare_copy")
        conn.commit()
    return seconds


def index_floor(url: str) -> tuple[float, float]:
    """Seconds to rebuild every index of the loaded ``sites`` table, and to ANALYZE it.

    Both are work the import cannot skip (the inventory must be searchable in milliseconds
    and planned with fresh statistics the moment the import commits) and that a bare COPY into
    an unindexed table does not do: a floor under any import measured against that COPY.
    """
    with psycopg.connect(libpq_url(url)) as conn:
        start = time.perf_counter()
        conn.execute("REINDEX TABLE sites")
        conn.commit()
        reindex = time.perf_counter() - start
        start = time.perf_counter()
        conn.execute("ANALYZE sites")
        conn.commit()
        return reindex, time.perf_counter() - start


def empty_inventory(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE sites, site_changes RESTART IDENTITY CASCADE"))
    with engine.connect() as conn:
        conn.execute(text("CHECKPOINT"))


def timed_import(engine: Engine, path: Path) -> tuple[float, ImportReport, dict[str, float]]:
    clock = PhaseClock()
    start = time.perf_counter()
    report = import_file(engine, path, options=ImportOptions(changed_by="bench"), progress=clock)
    seconds = time.perf_counter() - start
    assert report.errors == [], report.errors[:3]
    return seconds, report, clock.phases


def changed_copy(path: Path, share: float) -> Path:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    step = max(1, round(1 / share))
    frame.loc[::step, "provider"] = "Proveedor Nuevo"
    out = path.with_name(path.stem + "-changed.csv")
    frame.to_csv(out, index=False, lineterminator="\n")
    return out


def search_timings(engine: Engine, repeat: int = 20) -> dict[str, float]:
    cases = {
        "bbox 1°x1° (CDMX), first 100": SiteFilter(bbox=(-99.6, 19.0, -98.6, 20.0)),
        "nearest 10": SiteFilter(near=(-96.7253, 17.0606), nearest=10),
        "nearest 10 health": SiteFilter(near=(-96.7253, 17.0606), nearest=10, category=["health"]),
        "radius 10 km, first 100": SiteFilter(near=(-99.1332, 19.4326), radius_km=10),
        "municipality 20067": SiteFilter(municipality=["20067"]),
        "state 07, first 100": SiteFilter(state=["07"]),
        "category+status, first 100": SiteFilter(category=["research"], status=["active"]),
        "text 'matematicas'": SiteFilter(text="matematicas"),
        "text typo 'benito juares'": SiteFilter(text="benito juares", state=["20"]),
        "key part 'DPR012'": SiteFilter(text="DPR012"),
        # Common words: every health unit comes after the 68,806 schools in id order.
        "text 'centro de salud', first 100": SiteFilter(text="centro de salud"),
        "text 'hospital', first 100": SiteFilter(text="hospital"),
        "text 'escuela', first 100": SiteFilter(text="escuela"),
        "key part '20DPR', first 100": SiteFilter(text="20DPR"),
    }
    out: dict[str, float] = {}
    with engine.connect() as conn:
        for name, flt in cases.items():
            search_sites(conn, flt, limit=100)
            samples = []
            for _ in range(repeat):
                start = time.perf_counter()
                search_sites(conn, flt, limit=100)
                samples.append((time.perf_counter() - start) * 1000)
            out[name] = statistics.median(samples)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=101_322)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ROOT.mkdir(parents=True, exist_ok=True)
    cluster, url, path = prepare(args.count)
    engine = make_engine(url)
    changed = changed_copy(path, 0.01)
    rows: list[tuple[float, float, float, float]] = []
    floors: list[tuple[float, float]] = []
    phases: dict[str, float] = {}
    try:
        for run in range(1, args.runs + 1):
            empty_inventory(engine)
            bare = bare_copy(url, path)
            seconds, report, phases = timed_import(engine, path)
            assert report.inserted == args.count
            floors.append(index_floor(url))
            again, report2, _ = timed_import(engine, path)
            assert report2.unchanged == args.count
            update, report3, _ = timed_import(engine, changed)
            assert report3.updated > 0
            rows.append((bare, seconds, again, update))
            print(
                f"run {run}: bare COPY {bare:.2f} s | import {seconds:.2f} s "
                f"({seconds / bare:.1f}x the COPY) | re-import, 0 changes {again:.2f} s "
                f"({again / bare:.1f}x) | {report3.updated:,} rows changed {update:.2f} s"
            )
        bare_m, import_m, again_m, update_m = (
            statistics.median(c) for c in zip(*rows, strict=True)
        )
        print(
            f"\nmedian of {args.runs}: bare COPY {bare_m:.2f} s, import {import_m:.2f} s, "
            f"ratio {import_m / bare_m:.1f}x (goal ≤ 2x); re-import {again_m:.2f} s "
            f"({again_m / bare_m:.1f}x); 1 % changed {update_m:.2f} s"
        )
        print(f"goal import ≤ 15 s: {'met' if import_m <= 15 else 'NOT met'}")
        reindex_m, analyze_m = (statistics.median(c) for c in zip(*floors, strict=True))
        print(
            f"floor under the ratio (same runs, median): rebuilding the indexes of sites alone "
            f"{reindex_m:.2f} s + ANALYZE {analyze_m:.2f} s = "
            f"{(reindex_m + analyze_m) / bare_m:.1f}x the bare COPY, before a row is read"
        )
        print(
            "phases of the last import: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items())
        )
        print(f"\nsearch at {args.count:,} sites (median of 20, ms):")
        for name, ms in search_timings(engine).items():
            print(f"  {name:32s} {ms:7.1f}")
    finally:
        engine.dispose()
        cluster.stop()


if __name__ == "__main__":
    main()
