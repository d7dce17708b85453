"""Timelines for managers: generations and credits over time, per type and per user.

Dates are calendar dates in the organization's own time zone unless ``utc=True``.
Buckets are labelled by their first day (weeks start on Monday); every bucket of the
range is present, zero-filled, so a chart never skips an empty day.

Every read comes from an exact rollup maintained in each generation's transaction:

- organization-wide, in the organization's zone: ``usage_limits`` (per type and local
  day), on ``(organization_id, date)``;
- organization-wide, in UTC: ``quarter_hour_usage`` (per type and UTC quarter-hour), on
  its primary key ``(organization_id, bucket, type)``;
- per user, in the organization's zone: ``user_daily_usage`` (per user, local day and
  type), on ``(organization_id, user_id, date, type)`` or ``(organization_id, date)``.

Across organizations, :func:`all_organizations_timeline` counts the days of the company
zone: from ``usage_limits`` for the organizations whose own zone it is (their local days
are its days), from ``quarter_hour_usage`` on its primary key for the others (a local
midnight of any zone falls on a quarter-hour).

Two reads have no rollup of their grain and use the indexes of ``generations``: a
user's timeline and top users *in UTC* (a per-user UTC rollup would double the write
cost for a view the pages offer as an option), and active users in UTC (one index
probe per member, bounded by the number of members, not by traffic).

Each statement is written out in full, one per variant; values are bound parameters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Connection, TextClause, text

from queries.checks import (
    check_granularity,
    check_id,
    check_limit,
    check_range,
    check_timestamp,
    check_timezone,
)
from queries.errors import InvalidInput
from queries.frames import frame
from queries.models import PLANS

TIMELINE_COLUMNS = {"bucket": "datetime64[s]", "generations": "int64", "credits": "int64"}
TYPED_TIMELINE_COLUMNS = {
    "bucket": "datetime64[s]",
    "type": "str",
    "generations": "int64",
    "credits": "int64",
}

# ------------------------------------------------------------ organization timelines

_ORG_TIMELINE = text(
    """
    WITH buckets AS (
        SELECT b::date AS bucket
        FROM generate_series(date_trunc(:unit, CAST(:start AS date)),
                             date_trunc(:unit, CAST(:end AS date)),
                             CAST('1 ' || :unit AS interval)) AS b
    ),
    agg AS (
        SELECT date_trunc(:unit, u.date)::date AS bucket,
               sum(u.used) AS generations, sum(u.credits_used) AS credits
        FROM usage_limits u
        WHERE u.organization_id = :org AND u.date BETWEEN :start AND :end
        GROUP BY 1
    )
    SELECT b.bucket, coalesce(a.generations, 0) AS generations, coalesce(a.credits, 0) AS credits
    FROM buckets b
    LEFT JOIN agg a ON a.bucket = b.bucket
    ORDER BY b.bucket
    """
)
_ORG_TIMELINE_BY_TYPE = text(
    """
    WITH buckets AS (
        SELECT b::date AS bucket
        FROM generate_series(date_trunc(:unit, CAST(:start AS date)),
                             date_trunc(:unit, CAST(:end AS date)),
                             CAST('1 ' || :unit AS interval)) AS b
    ),
    agg AS (
        SELECT date_trunc(:unit, u.date)::date AS bucket, u.type,
               sum(u.used) AS generations, sum(u.credits_used) AS credits
        FROM usage_limits u
        WHERE u.organization_id = :org AND u.date BETWEEN :start AND :end
        GROUP BY 1, u.type
    )
    SELECT b.bucket, t.type, coalesce(a.generations, 0) AS generations,
           coalesce(a.credits, 0) AS credits
    FROM buckets b CROSS JOIN generation_types t
    LEFT JOIN agg a ON a.bucket = b.bucket AND a.type = t.type
    ORDER BY b.bucket, t.type
    """
)
# UTC days are whole runs of UTC quarter-hours: [start 00:00 UTC, end + 1 00:00 UTC).
_UTC_TIMELINE = text(
    """
    WITH buckets AS (
        SELECT b::date AS bucket
        FROM generate_series(date_trunc(:unit, CAST(:start AS date)),
                             date_trunc(:unit, CAST(:end AS date)),
                             CAST('1 ' || :unit AS interval)) AS b
    ),
    agg AS (
        SELECT date_trunc(:unit, q.bucket AT TIME ZONE 'UTC')::date AS bucket,
               sum(q.generations) AS generations, sum(q.credits) AS credits
        FROM quarter_hour_usage q
        WHERE q.organization_id = :org
          AND q.bucket >= CAST(:start AS timestamp) AT TIME ZONE 'UTC'
          AND q.bucket < (CAST(:end AS date) + 1)::timestamp AT TIME ZONE 'UTC'
        GROUP BY 1
    )
    SELECT b.bucket, coalesce(a.generations, 0) AS generations, coalesce(a.credits, 0) AS credits
    FROM buckets b
    LEFT JOIN agg a ON a.bucket = b.bucket
    ORDER BY b.bucket
    """
)
_UTC_TIMELINE_BY_TYPE = text(
    """
    WITH buckets AS (
        SELECT b::date AS bucket
        FROM generate_series(date_trunc(:unit, CAST(:start AS date)),
                             date_trunc(:unit, CAST(:end AS date)),
                             CAST('1 ' || :unit AS interval)) AS b
    ),
    agg AS (
        SELECT date_trunc(:unit, q.bucket AT TIME ZONE 'UTC')::date AS bucket, q.type,
               sum(q.generations) AS generations, sum(q.credits) AS credits
        FROM quarter_hour_usage q
        WHERE q.organization_id = :org
          AND q.bucket >= CAST(:start AS timestamp) AT TIME ZONE 'UTC'
          AND q.bucket < (CAST(:end AS date) + 1)::timestamp AT TIME ZONE 'UTC'
        GROUP BY 1, q.type
    )
    SELECT b.bucket, t.type, coalesce(a.generations, 0) AS generations,
           coalesce(a.credits, 0) AS credits
    FROM buckets b CROSS JOIN generation_types t
    LEFT JOIN agg a ON a.bucket = b.bucket AND a.type = t.type
    ORDER BY b.bucket, t.type
    """
)

# -------------------------------------------------------------------- user timelines

_USER_TIMELINE = text(
    """
    WITH buckets AS (
        SELECT b::date AS bucket
        FROM generate_series(date_trunc(:unit, CAST(:start AS date)),
                             date_trunc(:unit, CAST(:end AS date)),
                             CAST('1 ' || :unit AS interval)) AS b
    ),
    agg AS (
        SELECT date_trunc(:unit, d.date)::date AS bucket,
               sum(d.generations) AS generations, sum(d.credits) AS credits
        FROM user_daily_usage d
        WHERE d.organization_id = :org AND d.user_id = :user
          AND d.date BETWEEN :start AND :end
        GROUP BY 1
    )
    SELECT b.bucket, coalesce(a.generations, 0) AS generations, coalesce(a.credits, 0) AS credits
    FROM buckets b
    LEFT JOIN agg a ON a.bucket = b.bucket
    ORDER BY b.bucket
    """
)
_USER_TIMELINE_BY_TYPE = text(
    """
    WITH buckets AS (
        SELECT b::date AS bucket
        FROM generate_series(date_trunc(:unit, CAST(:start AS date)),
                             date_trunc(:unit, CAST(:end AS date)),
                             CAST('1 ' || :unit AS interval)) AS b
    ),
    agg AS (
        SELECT date_trunc(:unit, d.date)::date AS bucket, d.type,
               sum(d.generations) AS generations, sum(d.credits) AS credits
        FROM user_daily_usage d
        WHERE d.organization_id = :org AND d.user_id = :user
          AND d.date BETWEEN :start AND :end
        GROUP BY 1, d.type
    )
    SELECT b.bucket, t.type, coalesce(a.generations, 0) AS generations,
           coalesce(a.credits, 0) AS credits
    FROM buckets b CROSS JOIN generation_types t
    LEFT JOIN agg a ON a.bucket = b.bucket AND a.type = t.type
    ORDER BY b.bucket, t.type
    """
)
# In UTC, from the user's generations on (organization_id, user_id, created_at).
_USER_UTC_TIMELINE = text(
    """
    WITH buckets AS (
        SELECT b::date AS bucket
        FROM generate_series(date_trunc(:unit, CAST(:start AS date)),
                             date_trunc(:unit, CAST(:end AS date)),
                             CAST('1 ' || :unit AS interval)) AS b
    ),
    agg AS (
        SELECT date_trunc(:unit, g.created_at AT TIME ZONE 'UTC')::date AS bucket,
               count(*) AS generations, sum(g.credits) AS credits
        FROM generations g
        WHERE g.organization_id = :org AND g.user_id = :user
          AND g.created_at >= CAST(:start AS timestamp) AT TIME ZONE 'UTC'
          AND g.created_at < (CAST(:end AS date) + 1)::timestamp AT TIME ZONE 'UTC'
        GROUP BY 1
    )
    SELECT b.bucket, coalesce(a.generations, 0) AS generations, coalesce(a.credits, 0) AS credits
    FROM buckets b
    LEFT JOIN agg a ON a.bucket = b.bucket
    ORDER BY b.bucket
    """
)
_USER_UTC_TIMELINE_BY_TYPE = text(
    """
    WITH buckets AS (
        SELECT b::date AS bucket
        FROM generate_series(date_trunc(:unit, CAST(:start AS date)),
                             date_trunc(:unit, CAST(:end AS date)),
                             CAST('1 ' || :unit AS interval)) AS b
    ),
    agg AS (
        SELECT date_trunc(:unit, g.created_at AT TIME ZONE 'UTC')::date AS bucket, g.type,
               count(*) AS generations, sum(g.credits) AS credits
        FROM generations g
        WHERE g.organization_id = :org AND g.user_id = :user
          AND g.created_at >= CAST(:start AS timestamp) AT TIME ZONE 'UTC'
          AND g.created_at < (CAST(:end AS date) + 1)::timestamp AT TIME ZONE 'UTC'
        GROUP BY 1, g.type
    )
    SELECT b.bucket, t.type, coalesce(a.generations, 0) AS generations,
           coalesce(a.credits, 0) AS credits
    FROM buckets b CROSS JOIN generation_types t
    LEFT JOIN agg a ON a.bucket = b.bucket AND a.type = t.type
    ORDER BY b.bucket, t.type
    """
)

# (utc, by_type) -> statement
_ORG_TIMELINES: dict[tuple[bool, bool], TextClause] = {
    (False, False): _ORG_TIMELINE,
    (False, True): _ORG_TIMELINE_BY_TYPE,
    (True, False): _UTC_TIMELINE,
    (True, True): _UTC_TIMELINE_BY_TYPE,
}
_USER_TIMELINES: dict[tuple[bool, bool], TextClause] = {
    (False, False): _USER_TIMELINE,
    (False, True): _USER_TIMELINE_BY_TYPE,
    (True, False): _USER_UTC_TIMELINE,
    (True, True): _USER_UTC_TIMELINE_BY_TYPE,
}


def generation_timeline(
    conn: Connection,
    *,
    organization_id: int,
    start: dt.date,
    end: dt.date,
    granularity: str = "day",
    utc: bool = False,
    by_type: bool = False,
) -> pd.DataFrame:
    """Generations and credits of an organization per day/week/month.

    Columns: bucket (first day of the bucket), [type (str) if ``by_type``],
    generations (count), credits (sum of credits).
    """
    organization_id = check_id(organization_id)
    start, end = check_range(start, end)
    unit = check_granularity(granularity)
    result = conn.execute(
        _ORG_TIMELINES[utc, by_type],
        {"org": organization_id, "start": start, "end": end, "unit": unit},
    )
    return frame(result, TYPED_TIMELINE_COLUMNS if by_type else TIMELINE_COLUMNS)


def user_timeline(
    conn: Connection,
    *,
    organization_id: int,
    user_id: int,
    start: dt.date,
    end: dt.date,
    granularity: str = "day",
    utc: bool = False,
    by_type: bool = False,
) -> pd.DataFrame:
    """Generations and credits of one user of the organization per day/week/month.

    Columns: as :func:`generation_timeline`. A user of another organization has none.
    """
    organization_id = check_id(organization_id)
    user_id = check_id(user_id, "user_id")
    start, end = check_range(start, end)
    unit = check_granularity(granularity)
    result = conn.execute(
        _USER_TIMELINES[utc, by_type],
        {"org": organization_id, "user": user_id, "start": start, "end": end, "unit": unit},
    )
    return frame(result, TYPED_TIMELINE_COLUMNS if by_type else TIMELINE_COLUMNS)


# --------------------------------------------------------- across organizations

# The days of the company zone (:tz) for every organization the plans select. An
# organization whose own zone is the company's keeps its local days in usage_limits,
# which are then the company's days (a few rows per day and type); any other
# organization's company-zone day is a run of its quarter-hours (every local midnight of
# any zone is on one), read on quarter_hour_usage's key (organization_id, bucket, type)
# over the range. Summed by bucket and type in SQL: the answer is buckets x types rows.
_ALL_ORGS_TIMELINE = text(
    """
    WITH buckets AS (
        SELECT b::date AS bucket
        FROM generate_series(date_trunc(:unit, CAST(:start AS date)),
                             date_trunc(:unit, CAST(:end AS date)),
                             CAST('1 ' || :unit AS interval)) AS b
    ),
    orgs AS (
        SELECT o.id, o.timezone = CAST(:tz AS text) AS same_zone
        FROM organizations o
        WHERE CAST(:any_plan AS boolean) OR o.plan = ANY(CAST(:plans AS text[]))
    ),
    counted AS (
        SELECT date_trunc(:unit, u.date)::date AS bucket, u.type,
               sum(u.used) AS generations, sum(u.credits_used) AS credits
        FROM orgs o
        JOIN usage_limits u
          ON u.organization_id = o.id AND u.date BETWEEN :start AND :end
        WHERE o.same_zone
        GROUP BY 1, u.type
        UNION ALL
        SELECT date_trunc(:unit, (q.bucket AT TIME ZONE CAST(:tz AS text))::date)::date,
               q.type, sum(q.generations), sum(q.credits)
        FROM orgs o
        JOIN quarter_hour_usage q
          ON q.organization_id = o.id
         AND q.bucket >= CAST(:start AS timestamp) AT TIME ZONE CAST(:tz AS text)
         AND q.bucket < (CAST(:end AS date) + 1)::timestamp AT TIME ZONE CAST(:tz AS text)
        WHERE NOT o.same_zone
        GROUP BY 1, q.type
    ),
    agg AS (
        SELECT c.bucket, c.type, sum(c.generations) AS generations, sum(c.credits) AS credits
        FROM counted c
        GROUP BY c.bucket, c.type
    )
    SELECT b.bucket, t.type, coalesce(a.generations, 0) AS generations,
           coalesce(a.credits, 0) AS credits
    FROM buckets b CROSS JOIN generation_types t
    LEFT JOIN agg a ON a.bucket = b.bucket AND a.type = t.type
    ORDER BY b.bucket, t.type
    """
)


def all_organizations_timeline(
    conn: Connection,
    *,
    start: dt.date,
    end: dt.date,
    timezone: str = "UTC",
    granularity: str = "day",
    plans: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Generations and credits of every organization (of ``plans``; None or empty: all)
    per day/week/month of ``timezone`` (the company zone) and type.

    Columns: bucket (first day of the bucket), type (str), generations (count),
    credits (sum of credits).
    """
    start, end = check_range(start, end)
    tz = check_timezone(timezone)
    unit = check_granularity(granularity)
    if isinstance(plans, str) or not all(isinstance(p, str) for p in plans or ()):
        raise InvalidInput("plans must be a list of plan names.")
    chosen = sorted(set(plans or ()))
    unknown = [p for p in chosen if p not in PLANS]
    if unknown:
        raise InvalidInput(f"Unknown plan {unknown[0]!r}: use one of {', '.join(PLANS)}.")
    result = conn.execute(
        _ALL_ORGS_TIMELINE,
        {
            "start": start,
            "end": end,
            "tz": tz,
            "unit": unit,
            "any_plan": not chosen,
            "plans": chosen,
        },
    )
    return frame(result, TYPED_TIMELINE_COLUMNS)


