"""Limit changes above ``LIMIT_APPROVAL_FACTOR`` times the plan's limit need a second person.

``limit_requests`` keeps a requested change (type, limit, effective, until, reason, who)
until another person approves it (``set_daily_limit``'s change is then made, once, and
its audit row names both) or rejects it. The two-person rule is kept by the database
too (``ck_limit_requests_two_people``, in the canonical form of both names), whatever
the caller. The app may insert a request and record its decision; nothing else.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 07:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_GRANTS = (
    "GRANT SELECT ON limit_requests TO dashboard_app, dashboard_reader, dashboard_auditor",
    """
    GRANT INSERT (organization_id, type, daily_limit, effective, until, reason, requested_by,
                  idempotency_key)
    ON limit_requests TO dashboard_app
    """,
    """
    GRANT UPDATE (status, decided_by, decided_at, decision_reason, audit_id)
    ON limit_requests TO dashboard_app
    """,
)


def upgrade() -> None:
    op.create_table(
        "limit_requests",
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("type", sa.Text(collation="C"), nullable=False),
        sa.Column("daily_limit", sa.Integer(), nullable=False),
        sa.Column("effective", sa.Date(), nullable=False),
        sa.Column("until", sa.Date(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("audit_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "daily_limit >= 0", name=op.f("ck_limit_requests_daily_limit_not_negative")
        ),
        sa.CheckConstraint(
            "until >= effective", name=op.f("ck_limit_requests_until_not_before_effective")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected')",
            name=op.f("ck_limit_requests_status_known"),
        ),
        sa.CheckConstraint(
            "(status = 'pending' AND decided_by IS NULL AND audit_id IS NULL)"
            " OR (status = 'approved' AND decided_by IS NOT NULL AND audit_id IS NOT NULL)"
            " OR (status = 'rejected' AND decided_by IS NOT NULL AND audit_id IS NULL"
            "     AND btrim(decision_reason) <> '')",
            name=op.f("ck_limit_requests_decision_complete"),
        ),
        sa.CheckConstraint(
            "stored_identity(decided_by) <> stored_identity(requested_by)",
            name=op.f("ck_limit_requests_two_people"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_limit_requests_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["type"],
            ["generation_types.type"],
            name=op.f("fk_limit_requests_type_generation_types"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_limit_requests")),
        sa.UniqueConstraint(
            "organization_id",
            "idempotency_key",
            name=op.f("uq_limit_requests_organization_id_idempotency_key"),
        ),
    )
    op.create_index(op.f("ix_limit_requests_id"), "limit_requests", ["id"])
    op.create_index(op.f("ix_limit_requests_type"), "limit_requests", ["type"])
    op.create_index(
        "ix_limit_requests_pending_created_at_id",
        "limit_requests",
        ["created_at", "id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    for statement in _GRANTS:
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("limit_requests")
