"""Generations: recording one (the credit check is part of its transaction) and the
drill-down into the most recent ones."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, Row, text

from queries.checks import (
    MAX_KEY,
    check_id,
    check_limit,
    check_timestamp,
    check_whole,
    required_text,
)
from queries.errors import (
    IdempotencyConflict,
    InsufficientCredits,
    InvalidGeneration,
    InvalidInput,
    QuotaExceeded,
)
from queries.frames import KeysetCursor, frame, split_page
from queries.models import PLAN_LIMIT_FACTOR
from queries.transactions import run_in_transaction

MAX_CREDITS = 1_000_000


@dataclass(frozen=True, slots=True)
class RecordedGeneration:
    """A generation as recorded, with the balance and quota it left."""

    id: int
    organization_id: int
    user_id: int
    type: str
    credits: int
    created_at: dt.datetime
    idempotency_key: str | None
    local_date: dt.date
    balance_after: int
    used_today: int
    daily_limit: int


_CONTEXT = text(
    """
    SELECT b.balance, o.plan, t.default_credits, t.default_daily_limit,
           EXISTS (SELECT 1 FROM users u WHERE u.organization_id = o.id AND u.id = :user)
               AS member
    FROM credit_balances b
    JOIN organizations o ON o.id = b.organization_id
    LEFT JOIN generation_types t ON t.type = :type
    WHERE b.organization_id = :org
    FOR UPDATE OF b
    """
)
# The local day is read again by the statements after the lock: when _CONTEXT waited
# for the balance lock, PostgreSQL re-read the locked row but not the organization
# joined to it, so _CONTEXT's day can be in the zone set_timezone just replaced. Each
# later statement takes a new snapshot, which sees the zone that holder committed.
_BY_KEY = text(
    """
    SELECT g.id, g.user_id, g.type, g.credits, g.created_at,
           (coalesce(CAST(:at AS timestamptz), now()) AT TIME ZONE o.timezone)::date AS day
    FROM generations g JOIN organizations o ON o.id = g.organization_id
    WHERE g.organization_id = :org AND g.idempotency_key = :key
    """
)
_DEBIT = text(
    """
    UPDATE credit_balances b SET balance = b.balance - :credits, updated_at = now()
    FROM organizations o
    WHERE b.organization_id = :org AND o.id = b.organization_id AND b.balance >= :credits
    RETURNING b.balance,
              (coalesce(CAST(:at AS timestamptz), now()) AT TIME ZONE o.timezone)::date AS day
    """
)
# The limit of a new day is the one in force: the latest earlier day's, else the
# plan's default. The conflict branch only counts while under the limit.
_COUNT = text(
    """
    INSERT INTO usage_limits AS u (organization_id, type, date, used, credits_used, daily_limit)
    VALUES (:org, :type, :day, 1, :credits,
            coalesce((SELECT p.daily_limit FROM usage_limits p
                      WHERE p.organization_id = :org AND p.type = :type AND p.date < :day
                      ORDER BY p.date DESC LIMIT 1), :default_limit))
    ON CONFLICT (organization_id, type, date) DO UPDATE
        SET used = u.used + 1, credits_used = u.credits_used + excluded.credits_used,
            updated_at = now()
        WHERE u.used < u.daily_limit
    RETURNING u.used, u.daily_limit
    """
)
_USAGE = text(
    "SELECT used, daily_limit FROM usage_limits "
    "WHERE organization_id = :org AND type = :type AND date = :day"
)
# The insert and every rollup in one statement (one round trip): it runs only after
# the debit and the quota count succeeded, so a refused generation changes no rollup.
# :day is the local day _CONTEXT computed from the same coalesce(:at, now()).
_INSERT = text(
    """
    WITH g AS (
        INSERT INTO generations
            (organization_id, user_id, type, credits, idempotency_key, created_at)
        VALUES (:org, :user, :type, :credits, :key, coalesce(CAST(:at AS timestamptz), now()))
        RETURNING id, created_at
    ),
    per_user AS (
        INSERT INTO user_daily_usage AS r
            (organization_id, user_id, date, type, generations, credits)
        VALUES (:org, :user, :day, :type, 1, :credits)
        ON CONFLICT (organization_id, user_id, date, type) DO UPDATE
            SET generations = r.generations + 1, credits = r.credits + excluded.credits
    ),
    per_quarter_hour AS (
        INSERT INTO quarter_hour_usage AS r (organization_id, bucket, type, generations, credits)
        SELECT :org, date_bin('15 minutes', g.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
               :type, 1, :credits
        FROM g
        ON CONFLICT (organization_id, bucket, type) DO UPDATE
            SET generations = r.generations + 1, credits = r.credits + excluded.credits
    ),
    -- Cross-organization rollups (migration 0007), in the organization's local day.
    -- A new day starts from the totals through the latest earlier day; the days after
    -- :day (only a back-dated generation has any) each add it too. Exact because this
    -- statement's snapshot is taken after the debit locked the balance row, so it sees
    -- every generation of the organization committed before.
    per_org_day AS (
        INSERT INTO organization_daily_usage AS r
            (organization_id, date, generations, credits, generations_through, credits_through)
        SELECT :org, :day, 1, :credits,
               coalesce(p.generations_through, 0) + 1, coalesce(p.credits_through, 0) + :credits
        FROM (VALUES (1)) AS one (x)
        LEFT JOIN LATERAL (
            SELECT e.generations_through, e.credits_through
            FROM organization_daily_usage e
            WHERE e.organization_id = :org AND e.date < :day
            ORDER BY e.date DESC
            LIMIT 1
        ) p ON true
        ON CONFLICT (organization_id, date) DO UPDATE
            SET generations = r.generations + 1, credits = r.credits + excluded.credits,
                generations_through = r.generations_through + 1,
                credits_through = r.credits_through + excluded.credits
    ),
    per_org_later_days AS (
        UPDATE organization_daily_usage
        SET generations_through = generations_through + 1,
            credits_through = credits_through + :credits
        WHERE organization_id = :org AND date > :day
    ),
    per_org_month AS (
        INSERT INTO organization_monthly_usage AS r (month, organization_id, generations, credits)
        VALUES (date_trunc('month', CAST(:day AS date))::date, :org, 1, :credits)
        ON CONFLICT (organization_id, month) DO UPDATE
            SET generations = r.generations + 1, credits = r.credits + excluded.credits
    )
    SELECT id, created_at FROM g
    """
)


def record_generation(
    engine: Engine,
    *,
    organization_id: int,
    user_id: int,
    type: str,
    credits: int | None = None,
    at: dt.datetime | None = None,
    idempotency_key: str | None = None,
) -> RecordedGeneration:
    """Record one generation in one transaction: debit the balance, count it against the
    daily limit of the organization's local day of ``at`` (default now), insert it.

    Raises ``InsufficientCredits`` or ``QuotaExceeded`` (nothing written), and
    ``InvalidGeneration`` for an unknown organization or type, a user of another
    organization, or a bad argument. With an ``idempotency_key``, a retry returns the
    generation recorded the first time.
    """
    org = check_id(organization_id, error=InvalidGeneration)
    user = check_id(user_id, "user_id", error=InvalidGeneration)
    type = required_text(type, "generation type", maximum=MAX_KEY, error=InvalidGeneration)
    if credits is not None:
        credits = check_whole(
            credits, "credits", minimum=0, maximum=MAX_CREDITS, error=InvalidGeneration
        )
    when = None if at is None else check_timestamp(at, "time", error=InvalidGeneration)
    if idempotency_key is not None:
        idempotency_key = required_text(
            idempotency_key, "idempotency key", maximum=MAX_KEY, error=InvalidGeneration
        )

    def body(conn: Connection) -> RecordedGeneration:
        params = {"org": org, "user": user, "type": type, "at": when}
        context = conn.execute(_CONTEXT, params).one_or_none()
        if context is None:
            raise InvalidGeneration(f"There is no organization with id {org}.")
        if context.default_credits is None:
            raise InvalidGeneration(f"Unknown generation type {type!r}.")
        if not context.member:
            raise InvalidGeneration(f"User {user} is not a member of organization {org}.")
        cost = int(context.default_credits if credits is None else credits)

        def recorded(
            generation: Row[Any], *, day: dt.date, balance: int, usage: Row[Any]
        ) -> RecordedGeneration:
            return RecordedGeneration(
                id=generation.id,
                organization_id=org,
                user_id=user,
                type=type,
                credits=cost,
                created_at=generation.created_at,
                idempotency_key=idempotency_key,
                local_date=day,
                balance_after=int(balance),
                used_today=int(usage.used),
                daily_limit=int(usage.daily_limit),
            )

        if idempotency_key is not None:
            previous = conn.execute(
                _BY_KEY, {"org": org, "key": idempotency_key, "at": when}
            ).one_or_none()
            if previous is not None:
                if (previous.user_id, previous.type, previous.credits) != (user, type, cost):
                    raise IdempotencyConflict(
                        f"Idempotency key {idempotency_key!r} was used for another generation "
                        f"({previous.id}). Nothing was recorded."
                    )
                usage = conn.execute(_USAGE, {"org": org, "type": type, "day": previous.day}).one()
                return recorded(previous, day=previous.day, balance=context.balance, usage=usage)
        debited = conn.execute(_DEBIT, {"org": org, "credits": cost, "at": when}).one_or_none()
        if debited is None:
            raise InsufficientCredits(
                organization_id=org, balance=int(context.balance), requested=cost
            )
        balance, day = int(debited.balance), debited.day
        default_limit = int(context.default_daily_limit * PLAN_LIMIT_FACTOR.get(context.plan, 1.0))
        counted = conn.execute(
            _COUNT,
            {
                "org": org,
                "type": type,
                "day": day,
                "credits": cost,
                "default_limit": default_limit,
            },
        ).one_or_none()
        if counted is None or counted.used > counted.daily_limit:
            usage = counted or conn.execute(_USAGE, {"org": org, "type": type, "day": day}).one()
            raise QuotaExceeded(
                organization_id=org,
                type=type,
                day=day,
                used=int(usage.used) - (1 if counted else 0),
                limit=int(usage.daily_limit),
            )
        inserted = conn.execute(
            _INSERT, {**params, "credits": cost, "key": idempotency_key, "day": day}
        ).one()
        return recorded(inserted, day=day, balance=balance, usage=counted)

    # With a key, a retry after a lost COMMIT finds the generation it recorded; without
    # one, a lost COMMIT is reported as OutcomeUnknown rather than recorded twice.
    return run_in_transaction(engine, body, idempotent=idempotency_key is not None)


GenerationCursor = KeysetCursor


@dataclass(frozen=True, slots=True)
class GenerationPage:
    """Recent generations, newest first, and the cursor of the next (older) page."""

    rows: pd.DataFrame
    next_cursor: GenerationCursor | None


RECENT_COLUMNS = {
    "id": "int64",
    "created_at": "datetime64[us, UTC]",
    "user_id": "int64",
    "user_name": "str",
    "type": "str",
    "credits": "int64",
}

_RECENT = text(
    """
    SELECT g.id, g.created_at, g.user_id, u.name AS user_name, g.type, g.credits
    FROM generations g
    JOIN users u ON u.organization_id = g.organization_id AND u.id = g.user_id
    WHERE g.organization_id = :org
      AND (CAST(:user AS bigint) IS NULL OR g.user_id = :user)
      AND (CAST(:cursor_at AS timestamptz) IS NULL
           OR g.created_at < CAST(:cursor_at AS timestamptz)
           OR (g.created_at = CAST(:cursor_at AS timestamptz) AND g.id < :cursor_id))
    ORDER BY g.created_at DESC, g.id DESC
    LIMIT :limit
    """
)
# Separate statements so each gets the plan of its own index: the generic "user or
# not" filter above would keep the planner from seeing the user equality.
_RECENT_FOR_USER = text(
    """
    SELECT g.id, g.created_at, g.user_id, u.name AS user_name, g.type, g.credits
    FROM generations g
    JOIN users u ON u.organization_id = g.organization_id AND u.id = g.user_id
    WHERE g.organization_id = :org AND g.user_id = :user
      AND (CAST(:cursor_at AS timestamptz) IS NULL
           OR g.created_at < CAST(:cursor_at AS timestamptz)
           OR (g.created_at = CAST(:cursor_at AS timestamptz) AND g.id < :cursor_id))
    ORDER BY g.created_at DESC, g.id DESC
    LIMIT :limit
    """
)


def recent_generations(
    conn: Connection,
    *,
    organization_id: int,
    user_id: int | None = None,
    limit: int = 50,
    before: GenerationCursor | None = None,
) -> GenerationPage:
    """The most recent generations of an organization (or one of its users), newest
    first, paginated by keyset on (created_at, id) rather than OFFSET.

    Columns: id, created_at (UTC), user_id, user_name, type, credits.
    """
    organization_id = check_id(organization_id)
    if user_id is not None:
        user_id = check_id(user_id, "user_id")
    limit = check_limit(limit)
    if before is not None and not isinstance(before, KeysetCursor):
        raise InvalidInput("before must be the next_cursor of a previous page.")
    result = conn.execute(
        _RECENT if user_id is None else _RECENT_FOR_USER,
        {
            "org": organization_id,
            "user": user_id,
            "cursor_at": before.created_at if before else None,
            "cursor_id": before.id if before else 0,
            "limit": limit + 1,
        },
    )
    return GenerationPage(*split_page(frame(result, RECENT_COLUMNS), limit))
