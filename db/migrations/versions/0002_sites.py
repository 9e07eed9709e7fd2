"""Site inventory: sites, their probe secrets (kept apart) and the change history.

Revision ID: 0002_sites
Revises: 0001_geography
"""

from alembic import op

revision = "0002_sites"
down_revision = "0001_geography"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE sites (
            id              bigserial PRIMARY KEY,
            site_key        text NOT NULL UNIQUE,
            name            text NOT NULL,
            category        text NOT NULL CHECK (category IN
                                ('school', 'health', 'public_space', 'community', 'government',
                                 'research')),
            geom            geometry(Point, 4326) NOT NULL,
            mun_cvegeo      char(5) REFERENCES municipalities (cvegeo),
            cve_ent         char(2) REFERENCES states (cve_ent),
            locality        text,
            address         text,
            provider        text,
            technology      text CHECK (technology IN
                                ('fiber', 'microwave', 'satellite', 'dsl', 'cellular', 'other')),
            bw_down_mbps    double precision CHECK (bw_down_mbps >= 0),
            bw_up_mbps      double precision CHECK (bw_up_mbps >= 0),
            status          text NOT NULL DEFAULT 'planned' CHECK (status IN
                                ('planned', 'installed', 'active', 'suspended', 'retired')),
            installed_on    date,
            contact_name    text,
            contact_phone   text,
            access_notes    text,
            mgmt_ip         inet,
            snmp_version    text CHECK (snmp_version IN ('2c', '3')),
            snmp_port       integer NOT NULL DEFAULT 161 CHECK (snmp_port BETWEEN 1 AND 65535),
            wan_if_index    integer CHECK (wan_if_index > 0),
            wan_if_name     text,
            http_url        text,
            created_at      timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ix_sites_geom ON sites USING gist (geom);
        CREATE INDEX ix_sites_geog ON sites USING gist ((geom::geography));
        CREATE INDEX ix_sites_mun ON sites (mun_cvegeo);
        CREATE INDEX ix_sites_ent ON sites (cve_ent);
        CREATE INDEX ix_sites_category ON sites (category);
        CREATE INDEX ix_sites_status ON sites (status);
        CREATE INDEX ix_sites_provider ON sites (provider);
        CREATE INDEX ix_sites_name_trgm ON sites USING gin (name gin_trgm_ops);
        CREATE INDEX ix_sites_key_trgm ON sites USING gin (site_key gin_trgm_ops);

        -- Probe credentials live apart so that no query for inventory, export or API can
        -- return them by accident; only the probe engine reads this table.
        CREATE TABLE site_secrets (
            site_id         bigint PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
            snmp_community  text,
            v3_user         text,
            v3_auth_proto   text CHECK (v3_auth_proto IN ('MD5', 'SHA', 'SHA224', 'SHA256',
                                                          'SHA384', 'SHA512')),
            v3_auth_key     text,
            v3_priv_proto   text CHECK (v3_priv_proto IN ('DES', 'AES', 'AES192', 'AES256')),
            v3_priv_key     text
        );

        CREATE TABLE site_changes (
            id          bigserial PRIMARY KEY,
            site_id     bigint NOT NULL,
            site_key    text NOT NULL,
            changed_at  timestamptz NOT NULL DEFAULT now(),
            changed_by  text NOT NULL,
            action      text NOT NULL CHECK (action IN ('insert', 'update', 'retire', 'delete')),
            changes     jsonb NOT NULL
        );
        CREATE INDEX ix_site_changes_site ON site_changes (site_id, changed_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS site_changes, site_secrets, sites CASCADE")
