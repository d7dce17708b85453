"""Two-person approval of daily limits above ``LIMIT_APPROVAL_FACTOR`` times the plan's.

``queries.quotas.set_daily_limit`` refuses such a limit (``LimitApprovalRequired``).
Instead one person requests it (``request_limit_change``: type, limit, effective day,
optional until, reason) and another approves it (``approve_limit_request``: the change
is made exactly as ``set_daily_limit`` makes it, once; its audit row has the approver
as actor and names the requester) or rejects it (``reject_limit_request``). The
requester can do neither (``SelfApproval``; the database's
``ck_limit_requests_two_people`` keeps the rule too).

Every write takes the organization's lock, the one every limit change takes, so a
request is decided once however many people click: the first approval makes the
change; the same approver again gets that change back; any other decision gets
``RequestClosed``. Requests wait until decided: unlike credit requests they do not
expire, but an approval of a request whose first day has passed is refused (past days
keep their limit) and the request can be rejected.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, text

from queries.checks import MAX_KEY, MAX_REASON, check_date, check_id, check_limit, required_text
from queries.db import limit_approval_factor
from queries.errors import InvalidLimitChange, RequestClosed, SelfApproval
from queries.identity import canonical_identity, stored_identity
from queries.ledger import replay, submitted_differently
from queries.quotas import (
    LimitChange,
    apply_limit_change,
    change_by_key,
    check_daily_limit,
    limit_context,
    most_alone,
    resolve_day,
)
from queries.transactions import run_in_transaction

__all__ = [
    "LimitRequest",
    "PendingLimitRequest",
    "approve_limit_request",
    "most_alone_limits",
    "pending_limit_requests",
    "reject_limit_request",
    "request_limit_change",
]


@dataclass(frozen=True, slots=True)
class LimitRequest:
    """A daily-limit change waiting for, or decided by, a second person. ``status`` is
    pending, approved (``audit_id``: the change's audit row) or rejected."""

    id: int
    organization_id: int
    type: str
    daily_limit: int
    effective: dt.date
    until: dt.date | None
    reason: str
    requested_by: str
    idempotency_key: str
    status: str
    created_at: dt.datetime
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_reason: str | None
    audit_id: int | None


_BY_KEY = text(
    """
    SELECT id, organization_id, type, daily_limit, effective, until, reason, requested_by,
              idempotency_key, status, created_at, decided_by, decided_at, decision_reason,
              audit_id
    FROM limit_requests WHERE organization_id = :org AND idempotency_key = :key
    """
)
_INSERT = text(
    """
    INSERT INTO limit_requests (organization_id, type, daily_limit, effective, until, reason,
                                requested_by, idempotency_key)
    VALUES (:org, :type, :limit, :day, :until, :reason, :actor, :key)
    RETURNING id, organization_id, type, daily_limit, effective, until, reason, requested_by,
              idempotency_key, status, created_at, decided_by, decided_at, decision_reason,
              audit_id
    """
)
_ORGANIZATION = text("SELECT organization_id, type FROM limit_requests WHERE id = :id")
_LOCKED = text(
    """
    SELECT id, organization_id, type, daily_limit, effective, until, reason, requested_by,
              idempotency_key, status, created_at, decided_by, decided_at, decision_reason,
              audit_id
    FROM limit_requests WHERE id = :id FOR UPDATE
    """
)
_DECIDE = text(
    """
    UPDATE limit_requests
    SET status = :status, decided_by = :by, decided_at = now(), decision_reason = :reason,
        audit_id = :audit_id
    WHERE organization_id = :org AND id = :id
    RETURNING id, organization_id, type, daily_limit, effective, until, reason, requested_by,
              idempotency_key, status, created_at, decided_by, decided_at, decision_reason,
              audit_id
    """
)
_AUDIT = text(
    """
    INSERT INTO audit_log (organization_id, action, actor, reason, details, idempotency_key)
    VALUES (:org, :action, :actor, :reason, CAST(:details AS jsonb), :key)
    """
)


def _audit(
    conn: Connection, request: LimitRequest, *, action: str, actor: str, reason: str
) -> None:
    details = {
        "request_id": request.id,
        "type": request.type,
        "new_limit": request.daily_limit,
        "effective": request.effective.isoformat(),
        "until": request.until.isoformat() if request.until else None,
        "requested_by": request.requested_by,
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


def request_limit_change(
    engine: Engine,
    *,
    organization_id: int,
    type: str,
    daily_limit: int,
    actor: str,
    reason: str,
    idempotency_key: str,
    effective: dt.date | None = None,
    until: dt.date | None = None,
) -> LimitRequest:
    """Record a pending daily-limit change for a second person to approve (``effective``
    default: the organization's local today), once per idempotency key (the same key
    again returns the request; with other details ``IdempotencyConflict``). Nothing
    changes until it is approved."""
    org = check_id(organization_id, error=InvalidLimitChange)
    type = required_text(type, "generation type", maximum=MAX_KEY, error=InvalidLimitChange)
    new_limit = check_daily_limit(daily_limit)
    actor = canonical_identity(actor, "actor", error=InvalidLimitChange)
    reason = required_text(reason, "reason", maximum=MAX_REASON, error=InvalidLimitChange)
    key = required_text(
        idempotency_key, "idempotency key", maximum=MAX_KEY, error=InvalidLimitChange
    )
    if effective is not None:
        effective = check_date(effective, "effective day", error=InvalidLimitChange)
    if until is not None:
        until = check_date(until, "end day", error=InvalidLimitChange)

    def body(conn: Connection) -> LimitRequest:
        context = limit_context(conn, organization_id=org, type=type)
        row = conn.execute(_BY_KEY, {"org": org, "key": key}).one_or_none()
        previous = replay(
            first=LimitRequest(**row._mapping) if row else None,
            asked=(type, new_limit, actor, reason, until),
            recorded=lambda r: (
                r.type,
                r.daily_limit,
                stored_identity(r.requested_by),
                r.reason,
                r.until,
            ),
            conflict=lambda r: submitted_differently(
                what="limit request",
                first=f"limit request {r.id}: {r.type} limit {r.daily_limit:,} from {r.effective}",
                start="change",
            ),
        )
        if previous is not None and effective in (None, previous.effective):
            return previous
        if previous is not None:
            raise InvalidLimitChange(
                f"This form already requested limit request {previous.id} from "
                f"{previous.effective}; start a new change."
            )
        day = resolve_day(context, effective, until)
        request = LimitRequest(
            **conn.execute(
                _INSERT,
                {
                    "org": org,
                    "type": type,
                    "limit": new_limit,
                    "day": day,
                    "until": until,
                    "reason": reason,
                    "actor": actor,
                    "key": key,
                },
            )
            .one()
            ._mapping
        )
        _audit(conn, request, action="request_limit_change", actor=actor, reason=reason)
        return request

    return run_in_transaction(engine, body, idempotent=True)


def _locked_request(conn: Connection, request_id: int) -> tuple[LimitRequest, Row[Any]]:
    """The request, read after its organization's lock is taken, and its limit context."""
    found = conn.execute(_ORGANIZATION, {"id": request_id}).one_or_none()
    if found is None:
        raise InvalidLimitChange(f"There is no limit request {request_id}.")
    context = limit_context(conn, organization_id=found.organization_id, type=found.type)
    request = LimitRequest(**conn.execute(_LOCKED, {"id": request_id}).one()._mapping)
    return request, context


def _closed(request: LimitRequest) -> RequestClosed:
    if request.status == "approved":
        return RequestClosed(
            f"Limit request {request.id} was already approved by {request.decided_by} "
            f"(audit entry {request.audit_id})."
        )
    return RequestClosed(
        f"Limit request {request.id} was already rejected by {request.decided_by}."
    )


def approve_limit_request(engine: Engine, *, request_id: int, approver: str) -> LimitChange:
    """Make the requested change once, exactly as ``set_daily_limit`` would (same
    ``until``), audited with the approver as actor and the requester named. The
    requester may not approve (``SelfApproval``). The same approver again gets the same
    change; a request decided otherwise raises ``RequestClosed``."""
    request_id = check_id(request_id, "request_id", error=InvalidLimitChange)
    approver = canonical_identity(approver, "approver", error=InvalidLimitChange)

    def body(conn: Connection) -> LimitChange:
        request, context = _locked_request(conn, request_id)
        key = f"limit_request:{request.id}"
        if request.status == "approved" and stored_identity(request.decided_by or "") == approver:
            change = change_by_key(conn, organization_id=request.organization_id, key=key)
            assert change is not None  # (the decision and its change commit together)
            return change
        if request.status != "pending":
            raise _closed(request)
        if stored_identity(request.requested_by) == approver:
            raise SelfApproval(
                f"You requested this limit change (limit request {request.id}); "
                "a second person must approve it."
            )
        change = apply_limit_change(
            conn,
            organization_id=request.organization_id,
            type=request.type,
            daily_limit=request.daily_limit,
            actor=approver,
            reason=request.reason,
            day=resolve_day(context, request.effective, request.until),
            until=request.until,
            key=key,
            requested_by=request.requested_by,
            request_id=request.id,
        )
        conn.execute(
            _DECIDE,
            {
                "org": request.organization_id,
                "id": request.id,
                "status": "approved",
                "by": approver,
                "reason": None,
                "audit_id": change.audit_id,
            },
        )
        return change

    # A retry after a lost COMMIT finds the request approved by this approver.
    return run_in_transaction(engine, body, idempotent=True)


def reject_limit_request(
    engine: Engine, *, request_id: int, approver: str, reason: str
) -> LimitRequest:
    """Close a pending limit request without changing anything. Refused for its requester
    (``SelfApproval``) and for a request already decided otherwise (``RequestClosed``);
    the same rejection again returns the rejected request."""
    request_id = check_id(request_id, "request_id", error=InvalidLimitChange)
    approver = canonical_identity(approver, "approver", error=InvalidLimitChange)
    reason = required_text(reason, "reason", maximum=MAX_REASON, error=InvalidLimitChange)

    def body(conn: Connection) -> LimitRequest:
        request, _ = _locked_request(conn, request_id)
        if (
            request.status == "rejected"
            and stored_identity(request.decided_by or "") == approver
            and request.decision_reason == reason
        ):
            return request
        if request.status != "pending":
            raise _closed(request)
        if stored_identity(request.requested_by) == approver:
            raise SelfApproval(
                f"You requested this limit change (limit request {request.id}); "
                "a second person decides on it."
            )
        row = conn.execute(
            _DECIDE,
            {
                "org": request.organization_id,
                "id": request.id,
                "status": "rejected",
                "by": approver,
                "reason": reason,
                "audit_id": None,
            },
        ).one()
        decided = LimitRequest(**row._mapping)
        _audit(conn, decided, action="reject_limit_change", actor=approver, reason=reason)
        return decided

    return run_in_transaction(engine, body, idempotent=True)


@dataclass(frozen=True, slots=True)
class PendingLimitRequest:
    """A limit request waiting for a decision, with its organization and the limit in
    force on its first day."""

    id: int
    organization_id: int
    organization: str
    type: str
    daily_limit: int
    current_limit: int
    effective: dt.date
    until: dt.date | None
    reason: str
    requested_by: str
    created_at: dt.datetime


# On the partial index of pending requests, oldest first; the limit in force by the
# database's one rule, once per row shown (at most ``limit``).
_PENDING = text(
    """
    SELECT r.id, r.organization_id, o.name AS organization, r.type, r.daily_limit,
           f.daily_limit AS current_limit, r.effective, r.until, r.reason, r.requested_by,
           r.created_at
    FROM limit_requests r
    JOIN organizations o ON o.id = r.organization_id
    CROSS JOIN LATERAL limit_in_force(r.organization_id, r.type, r.effective) f
    WHERE r.status = 'pending'
      AND (CAST(:org AS bigint) IS NULL OR r.organization_id = :org)
    ORDER BY r.created_at, r.id
    LIMIT :limit
    """
)


def pending_limit_requests(
    conn: Connection, *, organization_id: int | None = None, limit: int = 50
) -> list[PendingLimitRequest]:
    """The limit requests waiting for a second person, oldest first, across organizations
    unless ``organization_id`` is given (at most ``limit``)."""
    if organization_id is not None:
        organization_id = check_id(organization_id)
    rows = conn.execute(_PENDING, {"org": organization_id, "limit": check_limit(limit)}).all()
    return [PendingLimitRequest(**row._mapping) for row in rows]


_PLAN_LIMITS = text(
    """
    SELECT t.type, floor(t.default_daily_limit * plan_limit_factor(o.plan))::int AS plan_limit
    FROM organizations o CROSS JOIN generation_types t
    WHERE o.id = :org
    """
)


def most_alone_limits(conn: Connection, *, organization_id: int) -> dict[str, int]:
    """For each generation type, the highest daily limit one person may set alone for
    the organization (``LIMIT_APPROVAL_FACTOR`` times its plan's limit); empty for an
    unknown organization."""
    factor = limit_approval_factor()
    rows = conn.execute(_PLAN_LIMITS, {"org": check_id(organization_id)}).all()
    return {row.type: most_alone(row.plan_limit, factor) for row in rows}
