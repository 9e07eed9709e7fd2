"""Remember the last incident evaluation, so scheduler batches can space evaluations out.

Every evaluation reads the current state of every site (a few hundred ms on the national
inventory). With 39 batches a minute, one after each batch kept a third of a core busy doing
the same work again every 1.5 s, while an incident opens only after several failed probe
intervals. One row holds when the last evaluation started, how long it took and what it
changed: batches skip theirs when the last one is younger than
``incident_evaluation_gap_s``, and `conectado scheduler status` shows it.

Revision ID: 0010_incident_evaluation
Revises: 0009_trigram_costs
"""

from alembic import op

revision = "0010_incident_evaluation"
down_revision = "0009_trigram_costs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE incident_evaluation (
            one         boolean PRIMARY KEY DEFAULT true CHECK (one),
            started_at  timestamptz NOT NULL,
            seconds     double precision NOT NULL,
            opened      integer NOT NULL,
            closed      integer NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE incident_evaluation")
