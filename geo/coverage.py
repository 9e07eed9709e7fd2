"""Coverage analysis: who lives within R km of a working site, computed set-wise in PostGIS.

Definitions (the README carries them too):

- *counted sites*: sites whose inventory status is not ``retired``; a site's municipality is
  ``sites.mun_cvegeo`` (assigned from its coordinates by the importer) or, when that is empty,
  the nearest municipality within 1 km (a point on a border: the lowest CVEGEO), so a site on
  a border counts once. Coverage itself ignores borders: a site covers localities on both sides.
- *active*: ``sites.status = 'active'``.
- *working*: with probe data (any ``site_status`` row with a ``last_probe_at``), a probed site
  (``active`` or ``installed``: a suspended connection serves no one, whatever it did before)
  whose ``site_status.last_ok_at`` is within ``working_hours`` (default 24) before ``as_of``;
  without probe data at all, the active sites. The run's ``basis`` says which (``probes`` or
  ``inventory``).
- *covered locality*: one whose nearest working site is at a geodesic (WGS 84 ellipsoid)
  distance ≤ R, compared at millimetre precision, so a site exactly R away covers it.
- *covered population*: the 2020 population of covered localities. Localities hold 96.4 % of
  the census population; percentages are given against both the census population
  (``covered_pct_census``) and the locality population (``covered_pct_localities``).
- *uncovered population*: census population − covered population (locality population for the
  two municipalities created after the census). People in the small localities INEGI publishes
  without coordinates (``unlocated_pop`` = census − locality population) cannot be placed, so
  they count as uncovered: the conservative reading, and covered % + uncovered % = 100 %.
- *uncovered municipality*: one with no working site inside it.
- *priority score*: ``uncovered_pop × (1 + uncovered_pop / population)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, text

from core.errors import InvalidInput
from core.progress import NullProgress, Progress
from core.settings import Settings
from results.current import probed_sql

CATEGORIES = ("school", "health", "public_space", "community", "government", "research")

# Distances are compared at millimetre precision: "within R" means distance <= R + 1 mm, so a
# point built exactly R away (up to float noise) is covered.
DISTANCE_TOLERANCE_M = 0.001
# Candidates taken from the planar KNN (EPSG:6372) before picking the geodesic nearest; the
# projection's scale varies by far less than the gap between three neighbours.
KNN_CANDIDATES = 3

PRIORITY_SQL = "({u} * (1.0 + {u}::double precision / NULLIF({p}, 0)))"


@dataclass(frozen=True)
class CoverageRun:
    """One materialised coverage computation and the figures that describe it."""

    id: int
    computed_at: datetime
    as_of: datetime
    radius_km: float
    basis: str
    working_hours: float
    duration_s: float
    sites: int
    active_sites: int
    working_sites: int
    localities: int


def _validate_radius(radius_km: float) -> None:
    if not radius_km > 0 or radius_km > 200:
        raise InvalidInput(
            f"radius_km={radius_km!r}: the coverage radius must be more than 0 and at most "
            "200 km (default CONECTADO_COVERAGE_RADIUS_KM, 5)."
        )


def probe_data_exists(conn: Connection) -> bool:
    """True when at least one site has been probed (``site_status.last_probe_at`` is set)."""
    return bool(
        conn.execute(
            text("SELECT EXISTS (SELECT 1 FROM site_status WHERE last_probe_at IS NOT NULL)")
        ).scalar_one()
    )


def _fill_working_sites(conn: Connection, basis: str, as_of: datetime, hours: float) -> int:
    """Create the transaction's temporary table of working sites; return how many."""
    if basis == "probes":
        where = (
            "JOIN site_status st ON st.site_id = s.id "
            f"WHERE {probed_sql('s')} AND st.last_ok_at >= CAST(:as_of AS timestamptz) "
            "- make_interval(secs => :hours * 3600)"
        )
    else:
        where = "WHERE s.status = 'active'"
    conn.execute(
        text(
            "CREATE TEMP TABLE coverage_working ON COMMIT DROP AS "
            "SELECT s.id, s.geom, ST_Transform(s.geom, 6372) AS g FROM sites s " + where
        ),
        {"as_of": as_of, "hours": hours},
    )
    # A buffered build gives a tighter tree than the default sorted build: faster KNN here.
    conn.execute(text("CREATE INDEX ON coverage_working USING gist (g) WITH (buffering = on)"))
    conn.execute(text("ANALYZE coverage_working"))
    return int(conn.execute(text("SELECT count(*) FROM coverage_working")).scalar_one())


