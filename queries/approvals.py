"""Two-person approval of credit adjustments above ``CREDITS_APPROVAL_THRESHOLD``.

``queries.credits.adjust_credits`` refuses such an adjustment (``ApprovalRequired``).
Instead one person requests it (``request_adjustment``) and another approves it
(``approve``: the adjustment is applied once, its ledger entry names both) or rejects
it (``reject``). A request not decided within ``CREDITS_APPROVAL_EXPIRY_DAYS`` days
(default 7) expires: it can no longer be approved and leaves the queue.

Every write runs through ``queries.transactions.run_in_transaction`` under the
organization's balance lock, the lock every credit movement of that organization
takes, so a request is decided once however many people click at the same time: the
first approval applies it; a retry of that approval gets its ledger entry back;
another approval or rejection gets ``RequestClosed``. A decision is made by the
database's ``decide_approval_request`` (migration 0013), which compares people in
their canonical form, books the approved entry and records the decision; the app
cannot write a decision itself. Each step is also a row of ``audit_log``
(``request_adjustment``, ``approve_adjustment``, ``reject_adjustment``), so it shows in
the audit trail.

Errors: ``InvalidAdjustment`` (and its ``ApprovalRefused``, ``SelfApproval``,
``RequestClosed``), ``IdempotencyConflict``, ``InsufficientCredits``; when one is raised
nothing was written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from queries.checks import (
    MAX_NOTE,
    MAX_REASON,
    check_id,
    check_key,
    check_limit,
    check_text,
    required_text,
)
from queries.credits import check_adjustment_amount
from queries.errors import (
    ApprovalRefused,
    InvalidAdjustment,
    InvalidInput,
    RequestClosed,
    SelfApproval,
)
from queries.grants import check_grant_terms
from queries.identity import canonical_identity, stored_identity
from queries.ledger import (
    LedgerEntry,
    insufficient_credits,
    lock_organization,
    replay,
    submitted_differently,
)
from queries.transactions import run_in_transaction

__all__ = [
    "ApprovalCursor",
    "ApprovalPage",
    "ApprovalRequest",
    "PendingApproval",
    "approve",
    "expiry_days",
    "pending_requests_page",
    "record_request",
    "reject",
    "request_adjustment",
]

DEFAULT_EXPIRY_DAYS = 7


def expiry_days() -> int:
    """Days a request waits for a decision before it expires
    (``CREDITS_APPROVAL_EXPIRY_DAYS``, default 7)."""
    raw = os.environ.get("CREDITS_APPROVAL_EXPIRY_DAYS", "").strip()
    return int(raw) if raw.isdigit() and 0 < int(raw) <= 366 else DEFAULT_EXPIRY_DAYS


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """One request for an adjustment that needs a second person. ``status`` is pending,
    approved or rejected; a pending one past ``expires_at`` is expired."""

    id: int
    organization_id: int
    amount: int
    reason: str
    note: str | None
    requested_by: str
    idempotency_key: str
    status: str
    created_at: dt.datetime
    expires_at: dt.datetime
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_reason: str | None
    ledger_entry_id: int | None
    # The grant's terms the approved entry will carry (None: never expires; the default
    # priority).
    grant_expires_at: dt.datetime | None = None
    grant_priority: int | None = None


_INSERT_REQUEST = text(
    """
    INSERT INTO approval_requests (organization_id, amount, reason, note, requested_by,
                                   idempotency_key, expires_at, grant_expires_at,
                                   grant_priority)
    SELECT :org, :amount, :reason, :note, :actor, :key,
           now() + make_interval(days => CAST(:days AS integer)),
           CAST(:grant_expires_at AS timestamptz), CAST(:grant_priority AS smallint)
    -- An expiry already past by the database's clock could never be booked: no row.
    WHERE CAST(:grant_expires_at AS timestamptz) IS NULL
       OR CAST(:grant_expires_at AS timestamptz) > now()
    RETURNING id, organization_id, amount, reason, note, requested_by, idempotency_key,
              status, created_at, expires_at, decided_by, decided_at, decision_reason,
              ledger_entry_id, grant_expires_at, grant_priority
    """
)
_REQUEST_BY_KEY = text(
    """
    SELECT id, organization_id, amount, reason, note, requested_by, idempotency_key, status,
           created_at, expires_at, decided_by, decided_at, decision_reason, ledger_entry_id,
           grant_expires_at, grant_priority
    FROM approval_requests WHERE organization_id = :org AND idempotency_key = :key
    """
)
# The decision itself is the database's (migration 0013): it locks the organization
# and the request, applies the two-person rule, books an approval and audits it. The
# request is read after it, in a statement of its own (one that started before the
# decision would not see it).
_DECIDE = text("SELECT decide_approval_request(:id, :decision, :by, :reason)")
_REQUEST = text(
    """
    SELECT id, organization_id, amount, reason, note, requested_by, idempotency_key, status,
           created_at, expires_at, decided_by, decided_at, decision_reason, ledger_entry_id,
           grant_expires_at, grant_priority
    FROM approval_requests WHERE id = :id
    """
)
_AUDIT = text(
    """
    INSERT INTO audit_log (organization_id, action, actor, reason, details, idempotency_key)
    VALUES (:org, :action, :actor, :reason, CAST(:details AS jsonb), :key)
    """
)
_ENTRY = text(
    """
    SELECT id, organization_id, amount, balance_after, kind, reason, note, actor,
           idempotency_key, reverses_id, created_at, approval_request_id, grant_expires_at,
           grant_priority, grant_id, effective_at
    FROM credit_ledger WHERE organization_id = :org AND id = :id
    """
)


def _audit(
    conn: Connection,
    request: ApprovalRequest,
    *,
    action: str,
    actor: str,
    reason: str,
    via: str | None = None,
) -> None:
    # Decisions write their own audit rows, in decide_approval_request (migration 0013).
    details = {
        "request_id": request.id,
        "amount": request.amount,
        "requested_by": request.requested_by,
        "via": via,
        "grant_expires_at": (
            None if request.grant_expires_at is None else request.grant_expires_at.isoformat()
        ),
        "grant_priority": request.grant_priority,
    }
    conn.execute(
        _AUDIT,
        {
            "org": request.organization_id,
            "action": action,
            "actor": actor,
            "reason": reason,
            "details": json.dumps({k: v for k, v in details.items() if v is not None}),
            "key": f"{action}:{request.id}",
        },
    )


def record_request(
    conn: Connection,
    *,
    organization_id: int,
    amount: int,
    reason: str,
    note: str | None,
    actor: str,
    idempotency_key: str,
    days: int,
    via: str | None = None,
    grant_expires_at: dt.datetime | None = None,
    grant_priority: int | None = None,
) -> ApprovalRequest:
    """Record a pending request (checked values, the organization locked), or the one
    this key recorded. A grant's terms (``check_grant_terms``) go to the entry its
    approval books; an expiry already past is refused (``InvalidAdjustment``)."""
    # Shared with queries.bulk, whose file turns rows above the threshold into requests
    # in its own transaction; ``via`` (e.g. the command line) goes into the audit row.
    params = {"org": organization_id, "key": idempotency_key}
    row = conn.execute(_REQUEST_BY_KEY, params).one_or_none()
    previous = replay(
        first=ApprovalRequest(**row._mapping) if row else None,
        asked=(amount, reason, note, actor, grant_expires_at, grant_priority),
        recorded=lambda r: (
            r.amount,
            r.reason,
            r.note,
            stored_identity(r.requested_by),
            r.grant_expires_at,
            r.grant_priority,
        ),
        conflict=lambda r: submitted_differently(
            what="request",
            first=f"request {r.id}: {r.amount:+,} credits, {r.reason!r}",
            start="adjustment",
        ),
    )
    if previous is not None:
        return previous
    row = conn.execute(
        _INSERT_REQUEST,
        {
            **params,
            "amount": amount,
            "reason": reason,
            "note": note,
            "actor": actor,
            "days": days,
            "grant_expires_at": grant_expires_at,
            "grant_priority": grant_priority,
        },
    ).one_or_none()
    if row is None:
        assert grant_expires_at is not None
        raise InvalidAdjustment(
            f"A grant's expiry must be in the future; {grant_expires_at:%Y-%m-%d %H:%M} UTC "
            "has passed. Nothing was changed."
        )
    request = ApprovalRequest(**row._mapping)
    _audit(conn, request, action="request_adjustment", actor=actor, reason=reason, via=via)
    return request


def request_adjustment(
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
) -> ApprovalRequest:
    """Record a pending request to grant (``amount > 0``) or deduct credits, for a second
    person to approve; once per idempotency key (the same key again returns the request,
    with other details ``IdempotencyConflict``). Nothing moves until it is approved.

    A grant may carry an expiry (an aware datetime, in the future) and a priority
    (0-255, lower first), as ``adjust_credits``; the approved entry, and so its grant,
    carries the same terms.
    """
    org = check_id(organization_id, error=InvalidAdjustment)
    amount = check_adjustment_amount(amount)
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
    days = expiry_days()

    def body(conn: Connection) -> ApprovalRequest:
        lock_organization(conn, organization_id=org)
        return record_request(
            conn,
            organization_id=org,
            amount=amount,
            reason=reason,
            note=note,
            actor=actor,
            idempotency_key=key,
            days=days,
            grant_expires_at=expiry,
            grant_priority=rank,
        )

    # A retry finds its own committed request by the key.
    return run_in_transaction(engine, body, idempotent=True)


def _closed(request_id: int, detail: str | None) -> RequestClosed:
    """The sentence for a request the database found decided or expired; ``detail`` is
    the JSON of its refusal (status, decided_by, ledger_entry_id, expires_at in UTC)."""
    try:
        facts = json.loads(detail or "")
    except ValueError:
        facts = {}
    status, by = facts.get("status"), facts.get("decided_by")
    if status == "approved":
        return RequestClosed(
            f"Request {request_id} was already approved by {by} "
            f"(ledger entry {facts.get('ledger_entry_id')})."
        )
    if status == "rejected":
        return RequestClosed(f"Request {request_id} was already rejected by {by}.")
    return RequestClosed(
        f"Request {request_id} expired on {facts.get('expires_at')} UTC; "
        "request the adjustment again."
    )


def _decide(
    conn: Connection,
    *,
    request_id: int,
    decision: str,
    by: str,
    reason: str | None,
    self_refusal: str,
) -> ApprovalRequest:
    """The request after the database's decision, or the typed error its refusal means."""
    try:
        conn.execute(_DECIDE, {"id": request_id, "decision": decision, "by": by, "reason": reason})
    except DBAPIError as exc:  # the transaction is rolled back as this propagates
        state = getattr(exc.orig, "sqlstate", None)
        diag = getattr(exc.orig, "diag", None)
        if state == "P0002":
            raise ApprovalRefused(f"There is no approval request {request_id}.") from None
        if getattr(diag, "constraint_name", None) == "ck_approval_requests_two_people":
            raise SelfApproval(
                f"You requested this adjustment (request {request_id}); {self_refusal}"
            ) from None
        if state == "55000":
            raise _closed(request_id, getattr(diag, "message_detail", None)) from None
        if getattr(diag, "constraint_name", None) == "ck_credit_ledger_grant_expires_after_created":
            raise InvalidAdjustment(
                f"Request {request_id}'s grant was to expire at a time that has now passed, "
                "so it cannot be booked; reject it and request the grant again with a later "
                "expiry."
            ) from None
        if state == "22023":
            raise InvalidAdjustment(
                "The approver's name contains an invisible or control character."
            ) from None
        refusal = insufficient_credits(exc)
        if refusal is not None:
            raise refusal from None
        raise
    return ApprovalRequest(**conn.execute(_REQUEST, {"id": request_id}).one()._mapping)


