"""Usage review for finance: consumption, grants, balances, burn rate and the ledger.

One organization's periods are calendar dates in its own time zone: its consumption
comes from ``usage_limits`` (the exact per-local-day rollup) and its ledger movements
are placed on its local date of ``created_at``. The cross-organization reads take the
company zone (``timezone``, DASHBOARD_TIMEZONE) instead, and answer its days exactly
from ``organization_daily_usage`` (prefix sums) and ``quarter_hour_usage``.
"""

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import pandas as pd
from sqlalchemy import Connection, TextClause, bindparam, text

from queries.checks import (
    check_granularity,
    check_id,
    check_limit,
    check_range,
    check_sort,
    check_timestamp,
    check_timezone,
    like_pattern,
)
from queries.errors import InvalidInput
from queries.frames import TIME_ORDER_WORDS, TIME_SORTS, TimeSort, frame, split_page
from queries.models import LEDGER_KINDS

# The cross-organization reads count the range's days in one zone, the company's
# (``timezone``, from DASHBOARD_TIMEZONE): [start 00:00, end + 1 00:00) there, the same
# instants for every organization, so the totals never depend on which organization is
# selected. The rollups of consumption are kept per organization-local day, which a
# company-zone window does not fit, so consumption before an instant is the prefix sum
# of organization_daily_usage up to the organization's local day of the instant plus the
# quarter_hour_usage buckets of that day before the instant: two index probes and at
# most a day of quarter-hours per organization and edge, exact for every pair of zones.
# For the edges the presets use, that answer is kept (usage_edges, migration 0025,
# queries/edges.py), so an edge is one index range for all organizations.
# Ledger movements are read on (created_at, organization_id) between the two instants.


_ALL_ORGS_USAGE = text(
    """
    WITH b AS (
        SELECT CAST(:start AS timestamp) AT TIME ZONE CAST(:tz AS text) AS lower,
               (CAST(:end AS date) + 1)::timestamp AT TIME ZONE CAST(:tz AS text) AS upper
    ),
    -- Consumed in the window: use before its upper edge less use before its lower one
    -- (usage_before_edges(), migration 0025: the kept edges as one index range each,
    -- any other through usage_before(); exact in any pair of zones). An organization
    -- without a row had no use before the edge.
    consumed AS (
        SELECT x.organization_id,
               CAST(sum(CASE WHEN x.edge = b.upper THEN x.generations
                             ELSE -x.generations END) AS bigint) AS generations,
               CAST(sum(CASE WHEN x.edge = b.upper THEN x.credits
                             ELSE -x.credits END) AS bigint) AS credits
        FROM b CROSS JOIN LATERAL usage_before_edges(ARRAY[b.lower, b.upper]) x
        GROUP BY x.organization_id
    ),
    moved AS (
        SELECT l.organization_id,
               sum(l.amount) FILTER (WHERE l.amount > 0) AS granted,
               -sum(l.amount) FILTER (WHERE l.amount < 0 AND l.kind <> 'expired') AS deducted
        FROM b JOIN credit_ledger l
          ON l.created_at >= b.lower AND l.created_at < b.upper
        GROUP BY l.organization_id
    )
    SELECT rank() OVER (ORDER BY coalesce(c.credits, 0) DESC) AS rank,
           o.id AS organization_id, o.name, o.slug, o.plan,
           coalesce(c.generations, 0) AS generations,
           coalesce(c.credits, 0) AS credits_consumed,
           coalesce(m.granted, 0) AS credits_granted,
           coalesce(m.deducted, 0) AS credits_deducted,
           coalesce(b.balance, 0) - coalesce(d.due, 0) AS balance,
           coalesce(c.credits::float8 / nullif(sum(c.credits) OVER (), 0), 0) AS share
    FROM organizations o
    LEFT JOIN consumed c ON c.organization_id = o.id
    LEFT JOIN moved m ON m.organization_id = o.id
    LEFT JOIN credit_balances b ON b.organization_id = o.id
    -- Grants due but not yet written off are gone already (migration 0021).
    LEFT JOIN due_credits(now()) d ON d.organization_id = o.id
    ORDER BY rank, o.name
    """
)

