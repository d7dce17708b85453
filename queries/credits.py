"""Credit adjustments and reversals: transactions that never lose an update.

Each write owns its transaction (it takes an ``Engine``) and, in it, locks the
organization's ``credit_balances`` row before anything else. Every change to a balance
goes through that row, so adjustments, reversals and generations of one organization
are serialized there, and each ledger row's ``balance_after`` is exact. Balances move
in SQL (``balance = balance + :amount`` guarded by ``balance + :amount >= 0``), never by
writing back a number read into Python.

Errors (importable from here) carry a sentence for the page: ``InvalidAdjustment``,
``AlreadyReversed``, ``InsufficientCredits``, ``IdempotencyConflict``,
``QuotaExceeded``. When one is raised, nothing was written.
"""

from __future__ import annotations

import datetime as dt
import numbers
import os
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from queries.errors import (
    AlreadyReversed,
    DashboardError,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAdjustment,
    QuotaExceeded,
)
from queries.transactions import run_in_transaction

__all__ = [
    "AlreadyReversed",
    "DashboardError",
    "IdempotencyConflict",
    "InsufficientCredits",
    "InvalidAdjustment",
    "LedgerEntry",
    "QuotaExceeded",
    "adjust_credits",
    "max_adjustment",
    "reverse_adjustment",
]

DEFAULT_MAX_ADJUSTMENT = 10_000_000
MAX_REASON = 200
MAX_NOTE = 2000
MAX_ACTOR = 320
MAX_KEY = 200


def max_adjustment() -> int:
    """The largest amount one adjustment may move (``CREDITS_MAX_ADJUSTMENT``)."""
    raw = os.environ.get("CREDITS_MAX_ADJUSTMENT", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_ADJUSTMENT


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


_INSERT_ENTRY = text(
    """
    INSERT INTO credit_ledger (organization_id, amount, balance_after, kind, reason, note,
                               actor, idempotency_key, reverses_id)
    VALUES (:organization_id, :amount, :balance_after, :kind, :reason, :note, :actor,
            :idempotency_key, :reverses_id)
    RETURNING id, organization_id, amount, balance_after, kind, reason, note, actor,
              idempotency_key, reverses_id, created_at
    """
)
_SELECT_BY_KEY = text(
    """
    SELECT id, organization_id, amount, balance_after, kind, reason, note, actor,
           idempotency_key, reverses_id, created_at
    FROM credit_ledger
    WHERE organization_id = :org AND idempotency_key = :key
    """
)


def _text(value: object, name: str, *, maximum: int) -> str:
    """Required text: present, not blank, not too long."""
    if not isinstance(value, str):
        raise InvalidAdjustment(f"The {name} must be text.")
    if not value.strip():
        raise InvalidAdjustment(f"The {name} cannot be empty.")
    if len(value) > maximum:
        raise InvalidAdjustment(
            f"The {name} is too long ({len(value)} characters; at most {maximum})."
        )
    if "\x00" in value:
        raise InvalidAdjustment(f"The {name} contains a NUL character.")
    return value


def _optional_text(value: object, name: str, *, maximum: int) -> str | None:
    """Optional text: None or blank means none."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _text(value, name, maximum=maximum)


def _whole(value: object, name: str) -> int:
    # bool is an int in Python; a checkbox value must never become a 1-credit grant.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidAdjustment(f"The {name} must be a whole number, not {value!r}.")
    return int(value)


def _lock_balance(conn: Connection, organization_id: int) -> int:
    balance = conn.execute(
        text("SELECT balance FROM credit_balances WHERE organization_id = :org FOR UPDATE"),
        {"org": organization_id},
    ).scalar_one_or_none()
    if balance is None:
        raise InvalidAdjustment(f"There is no organization with id {organization_id}.")
    return int(balance)


def _move_balance(conn: Connection, organization_id: int, amount: int) -> int:
    """Add ``amount`` to the balance in SQL, refusing to go below zero."""
    new_balance = conn.execute(
        text(
            "UPDATE credit_balances SET balance = balance + :amount, updated_at = now() "
            "WHERE organization_id = :org AND balance + :amount >= 0 RETURNING balance"
        ),
        {"org": organization_id, "amount": amount},
    ).scalar_one_or_none()
    if new_balance is None:
        current = conn.execute(
            text("SELECT balance FROM credit_balances WHERE organization_id = :org"),
            {"org": organization_id},
        ).scalar_one()
        raise InsufficientCredits(
            organization_id=organization_id, balance=int(current), requested=-amount
        )
    return int(new_balance)


def _insert_entry(conn: Connection, values: dict[str, object]) -> LedgerEntry:
    try:
        row = conn.execute(_INSERT_ENTRY, values).one()
    except IntegrityError as exc:  # the transaction is rolled back as this propagates
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", "")
        if constraint == "uq_credit_ledger_organization_id_reverses_id":
            raise AlreadyReversed(
                f"Ledger entry {values['reverses_id']} has already been reversed."
            ) from None
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
    ``IdempotencyConflict``.
    """
    if (
        isinstance(organization_id, bool)
        or not isinstance(organization_id, numbers.Integral)
        or organization_id <= 0
    ):
        raise InvalidAdjustment(f"Choose an organization (got {organization_id!r}).")
    amount = _whole(amount, "amount")
    if amount == 0:
        raise InvalidAdjustment("The amount cannot be zero.")
    limit = max_adjustment()
    if abs(amount) > limit:
        raise InvalidAdjustment(
            f"One adjustment may move at most {limit:,} credits; {abs(amount):,} is too many."
        )
    reason = _text(reason, "reason", maximum=MAX_REASON)
    actor = _text(actor, "actor", maximum=MAX_ACTOR)
    key = _text(idempotency_key, "idempotency key", maximum=MAX_KEY)
    note = _optional_text(note, "note", maximum=MAX_NOTE)
    kind = "grant" if amount > 0 else "deduct"
    org = int(organization_id)

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
                previous.actor,
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
        balance_after = _move_balance(conn, org, amount)
        return _insert_entry(
            conn,
            {
                "organization_id": org,
                "amount": amount,
                "balance_after": balance_after,
                "kind": kind,
                "reason": reason,
                "note": note,
                "actor": actor,
                "idempotency_key": key,
                "reverses_id": None,
            },
        )

    return run_in_transaction(engine, body)


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
    if isinstance(entry_id, bool) or not isinstance(entry_id, numbers.Integral) or entry_id <= 0:
        raise InvalidAdjustment(f"Choose a ledger entry to reverse (got {entry_id!r}).")
    actor = _text(actor, "actor", maximum=MAX_ACTOR)
    reason = _text(reason, "reason", maximum=MAX_REASON)
    entry_id = int(entry_id)

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
            if (previous.actor, previous.reason) == (actor, reason):
                return previous
            raise AlreadyReversed(
                f"Ledger entry {entry_id} was already reversed by {previous.actor} (entry {previous.id})."
            )
        amount = -int(row.amount)
        balance_after = _move_balance(conn, org, amount)
        return _insert_entry(
            conn,
            {
                "organization_id": org,
                "amount": amount,
                "balance_after": balance_after,
                "kind": "reversal",
                "reason": reason,
                "note": None,
                "actor": actor,
                "idempotency_key": key,
                "reverses_id": entry_id,
            },
        )

    return run_in_transaction(engine, body)