_TOP_USERS = text(
    """
    WITH agg AS (
        SELECT d.user_id, sum(d.generations) AS generations, sum(d.credits) AS credits
        FROM user_daily_usage d
        WHERE d.organization_id = :org AND d.date BETWEEN :start AND :end
        GROUP BY d.user_id
    )
    SELECT a.user_id, u.name, u.email, a.generations, a.credits,
           coalesce(a.credits::float8 / nullif(sum(a.credits) OVER (), 0), 0) AS credit_share
    FROM agg a
    JOIN users u ON u.organization_id = :org AND u.id = a.user_id
    ORDER BY a.credits DESC, a.generations DESC, a.user_id
    LIMIT :limit
    """
)
# In UTC, from the generations of the range on (organization_id, created_at).
_TOP_USERS_UTC = text(
    """
    WITH agg AS (
        SELECT g.user_id, count(*) AS generations, sum(g.credits) AS credits
        FROM generations g
        WHERE g.organization_id = :org
          AND g.created_at >= CAST(:start AS timestamp) AT TIME ZONE 'UTC'
          AND g.created_at < (CAST(:end AS date) + 1)::timestamp AT TIME ZONE 'UTC'
        GROUP BY g.user_id
    )
    SELECT a.user_id, u.name, u.email, a.generations, a.credits,
           coalesce(a.credits::float8 / nullif(sum(a.credits) OVER (), 0), 0) AS credit_share
    FROM agg a
    JOIN users u ON u.organization_id = :org AND u.id = a.user_id
    ORDER BY a.credits DESC, a.generations DESC, a.user_id
    LIMIT :limit
    """
)


