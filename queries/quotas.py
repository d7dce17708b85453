"""Quotas for customer success: today's utilization, who is near or over, history, the
limits in force, and changing a daily limit (audited).

"Today" is each organization's own local date unless a ``day`` is given. Rows exist for
(organization, type, day) combinations that had at least one generation or a limit
change; a type with no row that day has used nothing.
"""

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import pandas as pd
from sqlalchemy import Connection, Engine, Row, text

from queries.checks import (
    MAX_KEY,
    MAX_REASON,
    check_date,
    check_id,
    check_limit,
    check_range,
    check_sort,
    check_timestamp,
    check_whole,
    like_pattern,
    required_text,
)
from queries.db import limit_approval_factor
from queries.errors import InvalidInput, InvalidLimitChange, LimitApprovalRequired
from queries.frames import frame
from queries.identity import canonical_identity, stored_identity
from queries.ledger import replay, submitted_differently
from queries.transactions import run_in_transaction

MAX_DAILY_LIMIT = 10_000_000

UTILIZATION_COLUMNS = {
    "organization_id": "int64",
    "name": "str",
    "slug": "str",
    "plan": "str",
    "timezone": "str",
    "date": "datetime64[s]",
    "type": "str",
    "used": "int64",
    "daily_limit": "int64",
    "utilization": "float64",
    "status": "str",
    "soft": "bool",
    "overage": "int64",
}

_UTILIZATION = text(
    """
    SELECT o.id AS organization_id, o.name, o.slug, o.plan, o.timezone, u.date, u.type,
           u.used, u.daily_limit,
           quota_utilization(u.used, u.daily_limit) AS utilization,
           quota_status(u.used, u.daily_limit, :threshold) AS status,
           coalesce(e.soft, false) AS soft, greatest(u.used - u.daily_limit, 0) AS overage
    FROM organizations o
    JOIN usage_limits u
      ON u.organization_id = o.id
     AND u.date = coalesce(CAST(:day AS date), (coalesce(CAST(:now AS timestamptz), now()) AT TIME ZONE o.timezone)::date)
     -- "Today" is one of the UTC date's neighbours in every zone (-12..+14 h): a range
     -- on ix_usage_limits_date, so only today's rows are read, never the history.
     AND u.date BETWEEN coalesce(CAST(:day AS date), CAST(coalesce(CAST(:now AS timestamptz), now()) AT TIME ZONE 'UTC' AS date) - 1)
                    AND coalesce(CAST(:day AS date), CAST(coalesce(CAST(:now AS timestamptz), now()) AT TIME ZONE 'UTC' AS date) + 1)
    -- The mode of the row's limit (migration 0020): one primary-key probe per row.
    LEFT JOIN limit_enforcement e ON e.organization_id = u.organization_id AND e.type = u.type
    WHERE u.used >= :threshold * u.daily_limit OR NOT :only_alerts
    ORDER BY utilization DESC, u.used DESC, o.name, u.type
    """
)


def _check_day(day: object) -> dt.date | None:
    if day is not None and (isinstance(day, dt.datetime) or not isinstance(day, dt.date)):
        raise InvalidInput(f"day must be a date, not {day!r}.")
    return day


def _check_now(now: object) -> dt.datetime | None:
    return None if now is None else check_timestamp(now, "time now")


def _check_threshold(threshold: object) -> float:
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0 < threshold <= 10
    ):
        raise InvalidInput(f"The threshold must be a fraction such as 0.8, not {threshold!r}.")
    return float(threshold)


def all_orgs_quota_utilization(
    conn: Connection,
    *,
    day: dt.date | None = None,
    threshold: float = 0.8,
    now: dt.datetime | None = None,
) -> pd.DataFrame:
    """Every (organization, type) row of a day, by utilization, highest first
    (cross-organization). ``day`` None means each organization's own today at ``now``
    (aware; default: the database's now()).

    Columns: organization_id, name, slug, plan, timezone, date, type, used, daily_limit,
    utilization (used / limit; inf when the limit is 0 and something was used),
    status ('over', 'at limit', 'near' at or above ``threshold``, 'ok'), soft (True
    when generations past the limit go through), overage (how many were used past the
    limit: only a soft limit has any, or a limit lowered below what was used).
    """
    params = {
        "day": _check_day(day),
        "now": _check_now(now),
        "threshold": _check_threshold(threshold),
        "only_alerts": False,
    }
    return frame(conn.execute(_UTILIZATION, params), UTILIZATION_COLUMNS)