ALL_ORGS_USAGE_COLUMNS = {
    "rank": "int64",
    "organization_id": "int64",
    "name": "str",
    "slug": "str",
    "plan": "str",
    "generations": "int64",
    "credits_consumed": "int64",
    "credits_granted": "int64",
    "credits_deducted": "int64",
    "balance": "int64",
    "share": "float64",
}


def all_orgs_usage(
    conn: Connection, *, start: dt.date, end: dt.date, timezone: str = "UTC"
) -> pd.DataFrame:
    """Every organization ranked by credits consumed in [start, end], days of
    ``timezone`` (the company zone; cross-organization).

    Columns: rank, organization_id (int), name, slug, plan (str), generations,
    credits_consumed, credits_granted (grants and refunds), credits_deducted
    (deductions and negative reversals, as a positive number; an expiry is not a
    deduction), balance (current, less grants due and not yet written off; int),
    share (float 0..1 of all credits consumed in the range).
    """
    start, end = check_range(start, end)
    tz = check_timezone(timezone)
    return frame(
        conn.execute(_ALL_ORGS_USAGE, {"start": start, "end": end, "tz": tz}),
        ALL_ORGS_USAGE_COLUMNS,
    )


_USAGE_PAGE = text(
    """
    WITH b AS (
        SELECT CAST(:start AS timestamp) AT TIME ZONE CAST(:tz AS text) AS lower,
               (CAST(:end AS date) + 1)::timestamp AT TIME ZONE CAST(:tz AS text) AS upper
    ),
    -- Consumed in the window: use before its upper edge less use before its lower one
    -- (usage_before_edges(), migration 0025: the kept edges as one index range each,
    -- any other through usage_before(); exact in any pair of zones). An organization
    -- without a row had no use before the edge.
    consumed AS (
        SELECT x.organization_id,
               CAST(sum(CASE WHEN x.edge = b.upper THEN x.generations
                             ELSE -x.generations END) AS bigint) AS generations,
               CAST(sum(CASE WHEN x.edge = b.upper THEN x.credits
                             ELSE -x.credits END) AS bigint) AS credits
        FROM b CROSS JOIN LATERAL usage_before_edges(ARRAY[b.lower, b.upper]) x
        GROUP BY x.organization_id
    ),
    ranked AS (
        SELECT rank() OVER (ORDER BY coalesce(c.credits, 0) DESC) AS rank,
               o.id AS organization_id, o.name, o.slug, o.plan, o.timezone,
               coalesce(c.generations, 0) AS generations,
               coalesce(c.credits, 0) AS credits_consumed,
               coalesce(bal.balance, 0) - coalesce(d.due, 0) AS balance,
               coalesce(c.credits::float8 / nullif(sum(c.credits) OVER (), 0), 0) AS share
        FROM organizations o
        LEFT JOIN consumed c ON c.organization_id = o.id
        LEFT JOIN credit_balances bal ON bal.organization_id = o.id
        -- Grants due but not yet written off are gone already (migration 0021).
        LEFT JOIN due_credits(now()) d ON d.organization_id = o.id
    ),
    -- Every order is (sort_key, name, id) ascending: a descending order negates its
    -- column, "by name" has a constant key. So one keyset condition serves them all.
    filtered AS (
        SELECT r.*,
               CASE CAST(:sort AS text)
                   WHEN 'credits_desc' THEN -r.credits_consumed
                   WHEN 'credits_asc' THEN r.credits_consumed
                   WHEN 'generations_desc' THEN -r.generations
                   WHEN 'balance_asc' THEN r.balance
                   WHEN 'balance_desc' THEN -r.balance
                   ELSE 0
               END AS sort_key,
               count(*) OVER () AS total_organizations,
               sum(r.credits_consumed) OVER () AS total_credits,
               sum(r.generations) OVER () AS total_generations
        FROM ranked r
        WHERE (CAST(:any_plan AS boolean) OR r.plan = ANY(CAST(:plans AS text[])))
          AND (CAST(:pattern AS text) IS NULL
               OR r.name ILIKE '%' || CAST(:pattern AS text) || '%' ESCAPE '\\'
               OR r.slug ILIKE '%' || CAST(:pattern AS text) || '%' ESCAPE '\\')
    ),
    page AS (
        SELECT f.* FROM filtered f
        WHERE CAST(:after_id AS bigint) IS NULL
           OR (f.sort_key, f.name, f.organization_id)
              > (CAST(:after_key AS bigint), CAST(:after_name AS text), CAST(:after_id AS bigint))
        ORDER BY f.sort_key, f.name, f.organization_id
        LIMIT :fetch
    ),
    -- Ledger movements only for the organizations on this page.
    moved AS (
        SELECT l.organization_id,
               sum(l.amount) FILTER (WHERE l.amount > 0) AS granted,
               -sum(l.amount) FILTER (WHERE l.amount < 0 AND l.kind <> 'expired') AS deducted
        FROM b CROSS JOIN page p
        JOIN credit_ledger l
          ON l.organization_id = p.organization_id
         AND l.created_at >= b.lower AND l.created_at < b.upper
        GROUP BY l.organization_id
    ),
    granted_all AS (
        SELECT sum(l.amount) FILTER (WHERE l.amount > 0) AS granted
        FROM b CROSS JOIN filtered f
        JOIN credit_ledger l
          ON l.organization_id = f.organization_id
         AND l.created_at >= b.lower AND l.created_at < b.upper
    )
    SELECT p.rank, p.organization_id, p.name, p.slug, p.plan, p.generations,
           p.credits_consumed,
           coalesce(m.granted, 0) AS credits_granted,
           coalesce(m.deducted, 0) AS credits_deducted,
           p.balance, p.share, p.sort_key,
           p.total_organizations, p.total_credits, p.total_generations,
           coalesce((SELECT granted FROM granted_all), 0) AS total_granted
    FROM page p
    LEFT JOIN moved m ON m.organization_id = p.organization_id
    ORDER BY p.sort_key, p.name, p.organization_id
    """
)