def top_users(
    conn: Connection,
    *,
    organization_id: int,
    start: dt.date,
    end: dt.date,
    limit: int = 10,
    utc: bool = False,
) -> pd.DataFrame:
    """The organization's users with the most credits in the range, most first.

    Columns: user_id (int), name, email (str), generations, credits (int),
    credit_share (float, 0..1, of the organization's credits in the range).
    """
    organization_id = check_id(organization_id)
    start, end = check_range(start, end)
    limit = check_limit(limit)
    result = conn.execute(
        _TOP_USERS_UTC if utc else _TOP_USERS,
        {"org": organization_id, "start": start, "end": end, "limit": limit},
    )
    return frame(
        result,
        {
            "user_id": "int64",
            "name": "str",
            "email": "str",
            "generations": "int64",
            "credits": "int64",
            "credit_share": "float64",
        },
    )


# In the organization's zone (or UTC). A period that reaches "now" is cut at the last
# whole quarter-hour before it, and the previous period's last day at the same local
# time, so an unfinished day is never compared with a whole one. Every bound is a local
# midnight or a quarter-hour, so totals are exact sums of quarter_hour_usage buckets;
# active users are one probe per member into generations on
# (organization_id, user_id, created_at) for each period.
_KPIS = text(
    """
    WITH z AS (
        SELECT CASE WHEN CAST(:utc AS boolean) THEN 'UTC' ELSE o.timezone END AS tz
        FROM organizations o WHERE o.id = :org
    ),
    b0 AS (
        SELECT z.tz,
               CAST(:prev AS timestamp) AT TIME ZONE z.tz AS prev_lower,
               CAST(:start AS timestamp) AT TIME ZONE z.tz AS lower,
               (CAST(:end AS date) + 1)::timestamp AT TIME ZONE z.tz AS full_upper,
               date_bin('15 minutes', coalesce(CAST(:now AS timestamptz), now()),
                        TIMESTAMPTZ '2000-01-01 00:00:00+00') AS cut
        FROM z
    ),
    b1 AS (
        SELECT b0.*,
               CASE WHEN b0.cut < b0.full_upper THEN greatest(b0.cut, b0.lower)
                    ELSE b0.full_upper END AS upper
        FROM b0
    ),
    b AS (
        SELECT b1.*,
               CASE WHEN b1.upper < b1.full_upper
                    THEN ((b1.upper AT TIME ZONE b1.tz) - make_interval(days => :days))
                         AT TIME ZONE b1.tz
                    ELSE b1.lower END AS prev_upper
        FROM b1
    ),
    totals AS (
        SELECT coalesce(sum(q.generations) FILTER (WHERE q.bucket >= b.lower), 0)
                   AS generations,
               coalesce(sum(q.credits) FILTER (WHERE q.bucket >= b.lower), 0) AS credits,
               coalesce(sum(q.generations) FILTER (WHERE q.bucket < b.prev_upper), 0)
                   AS previous_generations,
               coalesce(sum(q.credits) FILTER (WHERE q.bucket < b.prev_upper), 0)
                   AS previous_credits
        FROM b JOIN quarter_hour_usage q
          ON q.organization_id = :org
         AND q.bucket >= b.prev_lower AND q.bucket < b.upper
         AND (q.bucket < b.prev_upper OR q.bucket >= b.lower)
    ),
    active AS (
        SELECT count(*) FILTER (WHERE EXISTS (
                   SELECT 1 FROM generations g
                   WHERE g.organization_id = :org AND g.user_id = u.id
                     AND g.created_at >= b.lower AND g.created_at < b.upper))
                   AS active_users,
               count(*) FILTER (WHERE EXISTS (
                   SELECT 1 FROM generations g
                   WHERE g.organization_id = :org AND g.user_id = u.id
                     AND g.created_at >= b.prev_lower AND g.created_at < b.prev_upper))
                   AS previous_active_users
        FROM b, users u
        WHERE u.organization_id = :org
    ),
    -- The first day with data in the zone: the organization's first quarter-hour, on
    -- the primary key (organization_id, bucket, type).
    first AS (
        SELECT (SELECT (q.bucket AT TIME ZONE b.tz)::date FROM quarter_hour_usage q
                WHERE q.organization_id = :org ORDER BY q.bucket LIMIT 1) AS first_day
        FROM b
    )
    SELECT totals.*, active.*, first.*,
           CASE WHEN b.upper < b.full_upper THEN b.upper END AS through,
           CASE WHEN b.upper < b.full_upper THEN b.prev_upper END AS previous_through
    FROM b, totals, active, first
    """
)


