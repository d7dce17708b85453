"""Credit adjustments and reversals: transactions that never lose an update.

Each write owns its transaction (it takes an ``Engine``) and, in it, locks the
organization before anything else, replays its key and books its entry through
``queries.ledger``, the one place credits move: adjustments, reversals and generations
of one organization are serialized on that lock, and only the database moves a balance.

Errors (importable from here) carry a sentence for the page: ``InvalidAdjustment``
(and its ``ApprovalRequired``, ``ReversalApprovalRequired``), ``AlreadyReversed``,
``InsufficientCredits``, ``IdempotencyConflict``, ``QuotaExceeded``; when one is raised, nothing was written. Failures of the database
itself arrive as the ``queries.errors`` that ``queries.transactions`` documents
(``Busy``, ``DatabaseUnavailable``, ``OutcomeUnknown``, ``DatabaseRefused``); never a raw
SQLAlchemy or psycopg exception. ``LedgerEntry`` and ``approval_threshold`` are
``queries.ledger``'s, importable from here too for the pages that show adjustments.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from sqlalchemy import Connection, Engine, Row, text

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
    NothingToReverse,
    QuotaExceeded,
    ReversalApprovalRequired,
)
from queries.grants import check_grant_terms, credit_grants
from queries.identity import canonical_identity, stored_identity
from queries.ledger import (
    LedgerEntry,
    approval_threshold,
    check_alone,
    check_below_threshold,
    entry_by_key,
    insert_movement,
    lock_organization,
    replay,
    submitted_differently,
)
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
    "NothingToReverse",
    "QuotaExceeded",
    "ReversalApprovalRequired",
    "adjust_credits",
    "approval_threshold",
    "check_adjustment_amount",
    "credit_grants",
    "max_adjustment",
    "recent_duplicate",
    "reversal_amount",
    "reverse_adjustment",
]

DEFAULT_MAX_ADJUSTMENT = 10_000_000


def max_adjustment() -> int:
    """The largest amount one adjustment may move (``CREDITS_MAX_ADJUSTMENT``)."""
    raw = os.environ.get("CREDITS_MAX_ADJUSTMENT", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_ADJUSTMENT


def adjust_credits(
    engine: Engine,
    *,
    organization_id: int,
    amount: int,
    reason: str,
    actor: str,
    idempotency_key: str,
    note: str | None = None,
    expires_at: dt.datetime | None = None,
    priority: int | None = None,
) -> LedgerEntry:
    """Grant (``amount > 0``) or deduct (``amount < 0``) credits, once per idempotency key.

    A grant becomes a credit grant (``queries.grants``) that expires at ``expires_at``
    (an aware datetime; None: never) and is drawn in ``priority``'s turn (0-255, lower
    first; None: the default, 10). A deduction draws from the live grants in order.

    Returns the ledger entry with its ``balance_after``. The same key again returns the
    original entry and changes nothing; the same key with a different payload raises
    ``IdempotencyConflict``. An amount above ``approval_threshold()`` either way, or one
    that with what ``actor`` moved alone for this organization in the last 24 hours
    passes it (``ledger.check_alone``), raises ``ApprovalRequired`` and writes nothing:
    ``queries.approvals.request_adjustment`` makes it a request for a second person.
    ``actor`` is stored in its canonical form (``queries.identity``).
    """
    org = check_id(organization_id, error=InvalidAdjustment)
    amount = check_adjustment_amount(amount)
    check_below_threshold(amount=amount)
    reason = required_text(reason, "reason", maximum=MAX_REASON, error=InvalidAdjustment)
    actor = canonical_identity(actor, "actor", error=InvalidAdjustment)
    key = check_key(idempotency_key, error=InvalidAdjustment)
    assert key is not None
    note = check_text(
        note, "note", maximum=MAX_NOTE, required=False, multiline=True, error=InvalidAdjustment
    )
    expiry, rank = check_grant_terms(
        amount=amount, expires_at=expires_at, priority=priority, error=InvalidAdjustment
    )
    kind = "grant" if amount > 0 else "deduct"

    def body(conn: Connection) -> LedgerEntry:
        lock_organization(conn, organization_id=org)
        previous = replay(
            first=entry_by_key(conn, organization_id=org, idempotency_key=key),
            asked=(amount, kind, reason, note, actor, expiry, rank),
            recorded=lambda e: (
                e.amount,
                e.kind,
                e.reason,
                e.note,
                stored_identity(e.actor),
                e.grant_expires_at,
                e.grant_priority,
            ),
            conflict=lambda e: submitted_differently(
                what="request",
                first=f"entry {e.id}: {e.amount:+,} credits, {e.reason!r}",
                start="adjustment",
            ),
        )
        if previous is not None:
            return previous
        check_alone(conn, organization_id=org, actor=actor, amount=amount)
        return insert_movement(
            conn,
            organization_id=org,
            amount=amount,
            kind=kind,
            reason=reason,
            note=note,
            actor=actor,
            idempotency_key=key,
            grant_expires_at=expiry,
            grant_priority=rank,
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
    (a retry), and raises ``AlreadyReversed`` otherwise. A reversed grant gives back
    what remains of it: when part was already used, only the rest is reversed, and the
    reversal's note says how much was used; when nothing remains (all used or expired)
    it raises ``NothingToReverse``. A reversed deduction is granted back, as a new
    grant that never expires. A reversal that would take the balance below zero raises
    ``InsufficientCredits``. An expiry cannot be reversed: grant the credits again.
    ``organization_id``, when given, must be the entry's organization.

    The two-person rule holds as for ``adjust_credits``: a reversal that books more than
    ``approval_threshold()`` credits either way, or that with what ``actor`` moved alone
    for the organization in the last 24 hours passes it, raises
    ``ReversalApprovalRequired`` (an ``ApprovalRequired``) and writes nothing. No request
    carries a reversal: its sentence names the ways that remain (a second person
    reverses it, or an opposite adjustment is requested for approval).
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
        if row.kind == "expired":
            raise InvalidAdjustment(
                "An expiry cannot be reversed; grant the credits again, with a new expiry."
            )
        org = int(row.organization_id)
        # The lock writes off due grants first, so what remains is what can be reversed.
        lock_organization(conn, organization_id=org)
        key = f"reversal:{entry_id}"
        previous = replay(
            first=entry_by_key(conn, organization_id=org, idempotency_key=key),
            asked=(actor, reason),
            recorded=lambda e: (stored_identity(e.actor), e.reason),
            conflict=lambda e: (
                f"Ledger entry {entry_id} was already reversed by {e.actor} (entry {e.id})."
            ),
            error=AlreadyReversed,
        )
        if previous is not None:
            return previous
        note = None
        grant = conn.execute(_GRANT_OF_ENTRY, {"org": org, "entry": entry_id}).one_or_none()
        amount = reversal_amount(
            entry_amount=int(row.amount),
            remaining=None if grant is None else int(grant.remaining),
        )
        if grant is not None:
            if grant.remaining == 0:
                raise NothingToReverse(
                    f"Nothing remains of entry {entry_id}'s {grant.amount:,} credits "
                    f"({_gone(grant)}), so there is nothing to reverse. Nothing was changed."
                )
            if grant.remaining < grant.amount:
                note = (
                    f"{grant.amount - grant.remaining:,} of the {grant.amount:,} credits were "
                    f"already {_gone(grant)}; reversed the remaining {grant.remaining:,}."
                )
        # The two-person rule, as for an adjustment: what the reversal books, with what
        # this person moved alone for the organization in the last 24 hours.
        check_alone(conn, organization_id=org, actor=actor, amount=amount, reverses=entry_id)
        return insert_movement(
            conn,
            organization_id=org,
            amount=amount,
            kind="reversal",
            reason=reason,
            note=note,
            actor=actor,
            idempotency_key=key,
            reverses_id=entry_id,
        )

    # The reversal's key is "reversal:<entry>": a retry finds it, as adjust_credits does.
    return run_in_transaction(engine, body, idempotent=True)


def reversal_amount(*, entry_amount: int, remaining: int | None) -> int:
    """The credits reversing an entry books (signed): the opposite of what remains of the
    grant the entry made (``remaining``), or of the entry's amount when it made none
    (a deduction, or an entry older than the grants)."""
    # One rule for the write and for the form that previews it.
    return -(entry_amount if remaining is None else remaining)


# The grant a positive entry made (not the opening grant, which covers older entries).
_GRANT_OF_ENTRY = text(
    """
    SELECT amount, remaining, drawn, expired, reversed FROM credit_grants
    WHERE organization_id = :org AND ledger_entry_id = :entry AND source <> 'opening'
    """
)


def _gone(grant: Row[Any]) -> str:
    if grant.expired and grant.drawn:
        return "used or expired"
    return "expired" if grant.expired else "used"


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
           idempotency_key, reverses_id, created_at, approval_request_id, grant_expires_at,
           grant_priority, grant_id, effective_at
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