# The most rows one call returns: the CSV of a filtered ranking is capped here.
MAX_USAGE_ROWS = 10_000


# The orders of the ranking: a column and a direction, then name and id.
UsageSort = Literal[
    "credits_desc", "credits_asc", "generations_desc", "balance_asc", "balance_desc", "name_asc"
]
USAGE_SORTS: tuple[UsageSort, ...] = typing.get_args(UsageSort)


@dataclass(frozen=True, slots=True)
class UsageCursor:
    """Where the next page of the ranking starts: the last row's (key, name, id) in the
    order ``sort``, where ``key`` is the sort column's value, negated for a descending
    order (0 for the order by name). A cursor of one order never pages another."""

    key: int
    name: str
    organization_id: int
    sort: UsageSort = "credits_desc"


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """The whole filtered ranking, not only the page."""

    organizations: int
    generations: int
    credits_consumed: int
    credits_granted: int


@dataclass(frozen=True, slots=True)
class UsagePage:
    """A page of :func:`all_orgs_usage_page`: ``rows`` with the columns of
    :func:`all_orgs_usage`, the totals of every matching organization, and the cursor of
    the next page (None on the last)."""

    rows: pd.DataFrame
    totals: UsageTotals
    next: UsageCursor | None


def all_orgs_usage_page(
    conn: Connection,
    *,
    start: dt.date,
    end: dt.date,
    plans: Sequence[str] = (),
    search: str | None = None,
    limit: int = 50,
    after: UsageCursor | None = None,
    timezone: str = "UTC",
    sort: UsageSort = "credits_desc",
) -> UsagePage:
    """One page of the ranking by credits consumed in [start, end] (days of ``timezone``,
    the company zone), filtered by plan and by a name/slug search, in the order ``sort``
    (then name, id), keyset-paged (cross-organization).

    Rank (by credits consumed) and share are among all organizations; the totals are of
    the filtered ones. Columns of ``rows`` as :func:`all_orgs_usage`. One statement.
    """
    start, end = check_range(start, end)
    limit = check_limit(limit, maximum=MAX_USAGE_ROWS)
    sort = check_sort(sort, USAGE_SORTS)
    if isinstance(plans, str) or not all(isinstance(p, str) for p in plans):
        raise InvalidInput("plans must be a list of plan names.")
    if after is not None and not isinstance(after, UsageCursor):
        raise InvalidInput("after must be the cursor of a previous page.")
    if after is not None and after.sort != sort:
        raise InvalidInput("after is the cursor of a page in another order.")
    result = conn.execute(
        _USAGE_PAGE,
        {
            "start": start,
            "end": end,
            "any_plan": not plans,
            "plans": list(plans),
            "pattern": like_pattern(search, "search"),
            "after_key": after.key if after else None,
            "after_name": after.name if after else None,
            "after_id": check_id(after.organization_id, "after") if after else None,
            "fetch": limit + 1,
            "tz": check_timezone(timezone),
            "sort": sort,
        },
    )
    rows = frame(
        result,
        {
            **ALL_ORGS_USAGE_COLUMNS,
            "sort_key": "int64",
            "total_organizations": "int64",
            "total_credits": "int64",
            "total_generations": "int64",
            "total_granted": "int64",
        },
    )
    if rows.empty:
        totals = UsageTotals(0, 0, 0, 0)
    else:
        first = rows.iloc[0]
        totals = UsageTotals(
            organizations=int(first["total_organizations"]),
            generations=int(first["total_generations"]),
            credits_consumed=int(first["total_credits"]),
            credits_granted=int(first["total_granted"]),
        )
    cursor = None
    if len(rows) > limit:
        rows = rows.iloc[:limit]
        last = rows.iloc[-1]
        cursor = UsageCursor(
            int(last["sort_key"]), str(last["name"]), int(last["organization_id"]), sort
        )
    rows = rows[list(ALL_ORGS_USAGE_COLUMNS)]
    return UsagePage(rows=rows.reset_index(drop=True), totals=totals, next=cursor)