def approve(engine: Engine, *, request_id: int, approver: str) -> LedgerEntry:
    """Apply a pending request once, as its ledger entry (actor: the approver; note: the
    requester and the approver). The approver must not be the requester
    (``SelfApproval``). The same approver again gets the same entry; a request
    approved by someone else, rejected or expired raises ``RequestClosed``.
    """
    request_id = check_id(request_id, "request_id", error=InvalidAdjustment)
    approver = canonical_identity(approver, "approver", error=InvalidAdjustment)

    def body(conn: Connection) -> LedgerEntry:
        request = _decide(
            conn,
            request_id=request_id,
            decision="approve",
            by=approver,
            reason=None,
            self_refusal="a second person must approve it.",
        )
        entry = conn.execute(
            _ENTRY, {"org": request.organization_id, "id": request.ledger_entry_id}
        ).one()
        return LedgerEntry(**entry._mapping)

    # A retry after a lost commit finds the request approved by this approver.
    return run_in_transaction(engine, body, idempotent=True)


def reject(engine: Engine, *, request_id: int, approver: str, reason: str) -> ApprovalRequest:
    """Close a pending request without applying it. Refused for its requester
    (``SelfApproval``) and for a request already decided or expired (``RequestClosed``);
    the same rejection again returns the rejected request."""
    request_id = check_id(request_id, "request_id", error=InvalidAdjustment)
    approver = canonical_identity(approver, "approver", error=InvalidAdjustment)
    reason = required_text(reason, "reason", maximum=MAX_REASON, error=InvalidAdjustment)

    def body(conn: Connection) -> ApprovalRequest:
        return _decide(
            conn,
            request_id=request_id,
            decision="reject",
            by=approver,
            reason=reason,
            self_refusal="a second person decides on it.",
        )

    return run_in_transaction(engine, body, idempotent=True)


