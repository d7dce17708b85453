"""The quota rule, written once in the database: a day's utilization and its status.

``quota_utilization(used, daily_limit)`` and ``quota_status(used, daily_limit,
threshold)`` were spelled out as CASE expressions in every read of today's quotas (the
full list, the filtered page, the heatmap), three copies of one business rule that could
drift. Both are IMMUTABLE single-expression SQL functions, which the planner inlines, so
plans and speed are those of the CASE expressions. Functions are executable by PUBLIC,
so dashboard_app and dashboard_reader need no grant.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 19:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION quota_utilization(used bigint, daily_limit bigint)
        RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE
        RETURN CASE WHEN daily_limit > 0 THEN used::float8 / daily_limit
                    WHEN used > 0 THEN 'Infinity'::float8
                    ELSE 0 END
        """
    )
    op.execute(
        """
        CREATE FUNCTION quota_status(used bigint, daily_limit bigint, threshold float8)
        RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
        RETURN CASE WHEN used > daily_limit THEN 'over'
                    WHEN used = daily_limit THEN 'at limit'
                    WHEN used >= threshold * daily_limit THEN 'near'
                    ELSE 'ok' END
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION quota_status(bigint, bigint, float8)")
    op.execute("DROP FUNCTION quota_utilization(bigint, bigint)")
