"""Plan the site-state transition query for the transition tables it is given.

The AFTER UPDATE trigger on site_status joins its old and new transition tables. As static
SQL in PL/pgSQL, that join was planned once per connection and the plan kept: a statement
that updated no rows (a round whose sites were all new, so every status row was inserted)
left a nested-loop plan made for two empty tables, and the next round on that connection
joined 95,279 × 95,279 rows with it (a write that had not finished after 9 minutes).
EXECUTE plans the query at each call, for the actual sizes; a plan costs well under 1 ms.

Revision ID: 0008_transition_plans
Revises: 0007_read_cache
"""

from alembic import op

revision = "0008_transition_plans"
down_revision = "0007_read_cache"
branch_labels = None
depends_on = None

TRANSITIONS = """
    INSERT INTO site_transitions (site_id, at, from_state, to_state, round_id)
    SELECT n.site_id, coalesce(n.state_since, n.last_probe_at, now()), o.state, n.state,
           n.last_round_id
    FROM new_rows n JOIN old_rows o ON o.site_id = n.site_id
    WHERE n.state IS DISTINCT FROM o.state
"""


def _replace_function(statement: str) -> None:
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION site_status_transitions_on_update() RETURNS trigger
        LANGUAGE plpgsql AS $fn$
        BEGIN
            {statement};
            RETURN NULL;
        END $fn$;
        """
    )


def upgrade() -> None:
    """Replace the trigger function's static SQL with EXECUTE."""
    _replace_function(f"EXECUTE $q${TRANSITIONS}$q$")


def downgrade() -> None:
    """Restore the static SQL of 0004."""
    _replace_function(TRANSITIONS)
