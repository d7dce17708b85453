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

    @property
    def overage(self) -> int:
        """How far the day's count is beyond its limit: above 0 only under a soft limit
        (migration 0020), which lets generations through past it."""
        return max(self.used_today - self.daily_limit, 0)


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
# Everything else, as one statement after the lock: a call of record_generation_work()
# (migration 0016, where the statement is, block by block), which returns one row with
# what `_answer` needs to answer or to say why it refused. It must be a statement of its
# own: a statement that waited for the lock would go on reading the snapshot it started
# with, in which a set_timezone or set_daily_limit that held the lock meanwhile had not
# committed (the wrong local day, a stale limit). Started after the lock, its snapshot
# sees everything the previous holder committed, and nothing it reads can change until
# COMMIT, because every write of an organization's balance, limits and zone takes the
# same lock. It is a PL/pgSQL function so that each server connection plans its six
# writes once, not on every call, whatever the pooler does (docs/performance.md,
# "What the rollups cost").
_RECORD = text(
    """
    SELECT * FROM record_generation_work(
        CAST(:org AS bigint), CAST(:user AS bigint), CAST(:type AS text),
        CAST(:credits AS integer), CAST(:at AS timestamptz), CAST(:key AS text))
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
    Under a soft limit (``quotas.set_limit_enforcement``) a generation past the limit
    is recorded too, its ``overage`` above 0.

    The credits are drawn from the organization's live grants in order (priority, then
    the soonest expiry: ``queries.grants``), by the database's trigger; grants that were
    due are written off first, by the lock.

    Raises ``InsufficientCredits`` or ``QuotaExceeded`` (hard limit; nothing of the
    generation is written, though a keyed refusal commits the lock's write-off of grants
    that were due, which any write would make), and
    ``InvalidGeneration`` for an unknown organization or type, a user of another
    organization, or a bad argument. With an ``idempotency_key``, a retry returns the
    generation recorded the first time.

    Two statements in one round trip: the lock (carrying the transaction's timeouts),
    then all the work in one call of the database's ``record_generation_work`` (see
    ``_RECORD``); then COMMIT, in the same round trip when there is a key (a retry after
    a lost answer is safe then), else in one of its own.
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
