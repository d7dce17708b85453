"""Plan allowances: each plan's monthly allowance of credits and the cap on its rollover.

``plan_allowances`` has one row per plan (``queries.models.PLANS``, seeded here):
``monthly_allowance``, the credits ``dashboard grant-allowances`` grants each
organization on the plan for its local month (a grant keyed ``allowance:YYYY-MM`` that
expires at the end of that month in the organization's zone), and ``rollover_cap``, the
most of what remained unused of last month's allowance (and of its rollover) that rolls
into a grant keyed ``rollover:YYYY-MM``, expiring with the month (``queries.allowances``).

A global setting, not a tenant's: ``audit_log`` belongs to one organization (its key and
its foreign key start with ``organization_id``), so a change is audited in its own
append-only history, ``plan_allowance_changes``: who, why, the values before and after,
and the caller's idempotency key (unique: a retried change is recorded once). It refuses
UPDATE, DELETE and TRUNCATE for every role, as the other histories do (migration 0003's
``refuse_append_only_change``, ``ENABLE ALWAYS``).

Every role reads both tables (0003, 0014). The app may change the two amounts of a plan
and stamp who did it, and insert a change; it cannot add or remove a plan.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 15:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PLANS = "plan IN ('free', 'starter', 'pro', 'enterprise')"
# (plan, monthly allowance, rollover cap): a free plan's small allowance does not roll
# over; paid plans keep up to half a month's allowance.
_DEFAULTS = (
    ("free", 1_000, 0),
    ("starter", 20_000, 10_000),
    ("pro", 100_000, 50_000),
    ("enterprise", 1_000_000, 500_000),
)

_GRANTS = (
    "GRANT SELECT ON plan_allowances, plan_allowance_changes "
    "TO dashboard_app, dashboard_reader, dashboard_auditor",
    "GRANT UPDATE (monthly_allowance, rollover_cap, updated_at, updated_by) "
    "ON plan_allowances TO dashboard_app",
    """
    GRANT INSERT (plan, monthly_allowance, rollover_cap, old_monthly_allowance,
                  old_rollover_cap, actor, reason, idempotency_key)
    ON plan_allowance_changes TO dashboard_app
    """,
    """
    CREATE TRIGGER plan_allowance_changes_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON plan_allowance_changes
    FOR EACH STATEMENT EXECUTE FUNCTION
        refuse_append_only_change('it records who changed a plan''s allowance and why; '
                                  'record a correction as a new change')
    """,
    "ALTER TABLE plan_allowance_changes ENABLE ALWAYS TRIGGER plan_allowance_changes_append_only",
)


def upgrade() -> None:
    op.create_table(
        "plan_allowances",
        sa.Column("plan", sa.Text(), nullable=False),
        sa.Column("monthly_allowance", sa.BigInteger(), nullable=False),
        sa.Column("rollover_cap", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("updated_by", sa.Text(), server_default=sa.text("'system'"), nullable=False),
        sa.CheckConstraint(_PLANS, name=op.f("ck_plan_allowances_plan_known")),
        sa.CheckConstraint(
            "monthly_allowance >= 0", name=op.f("ck_plan_allowances_monthly_allowance_not_negative")
        ),
        sa.CheckConstraint(
            "rollover_cap >= 0", name=op.f("ck_plan_allowances_rollover_cap_not_negative")
        ),
        sa.CheckConstraint(
            "btrim(updated_by) <> ''", name=op.f("ck_plan_allowances_updated_by_not_blank")
        ),
        sa.PrimaryKeyConstraint("plan", name=op.f("pk_plan_allowances")),
    )
    op.create_table(
        "plan_allowance_changes",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("plan", sa.Text(), nullable=False),
        sa.Column("monthly_allowance", sa.BigInteger(), nullable=False),
        sa.Column("rollover_cap", sa.BigInteger(), nullable=False),
        sa.Column("old_monthly_allowance", sa.BigInteger(), nullable=False),
        sa.Column("old_rollover_cap", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "btrim(actor) <> ''", name=op.f("ck_plan_allowance_changes_actor_not_blank")
        ),
        sa.CheckConstraint(
            "btrim(reason) <> ''", name=op.f("ck_plan_allowance_changes_reason_not_blank")
        ),
        sa.ForeignKeyConstraint(
            ["plan"],
            ["plan_allowances.plan"],
            name=op.f("fk_plan_allowance_changes_plan_plan_allowances"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_allowance_changes")),
        sa.UniqueConstraint(
            "idempotency_key", name=op.f("uq_plan_allowance_changes_idempotency_key")
        ),
    )
    op.create_index(
        op.f("ix_plan_allowance_changes_plan_created_at"),
        "plan_allowance_changes",
        ["plan", "created_at"],
    )
    op.bulk_insert(
        sa.table(
            "plan_allowances",
            sa.column("plan", sa.Text()),
            sa.column("monthly_allowance", sa.BigInteger()),
            sa.column("rollover_cap", sa.BigInteger()),
        ),
        [
            {"plan": plan, "monthly_allowance": allowance, "rollover_cap": cap}
            for plan, allowance, cap in _DEFAULTS
        ],
    )
    for statement in _GRANTS:
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("plan_allowance_changes")
    op.drop_table("plan_allowances")