# --------------------------------------------------------------------------- the queue


@dataclass(frozen=True, slots=True)
class PendingApproval:
    """A request waiting for a decision, with its organization and current balance."""

    id: int
    organization_id: int
    organization: str
    slug: str
    amount: int
    reason: str
    note: str | None
    requested_by: str
    created_at: dt.datetime
    expires_at: dt.datetime
    balance: int
    # The organization's IANA zone: its ledger's, and the one its requests are shown in.
    timezone: str = "UTC"
    # A grant's terms, which the approved entry carries (None: never; the default).
    grant_expires_at: dt.datetime | None = None
    grant_priority: int | None = None


@dataclass(frozen=True, slots=True)
class ApprovalCursor:
    """Where the next page of the queue starts: the last request shown."""

    created_at: dt.datetime
    id: int


@dataclass(frozen=True, slots=True)
class ApprovalPage:
    """A page of the queue, oldest first, and the cursor of the next one."""

    rows: tuple[PendingApproval, ...]
    next_cursor: ApprovalCursor | None


# On the partial index of pending requests, in (created_at, id) order from the cursor;
# expired ones are skipped: they stay pending in the table, but none can be approved.
_PENDING = text(
    """
    SELECT r.id, r.organization_id, o.name AS organization, o.slug, r.amount, r.reason,
           r.note, r.requested_by, r.created_at, r.expires_at,
           b.balance - coalesce(d.due, 0) AS balance, o.timezone,
           r.grant_expires_at, r.grant_priority
    FROM approval_requests r
    JOIN organizations o ON o.id = r.organization_id
    JOIN credit_balances b ON b.organization_id = r.organization_id
    -- Grants due but not yet written off are gone already (migration 0021).
    LEFT JOIN due_credits(now()) d ON d.organization_id = r.organization_id
    WHERE r.status = 'pending' AND r.expires_at > now()
      AND (CAST(:org AS bigint) IS NULL OR r.organization_id = :org)
      AND (CAST(:c_at AS timestamptz) IS NULL
           OR (r.created_at, r.id) > (CAST(:c_at AS timestamptz), CAST(:c_id AS bigint)))
    ORDER BY r.created_at, r.id
    LIMIT :limit
    """
)


def pending_requests_page(
    conn: Connection,
    *,
    organization_id: int | None = None,
    limit: int = 50,
    after: ApprovalCursor | None = None,
) -> ApprovalPage:
    """A keyset page of the requests waiting for approval (not expired), oldest first,
    across organizations unless ``organization_id`` is given; ``after`` is the
    ``next_cursor`` of the page before."""
    if organization_id is not None:
        organization_id = check_id(organization_id)
    if after is not None and not isinstance(after, ApprovalCursor):
        raise InvalidInput("after must be the next_cursor of a previous page.")
    limit = check_limit(limit)
    rows = conn.execute(
        _PENDING,
        {
            "org": organization_id,
            "c_at": after.created_at if after else None,
            "c_id": after.id if after else 0,
            "limit": limit + 1,
        },
    ).all()
    found = tuple(PendingApproval(**row._mapping) for row in rows[:limit])
    cursor = ApprovalCursor(found[-1].created_at, found[-1].id) if len(rows) > limit else None
    return ApprovalPage(found, cursor)
