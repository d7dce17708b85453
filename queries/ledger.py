"""Every credit movement goes through here: the lock, the entry, the key replay, the approval test.

The writes that move credits (``queries.credits``, ``queries.approvals``,
``queries.bulk``) hold no mechanism of their own; they check their input and call these
inside the transaction they own (``queries.transactions.run_in_transaction``):

- ``lock_organization`` / ``lock_organizations`` first: the database's lock
  (migration 0013) on the organization's ``credit_balances`` row, which serializes every
  change to its credits, returning the balance;
- ``replay`` next, when the write is keyed: the first answer for the same request, the
  write's own refusal for a different one (``IdempotencyConflict`` by default). Every
  keyed write uses it, generations, limit and time-zone changes too;
- ``needs_approval`` (with ``moved_alone`` / ``check_alone``): whether a second person
  must approve, the same test for a form, a file, a reversal and the write itself;
- ``insert_movement`` last: only the database books an entry (a trigger adds its amount
  to the balance, refuses to go below zero and sets ``balance_after``), so the app never
  writes a balance, nor an entry's id, time or ``balance_after``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from queries.errors import (
    AlreadyReversed,
    ApprovalRequired,
    DashboardError,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAdjustment,
    ReversalApprovalRequired,
)

__all__ = [
    "DEFAULT_APPROVAL_THRESHOLD",
    "LedgerEntry",
    "approval_threshold",
    "check_alone",
    "check_below_threshold",
    "check_reversal_alone",
    "entry_by_key",
    "insert_movement",
    "insufficient_credits",
    "lock_organization",
    "lock_organizations",
    "moved_alone",
    "needs_approval",
    "replay",
    "submitted_differently",
]

DEFAULT_APPROVAL_THRESHOLD = 100_000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One row of the credit ledger."""

    id: int
    organization_id: int
    amount: int
    balance_after: int
    kind: str
    reason: str
    note: str | None
    actor: str
    idempotency_key: str
    reverses_id: int | None
    created_at: dt.datetime
    approval_request_id: int | None = None
    # A grant's terms (None: never expires; the default priority), an expiry's grant
    # and the time it took effect (None: when recorded, ``created_at``).
    grant_expires_at: dt.datetime | None = None
    grant_priority: int | None = None
    grant_id: int | None = None
    effective_at: dt.datetime | None = None


# ------------------------------------------------------------------------------- locks

_LOCK = text("SELECT lock_organization(:org)")
# lock_organizations (migration 0013) locks the rows as its sorted scan returns them:
# two writes that share organizations take their locks in the same order, so they queue
# instead of deadlocking.
_LOCK_MANY = text(
    "SELECT organization_id AS id, balance FROM lock_organizations(CAST(:ids AS bigint[]))"
)


def lock_organization(conn: Connection, *, organization_id: int) -> int:
    """Lock the organization's credits for this transaction; its balance (``InvalidAdjustment`` if unknown)."""
    balance = conn.execute(_LOCK, {"org": organization_id}).scalar_one()
    if balance is None:
        raise InvalidAdjustment(f"There is no organization with id {organization_id}.")
    return int(balance)


def lock_organizations(conn: Connection, *, organization_ids: list[int]) -> dict[int, int]:
    """Lock several organizations' credits in id order, in one statement; id -> balance."""
    rows = conn.execute(_LOCK_MANY, {"ids": organization_ids})
    return {int(r.id): int(r.balance) for r in rows}


# ---------------------------------------------------------------------------- entries

_INSERT_ENTRY = text(
    """
    INSERT INTO credit_ledger (organization_id, amount, kind, reason, note, actor,
                               idempotency_key, reverses_id, grant_expires_at,
                               grant_priority)
    VALUES (:organization_id, :amount, :kind, :reason, :note, :actor, :idempotency_key,
            :reverses_id, :grant_expires_at, :grant_priority)
    RETURNING id, organization_id, amount, balance_after, kind, reason, note, actor,
              idempotency_key, reverses_id, created_at, approval_request_id, grant_expires_at,
              grant_priority, grant_id, effective_at
    """
)
_SELECT_BY_KEY = text(
    """
    SELECT id, organization_id, amount, balance_after, kind, reason, note, actor,
           idempotency_key, reverses_id, created_at, approval_request_id, grant_expires_at,
           grant_priority, grant_id, effective_at
    FROM credit_ledger
    WHERE organization_id = :org AND idempotency_key = :key
    """
)


