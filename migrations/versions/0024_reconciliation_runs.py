"""What each reconciliation run found: ``reconciliation_runs``.

The Reconciliation page ran "what changed since the checkpoints" on a session's first
visit, which at 100M took 27–182 s: the page did not draw. It now shows the last run's
result and checks only when asked, so the database must say what the last run found.
The checkpoints cannot: a quiet night's run changes none of them, and a run that finds
drift deletes the drifted organization's.

One row per ``dashboard reconcile`` that records its checkpoints, inserted in the same
transaction as them (``queries.reconciliation.reconcile``): the instant the check took
as now (``checked_at``), whether it was a full check, how many organizations and changed
days it covered, every drift it found (``drifts``, a JSON array of the report's rows,
empty when the books closed) and who ran it (``ran_by``: the database login, which the
database sets; the caller cannot name another).

Only the reconciler writes it: ``dashboard_auditor`` may INSERT the report's columns,
never ``id`` or ``ran_by``, and may not UPDATE or DELETE a run, so what a run found is
not rewritten afterwards. Every role reads it. The app's checks from the page are not
recorded: since 0014 the app's role writes nothing of the reconciliation, and a record
it could write could claim that the books closed. ``checked_at`` is indexed for the
page's "the last run" (one probe).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-08 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_GRANTS = (
    "GRANT SELECT ON reconciliation_runs TO dashboard_app, dashboard_reader, dashboard_auditor",
    """
    GRANT INSERT (checked_at, full_check, organizations_checked, days_checked, drifts)
    ON reconciliation_runs TO dashboard_auditor
    """,
)


def upgrade() -> None:
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("full_check", sa.Boolean(), nullable=False),
        sa.Column("organizations_checked", sa.Integer(), nullable=False),
        sa.Column("days_checked", sa.Integer(), nullable=True),
        sa.Column(
            "drifts",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("ran_by", sa.Text(), server_default=sa.text("session_user"), nullable=False),
        sa.CheckConstraint(
            "organizations_checked >= 0",
            name=op.f("ck_reconciliation_runs_organizations_checked_not_negative"),
        ),
        sa.CheckConstraint(
            "(days_checked IS NULL) = full_check AND (days_checked IS NULL OR days_checked >= 0)",
            name=op.f("ck_reconciliation_runs_days_checked_unless_full"),
        ),
        sa.CheckConstraint(
            "jsonb_typeof(drifts) = 'array'", name=op.f("ck_reconciliation_runs_drifts_array")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
    )
    op.create_index(
        op.f("ix_reconciliation_runs_checked_at_id"), "reconciliation_runs", ["checked_at", "id"]
    )
    for statement in _GRANTS:
        op.execute(statement)


def downgrade() -> None:
    # The grants go with the table.
    op.drop_index(op.f("ix_reconciliation_runs_checked_at_id"), table_name="reconciliation_runs")
    op.drop_table("reconciliation_runs")
