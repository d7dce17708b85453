"""``usual_days``: the usual day of each (organization, local date), kept for the forecast.

``quota_forecast`` weighs today against the organization's usual day: its generations
(all types) per local clock hour on the same local weekday of the 4 weeks before. It
read four ranges of ``quarter_hour_usage`` per organization and grouped them through
the zone at every call, then expanded 24 weighted hours per organization: 1.3-2.0 s at
10,000 organizations (issue 17). A row here is that day, computed once, as prefix sums
over the day's real hours (``usual_before[i + 1]``: the usual generations of the hours
before hour ``i``, the last element the whole day), so "the share of the usual day done
by now" is two array reads.

``usual_day(organization_id, day)`` is the one definition: the trigger, the recount,
the demo loader and the forecast's fallback all call it. A row also records what it was
computed from: the zone and ``generations_before``, the organization's generations
before the day (``organization_daily_usage``). Generations are only ever added, so a row
whose zone and count still match is exact; the forecast checks that with one index-only
probe and computes the day afresh when not (a late write to an earlier day, a changed
zone, no row yet). Nothing on the write path beyond the first generation of an
(organization, type, local day): an AFTER INSERT trigger on ``usage_limits`` (the quota
upsert inserts only then; a conflict fires UPDATE triggers, not INSERT ones) writes the
row, or refreshes it when stale, and drops the organization's rows older than the day
before (nothing reads them).

The app role writes the rows (the trigger runs as the writer; ``set_timezone``
rebuilds an organization's). Filled for today; the forecast computes what is missing.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The hours are those the forecast walks: every hour from local midnight (23, 24 or 25
# of them), each with the usual generations of its local clock hour; a fall-back day's
# repeated hour counts in one clock hour, as extract(hour) groups it.
_USUAL_DAY = """
CREATE FUNCTION usual_day(org bigint, day date)
RETURNS TABLE (timezone text, generations_before bigint, usual_before bigint[])
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT o.timezone,
           coalesce((SELECT d.generations_through FROM organization_daily_usage d
                     WHERE d.organization_id = org AND d.date < day
                     ORDER BY d.date DESC LIMIT 1), 0),
           (SELECT array_agg(c.before ORDER BY c.i) FROM (
                SELECT 0 AS i, CAST(0 AS bigint) AS before
                UNION ALL
                SELECT h.i, CAST(sum(coalesce(u.generations, 0)) OVER (ORDER BY h.i) AS bigint)
                FROM (
                    SELECT row_number() OVER (ORDER BY s.h) AS i,
                           extract(hour FROM s.h AT TIME ZONE o.timezone)::int AS local_hour
                    FROM generate_series(
                        day::timestamp AT TIME ZONE o.timezone,
                        (day + 1)::timestamp AT TIME ZONE o.timezone - interval '1 hour',
                        interval '1 hour') AS s(h)
                ) h
                LEFT JOIN (
                    SELECT extract(hour FROM q.bucket AT TIME ZONE o.timezone)::int
                               AS local_hour,
                           sum(q.generations) AS generations
                    FROM generate_series(1, 4) AS w(k)
                    JOIN quarter_hour_usage q
                      ON q.organization_id = org
                     AND q.bucket >= (day - 7 * w.k)::timestamp AT TIME ZONE o.timezone
                     AND q.bucket < (day - 7 * w.k + 1)::timestamp AT TIME ZONE o.timezone
                    GROUP BY 1
                ) u USING (local_hour)
            ) c)
    FROM organizations o WHERE o.id = org
$fn$
"""

_KEEP = """
CREATE FUNCTION keep_usual_day() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO usual_days (organization_id, date, timezone, generations_before, usual_before)
    SELECT NEW.organization_id, NEW.date, u.timezone, u.generations_before, u.usual_before
    FROM usual_day(NEW.organization_id, NEW.date) u
    ON CONFLICT (organization_id, date) DO UPDATE
        SET timezone = excluded.timezone,
            generations_before = excluded.generations_before,
            usual_before = excluded.usual_before
        WHERE (usual_days.timezone, usual_days.generations_before)
              IS DISTINCT FROM (excluded.timezone, excluded.generations_before);
    -- Only today's is read: the table holds a day or two per organization, not a year.
    DELETE FROM usual_days
    WHERE organization_id = NEW.organization_id AND date < NEW.date - 1;
    RETURN NULL;
END
$fn$
"""

# Only a row that counts use: a limit set ahead for a day with none is no usual day yet.
_TRIGGER = """
CREATE TRIGGER usage_limits_keep_usual_day AFTER INSERT ON usage_limits
FOR EACH ROW WHEN (NEW.used > 0) EXECUTE FUNCTION keep_usual_day()
"""

# Today's usual day of every organization with use today, so the forecast does not
# compute them all until tomorrow's first generations (as recounts.KEEP_USUAL_DAYS).
_BACKFILL = """
INSERT INTO usual_days (organization_id, date, timezone, generations_before, usual_before)
SELECT t.organization_id, t.date, f.timezone, f.generations_before, f.usual_before
FROM (
    SELECT DISTINCT u.organization_id, u.date
    FROM usage_limits u JOIN organizations o ON o.id = u.organization_id
    WHERE u.date BETWEEN CAST(now() AT TIME ZONE 'UTC' AS date) - 1
                     AND CAST(now() AT TIME ZONE 'UTC' AS date) + 1
      AND u.date = (now() AT TIME ZONE o.timezone)::date AND u.used > 0
) t
CROSS JOIN LATERAL usual_day(t.organization_id, t.date) f
"""

_GRANTS = (
    "GRANT SELECT ON usual_days TO dashboard_app, dashboard_reader, dashboard_auditor",
    # The trigger runs as the writer of the generation; set_timezone rebuilds an
    # organization's rows.
    """
    GRANT INSERT (organization_id, date, timezone, generations_before, usual_before),
          UPDATE (timezone, generations_before, usual_before), DELETE
    ON usual_days TO dashboard_app
    """,
)


def upgrade() -> None:
    op.create_table(
        "usual_days",
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("timezone", sa.Text(), nullable=False),
        sa.Column("generations_before", sa.BigInteger(), nullable=False),
        sa.Column("usual_before", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_usual_days_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "date", name=op.f("pk_usual_days")),
    )
    op.execute(_USUAL_DAY)
    op.execute(_KEEP)
    op.execute(_TRIGGER)
    op.execute(_BACKFILL)
    for statement in _GRANTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER usage_limits_keep_usual_day ON usage_limits")
    op.execute("DROP FUNCTION keep_usual_day()")
    op.execute("DROP FUNCTION usual_day(bigint, date)")
    # Dropping the table drops its grants with it.
    op.drop_table("usual_days")