# Months of the company zone, cut to the range. Each organization's consumption in a
# month is its use before the month's upper edge less its use before the lower one
# (usage_before_edges(), migration 0025: kept edges as one index range each, any other
# through usage_before(); exact for any pair of zones), every edge read once.
_MONTHLY = text(
    """
    WITH b AS (
        SELECT m::date AS month,
               greatest(m::date, CAST(:start AS date))::timestamp
                   AT TIME ZONE CAST(:tz AS text) AS lower,
               (least((m + interval '1 month')::date - 1, CAST(:end AS date)) + 1)::timestamp
                   AT TIME ZONE CAST(:tz AS text) AS upper
        FROM generate_series(date_trunc('month', CAST(:start AS date)),
                             date_trunc('month', CAST(:end AS date)), interval '1 month') AS m
    ),
    cuts AS (
        SELECT b.month, c.edge, c.sign
        FROM b CROSS JOIN LATERAL (VALUES (b.lower, -1), (b.upper, 1)) AS c(edge, sign)
    ),
    -- Every edge once; the edges as a column, not a subquery, so the function is
    -- inlined (a kept edge is then a range of pk_usage_edges in this plan).
    before AS MATERIALIZED (
        SELECT x.*
        FROM (SELECT array_agg(DISTINCT edge) AS edges FROM cuts) e
        CROSS JOIN LATERAL usage_before_edges(e.edges) x
    ),
    per_org AS (
        SELECT c.month, x.organization_id,
               sum(c.sign * x.generations) AS generations, sum(c.sign * x.credits) AS credits
        FROM cuts c JOIN before x ON x.edge = c.edge
        GROUP BY c.month, x.organization_id
    ),
    consumed AS (
        SELECT month, CAST(sum(generations) AS bigint) AS generations,
               CAST(sum(credits) AS bigint) AS credits,
               count(*) FILTER (WHERE generations > 0) AS organizations
        FROM per_org
        GROUP BY month
    ),
    granted AS (
        SELECT b.month, sum(l.amount) FILTER (WHERE l.amount > 0) AS granted
        FROM b JOIN credit_ledger l ON l.created_at >= b.lower AND l.created_at < b.upper
        GROUP BY b.month
    )
    SELECT b.month, coalesce(c.generations, 0) AS generations,
           coalesce(c.credits, 0) AS credits_consumed,
           coalesce(g.granted, 0) AS credits_granted,
           coalesce(c.organizations, 0) AS active_organizations
    FROM b
    LEFT JOIN consumed c ON c.month = b.month
    LEFT JOIN granted g ON g.month = b.month
    ORDER BY b.month
    """
)


