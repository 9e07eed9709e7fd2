"""Geography: PostGIS, pg_trgm, states, municipalities and localities.

Revision ID: 0001_geography
Revises:
"""

from alembic import op

revision = "0001_geography"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(
        """
        CREATE TABLE states (
            cve_ent      char(2) PRIMARY KEY,
            name         text NOT NULL,
            abbrev       text NOT NULL,
            pop_2020     bigint,
            area_km2     double precision,
            geom         geometry(MultiPolygon, 4326)
        );
        CREATE INDEX ix_states_geom ON states USING gist (geom);

        CREATE TABLE municipalities (
            cvegeo          char(5) PRIMARY KEY,
            cve_ent         char(2) NOT NULL REFERENCES states (cve_ent),
            cve_mun         char(3) NOT NULL,
            name            text NOT NULL,
            pop_2020        bigint CHECK (pop_2020 >= 0),
            dwellings_2020  bigint CHECK (dwellings_2020 >= 0),
            area_km2        double precision NOT NULL,
            geom            geometry(MultiPolygon, 4326) NOT NULL,
            CONSTRAINT ck_municipalities_key CHECK (cvegeo = cve_ent || cve_mun)
        );
        CREATE INDEX ix_municipalities_geom ON municipalities USING gist (geom);
        CREATE INDEX ix_municipalities_cve_ent ON municipalities (cve_ent);
        CREATE INDEX ix_municipalities_name_trgm ON municipalities USING gin (name gin_trgm_ops);

        CREATE TABLE localities (
            cvegeo          char(9) PRIMARY KEY,
            mun_cvegeo      char(5) NOT NULL REFERENCES municipalities (cvegeo),
            cve_ent         char(2) NOT NULL,
            name            text NOT NULL,
            ambito          text NOT NULL CHECK (ambito IN ('URBANO', 'RURAL')),
            altitude_m      integer,
            pop_2020        integer NOT NULL CHECK (pop_2020 >= 0),
            dwellings_2020  integer,
            geom            geometry(Point, 4326) NOT NULL
        );
        CREATE INDEX ix_localities_geom ON localities USING gist (geom);
        CREATE INDEX ix_localities_geog ON localities USING gist ((geom::geography));
        CREATE INDEX ix_localities_mun ON localities (mun_cvegeo);

        CREATE TABLE geo_loads (
            id            bigserial PRIMARY KEY,
            loaded_at     timestamptz NOT NULL DEFAULT now(),
            source_dir    text NOT NULL,
            inserted      integer NOT NULL,
            updated       integer NOT NULL,
            unchanged     integer NOT NULL,
            skipped       integer NOT NULL
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS geo_loads, localities, municipalities, states CASCADE")