def all_orgs_quota_alerts(
    conn: Connection,
    *,
    day: dt.date | None = None,
    threshold: float = 0.8,
    now: dt.datetime | None = None,
) -> pd.DataFrame:
    """The (organization, type) rows at or above ``threshold`` of their limit, including
    those over it, highest first (cross-organization). Columns, ``day`` and ``now`` as
    :func:`all_orgs_quota_utilization`; filter ``status == 'over'`` for those over."""
    params = {
        "day": _check_day(day),
        "now": _check_now(now),
        "threshold": _check_threshold(threshold),
        "only_alerts": True,
    }
    return frame(conn.execute(_UTILIZATION, params), UTILIZATION_COLUMNS)


_UTILIZATION_PAGE = text(
    """
    WITH today AS (
    SELECT o.id AS organization_id, o.name, o.slug, o.plan, o.timezone, u.date, u.type,
           u.used, u.daily_limit,
           quota_utilization(u.used, u.daily_limit) AS utilization,
           quota_status(u.used, u.daily_limit, :threshold) AS status,
           coalesce(e.soft, false) AS soft, greatest(u.used - u.daily_limit, 0) AS overage
    FROM organizations o
    JOIN usage_limits u
      ON u.organization_id = o.id
     AND u.date = coalesce(CAST(:day AS date), (coalesce(CAST(:now AS timestamptz), now()) AT TIME ZONE o.timezone)::date)
     -- "Today" is one of the UTC date's neighbours in every zone (-12..+14 h): a range
     -- on ix_usage_limits_date, so only today's rows are read, never the history.
     AND u.date BETWEEN coalesce(CAST(:day AS date), CAST(coalesce(CAST(:now AS timestamptz), now()) AT TIME ZONE 'UTC' AS date) - 1)
                    AND coalesce(CAST(:day AS date), CAST(coalesce(CAST(:now AS timestamptz), now()) AT TIME ZONE 'UTC' AS date) + 1)
    -- The mode of the row's limit (migration 0020): one primary-key probe per row.
    LEFT JOIN limit_enforcement e ON e.organization_id = u.organization_id AND e.type = u.type
    ),
    filtered AS (
        SELECT t.*, count(*) OVER () AS total
        FROM today t
        WHERE (CAST(:any_plan AS boolean) OR t.plan = ANY(CAST(:plans AS text[])))
          AND (CAST(:any_type AS boolean) OR t.type = ANY(CAST(:types AS text[])))
          AND (CAST(:any_status AS boolean) OR t.status = ANY(CAST(:statuses AS text[])))
          AND (CAST(:pattern AS text) IS NULL
               OR t.name ILIKE '%' || CAST(:pattern AS text) || '%' ESCAPE '\\'
               OR t.slug ILIKE '%' || CAST(:pattern AS text) || '%' ESCAPE '\\')
    ),
    -- Every order is (key, key2, name, id, type) ascending: a descending order negates
    -- its column, an unused key is 0, so one keyset condition serves them all. An
    -- infinite utilization (used with a limit of 0) counts as 1e300, above any real one
    -- (at most 2^63 used of a limit of 1), so every key is finite and fits in a link.
    keyed AS (
        SELECT f.*,
               CASE CAST(:sort AS text)
                   WHEN 'utilization_desc' THEN -least(f.utilization, 1e300)
                   WHEN 'utilization_asc' THEN least(f.utilization, 1e300)
                   WHEN 'used_desc' THEN -f.used::float8
                   WHEN 'limit_desc' THEN -f.daily_limit::float8
                   WHEN 'limit_asc' THEN f.daily_limit::float8
                   ELSE 0
               END AS sort_key,
               CASE CAST(:sort AS text)
                   WHEN 'utilization_desc' THEN -f.used
                   WHEN 'utilization_asc' THEN f.used
                   ELSE 0
               END AS sort_key2
        FROM filtered f
    )
    SELECT k.*, (SELECT count(*) FROM today) AS total_today
    FROM keyed k
    WHERE CAST(:after_id AS bigint) IS NULL
       OR (k.sort_key, k.sort_key2, k.name, k.organization_id, k.type)
          > (CAST(:after_key AS float8), CAST(:after_key2 AS bigint),
             CAST(:after_name AS text), CAST(:after_id AS bigint), CAST(:after_type AS text))
    ORDER BY k.sort_key, k.sort_key2, k.name, k.organization_id, k.type
    LIMIT :fetch
    """
)