def all_orgs_monthly_credits(
    conn: Connection, *, start: dt.date, end: dt.date, timezone: str = "UTC"
) -> pd.DataFrame:
    """Credits consumed and granted per month of ``timezone`` (the company zone) across
    all organizations, the first and last months cut to [start, end] (cross-organization).

    Columns: month (first day), generations, credits_consumed, credits_granted,
    active_organizations (organizations with at least one generation; all int).
    """
    start, end = check_range(start, end)
    return frame(
        conn.execute(_MONTHLY, {"start": start, "end": end, "tz": check_timezone(timezone)}),
        {
            "month": "datetime64[s]",
            "generations": "int64",
            "credits_consumed": "int64",
            "credits_granted": "int64",
            "active_organizations": "int64",
        },
    )


_GRANTED_VS_CONSUMED = text(
    """
    WITH buckets AS (
        SELECT b::date AS bucket
        FROM generate_series(date_trunc(:unit, CAST(:start AS date)),
                             date_trunc(:unit, CAST(:end AS date)),
                             CAST('1 ' || :unit AS interval)) AS b
    ),
    consumed AS (
        SELECT date_trunc(:unit, date)::date AS bucket, sum(credits_used) AS credits
        FROM usage_limits
        WHERE organization_id = :org AND date BETWEEN :start AND :end
        GROUP BY 1
    ),
    moved AS (
        SELECT date_trunc(:unit, (l.created_at AT TIME ZONE o.timezone)::date)::date AS bucket,
               sum(l.amount) FILTER (WHERE l.amount > 0) AS granted,
               -sum(l.amount) FILTER (WHERE l.amount < 0 AND l.kind <> 'expired') AS deducted
        FROM credit_ledger l JOIN organizations o ON o.id = l.organization_id
        WHERE l.organization_id = :org
          AND l.created_at >= CAST(:start AS timestamp) AT TIME ZONE o.timezone
          AND l.created_at < (CAST(:end AS date) + 1)::timestamp AT TIME ZONE o.timezone
        GROUP BY 1
    )
    SELECT b.bucket, coalesce(m.granted, 0) AS credits_granted,
           coalesce(m.deducted, 0) AS credits_deducted,
           coalesce(c.credits, 0) AS credits_consumed
    FROM buckets b
    LEFT JOIN consumed c ON c.bucket = b.bucket
    LEFT JOIN moved m ON m.bucket = b.bucket
    ORDER BY b.bucket
    """
)


def credits_granted_vs_consumed(
    conn: Connection,
    *,
    organization_id: int,
    start: dt.date,
    end: dt.date,
    granularity: str = "month",
) -> pd.DataFrame:
    """An organization's credits granted, deducted and consumed per day/week/month.

    Columns: bucket (first day), credits_granted, credits_deducted (positive; expiries
    apart),
    credits_consumed (all int); every bucket present.
    """
    organization_id = check_id(organization_id)
    start, end = check_range(start, end)
    unit = check_granularity(granularity)
    return frame(
        conn.execute(
            _GRANTED_VS_CONSUMED,
            {"org": organization_id, "start": start, "end": end, "unit": unit},
        ),
        {
            "bucket": "datetime64[s]",
            "credits_granted": "int64",
            "credits_deducted": "int64",
            "credits_consumed": "int64",
        },
    )