@dataclass(frozen=True, slots=True)
class PeriodKpis:
    """An organization's totals for a period and for the period of equal length before."""

    start: dt.date
    end: dt.date
    generations: int
    credits: int
    active_users: int
    previous_generations: int
    previous_credits: int
    previous_active_users: int
    # The organization's first day with data (its first generation's day in the
    # period's zone), None before its first generation.
    first_day: dt.date | None = None
    # When the period reaches now: the instant it is counted up to (the last whole
    # quarter-hour), and the same local time on the previous period's last day, up to
    # which that one is counted. None when both periods are whole days.
    through: dt.datetime | None = None
    previous_through: dt.datetime | None = None

    @property
    def previous_start(self) -> dt.date:
        return self.start - dt.timedelta(days=self.previous_days)

    @property
    def previous_days(self) -> int:
        """The length of the previous period (that of the period)."""
        return (self.end - self.start).days + 1

    @property
    def previous_days_with_data(self) -> int:
        """How many days of the previous period lie on or after :attr:`first_day`: less
        than :attr:`previous_days` when the organization's data starts inside it (the
        change then compares a whole period with a part of one)."""
        if self.first_day is None:
            return 0
        first = max(self.first_day, self.previous_start)
        return max(0, (self.start - first).days)

    @property
    def previous_partly_covered(self) -> bool:
        return self.previous_days_with_data < self.previous_days

    @staticmethod
    def _change(now: int, before: int) -> float | None:
        return None if before == 0 else (now - before) / before

    @property
    def generations_change(self) -> float | None:
        """Relative change against the previous period (0.25 = +25 %); None if it was 0."""
        return self._change(self.generations, self.previous_generations)

    @property
    def credits_change(self) -> float | None:
        return self._change(self.credits, self.previous_credits)

    @property
    def active_users_change(self) -> float | None:
        return self._change(self.active_users, self.previous_active_users)


