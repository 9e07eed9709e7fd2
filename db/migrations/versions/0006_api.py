"""API keys with roles, page sessions, the audit log of API writes, site JSON documents.

Revision ID: 0006_api
Revises: 0005_coverage
"""

from alembic import op

revision = "0006_api"
down_revision = "0005_coverage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A key is "cnk_<prefix>_<secret>": the prefix is public and finds the row, the whole
    # token is stored only as its SHA-256 (a 32-byte random secret needs no slow KDF: there is
    # nothing to brute-force, unlike a password).
    op.execute(
        """
        CREATE TABLE api_keys (
            id              bigserial PRIMARY KEY,
            prefix          text NOT NULL UNIQUE,
            token_sha256    bytea NOT NULL CHECK (length(token_sha256) = 32),
            name            text NOT NULL CHECK (length(btrim(name)) > 0),
            role            text NOT NULL CHECK (role IN
                                ('viewer', 'technician', 'planner', 'operator', 'admin')),
            created_at      timestamptz NOT NULL DEFAULT now(),
            created_by      text NOT NULL,
            expires_at      timestamptz,
            last_used_at    timestamptz,
            revoked_at      timestamptz,
            revoked_by      text
        );
        CREATE UNIQUE INDEX uq_api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;

        -- Browser sessions of the pages: a random token in an HttpOnly cookie, stored hashed,
        -- bound to the key that logged in (revoking the key ends its sessions).
        CREATE TABLE api_sessions (
            token_sha256    bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
            key_id          bigint NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
            created_at      timestamptz NOT NULL DEFAULT now(),
            expires_at      timestamptz NOT NULL
        );
        CREATE INDEX ix_api_sessions_key ON api_sessions (key_id);

        -- Who changed what through the API: one row per write request, whatever its outcome.
        CREATE TABLE api_audit (
            id              bigserial PRIMARY KEY,
            at              timestamptz NOT NULL DEFAULT now(),
            key_id          bigint REFERENCES api_keys (id) ON DELETE SET NULL,
            key_name        text,
            role            text,
            method          text NOT NULL,
            path            text NOT NULL,
            status          smallint NOT NULL,
            duration_ms     real
        );
        CREATE INDEX ix_api_audit_at ON api_audit (at);

        -- Each site's public fields as JSON text, so that a page of 1,000 sites is a string
        -- concatenation rather than 1,000 row serialisations. A row is current while its
        -- src_xmin equals the site row's xmin (any change to the site makes a new row
        -- version); the API rebuilds stale rows in the background and serialises them inline
        -- until then, so the inventory's writers need not know about this table.
        CREATE TABLE api_site_docs (
            site_id     bigint PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
            src_xmin    xid NOT NULL,
            props       text NOT NULL,   -- '{"id":...,"updated_at":"..."' without the closing }
            geo_head    text NOT NULL,   -- '{"type":"Feature","id":...,"properties":'
            built_at    timestamptz NOT NULL DEFAULT now()
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS api_site_docs, api_audit, api_sessions, api_keys CASCADE")