def _insert_localities(conn: Connection, run_id: int, radius_m: float) -> int:
    """Nearest working site of every locality (planar KNN, then exact geodesic distance)."""
    result = conn.execute(
        text(
            f"""
            INSERT INTO coverage_locality (run_id, cvegeo, mun_cvegeo, cve_ent, pop_2020,
                                           nearest_site_id, nearest_distance_m, covered)
            SELECT :run_id, l.cvegeo, l.mun_cvegeo, l.cve_ent, l.pop_2020, n.id, n.d,
                   COALESCE(n.d <= :radius_m + {DISTANCE_TOLERANCE_M}, false)
            FROM localities l
            LEFT JOIN LATERAL (
                SELECT c.id, ST_Distance(c.geom::geography, l.geom::geography) AS d
                FROM (
                    SELECT w.id, w.geom FROM coverage_working w
                    ORDER BY w.g <-> ST_Transform(l.geom, 6372)
                    LIMIT {KNN_CANDIDATES}
                ) c
                ORDER BY 2, 1
                LIMIT 1
            ) n ON true
            """
        ),
        {"run_id": run_id, "radius_m": radius_m},
    )
    return result.rowcount


def _aggregate_columns() -> str:
    """SELECT list shared by the state and national roll-ups of municipality rows."""
    sums = [
        "locality_count",
        "locality_pop",
        "sites",
        *(f"sites_{c}" for c in CATEGORIES),
        "active_sites",
        "working_sites",
        "covered_localities",
        "covered_pop",
    ]
    return ", ".join(f"sum({c})::bigint AS {c}" for c in sums)


def _derived(pop: str = "pop_2020") -> str:
    """Ratios, uncovered population and priority from the summed columns of ``agg``."""
    base = f"COALESCE({pop}, locality_pop)"
    uncovered = f"GREATEST({base} - covered_pop, 0)"
    return f"""
        sites * 10000.0 / NULLIF({pop}, 0),
        working_sites * 10000.0 / NULLIF({pop}, 0),
        covered_localities, covered_pop,
        covered_pop * 100.0 / NULLIF({pop}, 0),
        covered_pop * 100.0 / NULLIF(locality_pop, 0),
        {uncovered},
        GREATEST({base} - locality_pop, 0),
        COALESCE({PRIORITY_SQL.format(u=uncovered, p=base)}, 0)
    """


AGGREGATE_COLUMNS = (
    "pop_2020, locality_count, locality_pop, sites, "
    + ", ".join(f"sites_{c}" for c in CATEGORIES)
    + ", active_sites, working_sites, sites_per_10k, working_per_10k, covered_localities, "
    "covered_pop, covered_pct_census, covered_pct_localities, uncovered_pop, unlocated_pop, "
    "priority_score"
)


def _insert_municipalities(conn: Connection, run_id: int) -> None:
    """Per-municipality counts and coverage from the run's localities and the inventory."""
    by_category = ", ".join(
        f"count(*) FILTER (WHERE category = '{c}') AS sites_{c}" for c in CATEGORIES
    )
    conn.execute(
        text(
            f"""
            WITH counted AS (
                SELECT s.id, s.category, s.status,
                       COALESCE(s.mun_cvegeo, (
                           SELECT m.cvegeo FROM municipalities m
                           WHERE m.geom && ST_Expand(s.geom, 0.02)
                             AND ST_DWithin(m.geom::geography, s.geom::geography, 1000)
                           ORDER BY m.geom <-> s.geom, m.cvegeo LIMIT 1
                       )) AS mun
                FROM sites s WHERE s.status <> 'retired'
            ),
            site_counts AS (
                SELECT c.mun, count(*) AS sites, {by_category},
                       count(*) FILTER (WHERE c.status = 'active') AS active_sites,
                       count(w.id) AS working_sites
                FROM counted c LEFT JOIN coverage_working w ON w.id = c.id
                WHERE c.mun IS NOT NULL
                GROUP BY c.mun
            ),
            loc AS (
                SELECT mun_cvegeo, count(*) AS locality_count, sum(pop_2020) AS locality_pop,
                       count(*) FILTER (WHERE covered) AS covered_localities,
                       COALESCE(sum(pop_2020) FILTER (WHERE covered), 0) AS covered_pop
                FROM coverage_locality WHERE run_id = :run_id GROUP BY mun_cvegeo
            ),
            agg AS (
                SELECT m.cvegeo, m.cve_ent, m.name, m.pop_2020,
                       COALESCE(loc.locality_count, 0) AS locality_count,
                       COALESCE(loc.locality_pop, 0) AS locality_pop,
                       COALESCE(sc.sites, 0) AS sites,
                       {", ".join(f"COALESCE(sc.sites_{c}, 0) AS sites_{c}" for c in CATEGORIES)},
                       COALESCE(sc.active_sites, 0) AS active_sites,
                       COALESCE(sc.working_sites, 0) AS working_sites,
                       COALESCE(loc.covered_localities, 0) AS covered_localities,
                       COALESCE(loc.covered_pop, 0) AS covered_pop
                FROM municipalities m
                LEFT JOIN site_counts sc ON sc.mun = m.cvegeo
                LEFT JOIN loc ON loc.mun_cvegeo = m.cvegeo
            )
            INSERT INTO coverage_municipality (run_id, cvegeo, cve_ent, name, uncovered,
                                               {AGGREGATE_COLUMNS})
            SELECT :run_id, cvegeo, cve_ent, name, working_sites = 0,
                   pop_2020, locality_count, locality_pop, sites,
                   {", ".join(f"sites_{c}" for c in CATEGORIES)},
                   active_sites, working_sites, {_derived()}
            FROM agg
            """
        ),
        {"run_id": run_id},
    )


