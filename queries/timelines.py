"""Timelines for managers: generations and credits over time, per type and per user.

Dates are calendar dates in the organization's own time zone unless ``utc=True``.
Buckets are labelled by their first day (weeks start on Monday); every bucket of the
range is present, zero-filled, so a chart never skips an empty day.

Every read comes from an exact rollup maintained in each generation's transaction:

- organization-wide, in the organization's zone: ``usage_limits`` (per type and local
  day), on ``(organization_id, date)``;
- organization-wide, in UTC: the local days of ``usage_limits`` plus, at each bucket
  edge, the ``quarter_hour_usage`` rows between the UTC midnight and the nearest local
  midnight, on its primary key ``(organization_id, bucket, type)``: about 12 hours of
  quarter-hours per edge at most, instead of every quarter-hour of the range;
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

The timeline statements are built once, at import, by one builder from shared pieces
(SQLAlchemy Core): the buckets of the range, one source's rows summed per bucket, the
zero-filled join. Values are bound parameters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import pandas as pd
from sqlalchemy import (
    CTE,
    TIMESTAMP,
    BigInteger,
    Boolean,
    ColumnElement,
    Connection,
    Date,
    FromClause,
    Integer,
    Select,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    not_,
    or_,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION, INTERVAL

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
from queries.models import (
    PLANS,
    Generation,
    GenerationType,
    Organization,
    QuarterHourUsage,
    UsageLimit,
    User,
    UserDailyUsage,
)

TIMELINE_COLUMNS = {"bucket": "datetime64[s]", "generations": "int64", "credits": "int64"}
TYPED_TIMELINE_COLUMNS = {
    "bucket": "datetime64[s]",
    "type": "str",
    "generations": "int64",
    "credits": "int64",
}

# ------------------------------------------------------------------ the statements
#
# Every timeline is one shape: the buckets of the range (generate_series), the rows of
# one rollup (or index) summed per bucket [and type], and the buckets [x types] left-
# joined to those sums, zero-filled. What varies is where the rows come from, which
# ``_Source`` says (an organization's UTC days are local days corrected at the edges:
# ``_utc_days_from_local_days``); ``_timeline_statement`` puts the pieces together.
# Each statement is built once, at import, into ``_TIMELINES``.

_usage_limits: Table = UsageLimit.__table__  # type: ignore[assignment]
_quarter_hours: Table = QuarterHourUsage.__table__  # type: ignore[assignment]
_user_days: Table = UserDailyUsage.__table__  # type: ignore[assignment]
_generations: Table = Generation.__table__  # type: ignore[assignment]
_organizations: Table = Organization.__table__  # type: ignore[assignment]
_users: Table = User.__table__  # type: ignore[assignment]
_types: Table = GenerationType.__table__  # type: ignore[assignment]

_org = bindparam("org", type_=BigInteger)
_user = bindparam("user", type_=BigInteger)
_start = bindparam("start", type_=Date)
_end = bindparam("end", type_=Date)
_unit = bindparam("unit", type_=Text)
_UTC = literal_column("'UTC'", Text)
_ZERO = literal_column("0", Integer)

Subject = Literal["organization", "user"]
Zone = Literal["local", "utc"]


@dataclass(frozen=True, slots=True)
class _Source:
    """Rows to sum: their day (a date or a timestamp), type, generations and credits
    (aggregates), from a table filtered to the organization and range."""

    day: ColumnElement[Any]
    type: ColumnElement[Any]
    generations: ColumnElement[Any]
    credits: ColumnElement[Any]
    table: FromClause
    where: tuple[ColumnElement[bool], ...]


def _in_days(column: ColumnElement[Any], zone: ColumnElement[Any]) -> ColumnElement[bool]:
    """``column`` in [start 00:00, end + 1 00:00) of ``zone``: a range on its index."""
    after_end = cast(cast(_end, Date) + literal_column("1", Integer), TIMESTAMP)
    return and_(
        column >= func.timezone(zone, cast(_start, TIMESTAMP)),
        column < func.timezone(zone, after_end),
    )


def _user_rows(zone: Zone) -> tuple[_Source, ColumnElement[Any]]:
    """The organization's rows of the user grain and their user id: ``user_daily_usage``
    in its zone; in UTC (no rollup of that grain) its generations on
    (organization_id, user_id, created_at)."""
    if zone == "local":
        d = _user_days.alias("d")
        return _Source(
            d.c.date,
            d.c.type,
            func.sum(d.c.generations),
            func.sum(d.c.credits),
            d,
            (d.c.organization_id == _org, d.c.date.between(_start, _end)),
        ), d.c.user_id
    g = _generations.alias("g")
    return _Source(
        func.timezone(_UTC, g.c.created_at),
        g.c.type,
        func.count(),
        func.sum(g.c.credits),
        g,
        (g.c.organization_id == _org, _in_days(g.c.created_at, _UTC)),
    ), g.c.user_id


def _source(subject: Subject, zone: Zone) -> _Source:
    """Where a timeline's rows come from: the user's rows, or the organization's local
    days in ``usage_limits`` (its UTC days are :func:`_utc_days_from_local_days`)."""
    if subject == "user":
        rows, user_id = _user_rows(zone)
        return replace(rows, where=(*rows.where, user_id == _user))
    u = _usage_limits.alias("u")
    return _Source(
        u.c.date,
        u.c.type,
        func.sum(u.c.used),
        func.sum(u.c.credits_used),
        u,
        (u.c.organization_id == _org, u.c.date.between(_start, _end)),
    )


def _bucket_of(day: ColumnElement[Any]) -> ColumnElement[Any]:
    """The first day of the bucket (day, week from Monday, month) that ``day`` is in."""
    return cast(func.date_trunc(_unit, day), Date)


def _per_bucket(source: _Source, *, by_type: bool) -> Select[Any]:
    """The source's rows summed per bucket [and type]."""
    bucket = _bucket_of(source.day)
    keys = (bucket, source.type) if by_type else (bucket,)
    return (
        select(
            bucket.label("bucket"),
            *((source.type.label("type"),) if by_type else ()),
            source.generations.label("generations"),
            source.credits.label("credits"),
        )
        .select_from(source.table)
        .where(*source.where)
        .group_by(*keys)
    )


