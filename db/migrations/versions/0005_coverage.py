"""Materialised coverage results (one set of rows per run) and display boundaries for maps.

Revision ID: 0005_coverage
Revises: 0004_scheduler
"""

from alembic import op

revision = "0005_coverage"
down_revision = "0004_scheduler"
branch_labels = None
depends_on = None

# The aggregate columns shared by the municipality, state and national tables.
AGGREGATES = """
            pop_2020                bigint,
            locality_count          integer NOT NULL,
            locality_pop            bigint NOT NULL,
            sites                   integer NOT NULL,
            sites_school            integer NOT NULL,
            sites_health            integer NOT NULL,
            sites_public_space      integer NOT NULL,
            sites_community         integer NOT NULL,
            sites_government        integer NOT NULL,
            sites_research          integer NOT NULL,
            active_sites            integer NOT NULL,
            working_sites           integer NOT NULL,
            sites_per_10k           double precision,
            working_per_10k         double precision,
            covered_localities      integer NOT NULL,
            covered_pop             bigint NOT NULL,
            covered_pct_census      double precision,
            covered_pct_localities  double precision,
            uncovered_pop           bigint NOT NULL,
            unlocated_pop           bigint NOT NULL,
            priority_score          double precision NOT NULL
"""


def upgrade() -> None:
    # Results are keyed by run: a run's rows are written in the transaction that creates the
    # run, so readers see a whole run or none, and older runs stay for comparison until pruned.
    op.execute(
        f"""
        CREATE TABLE coverage_runs (
            id              bigserial PRIMARY KEY,
            computed_at     timestamptz NOT NULL DEFAULT now(),
            as_of           timestamptz NOT NULL,
            radius_km       double precision NOT NULL CHECK (radius_km > 0),
            basis           text NOT NULL CHECK (basis IN ('probes', 'inventory')),
            working_hours   double precision NOT NULL CHECK (working_hours > 0),
            duration_s      double precision NOT NULL,
            sites           integer NOT NULL,
            active_sites    integer NOT NULL,
            working_sites   integer NOT NULL,
            localities      integer NOT NULL
        );
        CREATE INDEX ix_coverage_runs_radius ON coverage_runs (radius_km, id);

        CREATE TABLE coverage_national (
            run_id                  bigint PRIMARY KEY
                                        REFERENCES coverage_runs (id) ON DELETE CASCADE,
            municipalities          integer NOT NULL,
            uncovered_municipalities integer NOT NULL,
            {AGGREGATES}
        );

        CREATE TABLE coverage_state (
            run_id                  bigint NOT NULL
                                        REFERENCES coverage_runs (id) ON DELETE CASCADE,
            cve_ent                 char(2) NOT NULL,
            name                    text NOT NULL,
            municipalities          integer NOT NULL,
            uncovered_municipalities integer NOT NULL,
            {AGGREGATES},
            PRIMARY KEY (run_id, cve_ent)
        );

        CREATE TABLE coverage_municipality (
            run_id                  bigint NOT NULL
                                        REFERENCES coverage_runs (id) ON DELETE CASCADE,
            cvegeo                  char(5) NOT NULL,
            cve_ent                 char(2) NOT NULL,
            name                    text NOT NULL,
            uncovered               boolean NOT NULL,
            {AGGREGATES},
            PRIMARY KEY (run_id, cvegeo)
        );
        CREATE INDEX ix_coverage_municipality_priority
            ON coverage_municipality (run_id, priority_score DESC, cvegeo);
        CREATE INDEX ix_coverage_municipality_ent ON coverage_municipality (run_id, cve_ent);

        CREATE TABLE coverage_locality (
            run_id              bigint NOT NULL REFERENCES coverage_runs (id) ON DELETE CASCADE,
            cvegeo              char(9) NOT NULL,
            mun_cvegeo          char(5) NOT NULL,
            cve_ent             char(2) NOT NULL,
            pop_2020            integer NOT NULL,
            -- No foreign key: a run is a record of what was true then, even if the site goes.
            nearest_site_id     bigint,
            nearest_distance_m  double precision,
            covered             boolean NOT NULL,
            PRIMARY KEY (run_id, cvegeo)
        );
        CREATE INDEX ix_coverage_locality_uncovered
            ON coverage_locality (run_id, pop_2020 DESC, cvegeo) WHERE NOT covered;
        CREATE INDEX ix_coverage_locality_mun ON coverage_locality (run_id, mun_cvegeo);

        -- Boundaries simplified for display (maps), rebuilt when the geography changes;
        -- `source` is a fingerprint of the geometry they were built from.
        CREATE TABLE display_boundaries (
            level           text NOT NULL CHECK (level IN ('municipality', 'state')),
            key             text NOT NULL,
            geom            geometry(MultiPolygon, 4326) NOT NULL,
            tolerance_m     double precision NOT NULL,
            source          text NOT NULL,
            built_at        timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (level, key)
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS display_boundaries, coverage_locality, coverage_municipality,
            coverage_state, coverage_national, coverage_runs CASCADE;
        """
    )