def period_kpis(
    conn: Connection,
    *,
    organization_id: int,
    start: dt.date,
    end: dt.date,
    utc: bool = False,
    now: dt.datetime | None = None,
) -> PeriodKpis:
    """Generations, credits and active users in [start, end] and in the period of equal
    length before it, and the organization's first day with data (how much of the
    previous period has any). A period that reaches ``now`` (default: the database's
    clock) is counted up to its last whole quarter-hour and the previous one up to the
    same local time of its last day (``through``, ``previous_through``): like with like."""
    organization_id = check_id(organization_id)
    start, end = check_range(start, end)
    if now is not None:
        now = check_timestamp(now, "now")
    days = (end - start).days + 1
    previous_start = start - dt.timedelta(days=days)
    row = conn.execute(
        _KPIS,
        {
            "org": organization_id,
            "prev": previous_start,
            "start": start,
            "end": end,
            "utc": utc,
            "now": now,
            "days": days,
        },
    ).one()
    return PeriodKpis(
        start=start,
        end=end,
        generations=int(row.generations),
        credits=int(row.credits),
        active_users=int(row.active_users),
        previous_generations=int(row.previous_generations),
        previous_credits=int(row.previous_credits),
        previous_active_users=int(row.previous_active_users),
        first_day=row.first_day,
        through=row.through,
        previous_through=row.previous_through,
    )