@dataclass(frozen=True, slots=True)
class Runway:
    """Balance, burn rate and runway of an organization, as of its local today."""

    organization_id: int
    balance: int
    today: dt.date
    burn_days: int
    credits_burned: int

    @property
    def daily_burn(self) -> float:
        """Average credits consumed per day over the last ``burn_days`` complete days."""
        return self.credits_burned / self.burn_days

    @property
    def runway_days(self) -> float | None:
        """Days until the balance runs out at that burn rate; None when nothing burns."""
        return None if self.credits_burned == 0 else self.balance / self.daily_burn


_RUNWAY = text(
    """
    SELECT b.balance - coalesce(d.due, 0) AS balance, z.today,
           (SELECT coalesce(sum(u.credits_used), 0) FROM usage_limits u
             WHERE u.organization_id = :org
               AND u.date >= z.today - :days AND u.date < z.today) AS burned
    FROM credit_balances b
    -- Grants due by now but not yet written off are gone already (migration 0021).
    LEFT JOIN due_credits(coalesce(CAST(:now AS timestamptz), now())) d
      ON d.organization_id = b.organization_id
    CROSS JOIN LATERAL (
        SELECT (coalesce(CAST(:now AS timestamptz), now()) AT TIME ZONE o.timezone)::date AS today
        FROM organizations o WHERE o.id = b.organization_id
    ) z
    WHERE b.organization_id = :org
    """
)


def balance_and_runway(
    conn: Connection,
    *,
    organization_id: int,
    burn_days: int = 30,
    now: dt.datetime | None = None,
) -> Runway | None:
    """Current balance, average daily burn of the last ``burn_days`` complete local days
    (today excluded: it is not over), and the days of runway it leaves. Today is the
    organization's local day at ``now`` (aware; default: the database's now()).

    None if the organization does not exist.
    """
    organization_id = check_id(organization_id)
    burn_days = check_limit(burn_days, maximum=366)
    if now is not None:
        now = check_timestamp(now, "time now")
    row = conn.execute(
        _RUNWAY, {"org": organization_id, "days": burn_days, "now": now}
    ).one_or_none()
    if row is None:
        return None
    return Runway(
        organization_id=organization_id,
        balance=int(row.balance),
        today=row.today,
        burn_days=burn_days,
        credits_burned=int(row.burned),
    )


# The orders of the ledger: by time, newest or oldest first (then id).
LedgerSort = TimeSort
LEDGER_SORTS = TIME_SORTS


@dataclass(frozen=True, slots=True)
class LedgerCursor:
    """Where the next page of the ledger starts: the last entry's (created_at, id), in
    the order ``sort``. A cursor of one order never pages another."""

    created_at: dt.datetime
    id: int
    sort: LedgerSort = "newest"


@dataclass(frozen=True, slots=True)
class LedgerPage:
    """One page of ledger entries in its order, and the cursor of the next page."""

    entries: pd.DataFrame
    next_cursor: LedgerCursor | None


LEDGER_COLUMNS = {
    "id": "int64",
    "created_at": "datetime64[us, UTC]",
    "kind": "str",
    "amount": "int64",
    "balance_after": "int64",
    "reason": "str",
    "note": "object",
    "actor": "str",
    "idempotency_key": "str",
    "reverses_id": "Int64",
    "reversed_by_id": "Int64",
}