def _insert_states_and_nation(conn: Connection, run_id: int) -> None:
    """State and national roll-ups of the run's municipality rows (census totals as given)."""
    sums = _aggregate_columns()
    sites = ", ".join(f"sites_{c}" for c in CATEGORIES)
    conn.execute(
        text(
            f"""
            WITH agg AS (
                SELECT st.cve_ent, st.name, st.pop_2020, x.*
                FROM states st
                JOIN (
                    SELECT cve_ent AS ent, count(*) AS municipalities,
                           count(*) FILTER (WHERE uncovered) AS uncovered_municipalities, {sums}
                    FROM coverage_municipality WHERE run_id = :run_id GROUP BY cve_ent
                ) x ON x.ent = st.cve_ent
            )
            INSERT INTO coverage_state (run_id, cve_ent, name, municipalities,
                                        uncovered_municipalities, {AGGREGATE_COLUMNS})
            SELECT :run_id, cve_ent, name, municipalities, uncovered_municipalities,
                   pop_2020, locality_count, locality_pop, sites, {sites},
                   active_sites, working_sites, {_derived()}
            FROM agg
            """
        ),
        {"run_id": run_id},
    )
    conn.execute(
        text(
            f"""
            WITH agg AS (
                SELECT (SELECT sum(pop_2020) FROM municipalities)::bigint AS pop_2020,
                       count(*) AS municipalities,
                       count(*) FILTER (WHERE uncovered) AS uncovered_municipalities, {sums}
                FROM coverage_municipality WHERE run_id = :run_id
            )
            INSERT INTO coverage_national (run_id, municipalities, uncovered_municipalities,
                                           {AGGREGATE_COLUMNS})
            SELECT :run_id, municipalities, uncovered_municipalities,
                   pop_2020, locality_count, locality_pop, sites, {sites},
                   active_sites, working_sites, {_derived()}
            FROM agg
            """
        ),
        {"run_id": run_id},
    )


def prune_runs(conn: Connection, keep: int) -> int:
    """Delete all but the newest ``keep`` runs (their rows go with them); return how many."""
    result = conn.execute(
        text(
            "DELETE FROM coverage_runs WHERE id NOT IN "
            "(SELECT id FROM coverage_runs ORDER BY id DESC LIMIT :keep)"
        ),
        {"keep": keep},
    )
    return result.rowcount


def compute_coverage(
    engine: Engine,
    settings: Settings,
    *,
    radius_km: float | None = None,
    as_of: datetime | None = None,
    progress: Progress | None = None,
) -> CoverageRun:
    """Compute coverage for the whole country and store it as a new run, atomically.

    ``radius_km`` defaults to ``settings.coverage_radius_km``; ``as_of`` (default: now) is the
    moment "working in the last ``settings.coverage_working_hours``" is measured from.
    """
    radius = settings.coverage_radius_km if radius_km is None else radius_km
    _validate_radius(radius)
    hours = settings.coverage_working_hours
    progress = progress or NullProgress()
    started = time.perf_counter()
    with engine.begin() as conn:
        # Coverage runs one at a time; a second compute waits instead of interleaving.
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('conectado.coverage'))"))
        moment = as_of or conn.execute(text("SELECT now()")).scalar_one()
        basis = "probes" if probe_data_exists(conn) else "inventory"

        step = progress.task(f"working sites (basis: {basis})", total=1)
        working = _fill_working_sites(conn, basis, moment, hours)
        sites, active = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE status <> 'retired'), "
                "count(*) FILTER (WHERE status = 'active') FROM sites"
            )
        ).one()
        run_id = conn.execute(
            text(
                "INSERT INTO coverage_runs (as_of, radius_km, basis, working_hours, duration_s, "
                "sites, active_sites, working_sites, localities) "
                "VALUES (:as_of, :radius, :basis, :hours, 0, :sites, :active, :working, 0) "
                "RETURNING id"
            ),
            {
                "as_of": moment,
                "radius": radius,
                "basis": basis,
                "hours": hours,
                "sites": sites,
                "active": active,
                "working": working,
            },
        ).scalar_one()
        step.finish()

        step = progress.task(f"nearest working site of every locality (R = {radius:g} km)", 1)
        localities = _insert_localities(conn, run_id, radius * 1000.0)
        step.finish()

        step = progress.task("municipalities, states and national totals", total=1)
        _insert_municipalities(conn, run_id)
        _insert_states_and_nation(conn, run_id)
        prune_runs(conn, settings.coverage_keep_runs)
        step.finish()

        duration = time.perf_counter() - started
        row = conn.execute(
            text(
                "UPDATE coverage_runs SET duration_s = :d, localities = :n WHERE id = :id "
                "RETURNING id, computed_at, as_of, radius_km, basis, working_hours, duration_s, "
                "sites, active_sites, working_sites, localities"
            ),
            {"d": duration, "n": localities, "id": run_id},
        ).one()
    return CoverageRun(**row._mapping)
