"""Verified reconciliation checkpoints per (organization, local date).

``queries.reconciliation`` writes a row for every day of an organization all of whose
checks held, with the organization's greatest generation and ledger ids it counted; an
incremental run rechecks only what came after them. The app role may insert and
refresh them and delete an organization's rows (a run that finds drift deletes them,
so the next run rechecks that organization from scratch): nothing else.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_GRANTS = (
    "GRANT SELECT ON reconciliation_checkpoints TO dashboard_app, dashboard_reader",
    """
    GRANT INSERT (organization_id, date, generation_id, ledger_id, timezone, verified_at),
          UPDATE (generation_id, ledger_id, timezone, verified_at), DELETE
    ON reconciliation_checkpoints TO dashboard_app
    """,
)


def upgrade() -> None:
    op.create_table(
        "reconciliation_checkpoints",
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("generation_id", sa.BigInteger(), nullable=False),
        sa.Column("ledger_id", sa.BigInteger(), nullable=False),
        sa.Column("timezone", sa.Text(), nullable=False),
        sa.Column(
            "verified_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_reconciliation_checkpoints_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint(
            "organization_id", "date", name=op.f("pk_reconciliation_checkpoints")
        ),
    )
    for statement in _GRANTS:
        op.execute(statement)


def downgrade() -> None:
    # Dropping the table drops its grants with it.
    op.drop_table("reconciliation_checkpoints")