_HEATMAP = text(
    """
    WITH today AS (
    SELECT o.id AS organization_id, o.name, o.slug, o.plan, o.timezone, u.date, u.type,
           u.used, u.daily_limit,
           quota_utilization(u.used, u.daily_limit) AS utilization,
           quota_status(u.used, u.daily_limit, :threshold) AS status,
           coalesce(e.soft, false) AS soft, greatest(u.used - u.daily_limit, 0) AS overage
    FROM organizations o
    JOIN usage_limits u
      ON u.organization_id = o.id
     AND u.date = coalesce(CAST(:day AS date), (coalesce(CAST(:now AS timestamptz), now()) AT TIME ZONE o.timezone)::date)
     -- "Today" is one of the UTC date's neighbours in every zone (-12..+14 h): a range
     -- on ix_usage_limits_date, so only today's rows are read, never the history.
     AND u.date BETWEEN coalesce(CAST(:day AS date), CAST(coalesce(CAST(:now AS timestamptz), now()) AT TIME ZONE 'UTC' AS date) - 1)
                    AND coalesce(CAST(:day AS date), CAST(coalesce(CAST(:now AS timestamptz), now()) AT TIME ZONE 'UTC' AS date) + 1)
    -- The mode of the row's limit (migration 0020): one primary-key probe per row.
    LEFT JOIN limit_enforcement e ON e.organization_id = u.organization_id AND e.type = u.type
    ),
    fullest AS (
        SELECT organization_id, max(utilization) AS fullest
        FROM today GROUP BY organization_id
    ),
    top AS (
        SELECT f.organization_id, f.fullest, count(*) OVER () AS organizations
        FROM fullest f
        ORDER BY f.fullest DESC, f.organization_id
        LIMIT :top
    )
    SELECT t.*, (SELECT count(*) FROM fullest) AS total_organizations
    FROM today t JOIN top USING (organization_id)
    ORDER BY top.fullest DESC, t.organization_id, t.type
    """
)

# The most rows one page returns: the CSV of a filtered table is capped here.
MAX_UTILIZATION_ROWS = 10_000


# The orders of today's table: a column and a direction, then name, id and type.
# "utilization_desc" (fullest first) breaks ties by the most used.
UtilizationSort = Literal[
    "utilization_desc", "utilization_asc", "used_desc", "limit_desc", "limit_asc", "name_asc"
]
UTILIZATION_SORTS: tuple[UtilizationSort, ...] = typing.get_args(UtilizationSort)


@dataclass(frozen=True, slots=True)
class UtilizationCursor:
    """Where the next page of today's utilization starts: the last row's sort key in the
    order ``sort`` (``key``, ``key2``: its columns' values, negated for a descending
    order, 0 where unused; then name, id, type). A cursor of one order never pages
    another."""

    key: float
    key2: int
    name: str
    organization_id: int
    type: str
    sort: UtilizationSort = "utilization_desc"


@dataclass(frozen=True, slots=True)
class UtilizationPage:
    """A page of :func:`all_orgs_quota_utilization_page`: ``rows`` (columns as
    :func:`all_orgs_quota_utilization`), how many rows match the filters, how many rows
    today has in all, and the cursor of the next page (None on the last)."""

    rows: pd.DataFrame
    matching: int
    total: int
    next: UtilizationCursor | None


def _names(values: object, name: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, list | tuple | frozenset | set):
        raise InvalidInput(f"{name} must be a list.")
    if not all(isinstance(v, str) for v in values):
        raise InvalidInput(f"{name} must be a list of names.")
    return sorted(values)


