"""``usage_before(organization_id, zone, at)``: an organization's generations and credits
before an instant, exact, from its rollups.

The cross-organization reads count a window of the company zone (``DASHBOARD_TIMEZONE``)
for organizations that keep their daily rollups in their own zones. An organization's
use before an instant is the running total through its last whole local day before it
(``organization_daily_usage.*_through``) plus that local day's quarter-hours before it
(``quarter_hour_usage``); a window is the difference of its two edges. Exact for any pair
of zones, because every local midnight falls on a quarter-hour. Two index probes and at
most a day of quarter-hours per organization and edge.

Three reads of ``queries.usage`` used the same 20 lines of SQL twice each; this is that
rule written once. A plain ``LANGUAGE sql`` STABLE function with one SELECT, so the
planner inlines it into the caller's LATERAL join (no function call per row). Every role
may execute it (PUBLIC, PostgreSQL's default for functions).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 02:25:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTION = """
CREATE FUNCTION usage_before(organization_id bigint, zone text, at timestamptz)
RETURNS TABLE (generations bigint, credits bigint)
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT CAST(coalesce(p.generations_through, 0) + coalesce(q.generations, 0) AS bigint),
           CAST(coalesce(p.credits_through, 0) + coalesce(q.credits, 0) AS bigint)
    FROM (SELECT (at AT TIME ZONE zone)::date AS day) t
    LEFT JOIN LATERAL (
        SELECT d.generations_through, d.credits_through FROM organization_daily_usage d
        WHERE d.organization_id = usage_before.organization_id AND d.date < t.day
        ORDER BY d.date DESC LIMIT 1
    ) p ON true
    LEFT JOIN LATERAL (
        SELECT sum(q.generations) AS generations, sum(q.credits) AS credits
        FROM quarter_hour_usage q
        WHERE q.organization_id = usage_before.organization_id
          AND q.bucket >= t.day::timestamp AT TIME ZONE zone
          AND q.bucket < at
    ) q ON true
$fn$
"""


def upgrade() -> None:
    op.execute(_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION usage_before(bigint, text, timestamptz)")