def _zero_filled(agg: CTE, *, by_type: bool) -> Select[Any]:
    """Every bucket of the range [x every type] with the sums of ``agg``, 0 where none,
    in order."""
    series = func.generate_series(
        func.date_trunc(_unit, cast(_start, Date)),
        func.date_trunc(_unit, cast(_end, Date)),
        cast(literal_column("'1 '", Text).concat(_unit), INTERVAL),
    ).column_valued("b")
    b = select(cast(series, Date).label("bucket")).cte("buckets").alias("b")
    a = agg.alias("a")
    counts = (
        func.coalesce(a.c.generations, _ZERO).label("generations"),
        func.coalesce(a.c.credits, _ZERO).label("credits"),
    )
    if not by_type:
        return (
            select(b.c.bucket, *counts)
            .select_from(b.outerjoin(a, a.c.bucket == b.c.bucket))
            .order_by(b.c.bucket)
        )
    t = _types.alias("t")
    on = and_(a.c.bucket == b.c.bucket, a.c.type == t.c.type)
    return (
        select(b.c.bucket, t.c.type, *counts)
        .select_from(b.join(t, true()).outerjoin(a, on))
        .order_by(b.c.bucket, t.c.type)
    )


def _regrouped(counted: CTE, *, by_type: bool) -> CTE:
    """``counted``'s (bucket, type, generations, credits) rows summed per bucket [and type]."""
    c = counted.c
    keys = (c.bucket, c.type) if by_type else (c.bucket,)
    return (
        select(
            *keys,
            func.sum(c.generations).label("generations"),
            func.sum(c.credits).label("credits"),
        )
        .group_by(*keys)
        .cte("agg")
    )


