"""Limit changes that end by themselves: ``limit_changes`` and ``limit_in_force`` by it.

A daily-limit change was carried only by ``usage_limits`` rows: the row of its
effective day, and every later row rewritten. A change that ends (``until``) cannot be
carried that way: after it ends, the limit that was in force before it must apply
again without a second write, and rows alone do not remember what that was. So every
change is kept as made, in ``limit_changes`` (effective, until, limit), and the rule is:

- the most recently made change covering the day wins (``effective <= day`` and
  ``until`` NULL or ``>= day``);
- a day no change covers has the limit of the latest ``usage_limits`` row on or before
  it on a day no change covers (rows the demo loader and older versions wrote, and rows
  a generation opened while no change applied), else the type's default times the
  plan's factor, as before (migration 0010).

A row on a covered day holds that change's limit (``set_daily_limit`` rewrites the rows
of the days it covers), so "the day's own row" stays true for every row, and reads
that take ``usage_limits.daily_limit`` directly (the forecast, the cross-organization
quotas) agree with the function.

``limit_in_force`` gains a third OUT column, ``until`` (NULL unless a change that ends
is in force); ``since`` is the change's effective day, or the row's day as before. The
function is dropped and created again, because a function's result type cannot be
changed in place. Past changes are copied in from the audit log as open-ended ones.

Cost: one more index probe (``limit_changes``, empty for most organizations) and, when
no change covers the day, one more per row looked at going back. Measured against
0010's function on the demo data's largest tenant, one call with its round trip: 0.16
to 0.19 ms before, 0.18 to 0.28 ms after (a shared 2-core machine; noisy).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Two probes of ix_limit_changes_organization_id_type_effective and, only when no change
# covers the day, the backward probe of migration 0010 skipping covered days. The
# parameters are qualified with the function's name, because a column of the same
# name would take precedence.
_FUNCTION = """
CREATE FUNCTION limit_in_force(
    org bigint, type text, day date, OUT daily_limit integer, OUT since date, OUT until date)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(
               change.daily_limit,
               latest.daily_limit,
               (SELECT floor(t.default_daily_limit * plan_limit_factor(o.plan))::int
                FROM generation_types t, organizations o
                WHERE t.type = limit_in_force.type AND o.id = limit_in_force.org)),
           coalesce(change.effective, latest.date),
           change.until
    FROM (VALUES (1)) AS one (x)
    LEFT JOIN (
        SELECT c.daily_limit, c.effective, c.until
        FROM limit_changes c
        WHERE c.organization_id = limit_in_force.org AND c.type = limit_in_force.type
          AND c.effective <= limit_in_force.day
          AND (c.until IS NULL OR c.until >= limit_in_force.day)
        ORDER BY c.id DESC
        LIMIT 1
    ) AS change ON true
    LEFT JOIN LATERAL (
        SELECT u.daily_limit, u.date
        FROM usage_limits u
        WHERE change.daily_limit IS NULL
          AND u.organization_id = limit_in_force.org
          AND u.type = limit_in_force.type
          AND u.date <= limit_in_force.day
          AND NOT EXISTS (
              SELECT 1 FROM limit_changes k
              WHERE k.organization_id = limit_in_force.org AND k.type = limit_in_force.type
                AND k.effective <= u.date AND (k.until IS NULL OR k.until >= u.date))
        ORDER BY u.date DESC
        LIMIT 1
    ) AS latest ON true
$$
"""

# Migration 0010's function, for the downgrade.
_FUNCTION_0010 = """
CREATE FUNCTION limit_in_force(
    org bigint, type text, day date, OUT daily_limit integer, OUT since date)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(
               latest.daily_limit,
               (SELECT floor(t.default_daily_limit * plan_limit_factor(o.plan))::int
                FROM generation_types t, organizations o
                WHERE t.type = limit_in_force.type AND o.id = limit_in_force.org)),
           latest.date
    FROM (VALUES (1)) AS one (x)
    LEFT JOIN (
        SELECT u.daily_limit, u.date
        FROM usage_limits u
        WHERE u.organization_id = limit_in_force.org
          AND u.type = limit_in_force.type
          AND u.date <= limit_in_force.day
        ORDER BY u.date DESC
        LIMIT 1
    ) AS latest ON true
$$
"""


def upgrade() -> None:
    op.create_table(
        "limit_changes",
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("type", sa.Text(collation="C"), nullable=False),
        sa.Column("effective", sa.Date(), nullable=False),
        sa.Column("until", sa.Date(), nullable=True),
        sa.Column("daily_limit", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "until >= effective", name=op.f("ck_limit_changes_until_not_before_effective")
        ),
        sa.CheckConstraint(
            "daily_limit >= 0", name=op.f("ck_limit_changes_daily_limit_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_limit_changes_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["type"],
            ["generation_types.type"],
            name=op.f("fk_limit_changes_type_generation_types"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_limit_changes")),
    )
    op.create_index(
        op.f("ix_limit_changes_organization_id_type_effective"),
        "limit_changes",
        ["organization_id", "type", "effective"],
    )
    op.create_index(op.f("ix_limit_changes_type"), "limit_changes", ["type"])
    op.execute(
        "GRANT SELECT ON limit_changes TO dashboard_app, dashboard_reader, dashboard_auditor"
    )
    op.execute(
        "GRANT INSERT (organization_id, type, effective, until, daily_limit) "
        "ON limit_changes TO dashboard_app"
    )
    # The changes made so far, in the order they were made: open-ended, as they were.
    op.execute(
        """
        INSERT INTO limit_changes (organization_id, type, effective, daily_limit, created_at)
        SELECT organization_id, details ->> 'type', CAST(details ->> 'effective' AS date),
               CAST(details ->> 'new_limit' AS int), created_at
        FROM audit_log
        WHERE action = 'set_daily_limit'
        ORDER BY created_at, id
        """
    )
    op.execute("DROP FUNCTION limit_in_force(bigint, text, date)")
    op.execute(_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION limit_in_force(bigint, text, date)")
    op.execute(_FUNCTION_0010)
    op.drop_index(op.f("ix_limit_changes_type"), "limit_changes")
    op.drop_index(op.f("ix_limit_changes_organization_id_type_effective"), "limit_changes")
    op.drop_table("limit_changes")