def all_orgs_quota_utilization_page(
    conn: Connection,
    *,
    day: dt.date | None = None,
    threshold: float = 0.8,
    search: str | None = None,
    plans: Sequence[str] = (),
    types: Sequence[str] = (),
    statuses: Sequence[str] = (),
    limit: int = 50,
    after: UtilizationCursor | None = None,
    now: dt.datetime | None = None,
    sort: UtilizationSort = "utilization_desc",
) -> UtilizationPage:
    """One page of today's (organization, type) rows in the order ``sort`` (default
    fullest first), filtered by a name/slug search, plans, types and statuses,
    keyset-paged (cross-organization). ``day`` and ``now`` as
    :func:`all_orgs_quota_utilization`. One statement."""
    limit = check_limit(limit, maximum=MAX_UTILIZATION_ROWS)
    sort = check_sort(sort, UTILIZATION_SORTS)
    if after is not None and not isinstance(after, UtilizationCursor):
        raise InvalidInput("after must be the cursor of a previous page.")
    if after is not None and after.sort != sort:
        raise InvalidInput("after is the cursor of a page in another order.")
    plans, types, statuses = (
        _names(plans, "plans"),
        _names(types, "types"),
        _names(statuses, "statuses"),
    )
    params: dict[str, Any] = {
        "day": _check_day(day),
        "now": _check_now(now),
        "threshold": _check_threshold(threshold),
        "any_plan": not plans,
        "plans": plans,
        "any_type": not types,
        "types": types,
        "any_status": not statuses,
        "statuses": statuses,
        "pattern": like_pattern(search, "search"),
        "after_key": after.key if after else None,
        "after_key2": after.key2 if after else None,
        "after_name": after.name if after else None,
        "after_id": check_id(after.organization_id, "after") if after else None,
        "after_type": after.type if after else None,
        "fetch": limit + 1,
        "sort": sort,
    }
    rows = frame(
        conn.execute(_UTILIZATION_PAGE, params),
        {
            **UTILIZATION_COLUMNS,
            "sort_key": "float64",
            "sort_key2": "int64",
            "total": "int64",
            "total_today": "int64",
        },
    )
    matching = int(rows["total"].iloc[0]) if len(rows) else 0
    total = int(rows["total_today"].iloc[0]) if len(rows) else 0
    cursor = None
    if len(rows) > limit:
        rows = rows.iloc[:limit]
        last = rows.iloc[-1]
        cursor = UtilizationCursor(
            float(last["sort_key"]),
            int(last["sort_key2"]),
            str(last["name"]),
            int(last["organization_id"]),
            str(last["type"]),
            sort,
        )
    rows = rows[list(UTILIZATION_COLUMNS)]
    return UtilizationPage(rows.reset_index(drop=True), matching, total, cursor)


def all_orgs_quota_heatmap(
    conn: Connection,
    *,
    day: dt.date | None = None,
    threshold: float = 0.8,
    top: int = 25,
    now: dt.datetime | None = None,
) -> tuple[pd.DataFrame, int]:
    """Today's rows of the ``top`` organizations by their fullest type, and how many
    organizations have use today in all (cross-organization). Columns, ``day`` and
    ``now`` as :func:`all_orgs_quota_utilization`. One statement."""
    params = {
        "day": _check_day(day),
        "now": _check_now(now),
        "threshold": _check_threshold(threshold),
        "top": check_limit(top, maximum=200),
    }
    rows = frame(
        conn.execute(_HEATMAP, params),
        {**UTILIZATION_COLUMNS, "total_organizations": "int64"},
    )
    total = int(rows["total_organizations"].iloc[0]) if len(rows) else 0
    return rows[list(UTILIZATION_COLUMNS)].reset_index(drop=True), total


_HISTORY = text(
    """
    WITH days AS (
        SELECT d::date AS date
        FROM generate_series(CAST(:start AS date), CAST(:end AS date), interval '1 day') AS d
    ),
    types AS (
        SELECT DISTINCT type FROM usage_limits
        WHERE organization_id = :org AND date BETWEEN :start AND :end
          AND (CAST(:type AS text) IS NULL OR type = :type)
    )
    SELECT d.date, t.type, coalesce(u.used, 0) AS used, u.daily_limit,
           CASE WHEN u.daily_limit > 0 THEN coalesce(u.used, 0)::float8 / u.daily_limit END
               AS utilization
    FROM days d CROSS JOIN types t
    LEFT JOIN usage_limits u
      ON u.organization_id = :org AND u.type = t.type AND u.date = d.date
    ORDER BY d.date, t.type
    """
)


def quota_history(
    conn: Connection,
    *,
    organization_id: int,
    start: dt.date,
    end: dt.date,
    type: str | None = None,
) -> pd.DataFrame:
    """An organization's daily usage against its limits, every day of the range for
    every type it used in the range (or only ``type``).

    Columns: date, type, used (0 on a day without a row), daily_limit (<NA> on a day
    without a row), utilization (NaN without a limit).
    """
    organization_id = check_id(organization_id)
    start, end = check_range(start, end)
    if type is not None and not isinstance(type, str):
        raise InvalidInput("type must be text.")
    return frame(
        conn.execute(_HISTORY, {"org": organization_id, "start": start, "end": end, "type": type}),
        {
            "date": "datetime64[s]",
            "type": "str",
            "used": "int64",
            "daily_limit": "Int64",
            "utilization": "float64",
        },
    )


IN_FORCE_COLUMNS = {
    "type": "str",
    "daily_limit": "int64",
    "source": "str",
    "since": "datetime64[s]",
    "until": "datetime64[s]",
    "limit_after": "Int64",
    "soft": "bool",
}