_DAY = literal_column("interval '1 day'", INTERVAL)


def _utc_days_from_local_days(*, by_type: bool) -> CTE:
    """An organization's UTC buckets as its local days plus the quarter-hours between
    each bucket edge's UTC midnight and the nearest local midnight.

    A UTC bucket [X, Y) is the local days [n(X), n(Y)) (n: the local day whose midnight
    is nearest the UTC one) plus the quarter-hours from X's UTC midnight to n(X)'s local
    midnight, minus those from Y's to n(Y)'s (signed: added when the local midnight is
    later). Every local midnight is on a quarter-hour, so the sum is exact in any zone,
    DST days included, and it reads usage_limits' days and about 12 hours of
    quarter-hours per edge at most instead of all 96 quarter-hours of every day.
    """
    o, u, q = _organizations.alias("o"), _usage_limits.alias("u"), _quarter_hours.alias("q")
    tz = select(o.c.timezone).where(o.c.id == _org).scalar_subquery()
    series = func.generate_series(
        cast(cast(_start, Date), TIMESTAMP), cast(cast(_end, Date), TIMESTAMP) + _DAY, _DAY
    ).column_valued("x")
    # Every UTC day of the range and the day after it (no bucket: only its edge counts).
    near = select(
        cast(series, Date).label("x"),
        case((cast(series, Date) <= cast(_end, Date), _bucket_of(series))).label("bucket"),
        func.timezone(_UTC, series).label("utc_midnight"),
        cast(
            func.timezone(tz, func.timezone(_UTC, series))
            + literal_column("interval '12 hours'", INTERVAL),
            Date,
        ).label("n"),
    ).cte("near")
    one = literal_column("1", Integer)
    a, b, p = near.alias("day"), near.alias("next_day"), near.alias("previous_day")
    local_days = (
        select(
            a.c.bucket,
            cast(
                func.generate_series(cast(a.c.n, TIMESTAMP), cast(b.c.n, TIMESTAMP) - _DAY, _DAY),
                Date,
            ).label("day"),
        )
        .select_from(a.join(b, b.c.x == a.c.x + one))
        .cte("local_days")
    )
    # Materialized: inlined, the planner joins the edges to all of the organization's
    # quarter-hours instead of one range probe of pk_quarter_hour_usage per edge.
    edges = (
        select(
            a.c.bucket,
            p.c.bucket.label("previous"),
            a.c.utc_midnight,
            func.timezone(tz, cast(a.c.n, TIMESTAMP)).label("local_midnight"),
        )
        .select_from(a.outerjoin(p, p.c.x == a.c.x - one))
        .where(a.c.bucket.is_distinct_from(p.c.bucket))
        .cte("edges")
        .prefix_with("MATERIALIZED")
    )
    e = edges.c
    # Summed inside a LATERAL subquery per edge: its GROUP BY keeps PostgreSQL from
    # flattening it, so each edge is one range probe of pk_quarter_hour_usage. As a
    # plain join, at 100M the planner read all of the largest tenant's quarter-hours
    # once and filtered them per edge (15M rows, 0.7 s) despite the MATERIALIZED edges.
    per_edge = (
        select(
            q.c.type,
            func.sum(q.c.generations).label("generations"),
            func.sum(q.c.credits).label("credits"),
        )
        .where(
            q.c.organization_id == _org,
            q.c.bucket >= func.least(e.utc_midnight, e.local_midnight),
            q.c.bucket < func.greatest(e.utc_midnight, e.local_midnight),
        )
        .group_by(q.c.type)
        .lateral("per_edge")
    )
    sign = case((e.local_midnight > e.utc_midnight, one), else_=-one)
    edge_sums = (
        select(
            e.bucket,
            e.previous,
            per_edge.c.type,
            (per_edge.c.generations * sign).label("generations"),
            (per_edge.c.credits * sign).label("credits"),
        )
        .select_from(edges.join(per_edge, true()))
        .cte("edge_sums")
    )
    d, s = local_days.c, edge_sums.c
    counted = union_all(
        select(
            d.bucket,
            u.c.type,
            func.sum(u.c.used).label("generations"),
            func.sum(u.c.credits_used).label("credits"),
        )
        .select_from(local_days.join(u, and_(u.c.organization_id == _org, u.c.date == d.day)))
        # The range as bounds too, so usage_limits is read as one range on its index.
        .where(
            u.c.date >= select(func.min(near.c.n)).scalar_subquery(),
            u.c.date < select(func.max(near.c.n)).scalar_subquery(),
        )
        .group_by(d.bucket, u.c.type),
        select(s.bucket, s.type, s.generations, s.credits).where(s.bucket.is_not(None)),
        select(s.previous, s.type, -s.generations, -s.credits).where(s.previous.is_not(None)),
    ).cte("counted")
    return _regrouped(counted, by_type=by_type)


