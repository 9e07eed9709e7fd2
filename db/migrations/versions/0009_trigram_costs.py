"""Tell the planner what a trigram similarity test costs.

pg_trgm declares its similarity operators (``%``, ``<%``, ``%>``) at the default cost of one
operator call. Measured on the 101,322-site inventory, one ``'hospital' <% name`` costs ~7 µs
and ``'centro de salud' <% name`` ~8.5 µs, against ~1.3 µs for ``name ILIKE '%hospital%'``:
about a thousand times the default. Believing them free, the planner chose to scan the whole
inventory in id order and test every row (``hospital``: 576 ms for the first page) instead of
the trigram index (43 ms). With the true cost it tests only the rows the index proposes unless
matches are dense enough that the id-ordered scan stops early.

Changing an extension's functions needs their owner (a superuser where the extension was
installed as a trusted one). Without that right the migration leaves them as they are and says
so: searches stay correct, only slower. A dump and restore loses the price; ``db.migrate``
puts it back at each upgrade (``db.trigram``).

Revision ID: 0009_trigram_costs
Revises: 0008_transition_plans
"""

from alembic import op

from db.trigram import SIMILARITY_COST, similarity_cost_sql

revision = "0009_trigram_costs"
down_revision = "0008_transition_plans"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(similarity_cost_sql(SIMILARITY_COST))


def downgrade() -> None:
    op.execute(similarity_cost_sql(1))
