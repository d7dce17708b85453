"""Limit changes carry an idempotency key, so a retry after a lost answer applies once.

Adjustments and reversals already have one (credit_ledger); audit_log gains a nullable
key with a partial unique index per organization, like generations.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 18:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("idempotency_key", sa.Text(), nullable=True))
    op.create_index(
        op.f("ix_audit_log_organization_id_idempotency_key"),
        "audit_log",
        ["organization_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_audit_log_organization_id_idempotency_key"),
        table_name="audit_log",
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.drop_column("audit_log", "idempotency_key")