_LIMITS_IN_FORCE = text(
    """
    SELECT t.type, f.daily_limit, f.since, f.until, after.daily_limit AS limit_after,
           CASE WHEN f.since IS NULL THEN o.plan || ' plan default'
                ELSE 'set for ' || to_char(f.since, 'YYYY-MM-DD') END AS source,
           coalesce(e.soft, false) AS soft
    FROM organizations o
    CROSS JOIN generation_types t
    LEFT JOIN limit_enforcement e ON e.organization_id = o.id AND e.type = t.type
    CROSS JOIN LATERAL limit_in_force(
        o.id, t.type,
        coalesce(CAST(:day AS date), (coalesce(CAST(:now AS timestamptz), now()) AT TIME ZONE o.timezone)::date)) AS f
    -- What applies once a change that ends has ended (no lookup for one that does not).
    LEFT JOIN LATERAL limit_in_force(o.id, t.type, f.until + 1) AS after
      ON f.until IS NOT NULL
    WHERE o.id = :org
    ORDER BY t.type
    """
)


def limits_in_force(
    conn: Connection,
    *,
    organization_id: int,
    day: dt.date | None = None,
    now: dt.datetime | None = None,
) -> pd.DataFrame:
    """The daily limit of every generation type in force on ``day`` (default: the
    organization's local today at ``now``, by default the database's now()), by the
    database's one rule, ``limit_in_force``
    (migration 0010), which recording a generation and changing a limit use too.

    Columns: type, daily_limit (int), source ("set for <date>", or "<plan> plan
    default" when no change and no row up to ``day`` sets one), since (the first day of
    the change, or the day of the row, whose limit is in force; NaT for the plan default), until (the last day of a change that ends;
    NaT for one that does not), limit_after (the limit from the day after ``until``;
    <NA> without one), soft (True when generations past the limit go through and count
    as overage, ``set_limit_enforcement``; False for a hard limit, the default). Empty
    for an unknown organization. One statement.
    """
    params = {"org": check_id(organization_id), "day": _check_day(day), "now": _check_now(now)}
    return frame(conn.execute(_LIMITS_IN_FORCE, params), IN_FORCE_COLUMNS)


@dataclass(frozen=True, slots=True)
class LimitChange:
    """A daily-limit change as made, and its audit row."""

    organization_id: int
    type: str
    effective: dt.date
    old_limit: int
    new_limit: int
    used_on_effective: int
    until: dt.date | None
    audit_id: int
    actor: str
    reason: str
    # Who asked for it, when a second person approved it (queries.limit_approvals).
    requested_by: str | None = None


# The balance row is every write's per-organization lock: changes to one organization
# never interleave.
_LIMIT_LOCK = text("SELECT 1 FROM lock_organization(:org) AS balance WHERE balance IS NOT NULL")
# Read in a statement of its own, after the lock: a statement that waited for the lock
# goes on reading the snapshot it started with, in which a set_timezone that held the
# lock meanwhile had not committed, so "today" would be the replaced zone's.
_LIMIT_CONTEXT = text(
    """
    SELECT (now() AT TIME ZONE o.timezone)::date AS today, t.default_daily_limit,
           floor(t.default_daily_limit * plan_limit_factor(o.plan))::int AS plan_limit
    FROM organizations o
    LEFT JOIN generation_types t ON t.type = :type
    WHERE o.id = :org
    """
)
# The limit in force before the change, by the database's one rule (migration 0010).
_IN_FORCE = text("SELECT daily_limit FROM limit_in_force(:org, :type, :day)")
_SET_DAY = text(
    """
    INSERT INTO usage_limits AS u (organization_id, type, date, used, credits_used, daily_limit)
    VALUES (:org, :type, :day, 0, 0, :limit)
    ON CONFLICT (organization_id, type, date) DO UPDATE
        SET daily_limit = excluded.daily_limit, updated_at = now()
    RETURNING u.used
    """
)
_RECORD = text(
    "INSERT INTO limit_changes (organization_id, type, effective, until, daily_limit) "
    "VALUES (:org, :type, :day, :until, :limit)"
)
# The change is the latest made, so it wins on every day it covers; days after it ends
# keep the limit they had.
_SET_LATER = text(
    "UPDATE usage_limits SET daily_limit = :limit, updated_at = now() "
    "WHERE organization_id = :org AND type = :type AND date > :day "
    "AND (CAST(:until AS date) IS NULL OR date <= :until)"
)
_AUDIT = text(
    """
    INSERT INTO audit_log (organization_id, action, actor, reason, details, idempotency_key)
    VALUES (:org, 'set_daily_limit', :actor, :reason,
            -- An open-ended change has no 'until', as before there were changes that end.
            jsonb_strip_nulls(jsonb_build_object(
                'type', CAST(:type AS text), 'effective', CAST(:day AS date),
                'old_limit', CAST(:old AS int), 'new_limit', CAST(:limit AS int),
                'until', CAST(:until AS date), 'requested_by', CAST(:requested_by AS text),
                'request_id', CAST(:request_id AS bigint))),
            :key)
    RETURNING id
    """
)
# The change a key recorded, and what has been used on its effective day since.
_BY_KEY = text(
    """
    SELECT a.id, a.action, a.actor, a.reason, a.details ->> 'type' AS type,
           CAST(a.details ->> 'effective' AS date) AS effective,
           CAST(a.details ->> 'old_limit' AS int) AS old_limit,
           CAST(a.details ->> 'new_limit' AS int) AS new_limit,
           CAST(a.details ->> 'until' AS date) AS until,
           a.details ->> 'requested_by' AS requested_by,
           coalesce(u.used, 0) AS used
    FROM audit_log a
    LEFT JOIN usage_limits u
      ON u.organization_id = a.organization_id AND u.type = a.details ->> 'type'
     AND u.date = CAST(a.details ->> 'effective' AS date)
    WHERE a.organization_id = :org AND a.idempotency_key = :key
    """
)