# Newest first reads the (organization_id, created_at) index backwards, oldest first
# forwards; one text for both orders (TIME_ORDER_WORDS: fixed words, never input).
_LEDGER = """
    SELECT l.id, l.created_at, l.kind, l.amount, l.balance_after, l.reason, l.note, l.actor,
           l.idempotency_key, l.reverses_id, r.id AS reversed_by_id
    FROM credit_ledger l
    JOIN organizations o ON o.id = l.organization_id
    LEFT JOIN credit_ledger r ON r.organization_id = l.organization_id AND r.reverses_id = l.id
    WHERE l.organization_id = :org
      AND (:all_kinds OR l.kind IN :kinds)
      AND (CAST(:actor AS text) IS NULL OR l.actor ILIKE '%' || :actor || '%' ESCAPE '\\')
      AND (CAST(:start AS date) IS NULL
           OR l.created_at >= CAST(:start AS timestamp) AT TIME ZONE o.timezone)
      AND (CAST(:end AS date) IS NULL
           OR l.created_at < (CAST(:end AS date) + 1)::timestamp AT TIME ZONE o.timezone)
      AND (CAST(:cursor_at AS timestamptz) IS NULL
           OR (l.created_at, l.id) {after} (CAST(:cursor_at AS timestamptz), :cursor_id))
    ORDER BY l.created_at {dir}, l.id {dir}
    LIMIT :limit
"""
_LEDGERS: Final[dict[LedgerSort, TextClause]] = {
    sort: text(_LEDGER.format(**words)).bindparams(bindparam("kinds", expanding=True))
    for sort, words in TIME_ORDER_WORDS.items()
}


def ledger_page(
    conn: Connection,
    *,
    organization_id: int,
    kinds: Sequence[str] | None = None,
    actor: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    limit: int = 50,
    after: LedgerCursor | None = None,
    sort: LedgerSort = "newest",
) -> LedgerPage:
    """The organization's ledger, newest (or, ``sort="oldest"``, oldest) first, filtered
    and paginated by keyset (``after`` a cursor of the same order).

    ``kinds``: any of grant, deduct, refund, reversal; ``actor``: part of the actor's
    email (case-insensitive); ``start``/``end``: local dates, inclusive. Columns: id,
    created_at (UTC), kind, amount (signed), balance_after, reason, note (or None),
    actor, idempotency_key, reverses_id / reversed_by_id (or <NA>).
    """
    organization_id = check_id(organization_id)
    limit = check_limit(limit)
    sort = check_sort(sort, LEDGER_SORTS)
    if after is not None and (not isinstance(after, LedgerCursor) or after.sort != sort):
        raise InvalidInput("after must be the cursor of a previous page in this order.")
    if kinds is not None:
        unknown = sorted(set(kinds) - set(LEDGER_KINDS))
        if unknown:
            raise InvalidInput(
                f"Unknown ledger kind {unknown[0]!r}: use {', '.join(LEDGER_KINDS)}."
            )
    if start is not None and end is not None:
        check_range(start, end)
    pattern = like_pattern(actor, "actor filter")
    result = conn.execute(
        _LEDGERS[sort],
        {
            "org": organization_id,
            "all_kinds": not kinds,
            "kinds": list(kinds) if kinds else ["-"],
            "actor": pattern,
            "start": start,
            "end": end,
            "cursor_at": after.created_at if after else None,
            "cursor_id": after.id if after else 0,
            "limit": limit + 1,
        },
    )
    entries, following = split_page(frame(result, LEDGER_COLUMNS), limit)
    cursor = LedgerCursor(following.created_at, following.id, sort) if following else None
    return LedgerPage(entries, cursor)


# One entry on the ledger's key (organization_id, id): another organization's entry is
# not found, as one that does not exist. The same columns as a page of the ledger.
_LEDGER_ENTRY = text(
    """
    SELECT l.id, l.created_at, l.kind, l.amount, l.balance_after, l.reason, l.note, l.actor,
           l.idempotency_key, l.reverses_id, r.id AS reversed_by_id
    FROM credit_ledger l
    LEFT JOIN credit_ledger r ON r.organization_id = l.organization_id AND r.reverses_id = l.id
    WHERE l.organization_id = :org AND l.id = :entry
    """
)


def ledger_entry(conn: Connection, *, organization_id: int, entry_id: int) -> pd.DataFrame:
    """The organization's ledger entry ``entry_id`` as one row with the columns of
    :func:`ledger_page`'s entries; no row when the organization has no such entry (an
    entry of another organization included)."""
    organization_id = check_id(organization_id)
    entry_id = check_id(entry_id, "entry_id")
    result = conn.execute(_LEDGER_ENTRY, {"org": organization_id, "entry": entry_id})
    return frame(result, LEDGER_COLUMNS)
