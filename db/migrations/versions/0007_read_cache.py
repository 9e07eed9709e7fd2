"""What the API's read cache needs: a change signal from every table a cached response reads,
and an index that answers the card's uptime from the index alone.

Each statement that writes one of those tables sends ``NOTIFY conectado_changes`` (statement
level, so a COPY of 100,000 results is one notification, and PostgreSQL folds repeats inside a
transaction into one, delivered at commit). API workers listen; api/cache.py decides what a
change to each table means for the responses they keep.

Revision ID: 0007_read_cache
Revises: 0006_api
"""

from alembic import op

revision = "0007_read_cache"
down_revision = "0006_api"
branch_labels = None
depends_on = None

CHANNEL = "conectado_changes"
WATCHED = (
    "sites",
    "site_secrets",
    "site_status",
    "probe_results",
    "reboot_events",
    "rollup_site_hourly",
    "rollup_site_daily",
    "incidents",
    "incident_sites",
    "maintenance_windows",
    "municipalities",
    "states",
    "api_site_docs",
)


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION conectado_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
            RETURN NULL;
        END $$
        """
    )
    for table in WATCHED:
        op.execute(
            f"CREATE TRIGGER conectado_changed AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION conectado_notify_change()"
        )
        op.execute(
            f"CREATE TRIGGER conectado_truncated AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION conectado_notify_change()"
        )
    # The card sums rounds and up rounds of 30 days of hourly rows; with the counts in the
    # index that is an index-only scan instead of ~720 scattered heap pages per card.
    op.execute(
        "CREATE INDEX ix_rollup_site_hourly_uptime ON rollup_site_hourly (site_id, hour) "
        "INCLUDE (rounds, up_rounds)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_rollup_site_hourly_uptime")
    for table in WATCHED:
        op.execute(f"DROP TRIGGER IF EXISTS conectado_changed ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS conectado_truncated ON {table}")
    op.execute("DROP FUNCTION IF EXISTS conectado_notify_change()")
