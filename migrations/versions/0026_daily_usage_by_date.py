"""``ix_organization_daily_usage_date_organization_id``: the running totals of every
organization on one local date, as a range of one index.

``low_runway`` needs, for every organization, its running total before its local today
and before the burn window. By organization (the primary key) that is a probe each,
20,000 at 10,000 organizations: 104 of the statement's 133 ms at 100M (issue 17). An
organization with use on the day before (today - 1, or today - 1 - burn days) has its
answer on that exact date, so the read takes those rows from one range of this index
per local "today" in use (two or three) and probes only the organizations without a row
there. INCLUDE: the totals come from the index alone.

What it costs a write: ``record_generation`` updates the day's row, and that update is
never HOT (the primary key INCLUDEs the running totals, which change), so every index on
the table gets an entry per generation: this one is one more. Measured in
docs/performance.md ("low runway from a date-first index").

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-08 03:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_organization_daily_usage_date_organization_id"),
        "organization_daily_usage",
        ["date", "organization_id"],
        postgresql_include=["generations_through", "credits_through"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_organization_daily_usage_date_organization_id"),
        table_name="organization_daily_usage",
    )
