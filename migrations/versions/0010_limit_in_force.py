"""The limit in force, written once in the database: ``limit_in_force(org, type, day)``.

"The limit in force" on a day is the day's own ``usage_limits`` row's limit, else the
latest earlier day's, else the type's default times the plan's factor. It was written
four times (recording a generation, changing a limit, recounting after a time zone
change, and in pandas on the Quotas page), with the plan factors passed in from
Python. Now:

- ``plan_limit_factor(plan)``: the factor a plan multiplies the types' default daily
  limits by, a business rule like ``quota_status`` (migration 0006). An IMMUTABLE
  single-expression function, so the planner inlines it; ``numeric`` so that the
  default is exactly ``floor(default * factor)`` (no binary fraction below a whole
  number). A plan the function does not name gets 1, as before.
  ``queries.models.PLAN_LIMIT_FACTOR`` mirrors it for the demo loader, and a test
  pins the two equal.
- ``limit_in_force(org, type, day)``: one row ``(daily_limit, since)``; ``since`` is
  the day of the row whose limit is in force, NULL for the plan default;
  ``daily_limit`` is NULL only for an unknown organization or type. Use it in FROM,
  ``CROSS JOIN LATERAL limit_in_force(o.id, t.type, d.day) AS f``, or in an
  expression, ``(limit_in_force(:org, :type, :day)).daily_limit``. STABLE, so it reads
  the calling statement's snapshot.

  Why OUT parameters (one record, not a set, not a bare int): the page needs where the
  limit comes from, so one lookup returns both. A set-returning SQL function would be
  inlined into the caller, but its body is then parsed again each time the caller is
  planned, and record_generation's statement is planned on every call (no server-side
  prepared statements, for PgBouncer): +0.18 ms planning per generation, measured. A
  function that is not a set runs its own plan, which PostgreSQL 18 caches for the
  session (15 to 17 plan it once per calling statement, as inlining would); measured on record_generation's statement it costs what the inline
  subqueries it replaces cost.

  Its body is a string, not a SQL-standard ``BEGIN ATOMIC`` body: that one would
  record a dependency on the tables it reads, and the demo loader swaps freshly loaded
  tables in with ``DROP TABLE`` (``tooling/staging.py``), which such a dependency
  refuses.

Functions are executable by PUBLIC and run with the caller's rights, so
dashboard_app and dashboard_reader need no grant (both read the three tables).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 22:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION plan_limit_factor(plan text)
        RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE
        RETURN CASE plan WHEN 'free' THEN 0.05
                         WHEN 'starter' THEN 0.3
                         WHEN 'pro' THEN 1
                         WHEN 'enterprise' THEN 5
                         ELSE 1 END
        """
    )
    # The latest row on or before the day: one backward probe of
    # uq_usage_limits_organization_id_type_date. The parameters are qualified with the
    # function's name, because a column of the same name would take precedence.
    op.execute(
        """
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
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION limit_in_force(bigint, text, date)")
    op.execute("DROP FUNCTION plan_limit_factor(text)")
