"""Two-person approval: credit adjustments above the threshold wait as requests.

``approval_requests`` holds an adjustment above ``CREDITS_APPROVAL_THRESHOLD`` from
its request until a second person approves it (its ledger entry is then named here)
or rejects it. The two-person rule is also a check of the table (``decided_by <>
requested_by``), and a decision is complete (approved: entry and approver; rejected:
approver and reason). ``ix_approval_requests_pending_created_at_id`` serves the queue
of pending requests across organizations, oldest first, by keyset.

Grants as migration 0003 asks: SELECT to both roles; to ``dashboard_app`` INSERT of a
request and UPDATE of the decision columns only (a request's amount, reason and
requester never change).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_GRANTS = (
    "GRANT SELECT ON approval_requests TO dashboard_app, dashboard_reader",
    """
    GRANT INSERT (organization_id, amount, reason, note, requested_by, idempotency_key,
                  expires_at),
          UPDATE (status, decided_by, decided_at, decision_reason, ledger_entry_id)
    ON approval_requests TO dashboard_app
    """,
)


def upgrade() -> None:
    op.create_table(
        "approval_requests",
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("ledger_entry_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_approval_requests_amount_not_zero")),
        sa.CheckConstraint(
            "btrim(reason) <> ''", name=op.f("ck_approval_requests_reason_not_blank")
        ),
        sa.CheckConstraint(
            "btrim(requested_by) <> ''", name=op.f("ck_approval_requests_requested_by_not_blank")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected')",
            name=op.f("ck_approval_requests_status_known"),
        ),
        sa.CheckConstraint(
            "(status = 'pending' AND decided_by IS NULL AND ledger_entry_id IS NULL)"
            " OR (status = 'approved' AND decided_by IS NOT NULL AND ledger_entry_id IS NOT NULL)"
            " OR (status = 'rejected' AND decided_by IS NOT NULL AND ledger_entry_id IS NULL"
            "     AND btrim(decision_reason) <> '')",
            name=op.f("ck_approval_requests_decision_complete"),
        ),
        sa.CheckConstraint(
            "decided_by <> requested_by", name=op.f("ck_approval_requests_two_people")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_approval_requests_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_approval_requests")),
        sa.UniqueConstraint(
            "organization_id",
            "idempotency_key",
            name=op.f("uq_approval_requests_organization_id_idempotency_key"),
        ),
    )
    op.create_index(op.f("ix_approval_requests_id"), "approval_requests", ["id"])
    op.create_index(
        "ix_approval_requests_pending_created_at_id",
        "approval_requests",
        ["created_at", "id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    for statement in _GRANTS:
        op.execute(statement)


def downgrade() -> None:
    # Dropping the table drops its grants and indexes with it.
    op.drop_table("approval_requests")
