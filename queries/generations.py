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
    InsufficientCredits,
    InvalidGeneration,
    InvalidInput,
    QuotaExceeded,
)
from queries.frames import KeysetCursor, frame, split_page
from queries.ledger import replay
from queries.transactions import pipelined, run_in_transaction, timeout_ms

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


# The first statement: the transaction's timeouts, then the organization's lock
# (lock_organization, migration 0013: the balance row, every write's per-organization
# lock). The timeouts are set in a subquery the lock reads from, so a lock wait
# already obeys the lock_timeout they set. balance is NULL without the organization.
_LOCK = text(
    """
    SELECT lock_organization(:org) AS balance
    FROM (SELECT set_config('lock_timeout', :ms, true) AS lock_timeout,
                 set_config('statement_timeout', :ms, true) AS statement_timeout
          OFFSET 0) AS timeouts
    """
)
# Everything else, as one statement after the lock. It must be a statement of its own:
# a statement that waited for the lock would go on reading the snapshot it started
# with, in which a set_timezone or set_daily_limit that held the lock meanwhile had not
# committed (the wrong local day, a stale limit). Started after the lock, its snapshot
# sees everything the previous holder committed, and nothing it reads can change until
# COMMIT, because every write of an organization's balance, limits and zone takes the
# same lock.
#
# - ctx: the facts of the request (balance, local day, cost).
# - previous: the generation recorded earlier under this idempotency key, if any.
# - in_force: the day's count, and its limit by the database's one rule,
#   limit_in_force() (migration 0010; STABLE, so it reads this statement's snapshot
#   like the rest): its own row's, else the latest earlier day's, else the type's
#   default times the plan's factor.
# - go: one row when the generation is accepted; every write below hangs off it, so a
#   refused generation changes nothing.
# - counted (usage_limits), g (the insert): g runs only after counted returned a row.
#   Inserting g debits the balance: a trigger does (migration 0013, only the database
#   moves a balance), so the balance after is the locked balance minus the cost.
# - One self-contained block per rollup (per_user, per_quarter_hour): it reads only
#   `go` (cost, day), `g` (id, created_at) and the parameters. Add a rollup as one more
#   block of that shape.
# - The last SELECT returns one row with what the caller needs to answer or to say
#   why it refused.
_RECORD = text(
    """
    WITH ctx AS (
        SELECT b.balance,
               (coalesce(CAST(:at AS timestamptz), now()) AT TIME ZONE o.timezone)::date AS day,
               t.type IS NOT NULL AS known_type,
               coalesce(CAST(:credits AS integer), t.default_credits) AS cost,
               EXISTS (SELECT 1 FROM users u WHERE u.organization_id = o.id AND u.id = :user)
                   AS member
        FROM credit_balances b
        JOIN organizations o ON o.id = b.organization_id
        LEFT JOIN generation_types t ON t.type = :type
        WHERE b.organization_id = :org
    ),
    previous AS (
        SELECT p.id, p.user_id, p.type, p.credits, p.created_at
        FROM generations p
        WHERE p.organization_id = :org AND p.idempotency_key = CAST(:key AS text)
    ),
    today AS (
        SELECT u.used
        FROM usage_limits u JOIN ctx ON u.date = ctx.day
        WHERE u.organization_id = :org AND u.type = :type
    ),
    in_force AS (
        SELECT coalesce((SELECT used FROM today), 0) AS used, f.daily_limit
        FROM ctx CROSS JOIN LATERAL limit_in_force(:org, :type, ctx.day) AS f
    ),
    go AS (
        SELECT ctx.cost, ctx.day, in_force.daily_limit
        FROM ctx CROSS JOIN in_force
        WHERE ctx.known_type AND ctx.member AND NOT EXISTS (SELECT FROM previous)
          AND ctx.balance >= ctx.cost AND in_force.used < in_force.daily_limit
    ),
    counted AS (
        INSERT INTO usage_limits AS u
            (organization_id, type, date, used, credits_used, daily_limit)
        SELECT :org, :type, go.day, 1, go.cost, go.daily_limit
        FROM go
        ON CONFLICT (organization_id, type, date) DO UPDATE
            SET used = u.used + 1, credits_used = u.credits_used + excluded.credits_used,
                updated_at = now()
            WHERE u.used < u.daily_limit
        RETURNING u.used, u.daily_limit
    ),
    g AS (
        INSERT INTO generations
            (organization_id, user_id, type, credits, idempotency_key, created_at)
        SELECT :org, :user, :type, go.cost, :key, coalesce(CAST(:at AS timestamptz), now())
        FROM go CROSS JOIN counted
        RETURNING id, created_at
    ),
    per_user AS (
        INSERT INTO user_daily_usage AS r
            (organization_id, user_id, date, type, generations, credits)
        SELECT :org, :user, go.day, :type, 1, go.cost
        FROM go CROSS JOIN g
        ON CONFLICT (organization_id, user_id, date, type) DO UPDATE
            SET generations = r.generations + 1, credits = r.credits + excluded.credits
    ),
    per_quarter_hour AS (
        INSERT INTO quarter_hour_usage AS r (organization_id, bucket, type, generations, credits)
        SELECT :org, date_bin('15 minutes', g.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
               :type, 1, go.cost
        FROM go CROSS JOIN g
        ON CONFLICT (organization_id, bucket, type) DO UPDATE
            SET generations = r.generations + 1, credits = r.credits + excluded.credits
    ),
    -- The cross-organization rollups (migration 0007), in the organization's local
    -- day: a new day starts from the running totals through the latest earlier day,
    -- and the days after go.day (only a back-dated generation has any) each add it too.
    -- Exact because this statement's snapshot is taken after the lock (see above).
    per_org_day AS (
        INSERT INTO organization_daily_usage AS r
            (organization_id, date, generations, credits, generations_through, credits_through)
        SELECT :org, go.day, 1, go.cost,
               coalesce(p.generations_through, 0) + 1, coalesce(p.credits_through, 0) + go.cost
        FROM go CROSS JOIN g
        LEFT JOIN LATERAL (
            SELECT e.generations_through, e.credits_through
            FROM organization_daily_usage e
            WHERE e.organization_id = :org AND e.date < go.day
            ORDER BY e.date DESC
            LIMIT 1
        ) p ON true
        ON CONFLICT (organization_id, date) DO UPDATE
            SET generations = r.generations + 1, credits = r.credits + excluded.credits,
                generations_through = r.generations_through + 1,
                credits_through = r.credits_through + excluded.credits
    ),
    per_org_later_days AS (
        UPDATE organization_daily_usage r
        SET generations_through = r.generations_through + 1,
            credits_through = r.credits_through + go.cost
        FROM go CROSS JOIN g
        WHERE r.organization_id = :org AND r.date > go.day
    ),
    per_org_month AS (
        INSERT INTO organization_monthly_usage AS r (month, organization_id, generations, credits)
        SELECT date_trunc('month', go.day)::date, :org, 1, go.cost
        FROM go CROSS JOIN g
        ON CONFLICT (organization_id, month) DO UPDATE
            SET generations = r.generations + 1, credits = r.credits + excluded.credits
    )
    SELECT ctx.balance, ctx.day, ctx.known_type, ctx.cost, ctx.member,
           in_force.used, in_force.daily_limit,
           previous.id AS previous_id, previous.user_id AS previous_user,
           previous.type AS previous_type, previous.credits AS previous_credits,
           previous.created_at AS previous_created_at,
           CASE WHEN g.id IS NOT NULL THEN ctx.balance - ctx.cost END AS balance_after,
           counted.used AS used_after, counted.daily_limit AS limit_after,
           g.id, g.created_at
    FROM ctx
    CROSS JOIN in_force
    LEFT JOIN previous ON true
    LEFT JOIN counted ON true
    LEFT JOIN g ON true
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

    Two statements in one round trip: the lock (carrying the transaction's timeouts),
    then all the work in one (see ``_RECORD``); then COMMIT, in the same round trip when
    there is a key (a retry after a lost answer is safe then), else in one of its own.
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
    params = {
        "org": org,
        "user": user,
        "type": type,
        "credits": credits,
        "at": when,
        "key": idempotency_key,
    }

    keyed = idempotency_key is not None

    def body(conn: Connection) -> RecordedGeneration:
        # Both statements in one round trip: the lock is held from the first, and the
        # second does not wait for the client to read the first's answer. Without the
        # organization both come back empty and change nothing; a refusal writes
        # nothing either, so COMMIT may follow in the same round trip.
        locked, rows = pipelined(
            conn, [(_LOCK, {"org": org, "ms": timeout_ms()}), (_RECORD, params)], commit=keyed
        )
        if not locked or locked[0].balance is None or not rows:
            raise InvalidGeneration(f"There is no organization with id {org}.")
        return _answer(rows[0], org=org, user=user, type=type, key=idempotency_key)

    # With a key, a retry after a lost COMMIT finds the generation it recorded; without
    # one, a lost COMMIT is reported as OutcomeUnknown rather than recorded twice.
    return run_in_transaction(engine, body, idempotent=keyed, sets_timeouts=True, commits=keyed)


def _answer(
    row: Row[Any], *, org: int, user: int, type: str, key: str | None
) -> RecordedGeneration:
    """The generation ``_RECORD`` recorded (or found under its key), or the refusal its
    row explains, in the order the checks apply."""
    if not row.known_type:
        raise InvalidGeneration(f"Unknown generation type {type!r}.")
    if not row.member:
        raise InvalidGeneration(f"User {user} is not a member of organization {org}.")
    cost = int(row.cost)

    def recorded(
        id: int, created_at: dt.datetime, *, balance: int, used: int, limit: int
    ) -> RecordedGeneration:
        return RecordedGeneration(
            id=id,
            organization_id=org,
            user_id=user,
            type=type,
            credits=cost,
            created_at=created_at,
            idempotency_key=key,
            local_date=row.day,
            balance_after=int(balance),
            used_today=int(used),
            daily_limit=int(limit),
        )

    first = replay(
        first=row if row.previous_id is not None else None,
        asked=(user, type, cost),
        recorded=lambda r: (r.previous_user, r.previous_type, r.previous_credits),
        conflict=lambda r: (
            f"Idempotency key {key!r} was used for another generation "
            f"({r.previous_id}). Nothing was recorded."
        ),
    )
    if first is not None:
        return recorded(
            row.previous_id,
            row.previous_created_at,
            balance=row.balance,
            used=row.used,
            limit=row.daily_limit,
        )
    if row.id is not None:
        return recorded(
            row.id,
            row.created_at,
            balance=row.balance_after,
            used=row.used_after,
            limit=row.limit_after,
        )
    if row.balance < cost:
        raise InsufficientCredits(organization_id=org, balance=int(row.balance), requested=cost)
    # The day's count had reached its limit. (Also the answer, with the transaction
    # rolled back, if the count raced past the check in `go`, which the lock rules out.)
    raise QuotaExceeded(
        organization_id=org,
        type=type,
        day=row.day,
        used=int(row.used),
        limit=int(row.daily_limit),
    )


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