def set_daily_limit(
    engine: Engine,
    *,
    organization_id: int,
    type: str,
    daily_limit: int,
    actor: str,
    reason: str,
    effective: dt.date | None = None,
    until: dt.date | None = None,
    idempotency_key: str | None = None,
) -> LimitChange:
    """Set an organization's daily limit for a type from ``effective`` on (default: its
    local today), audited with who and why; with ``until``, through that local day only,
    after which what was in force without this change applies again. Later days that
    already have a row get the new limit too, up to ``until``; days before keep theirs.
    Lowering a limit below what was already used that day is allowed: further
    generations that day are refused.

    With an ``idempotency_key`` (one per form), the same key again returns the change
    recorded the first time (``used_on_effective`` as of now) and changes nothing, so a
    retry after a lost answer applies once; the same key with different details raises
    ``IdempotencyConflict``.

    A limit above ``LIMIT_APPROVAL_FACTOR`` (default 10) times the organization's plan
    limit for the type raises ``LimitApprovalRequired`` and writes nothing: request it
    with ``queries.limit_approvals.request_limit_change`` for a second person.
    """
    org = check_id(organization_id, error=InvalidLimitChange)
    type = required_text(type, "generation type", maximum=MAX_KEY, error=InvalidLimitChange)
    new_limit = check_daily_limit(daily_limit)
    actor = canonical_identity(actor, "actor", error=InvalidLimitChange)
    reason = required_text(reason, "reason", maximum=MAX_REASON, error=InvalidLimitChange)
    if effective is not None:
        effective = check_date(effective, "effective day", error=InvalidLimitChange)
    if until is not None:
        until = check_date(until, "end day", error=InvalidLimitChange)
        if effective is not None:
            _check_until(until, effective)
    key = None
    if idempotency_key is not None:
        key = required_text(
            idempotency_key, "idempotency key", maximum=MAX_KEY, error=InvalidLimitChange
        )

    factor = limit_approval_factor()

    def body(conn: Connection) -> LimitChange:
        context = limit_context(conn, organization_id=org, type=type)
        if key is not None:
            previous = conn.execute(_BY_KEY, {"org": org, "key": key}).one_or_none()
            if previous is not None:
                return _replayed(previous, org, type, new_limit, actor, reason, effective, until)
        most = most_alone(context.plan_limit, factor)
        if new_limit > most:
            raise LimitApprovalRequired(
                type=type, daily_limit=new_limit, most=most, plan_limit=context.plan_limit
            )
        return apply_limit_change(
            conn,
            organization_id=org,
            type=type,
            daily_limit=new_limit,
            actor=actor,
            reason=reason,
            day=resolve_day(context, effective, until),
            until=until,
            key=key,
        )

    # With a key, a retry after a lost COMMIT finds the change it made (see _BY_KEY).
    return run_in_transaction(engine, body, idempotent=key is not None)


def most_alone(plan_limit: int, factor: Decimal) -> int:
    """The highest daily limit one person may set alone: ``factor`` times the plan's."""
    return int(factor * plan_limit)  # (both positive: int() is the floor)


