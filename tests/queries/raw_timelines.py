"""The timeline reads as they were before the rollups: every answer aggregated from raw
``generations`` rows (or ``usage_limits``). Kept as the oracle the rollup-backed reads
of queries/timelines.py must equal (tests/queries/test_rollup_reads.py)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Connection, text

from queries.checks import check_granularity, check_id, check_limit, check_range
from queries.frames import frame

TIMELINE_COLUMNS = {"bucket": "datetime64[s]", "generations": "int64", "credits": "int64"}
TYPED_TIMELINE_COLUMNS = {
    "bucket": "datetime64[s]",
    "type": "str",
    "generations": "int64",
    "credits": "int64",
}

# The zone the range is read in: the organization's own, or UTC.
_ZONE = (
    "(SELECT CASE WHEN :utc THEN 'UTC' ELSE o.timezone END FROM organizations o WHERE o.id = :org)"
)

_BUCKETS = """
    buckets AS (
        SELECT b::date AS bucket
        FROM generate_series(date_trunc(:unit, CAST(:start AS date)),
                             date_trunc(:unit, CAST(:end AS date)),
                             CAST('1 ' || :unit AS interval)) AS b
    )"""


def _bounds(zone: str) -> str:
    return f"""
    bounds AS (
        SELECT CAST(:start AS timestamp) AT TIME ZONE z.tz AS lower,
               (CAST(:end AS date) + 1)::timestamp AT TIME ZONE z.tz AS upper,
               z.tz
        FROM (SELECT {zone} AS tz) z
    )"""


def _timeline_sql(*, source: str, by_type: bool) -> str:
    type_col = "t.type, " if by_type else ""
    type_join = "CROSS JOIN generation_types t " if by_type else ""
    type_match = "AND a.type = t.type " if by_type else ""
    type_group = ", type" if by_type else ""
    if source == "rollup":
        agg = f"""
        agg AS (
            SELECT date_trunc(:unit, u.date)::date AS bucket{type_group.replace("type", "u.type")},
                   sum(u.used) AS generations, sum(u.credits_used) AS credits
            FROM usage_limits u
            WHERE u.organization_id = :org AND u.date BETWEEN :start AND :end
            GROUP BY 1{type_group.replace("type", "u.type")}
        )"""
        ctes = f"WITH {_BUCKETS},{agg}"
    else:
        user_filter = "AND g.user_id = :user " if source == "user" else ""
        agg = f"""
        agg AS (
            SELECT date_trunc(:unit, g.created_at AT TIME ZONE b.tz)::date AS bucket
                   {type_group.replace("type", "g.type")},
                   count(*) AS generations, sum(g.credits) AS credits
            FROM bounds b
            JOIN generations g
              ON g.organization_id = :org {user_filter}
             AND g.created_at >= b.lower AND g.created_at < b.upper
            GROUP BY 1{type_group.replace("type", "g.type")}
        )"""
        ctes = f"WITH {_BUCKETS},{_bounds(_ZONE)},{agg}"
    order = "ORDER BY b.bucket, t.type" if by_type else "ORDER BY b.bucket"
    return f"""
        {ctes}
        SELECT b.bucket, {type_col}coalesce(a.generations, 0) AS generations,
               coalesce(a.credits, 0) AS credits
        FROM buckets b {type_join}
        LEFT JOIN agg a ON a.bucket = b.bucket {type_match}
        {order}
    """


# Every variant is composed once, from the constant fragments above; values are
# always bound parameters.
_TIMELINES = {
    (source, by_type): text(_timeline_sql(source=source, by_type=by_type))
    for source in ("rollup", "generations", "user")
    for by_type in (False, True)
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
    source = "generations" if utc else "rollup"
    result = conn.execute(
        _TIMELINES[source, by_type],
        {"org": organization_id, "start": start, "end": end, "unit": unit, "utc": utc},
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
        _TIMELINES["user", by_type],
        {
            "org": organization_id,
            "user": user_id,
            "start": start,
            "end": end,
            "unit": unit,
            "utc": utc,
        },
    )
    return frame(result, TYPED_TIMELINE_COLUMNS if by_type else TIMELINE_COLUMNS)


_TOP_USERS = text(
    "WITH"
    + _bounds(_ZONE)
    + """,
    agg AS (
        SELECT g.user_id, count(*) AS generations, sum(g.credits) AS credits
        FROM bounds b
        JOIN generations g
          ON g.organization_id = :org
         AND g.created_at >= b.lower AND g.created_at < b.upper
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
        _TOP_USERS,
        {"org": organization_id, "start": start, "end": end, "limit": limit, "utc": utc},
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


_KPI_PARTS = {
    # In the organization's zone the totals come from the daily rollup (a few rows per
    # day); in UTC from the generations themselves.
    "rollup": """
            totals AS (
                SELECT coalesce(sum(u.used) FILTER (WHERE u.date >= :start), 0) AS generations,
                       coalesce(sum(u.credits_used) FILTER (WHERE u.date >= :start), 0)
                           AS credits,
                       coalesce(sum(u.used) FILTER (WHERE u.date < :start), 0)
                           AS previous_generations,
                       coalesce(sum(u.credits_used) FILTER (WHERE u.date < :start), 0)
                           AS previous_credits
                FROM usage_limits u
                WHERE u.organization_id = :org AND u.date BETWEEN :prev AND :end
            ),""",
    "generations": """
            totals AS (
                SELECT count(*) FILTER (WHERE g.created_at >= b.lower) AS generations,
                       coalesce(sum(g.credits) FILTER (WHERE g.created_at >= b.lower), 0)
                           AS credits,
                       count(*) FILTER (WHERE g.created_at < b.lower) AS previous_generations,
                       coalesce(sum(g.credits) FILTER (WHERE g.created_at < b.lower), 0)
                           AS previous_credits
                FROM b JOIN generations g
                  ON g.organization_id = :org
                 AND g.created_at >= b.prev_lower AND g.created_at < b.upper
            ),""",
}
# Active users: one index probe per member on (organization_id, user_id, created_at)
# instead of reading every generation of the period.
_KPIS = {
    source: text(
        "WITH z AS (SELECT "
        + _ZONE
        + """ AS tz),
            b AS (
                SELECT CAST(:prev AS timestamp) AT TIME ZONE z.tz AS prev_lower,
                       CAST(:start AS timestamp) AT TIME ZONE z.tz AS lower,
                       (CAST(:end AS date) + 1)::timestamp AT TIME ZONE z.tz AS upper
                FROM z
            ),"""
        + totals
        + """
            active AS (
                SELECT count(*) FILTER (WHERE EXISTS (
                           SELECT 1 FROM generations g
                           WHERE g.organization_id = :org AND g.user_id = u.id
                             AND g.created_at >= b.lower AND g.created_at < b.upper))
                           AS active_users,
                       count(*) FILTER (WHERE EXISTS (
                           SELECT 1 FROM generations g
                           WHERE g.organization_id = :org AND g.user_id = u.id
                             AND g.created_at >= b.prev_lower AND g.created_at < b.lower))
                           AS previous_active_users
                FROM b, users u
                WHERE u.organization_id = :org
            )
            SELECT * FROM totals, active
"""
    )
    for source, totals in _KPI_PARTS.items()
}


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
    first_day: dt.date | None = None
    # Whole days only here (the periods these oracles check have ended): see
    # tests/queries/test_kpis_until_now.py for periods that reach now.
    through: dt.datetime | None = None
    previous_through: dt.datetime | None = None

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


# The first day with data from the raw rows: the first generation's day in the zone.
_FIRST_DAY = text(
    """
    SELECT (SELECT min((g.created_at AT TIME ZONE z.tz)::date) FROM generations g
            WHERE g.organization_id = :org)
    FROM (SELECT """
    + _ZONE
    + """ AS tz) z
    """
)


def period_kpis(
    conn: Connection,
    *,
    organization_id: int,
    start: dt.date,
    end: dt.date,
    utc: bool = False,
) -> PeriodKpis:
    """Generations, credits and active users in [start, end] and in the period before it."""
    organization_id = check_id(organization_id)
    start, end = check_range(start, end)
    days = (end - start).days + 1
    previous_start = start - dt.timedelta(days=days)
    row = conn.execute(
        _KPIS["generations" if utc else "rollup"],
        {"org": organization_id, "prev": previous_start, "start": start, "end": end, "utc": utc},
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
        first_day=conn.execute(_FIRST_DAY, {"org": organization_id, "utc": utc}).scalar_one(),
    )
