"""Two exact rollups of generations, so no dashboard read aggregates raw generations.

- ``user_daily_usage``: (organization_id, user_id, date, type) -> generations, credits,
  where ``date`` is the organization's local date (like ``usage_limits``). Serves top
  users, user timelines and active users.
- ``quarter_hour_usage``: (organization_id, bucket, type) -> generations, credits, where
  ``bucket`` is a UTC quarter-hour. Every UTC offset in tzdata from 2000 on is a whole
  number of quarter-hours (UTC+5:30, UTC+5:45, UTC-9:30, Lord Howe's half-hour DST),
  so a local midnight of any zone is a bucket boundary: summing buckets gives exact UTC
  days, exact local days in every zone (DST days included) and the intraday pace.
  Whole hours could not give a UTC+5:45 organization its day.

Neither has a foreign key to ``generation_types``: every row comes from a generation,
whose type is checked, and the key would need one more index on each write. Both are
upserted in ``record_generation``'s transaction and filled by the demo loader.
The app role may insert them and add to their counts (ON CONFLICT DO UPDATE). For
``queries.orgs.set_timezone`` it may also update ``organizations.timezone`` and delete
an organization's ``user_daily_usage`` rows, which that write rebuilds for the new zone
in the same transaction (the quarter-hours do not depend on the zone). Tables are created empty: a database with generations recorded
before this revision is backfilled here, in the same transaction.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 19:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BACKFILL = (
    """
    INSERT INTO user_daily_usage (organization_id, user_id, date, type, generations, credits)
    SELECT g.organization_id, g.user_id, (g.created_at AT TIME ZONE o.timezone)::date, g.type,
           count(*), sum(g.credits)
    FROM generations g JOIN organizations o ON o.id = g.organization_id
    GROUP BY 1, 2, 3, 4
    """,
    """
    INSERT INTO quarter_hour_usage (organization_id, bucket, type, generations, credits)
    SELECT g.organization_id,
           date_bin('15 minutes', g.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'), g.type,
           count(*), sum(g.credits)
    FROM generations g
    GROUP BY 1, 2, 3
    """,
)

_GRANTS = (
    "GRANT SELECT ON user_daily_usage, quarter_hour_usage TO dashboard_app, dashboard_reader",
    """
    GRANT INSERT (organization_id, user_id, date, type, generations, credits),
          UPDATE (generations, credits)
    ON user_daily_usage TO dashboard_app
    """,
    # set_timezone (queries.orgs) moves an organization's zone and rebuilds its
    # per-user local days: the rollup's rows of the old days go.
    "GRANT DELETE ON user_daily_usage TO dashboard_app",
    "GRANT UPDATE (timezone) ON organizations TO dashboard_app",
    """
    GRANT INSERT (organization_id, bucket, type, generations, credits),
          UPDATE (generations, credits)
    ON quarter_hour_usage TO dashboard_app
    """,
)


def upgrade() -> None:
    op.create_table(
        "user_daily_usage",
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("type", sa.Text(collation="C"), nullable=False),
        sa.Column("generations", sa.Integer(), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "generations > 0", name=op.f("ck_user_daily_usage_generations_positive")
        ),
        sa.CheckConstraint("credits >= 0", name=op.f("ck_user_daily_usage_credits_not_negative")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_user_daily_usage_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "user_id"],
            ["users.organization_id", "users.id"],
            name=op.f("fk_user_daily_usage_organization_id_user_id_users"),
        ),
        sa.PrimaryKeyConstraint(
            "organization_id", "user_id", "date", "type", name=op.f("pk_user_daily_usage")
        ),
    )
    op.create_index(
        op.f("ix_user_daily_usage_organization_id_date"),
        "user_daily_usage",
        ["organization_id", "date"],
    )
    op.create_table(
        "quarter_hour_usage",
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.Text(collation="C"), nullable=False),
        sa.Column("generations", sa.Integer(), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "bucket = date_bin('15 minutes', bucket, TIMESTAMPTZ '2000-01-01 00:00:00+00')",
            name=op.f("ck_quarter_hour_usage_bucket_quarter_hour"),
        ),
        sa.CheckConstraint(
            "generations > 0", name=op.f("ck_quarter_hour_usage_generations_positive")
        ),
        sa.CheckConstraint("credits >= 0", name=op.f("ck_quarter_hour_usage_credits_not_negative")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_quarter_hour_usage_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint(
            "organization_id", "bucket", "type", name=op.f("pk_quarter_hour_usage")
        ),
    )
    for statement in _BACKFILL:
        op.execute(statement)
    for statement in _GRANTS:
        op.execute(statement)


def downgrade() -> None:
    # Dropping the tables drops their grants with them.
    op.execute("REVOKE UPDATE (timezone) ON organizations FROM dashboard_app")
    op.drop_table("quarter_hour_usage")
    op.drop_index(op.f("ix_user_daily_usage_organization_id_date"), table_name="user_daily_usage")
    op.drop_table("user_daily_usage")