def limit_context(conn: Connection, *, organization_id: int, type: str) -> Row[Any]:
    """Lock the organization and read its local today and the type's plan limit
    (``InvalidLimitChange`` for an unknown organization or type)."""
    locked = conn.execute(_LIMIT_LOCK, {"org": organization_id}).first()
    context = (
        None
        if locked is None
        else conn.execute(_LIMIT_CONTEXT, {"org": organization_id, "type": type}).one_or_none()
    )
    if context is None:
        raise InvalidLimitChange(f"There is no organization with id {organization_id}.")
    if context.default_daily_limit is None:
        raise InvalidLimitChange(f"Unknown generation type {type!r}.")
    return context


def resolve_day(context: Row[Any], effective: dt.date | None, until: dt.date | None) -> dt.date:
    """The change's first day (default: the organization's today), refused in the past or
    after ``until``."""
    day: dt.date = effective or context.today
    if day < context.today:
        raise InvalidLimitChange(
            f"{day} is in the past for this organization (today is {context.today}); "
            "past days keep the limit they had."
        )
    if until is not None:
        _check_until(until, day)
    return day


def apply_limit_change(
    conn: Connection,
    *,
    organization_id: int,
    type: str,
    daily_limit: int,
    actor: str,
    reason: str,
    day: dt.date,
    until: dt.date | None,
    key: str | None,
    requested_by: str | None = None,
    request_id: int | None = None,
) -> LimitChange:
    """Make a checked change under the organization's lock, and its audit row."""
    params = {
        "org": organization_id,
        "type": type,
        "day": day,
        "until": until,
        "limit": daily_limit,
    }
    old = conn.execute(_IN_FORCE, params).scalar_one()
    conn.execute(_RECORD, params)
    used = conn.execute(_SET_DAY, params).scalar_one()
    conn.execute(_SET_LATER, params)
    audit_id = conn.execute(
        _AUDIT,
        {
            **params,
            "actor": actor,
            "reason": reason,
            "old": old,
            "key": key,
            "requested_by": requested_by,
            "request_id": request_id,
        },
    ).scalar_one()
    return LimitChange(
        organization_id=organization_id,
        type=type,
        effective=day,
        old_limit=int(old),
        new_limit=daily_limit,
        used_on_effective=int(used),
        until=until,
        audit_id=int(audit_id),
        actor=actor,
        reason=reason,
        requested_by=requested_by,
    )


def change_by_key(conn: Connection, *, organization_id: int, key: str) -> LimitChange | None:
    """The change recorded under ``key`` (its audit row), or None."""
    previous = conn.execute(_BY_KEY, {"org": organization_id, "key": key}).one_or_none()
    return None if previous is None else _change(previous, organization_id)


def _change(previous: Row[Any], org: int) -> LimitChange:
    return LimitChange(
        organization_id=org,
        type=previous.type,
        effective=previous.effective,
        old_limit=int(previous.old_limit),
        new_limit=int(previous.new_limit),
        used_on_effective=int(previous.used),
        until=previous.until,
        audit_id=int(previous.id),
        actor=previous.actor,
        reason=previous.reason,
        requested_by=previous.requested_by,
    )


def _check_until(until: dt.date, effective: dt.date) -> None:
    if until < effective:
        raise InvalidLimitChange(
            f"The end day {until} is before the effective day {effective}; "
            "a change ends on or after the day it starts."
        )


def _replayed(
    previous: Row[Any],
    org: int,
    type: str,
    new_limit: int,
    actor: str,
    reason: str,
    effective: dt.date | None,
    until: dt.date | None,
) -> LimitChange:
    """The change ``key`` recorded, if this request is the same one again."""
    # Without an explicit day the request meant "today": a retry after midnight is
    # still the same request.
    day = previous.effective if effective is None else effective
    replay(
        first=previous,
        asked=("set_daily_limit", type, new_limit, actor, reason, day, until),
        recorded=lambda p: (
            p.action,
            p.type,
            p.new_limit,
            stored_identity(p.actor),
            p.reason,
            p.effective,
            p.until,
        ),
        conflict=lambda p: submitted_differently(
            what="limit change",
            first=f"audit entry {p.id}: {p.type} limit {p.new_limit:,} from {p.effective}"
            + (f" until {p.until}" if p.until else ""),
            start="change",
        ),
    )
    return _change(previous, org)


@dataclass(frozen=True, slots=True)
class LimitEnforcement:
    """A type's limit switched between hard and soft for an organization, and its audit row."""

    organization_id: int
    type: str
    old_soft: bool
    soft: bool
    audit_id: int
    actor: str
    reason: str


