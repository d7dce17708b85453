"""Cross-organization reads that do not scan history.

At 10,000 organizations x 365 days the usage ranking summed ``usage_limits WHERE date
BETWEEN`` for every organization on every call (up to 1.3M rows at 5M generations), the
monthly trend did the same plus a ledger join on a local-date expression no index
serves, and today's quotas hash-joined the whole of ``usage_limits``.

- ``organization_daily_usage``: (organization_id, local date) -> generations, credits of
  that day and ``generations_through``/``credits_through``, the organization's totals up
  to and including that day (prefix sums). Any range is cum(<= end) - cum(< start): two
  index-only probes per organization whatever the range or the history (the primary key
  INCLUDEs the cumulative columns; the price is that their updates are not HOT). A
  generation on day d adds to d and to the rows
  after d (rare: only back-dated generations have later rows), under the
  organization's balance lock, so the sums stay exact.
- ``organization_monthly_usage``: (organization_id, local month) -> generations,
  credits, with an index on the month. The monthly trend reads whole months here
  (12 x organizations rows for a year) and only the partial first and last months from
  the prefix sums. The month index never changes on an update, so the upserts stay HOT.
- ``ix_usage_limits_date``: today's quotas read the two or three dates that are "today"
  somewhere on Earth, then each organization's own local today, instead of the history.
- ``ix_credit_ledger_created_at_organization_id``, ``ix_audit_log_created_at_organization_id``:
  the audit trail across organizations is newest first (ties by organization) in a UTC
  range: each source is read by a backward index scan cut at the LIMIT, then the two
  short lists are merged; the usage ranking's ledger part bounds the ledger by a UTC
  window first.

Both rollups are in the organization's local day, so ``queries.orgs.set_timezone``
rebuilds them; the app role may insert them, add to their counts and delete an
organization's rows for that. Created empty, then backfilled here from ``generations``
in the same transaction.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 20:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BACKFILL = (
    """
    INSERT INTO organization_daily_usage
        (organization_id, date, generations, credits, generations_through, credits_through)
    SELECT d.organization_id, d.date, d.generations, d.credits,
           sum(d.generations) OVER w, sum(d.credits) OVER w
    FROM (
        SELECT g.organization_id, (g.created_at AT TIME ZONE o.timezone)::date AS date,
               count(*) AS generations, sum(g.credits) AS credits
        FROM generations g JOIN organizations o ON o.id = g.organization_id
        GROUP BY 1, 2
    ) d
    WINDOW w AS (PARTITION BY d.organization_id ORDER BY d.date)
    """,
    """
    INSERT INTO organization_monthly_usage (month, organization_id, generations, credits)
    SELECT date_trunc('month', date)::date, organization_id, sum(generations), sum(credits)
    FROM organization_daily_usage
    GROUP BY 1, 2
    """,
)

_GRANTS = (
    """
    GRANT SELECT ON organization_daily_usage, organization_monthly_usage
    TO dashboard_app, dashboard_reader
    """,
    # record_generation inserts a day and adds to it and to the days after it;
    # set_timezone deletes an organization's rows and rebuilds them in the new zone.
    """
    GRANT INSERT (organization_id, date, generations, credits, generations_through,
                  credits_through),
          UPDATE (generations, credits, generations_through, credits_through), DELETE
    ON organization_daily_usage TO dashboard_app
    """,
    """
    GRANT INSERT (month, organization_id, generations, credits),
          UPDATE (generations, credits), DELETE
    ON organization_monthly_usage TO dashboard_app
    """,
)


def upgrade() -> None:
    op.create_table(
        "organization_daily_usage",
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("generations", sa.BigInteger(), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("generations_through", sa.BigInteger(), nullable=False),
        sa.Column("credits_through", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "generations > 0", name=op.f("ck_organization_daily_usage_generations_positive")
        ),
        sa.CheckConstraint(
            "credits >= 0", name=op.f("ck_organization_daily_usage_credits_not_negative")
        ),
        sa.CheckConstraint(
            "generations_through >= generations AND credits_through >= credits",
            name=op.f("ck_organization_daily_usage_through_covers_the_day"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_organization_daily_usage_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint(
            "organization_id",
            "date",
            name=op.f("pk_organization_daily_usage"),
            postgresql_include=["generations_through", "credits_through"],
        ),
    )
    op.create_table(
        "organization_monthly_usage",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("generations", sa.BigInteger(), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "month = date_trunc('month', month)",
            name=op.f("ck_organization_monthly_usage_first_of_month"),
        ),
        sa.CheckConstraint(
            "generations > 0", name=op.f("ck_organization_monthly_usage_generations_positive")
        ),
        sa.CheckConstraint(
            "credits >= 0", name=op.f("ck_organization_monthly_usage_credits_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_organization_monthly_usage_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint(
            "organization_id", "month", name=op.f("pk_organization_monthly_usage")
        ),
    )
    op.create_index(
        op.f("ix_organization_monthly_usage_month"), "organization_monthly_usage", ["month"]
    )
    op.create_index(op.f("ix_usage_limits_date"), "usage_limits", ["date"])
    op.create_index(
        op.f("ix_credit_ledger_created_at_organization_id"),
        "credit_ledger",
        ["created_at", "organization_id"],
    )
    op.create_index(
        op.f("ix_audit_log_created_at_organization_id"),
        "audit_log",
        ["created_at", "organization_id"],
    )
    for statement in _BACKFILL:
        op.execute(statement)
    for statement in _GRANTS:
        op.execute(statement)


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_log_created_at_organization_id"), table_name="audit_log")
    op.drop_index(op.f("ix_credit_ledger_created_at_organization_id"), table_name="credit_ledger")
    op.drop_index(op.f("ix_usage_limits_date"), table_name="usage_limits")
    # Dropping the tables drops their grants with them.
    op.drop_index(
        op.f("ix_organization_monthly_usage_month"), table_name="organization_monthly_usage"
    )
    op.drop_table("organization_monthly_usage")
    op.drop_table("organization_daily_usage")