def insufficient_credits(exc: DBAPIError) -> InsufficientCredits | None:
    """The ``InsufficientCredits`` a database refusal to go below zero stands for, else None."""
    # Migration 0013's triggers put the facts in the error's detail, as JSON.
    diag = getattr(exc.orig, "diag", None)
    if getattr(diag, "constraint_name", None) != "ck_credit_balances_balance_not_negative":
        return None
    try:
        facts = json.loads(getattr(diag, "message_detail", None) or "")
        return InsufficientCredits(
            organization_id=int(facts["organization_id"]),
            balance=int(facts["balance"]),
            requested=int(facts["requested"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


def insert_movement(
    conn: Connection,
    *,
    organization_id: int,
    amount: int,
    kind: str,
    reason: str,
    note: str | None,
    actor: str,
    idempotency_key: str,
    reverses_id: int | None = None,
    grant_expires_at: dt.datetime | None = None,
    grant_priority: int | None = None,
) -> LedgerEntry:
    """Insert a ledger entry (checked values, the organization locked); the database books it.

    A positive entry becomes a credit grant (migration 0021) with ``grant_expires_at``
    and ``grant_priority`` as its terms; a negative one draws from the live grants.
    """
    values = {
        "organization_id": organization_id,
        "amount": amount,
        "kind": kind,
        "reason": reason,
        "note": note,
        "actor": actor,
        "idempotency_key": idempotency_key,
        "reverses_id": reverses_id,
        "grant_expires_at": grant_expires_at,
        "grant_priority": grant_priority,
    }
    try:
        row = conn.execute(_INSERT_ENTRY, values).one()
    except IntegrityError as exc:  # the transaction is rolled back as this propagates
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", "")
        if constraint == "uq_credit_ledger_organization_id_reverses_id":
            raise AlreadyReversed(
                f"Ledger entry {reverses_id} has already been reversed."
            ) from None
        if constraint == "ck_credit_ledger_grant_expires_after_created":
            raise InvalidAdjustment(
                f"A grant's expiry must be in the future; {grant_expires_at:%Y-%m-%d %H:%M} "
                "UTC has passed. Nothing was changed."
            ) from None
        refusal = insufficient_credits(exc)
        if refusal is not None:
            raise refusal from None
        raise
    return LedgerEntry(**row._mapping)


def entry_by_key(
    conn: Connection, *, organization_id: int, idempotency_key: str
) -> LedgerEntry | None:
    """The organization's ledger entry recorded under ``idempotency_key``, or None."""
    row = conn.execute(
        _SELECT_BY_KEY, {"org": organization_id, "key": idempotency_key}
    ).one_or_none()
    return LedgerEntry(**row._mapping) if row else None


# ----------------------------------------------------------------------------- replay


def replay(
    *,
    first: T | None,
    asked: tuple[object, ...],
    recorded: Callable[[T], tuple[object, ...]],
    conflict: Callable[[T], str],
    error: type[DashboardError] = IdempotencyConflict,
) -> T | None:
    """What the key answered first if this is the same request, None for a new key; else ``error``."""
    # ``first`` is what the key recorded; ``recorded(first)`` is compared with ``asked``
    # and ``conflict(first)`` is the refusal's sentence. Called under the organization's
    # lock, where no call with the same key is half-way: a retry after a lost answer
    # gets the first answer, and nothing is applied twice.
    if first is None:
        return None
    if recorded(first) != asked:
        raise error(conflict(first))
    return first


def submitted_differently(*, what: str, first: str, start: str) -> str:
    """The sentence refusing a key used before for another request (``first`` names that one)."""
    return (
        f"This {what} was already submitted with different details ({first}). "
        f"Nothing was changed; start a new {start}."
    )


# ---------------------------------------------------------------- the two-person rule


def approval_threshold() -> int:
    """The most one person may move alone in 24 hours (``CREDITS_APPROVAL_THRESHOLD``, default 100,000)."""
    raw = os.environ.get("CREDITS_APPROVAL_THRESHOLD", "").strip()
    return int(raw) if raw.isdigit() else DEFAULT_APPROVAL_THRESHOLD


def needs_approval(*, amount: int, moved: int = 0, threshold: int | None = None) -> bool:
    """Whether ``amount`` (either way), after ``moved`` credits moved alone, passes the threshold."""
    limit = approval_threshold() if threshold is None else threshold
    return moved + abs(amount) > limit


def check_below_threshold(*, amount: int) -> None:
    """Raise ``ApprovalRequired`` when ``amount`` alone moves more credits than one person may."""
    threshold = approval_threshold()
    if needs_approval(amount=amount, threshold=threshold):
        raise ApprovalRequired(amount=amount, threshold=threshold)


# What one person moved alone for one organization in the last 24 hours (database
# time): every entry by them except those applying an approved request (a second
# person approved those). Reads the (organization_id, created_at) index; the actor
# comparison is canonical, for entries stored before identities were.
_MOVED_ALONE = text(
    """
    SELECT o.id, o.slug,
           (SELECT coalesce(sum(abs(l.amount)), 0)
            FROM credit_ledger l
            WHERE l.organization_id = o.id
              AND l.created_at > now() - interval '24 hours'
              AND l.approval_request_id IS NULL
              AND stored_identity(l.actor) = :actor) AS moved
    FROM organizations o WHERE o.id = ANY(CAST(:ids AS bigint[]))
    """
)


def moved_alone(conn: Connection, *, organization_ids: list[int], actor: str) -> dict[int, int]:
    """organization id -> the credits ``actor`` (canonical) moved alone for it in the last 24 hours."""
    # The absolute amounts of their grants, deductions and reversals, in database time.
    rows = conn.execute(_MOVED_ALONE, {"ids": organization_ids, "actor": actor})
    return {int(r.id): int(r.moved) for r in rows}


def check_alone(
    conn: Connection,
    *,
    organization_id: int,
    actor: str,
    amount: int,
    reverses: int | None = None,
) -> None:
    """Raise ``ApprovalRequired`` when ``amount`` with ``actor``'s last 24 hours passes the
    threshold; for the reversal of entry ``reverses``, ``ReversalApprovalRequired``."""
    # Under the organization's lock: a second tab cannot pass the sum at the same time.
    threshold = approval_threshold()
    row = conn.execute(_MOVED_ALONE, {"ids": [organization_id], "actor": actor}).one()
    moved = int(row.moved)
    if reverses is not None:
        check_reversal_alone(
            entry_id=reverses,
            amount=amount,
            moved=moved,
            organization=str(row.slug),
            threshold=threshold,
        )
    elif needs_approval(amount=amount, moved=moved, threshold=threshold):
        raise ApprovalRequired(
            amount=amount, threshold=threshold, moved=moved, organization=str(row.slug)
        )


def check_reversal_alone(
    *,
    entry_id: int,
    amount: int,
    moved: int = 0,
    organization: str | None = None,
    threshold: int | None = None,
) -> None:
    """Raise ``ReversalApprovalRequired`` when reversing entry ``entry_id`` (``amount``:
    the credits the reversal books), after ``moved`` credits moved alone, passes the
    threshold: the ``needs_approval`` test, worded for a reversal, which no request
    carries."""
    # The form (dashboard.actions.check_reversal) asks it with what it read; the write
    # asks it through check_alone, under the lock.
    limit = approval_threshold() if threshold is None else threshold
    if needs_approval(amount=amount, moved=moved, threshold=limit):
        raise ReversalApprovalRequired(
            entry_id=entry_id,
            amount=amount,
            threshold=limit,
            moved=moved,
            organization=organization,
        )