_MODE = text(
    "SELECT coalesce((SELECT soft FROM limit_enforcement "
    "WHERE organization_id = :org AND type = :type), false)"
)
_SET_MODE = text(
    """
    INSERT INTO limit_enforcement AS e (organization_id, type, soft)
    VALUES (:org, :type, :soft)
    ON CONFLICT (organization_id, type) DO UPDATE SET soft = excluded.soft, updated_at = now()
    """
)
_MODE_AUDIT = text(
    """
    INSERT INTO audit_log (organization_id, action, actor, reason, details, idempotency_key)
    VALUES (:org, 'set_limit_enforcement', :actor, :reason,
            jsonb_build_object('type', CAST(:type AS text),
                               'old_mode', CAST(:old_mode AS text),
                               'new_mode', CAST(:new_mode AS text)),
            :key)
    RETURNING id
    """
)
_MODE_BY_KEY = text(
    """
    SELECT id, action, actor, reason, details ->> 'type' AS type,
           details ->> 'old_mode' AS old_mode, details ->> 'new_mode' AS new_mode
    FROM audit_log
    WHERE organization_id = :org AND idempotency_key = :key
    """
)


def _mode(soft: bool) -> str:
    return "soft" if soft else "hard"


def set_limit_enforcement(
    engine: Engine,
    *,
    organization_id: int,
    type: str,
    soft: bool,
    actor: str,
    reason: str,
    idempotency_key: str | None = None,
) -> LimitEnforcement:
    """Make an organization's daily limit of a type soft (generations past it go through
    and count as overage) or hard (refused past it, the default), audited with who and
    why (``set_limit_enforcement``, the old and new mode). The limit itself is unchanged.

    With an ``idempotency_key``, the same key again returns the switch recorded the
    first time and changes nothing; with different details, ``IdempotencyConflict``.
    ``InvalidLimitChange`` (nothing written) for an unknown organization or type, a
    ``soft`` that is not True or False, a blank actor or reason.
    """
    org = check_id(organization_id, error=InvalidLimitChange)
    type = required_text(type, "generation type", maximum=MAX_KEY, error=InvalidLimitChange)
    if not isinstance(soft, bool):
        raise InvalidLimitChange(f"soft must be True or False, not {soft!r}.")
    actor = canonical_identity(actor, "actor", error=InvalidLimitChange)
    reason = required_text(reason, "reason", maximum=MAX_REASON, error=InvalidLimitChange)
    key = None
    if idempotency_key is not None:
        key = required_text(
            idempotency_key, "idempotency key", maximum=MAX_KEY, error=InvalidLimitChange
        )

    def body(conn: Connection) -> LimitEnforcement:
        # The organization's lock: a generation reads the mode under it, so it sees the
        # switch entirely or not at all.
        limit_context(conn, organization_id=org, type=type)
        if key is not None:
            previous = conn.execute(_MODE_BY_KEY, {"org": org, "key": key}).one_or_none()
            first = replay(
                first=previous,
                asked=("set_limit_enforcement", type, _mode(soft), actor, reason),
                recorded=lambda p: (
                    p.action,
                    p.type,
                    p.new_mode,
                    stored_identity(p.actor),
                    p.reason,
                ),
                conflict=lambda p: submitted_differently(
                    what="limit mode change",
                    first=f"audit entry {p.id}, {p.action}",
                    start="change",
                ),
            )
            if first is not None:
                return LimitEnforcement(
                    organization_id=org,
                    type=type,
                    old_soft=first.old_mode == "soft",
                    soft=soft,
                    audit_id=int(first.id),
                    actor=first.actor,
                    reason=first.reason,
                )
        params = {"org": org, "type": type, "soft": soft}
        old = bool(conn.execute(_MODE, params).scalar_one())
        conn.execute(_SET_MODE, params)
        audit_id = conn.execute(
            _MODE_AUDIT,
            {
                **params,
                "actor": actor,
                "reason": reason,
                "old_mode": _mode(old),
                "new_mode": _mode(soft),
                "key": key,
            },
        ).scalar_one()
        return LimitEnforcement(
            organization_id=org,
            type=type,
            old_soft=old,
            soft=soft,
            audit_id=int(audit_id),
            actor=actor,
            reason=reason,
        )

    return run_in_transaction(engine, body, idempotent=key is not None)


def check_daily_limit(value: object) -> int:
    """A daily limit: a whole number (an int, never a float, bool or text) from 0 to
    ``MAX_DAILY_LIMIT``. Raises ``InvalidLimitChange`` with the sentence a form shows."""
    return check_whole(
        value, "daily limit", minimum=0, maximum=MAX_DAILY_LIMIT, error=InvalidLimitChange
    )