def _timeline_statement(*, subject: Subject, zone: Zone, by_type: bool) -> Select[Any]:
    """The timeline of an organization or one of its users, in its zone or UTC."""
    if subject == "organization" and zone == "utc":
        agg = _utc_days_from_local_days(by_type=by_type)
    else:
        agg = _per_bucket(_source(subject, zone), by_type=by_type).cte("agg")
    return _zero_filled(agg, by_type=by_type)


# (subject, utc, by_type) -> statement
_TIMELINES: dict[tuple[Subject, bool, bool], Select[Any]] = {
    (subject, utc, by_type): _timeline_statement(
        subject=subject, zone="utc" if utc else "local", by_type=by_type
    )
    for subject in ("organization", "user")
    for utc in (False, True)
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
    result = conn.execute(
        _TIMELINES["organization", utc, by_type],
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
        _TIMELINES["user", utc, by_type],
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
def _all_organizations_statement() -> Select[Any]:
    """The timeline of every organization of the plans, by type, in the company zone."""
    tz = cast(bindparam("tz", type_=Text), Text)
    o = _organizations.alias("o")
    orgs = (
        select(o.c.id, (o.c.timezone == tz).label("same_zone"))
        .where(
            or_(
                cast(bindparam("any_plan", type_=Boolean), Boolean),
                o.c.plan == any_(cast(bindparam("plans", type_=ARRAY(Text)), ARRAY(Text))),
            )
        )
        .cte("orgs")
    )
    u = _usage_limits.alias("u")
    q = _quarter_hours.alias("q")
    own_days = _Source(
        u.c.date,
        u.c.type,
        func.sum(u.c.used),
        func.sum(u.c.credits_used),
        orgs.join(u, and_(u.c.organization_id == orgs.c.id, u.c.date.between(_start, _end))),
        (orgs.c.same_zone,),
    )
    quarter_hours = _Source(
        cast(func.timezone(tz, q.c.bucket), Date),
        q.c.type,
        func.sum(q.c.generations),
        func.sum(q.c.credits),
        orgs.join(q, and_(q.c.organization_id == orgs.c.id, _in_days(q.c.bucket, tz))),
        (not_(orgs.c.same_zone),),
    )
    counted = union_all(
        _per_bucket(own_days, by_type=True), _per_bucket(quarter_hours, by_type=True)
    ).cte("counted")
    return _zero_filled(_regrouped(counted, by_type=True), by_type=True)


_ALL_ORGS_TIMELINE = _all_organizations_statement()


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


def _top_users_statement(zone: Zone) -> Select[Any]:
    """The organization's users by credits in the range, most first, in its zone (from
    user_daily_usage) or UTC (from its generations on (organization_id, created_at))."""
    rows, user_id = _user_rows(zone)
    agg = (
        select(
            user_id.label("user_id"),
            rows.generations.label("generations"),
            rows.credits.label("credits"),
        )
        .select_from(rows.table)
        .where(*rows.where)
        .group_by(user_id)
        .cte("agg")
    )
    u = _users.alias("u")
    total = func.nullif(func.sum(agg.c.credits).over(), _ZERO)
    # float8 / numeric, as written: Core's "/" would cast the divisor to the dividend's type.
    share = func.coalesce(cast(agg.c.credits, DOUBLE_PRECISION).op("/")(total), _ZERO)
    return (
        select(
            agg.c.user_id,
            u.c.name,
            u.c.email,
            agg.c.generations,
            agg.c.credits,
            share.label("credit_share"),
        )
        .select_from(agg.join(u, and_(u.c.organization_id == _org, u.c.id == agg.c.user_id)))
        .order_by(agg.c.credits.desc(), agg.c.generations.desc(), agg.c.user_id)
        .limit(bindparam("limit", type_=Integer))
    )


# utc -> statement
_TOP_USERS = {utc: _top_users_statement("utc" if utc else "local") for utc in (False, True)}


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
        _TOP_USERS[utc],
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
# midnight or a quarter-hour, so totals are exact sums of whole days (usage_limits) and
# quarter_hour_usage buckets; active users are one probe per member into generations on
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
    -- In the organization's own zone its whole local days are its usage_limits rows
    -- (one per type and day), and only the unfinished last day of each period is read
    -- from quarter_hour_usage: 90 days against the 90 before read about 900 rows
    -- instead of 84,000 quarter-hours for the largest tenant at 100M. In UTC the
    -- days are not the rows' days, so every quarter-hour is summed.
    parts AS (
        SELECT b.*, (b.upper AT TIME ZONE b.tz)::date AS upper_day,
               (b.prev_upper AT TIME ZONE b.tz)::date AS prev_upper_day
        FROM b
    ),
    edges AS (
        SELECT parts.*,
               upper_day::timestamp AT TIME ZONE parts.tz AS upper_midnight,
               prev_upper_day::timestamp AT TIME ZONE parts.tz AS prev_upper_midnight
        FROM parts
    ),
    own_zone AS (
        SELECT coalesce(sum(u.used) FILTER (WHERE u.date >= CAST(:start AS date)), 0)
                   AS generations,
               coalesce(sum(u.credits_used) FILTER (WHERE u.date >= CAST(:start AS date)), 0)
                   AS credits,
               coalesce(sum(u.used) FILTER (WHERE u.date < e.prev_upper_day), 0)
                   AS previous_generations,
               coalesce(sum(u.credits_used) FILTER (WHERE u.date < e.prev_upper_day), 0)
                   AS previous_credits
        FROM edges e JOIN usage_limits u
          ON u.organization_id = :org
         AND u.date >= CAST(:prev AS date) AND u.date < e.upper_day
         AND (u.date < e.prev_upper_day OR u.date >= CAST(:start AS date))
        WHERE NOT CAST(:utc AS boolean)
    ),
    unfinished AS (
        SELECT coalesce(sum(q.generations) FILTER (WHERE q.bucket >= e.upper_midnight), 0)
                   AS generations,
               coalesce(sum(q.credits) FILTER (WHERE q.bucket >= e.upper_midnight), 0)
                   AS credits,
               coalesce(sum(q.generations) FILTER (WHERE q.bucket < e.prev_upper), 0)
                   AS previous_generations,
               coalesce(sum(q.credits) FILTER (WHERE q.bucket < e.prev_upper), 0)
                   AS previous_credits
        FROM edges e JOIN quarter_hour_usage q
          ON q.organization_id = :org
         AND ((q.bucket >= e.upper_midnight AND q.bucket < e.upper)
              OR (q.bucket >= e.prev_upper_midnight AND q.bucket < e.prev_upper))
        WHERE NOT CAST(:utc AS boolean)
    ),
    in_utc AS (
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
        WHERE CAST(:utc AS boolean)
    ),
    totals AS (
        SELECT sum(generations)::bigint AS generations, sum(credits)::bigint AS credits,
               sum(previous_generations)::bigint AS previous_generations,
               sum(previous_credits)::bigint AS previous_credits
        FROM (SELECT * FROM own_zone UNION ALL SELECT * FROM unfinished
              UNION ALL SELECT * FROM in_utc) AS t
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
