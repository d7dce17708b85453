"""Credit adjustments and reversals: transactions that never lose an update.

Each write owns its transaction (it takes an ``Engine``) and, in it, locks the
organization (``lock_organization``, migration 0013: its ``credit_balances`` row) before
anything else, so adjustments, reversals and generations of one organization are
serialized there. Only the database moves a balance: inserting a ledger entry fires a
trigger that adds its amount, refuses to go below zero and sets the entry's
``balance_after``; the app cannot update a balance, nor give an entry its id, time or
``balance_after``.

Errors (importable from here) carry a sentence for the page: ``InvalidAdjustment``,
``AlreadyReversed``, ``InsufficientCredits``, ``IdempotencyConflict``,
``QuotaExceeded``; when one is raised, nothing was written. Failures of the database
itself arrive as the ``queries.errors`` that ``queries.transactions`` documents
(``Busy``, ``DatabaseUnavailable``, ``OutcomeUnknown``, ``DatabaseRefused``); never a raw
SQLAlchemy or psycopg exception.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from queries.checks import (
    MAX_ACTOR,
    MAX_KEY,
    MAX_NOTE,
    MAX_REASON,
    check_id,
    check_key,
    check_text,
    check_timestamp,
    check_whole,
    required_text,
)
from queries.errors import (
    AlreadyReversed,
    ApprovalRequired,
    DashboardError,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAdjustment,
    QuotaExceeded,
)
from queries.identity import canonical_identity, stored_identity
from queries.transactions import run_in_transaction

__all__ = [
    "MAX_ACTOR",
    "MAX_KEY",
    "MAX_NOTE",
    "MAX_REASON",
    "AlreadyReversed",
    "ApprovalRequired",
    "DashboardError",
    "IdempotencyConflict",
    "InsufficientCredits",
    "InvalidAdjustment",
    "LedgerEntry",
    "QuotaExceeded",
    "adjust_credits",
    "approval_threshold",
    "check_adjustment_amount",
    "check_below_threshold",
    "max_adjustment",
    "moved_alone",
    "recent_duplicate",
    "reverse_adjustment",
]

DEFAULT_MAX_ADJUSTMENT = 10_000_000
DEFAULT_APPROVAL_THRESHOLD = 100_000


def max_adjustment() -> int:
    """The largest amount one adjustment may move (``CREDITS_MAX_ADJUSTMENT``)."""
    raw = os.environ.get("CREDITS_MAX_ADJUSTMENT", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_ADJUSTMENT


def approval_threshold() -> int:
    """The largest amount one person may move alone (``CREDITS_APPROVAL_THRESHOLD``,
    default 100,000); an adjustment above it needs a second person
    (``queries.approvals``)."""
    raw = os.environ.get("CREDITS_APPROVAL_THRESHOLD", "").strip()
    return int(raw) if raw.isdigit() else DEFAULT_APPROVAL_THRESHOLD


def check_below_threshold(amount: int) -> None:
    """Raise ``ApprovalRequired`` when ``amount`` moves more credits than one person may."""
    threshold = approval_threshold()
    if abs(amount) > threshold:
        raise ApprovalRequired(amount=amount, threshold=threshold)


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


_INSERT_ENTRY = text(
    """
    INSERT INTO credit_ledger (organization_id, amount, kind, reason, note, actor,
                               idempotency_key, reverses_id)
    VALUES (:organization_id, :amount, :kind, :reason, :note, :actor, :idempotency_key,
            :reverses_id)
    RETURNING id, organization_id, amount, balance_after, kind, reason, note, actor,
              idempotency_key, reverses_id, created_at, approval_request_id
    """
)
_SELECT_BY_KEY = text(
    """
    SELECT id, organization_id, amount, balance_after, kind, reason, note, actor,
           idempotency_key, reverses_id, created_at, approval_request_id
    FROM credit_ledger
    WHERE organization_id = :org AND idempotency_key = :key
    """
)


def _lock_balance(conn: Connection, organization_id: int) -> int:
    """Lock the organization for this transaction (migration 0013's
    ``lock_organization``) and return its balance."""
    balance = conn.execute(
        text("SELECT lock_organization(:org)"), {"org": organization_id}
    ).scalar_one()
    if balance is None:
        raise InvalidAdjustment(f"There is no organization with id {organization_id}.")
    return int(balance)


def insufficient_credits(exc: DBAPIError) -> InsufficientCredits | None:
    """The ``InsufficientCredits`` that the database's refusal to take a balance below
    zero (migration 0013's triggers) stands for, or None for any other error."""
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


def _insert_entry(conn: Connection, values: dict[str, object]) -> LedgerEntry:
    """Insert a ledger entry; the database books it (balance, ``balance_after``)."""
    try:
        row = conn.execute(_INSERT_ENTRY, values).one()
    except IntegrityError as exc:  # the transaction is rolled back as this propagates
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", "")
        if constraint == "uq_credit_ledger_organization_id_reverses_id":
            raise AlreadyReversed(
                f"Ledger entry {values['reverses_id']} has already been reversed."
            ) from None
        refusal = insufficient_credits(exc)
        if refusal is not None:
            raise refusal from None
        raise
    return LedgerEntry(**row._mapping)


def _existing(conn: Connection, organization_id: int, key: str) -> LedgerEntry | None:
    row = conn.execute(_SELECT_BY_KEY, {"org": organization_id, "key": key}).one_or_none()
    return LedgerEntry(**row._mapping) if row else None


def adjust_credits(
    engine: Engine,
    *,
    organization_id: int,
    amount: int,
    reason: str,
    actor: str,
    idempotency_key: str,
    note: str | None = None,
) -> LedgerEntry:
    """Grant (``amount > 0``) or deduct (``amount < 0``) credits, once per idempotency key.

    Returns the ledger entry with its ``balance_after``. The same key again returns the
    original entry and changes nothing; the same key with a different payload raises
    ``IdempotencyConflict``. An amount above ``approval_threshold()`` either way, or one
    that with what ``actor`` moved alone for this organization in the last 24 hours
    passes it (``_check_person_window``), raises ``ApprovalRequired`` and writes nothing:
    ``queries.approvals.request_adjustment`` makes it a request for a second person.
    ``actor`` is stored in its canonical form (``queries.identity``).
    """
    org = check_id(organization_id, error=InvalidAdjustment)
    amount = check_adjustment_amount(amount)
    check_below_threshold(amount)
    reason = required_text(reason, "reason", maximum=MAX_REASON, error=InvalidAdjustment)
    actor = canonical_identity(actor, "actor", error=InvalidAdjustment)
    key = check_key(idempotency_key, error=InvalidAdjustment)
    assert key is not None
    note = check_text(
        note, "note", maximum=MAX_NOTE, required=False, multiline=True, error=InvalidAdjustment
    )
    kind = "grant" if amount > 0 else "deduct"

    def body(conn: Connection) -> LedgerEntry:
        _lock_balance(conn, org)
        # Under the balance lock no concurrent call with this key can be half-way.
        previous = _existing(conn, org, key)
        if previous is not None:
            same = (
                previous.amount,
                previous.kind,
                previous.reason,
                previous.note,
                stored_identity(previous.actor),
            ) == (
                amount,
                kind,
                reason,
                note,
                actor,
            )
            if not same:
                raise IdempotencyConflict(
                    "This request was already submitted with different details "
                    f"(entry {previous.id}: {previous.amount:+,} credits, {previous.reason!r}). "
                    "Nothing was changed; start a new adjustment."
                )
            return previous
        # Under the lock: a second tab cannot pass the 24-hour sum at the same time.
        _check_person_window(conn, organization_id=org, actor=actor, amount=amount)
        return _insert_entry(
            conn,
            {
                "organization_id": org,
                "amount": amount,
                "kind": kind,
                "reason": reason,
                "note": note,
                "actor": actor,
                "idempotency_key": key,
                "reverses_id": None,
            },
        )

    # A retry finds its own committed entry by the key, so a lost answer can be learned.
    return run_in_transaction(engine, body, idempotent=True)


def reverse_adjustment(
    engine: Engine,
    *,
    entry_id: int,
    actor: str,
    reason: str,
    organization_id: int | None = None,
) -> LedgerEntry:
    """Undo a ledger entry with an opposite entry of kind ``reversal``; once per entry.

    Reversing it again returns the existing reversal when the request is the same
    (a retry), and raises ``AlreadyReversed`` otherwise. A reversal that would take the
    balance below zero (the granted credits were spent) raises ``InsufficientCredits``.
    ``organization_id``, when given, must be the entry's organization.
    """
    entry_id = check_id(entry_id, "entry_id", error=InvalidAdjustment)
    actor = canonical_identity(actor, "actor", error=InvalidAdjustment)
    reason = required_text(reason, "reason", maximum=MAX_REASON, error=InvalidAdjustment)
    if organization_id is not None:
        organization_id = check_id(organization_id, error=InvalidAdjustment)

    def body(conn: Connection) -> LedgerEntry:
        row = conn.execute(
            text("SELECT organization_id, amount, kind FROM credit_ledger WHERE id = :id"),
            {"id": entry_id},
        ).one_or_none()
        if row is None or (organization_id is not None and row.organization_id != organization_id):
            raise InvalidAdjustment(f"There is no ledger entry {entry_id} to reverse.")
        if row.kind == "reversal":
            raise InvalidAdjustment(
                "A reversal cannot itself be reversed; make a new adjustment instead."
            )
        org = int(row.organization_id)
        _lock_balance(conn, org)
        key = f"reversal:{entry_id}"
        previous = _existing(conn, org, key)
        if previous is not None:
            if (stored_identity(previous.actor), previous.reason) == (actor, reason):
                return previous
            raise AlreadyReversed(
                f"Ledger entry {entry_id} was already reversed by {previous.actor} (entry {previous.id})."
            )
        amount = -int(row.amount)
        return _insert_entry(
            conn,
            {
                "organization_id": org,
                "amount": amount,
                "kind": "reversal",
                "reason": reason,
                "note": None,
                "actor": actor,
                "idempotency_key": key,
                "reverses_id": entry_id,
            },
        )

    # The reversal's key is "reversal:<entry>": a retry finds it, as adjust_credits does.
    return run_in_transaction(engine, body, idempotent=True)


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
    """organization id -> the credits ``actor`` (canonical) moved alone for it in the
    last 24 hours of database time, the absolute amounts summed: their grants,
    deductions and reversals, not entries that applied an approved request."""
    rows = conn.execute(_MOVED_ALONE, {"ids": organization_ids, "actor": actor})
    return {int(r.id): int(r.moved) for r in rows}


def _check_person_window(
    conn: Connection, *, organization_id: int, actor: str, amount: int
) -> None:
    """Raise ``ApprovalRequired`` when ``amount``, with what ``actor`` (canonical) moved
    alone for this organization in the last 24 hours, passes ``approval_threshold()``.
    Call it after taking the organization's balance lock, in the moving transaction."""
    threshold = approval_threshold()
    row = conn.execute(_MOVED_ALONE, {"ids": [organization_id], "actor": actor}).one()
    moved = int(row.moved)
    if moved + abs(amount) > threshold:
        raise ApprovalRequired(
            amount=amount, threshold=threshold, moved=moved, organization=str(row.slug)
        )


def check_adjustment_amount(amount: object) -> int:
    """A credit adjustment's amount: a whole number (an int, never a float, bool or
    text), not zero, moving at most ``CREDITS_MAX_ADJUSTMENT`` credits either way.
    Raises ``InvalidAdjustment`` with the sentence a form shows."""
    value = check_whole(amount, "amount", error=InvalidAdjustment)
    if value == 0:
        raise InvalidAdjustment("The amount cannot be zero.")
    limit = max_adjustment()
    if abs(value) > limit:
        raise InvalidAdjustment(
            f"One adjustment may move at most {limit:,} credits; {abs(value):,} is too many."
        )
    return value


_RECENT_DUPLICATE = text(
    """
    SELECT id, organization_id, amount, balance_after, kind, reason, note, actor,
           idempotency_key, reverses_id, created_at, approval_request_id
    FROM credit_ledger
    WHERE organization_id = :org
      AND created_at >= coalesce(CAST(:now AS timestamptz), now()) - CAST(:within AS interval)
      AND created_at <= coalesce(CAST(:now AS timestamptz), now())
      AND amount = :amount AND stored_identity(actor) = :actor
    ORDER BY created_at DESC, id DESC
    LIMIT 1
    """
)
MAX_DUPLICATE_WINDOW = dt.timedelta(days=1)


def recent_duplicate(
    conn: Connection,
    *,
    organization_id: int,
    actor: str,
    amount: int,
    within: dt.timedelta = dt.timedelta(minutes=10),
    now: dt.datetime | None = None,
) -> LedgerEntry | None:
    """The latest ledger entry of the organization by the same actor moving the same
    amount in the ``within`` before ``now`` (default the database's now), or None.

    A confirmation names it ("you made the same movement N minutes ago: entry #id"),
    for example when the same grant was entered in a second tab. Reads the
    (organization_id, created_at) index.
    """
    org = check_id(organization_id)
    actor = canonical_identity(actor, "actor")
    amount = check_whole(amount, "amount")
    if not isinstance(within, dt.timedelta) or not (
        dt.timedelta(0) < within <= MAX_DUPLICATE_WINDOW
    ):
        raise InvalidAdjustment(f"within must be a period of up to one day, not {within!r}.")
    when = None if now is None else check_timestamp(now, "now")
    row = conn.execute(
        _RECENT_DUPLICATE,
        {"org": org, "actor": actor, "amount": amount, "within": within, "now": when},
    ).one_or_none()
    return LedgerEntry(**row._mapping) if row else None
