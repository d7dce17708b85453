"""The dashboard's writes: check a form's input, then make the change as the current user.

``check_*`` turn what a person typed into a request, or raise an ``InvalidInput`` whose
message is the sentence to show; nothing is written. They keep no rule of their own:
whole numbers, text and lengths are queries' checks (``queries.checks`` and the limits
``queries.credits`` and ``queries.quotas`` enforce), so the form refuses exactly what the
data layer would. A request remembers the organization it was drafted for (id and
name), so a page can refuse to confirm it while it shows another one. ``apply_*`` ask
:func:`dashboard.auth.require` for the permission again right before calling
``queries`` (the page hiding a form is not access control), record the current user's
email as the actor, and after the change have every session read that organization
and the cross-organization views again (:func:`dashboard.data.wrote`).
"""

from __future__ import annotations

import datetime as dt
import numbers
import uuid
import zoneinfo
from dataclasses import dataclass
from typing import Final, Literal

from dashboard import auth, data
from queries import (
    allowances,
    approvals,
    bulk,
    checks,
    credits,
    grants,
    ledger,
    limit_approvals,
    orgs,
    quotas,
)
from queries.errors import (
    InvalidAdjustment,
    InvalidAllowance,
    InvalidInput,
    InvalidLimitChange,
    LimitApprovalRequired,
    NothingToReverse,
)
from queries.identity import canonical_identity, stored_identity

Direction = Literal["grant", "deduct"]

OTHER: Final = "Other (explain in the note)"
ADJUSTMENT_REASONS: Final = (
    "Plan top-up",
    "Goodwill gesture",
    "Service incident compensation",
    "Promotion",
    "Billing correction",
    "Chargeback",
    "Terms violation",
    OTHER,
)
REVERSAL_REASONS: Final = (
    "Entered in error",
    "Duplicate adjustment",
    "Wrong organization",
    "Customer dispute resolved",
    OTHER,
)
LIMIT_REASONS: Final = (
    "Plan upgrade",
    "Plan downgrade",
    "Temporary increase for a launch",
    "Abuse prevention",
    "Customer request",
    OTHER,
)
LIMIT_MODE_REASONS: Final = (
    "Exception agreed with the customer",
    "Temporary increase for a launch",
    "Exception ended",
    "Abuse prevention",
    OTHER,
)
TIMEZONE_REASONS: Final = (
    "Customer moved",
    "Wrong time zone at sign-up",
    "Customer request",
    OTHER,
)


def new_idempotency_key() -> str:
    """A fresh key for one form (an adjustment or a limit change): a retry with it
    applies once."""
    return f"dashboard:{uuid.uuid4()}"


# ------------------------------------------------------------- the rules, reused
# Every rule below is one of queries' checks; this module only names the fields.


def _adjustment_amount(typed: object, direction: Direction) -> int:
    """The signed amount a person typed for a grant or a deduction."""
    whole = checks.parse_whole(typed, "number of credits", minimum=1, error=InvalidAdjustment)
    return credits.check_adjustment_amount(whole if direction == "grant" else -whole)


def _daily_limit(typed: object) -> int:
    """The daily limit a person typed."""
    return quotas.check_daily_limit(
        checks.parse_whole(typed, "new daily limit", error=InvalidLimitChange)
    )


def _note(note: object, *, multiline: bool, error: type[InvalidInput]) -> str | None:
    if note is None:
        return None
    return checks.check_text(
        note, "note", maximum=checks.MAX_NOTE, required=False, multiline=multiline, error=error
    )


def _stored_reason(
    reason: object, note: str | None, *, what: str, error: type[InvalidInput]
) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise error(f"Choose a reason for the {what}.")
    if reason == OTHER:
        if not note:
            raise error("You chose “Other”: explain the reason in the note.")
        return "Other"
    return reason


def _reason_with_note(reason: str, note: str | None, *, error: type[InvalidInput]) -> str:
    """Reason and note as one stored reason (reversals and limit changes keep no
    separate note), within the reason's length."""
    return checks.required_text(
        f"{reason}: {note}" if note else reason,
        "reason with its note",
        maximum=checks.MAX_REASON,
        error=error,
    )


def when_in(at: dt.datetime, timezone: str) -> str:
    """An instant as people read it on the page: "6 Jan 2027 00:00" in ``timezone``."""
    local = at.astimezone(zoneinfo.ZoneInfo(timezone))
    return f"{local.day} {local:%b %Y %H:%M}"


def grant_expiry(day: object, time: object, timezone: str) -> dt.datetime | None:
    """The instant (UTC) a form's expiry means: ``day`` at ``time`` on the wall clock of
    ``timezone`` (the organization's); no day: None (never expires). A wall-clock time
    that the zone skips (a DST gap) is refused; one it passes twice is the first."""
    if day is None:
        return None
    day = checks.check_date(day, "expiry date", error=InvalidAdjustment)
    if time is None:
        time = dt.time()
    if not isinstance(time, dt.time):
        raise InvalidAdjustment(f"The expiry time must be a time of day, not {time!r}.")
    zone = zoneinfo.ZoneInfo(timezone)
    local = dt.datetime.combine(day, time.replace(tzinfo=None), tzinfo=zone)
    at = local.astimezone(dt.UTC)
    if at.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise InvalidAdjustment(
            f"{day} {time:%H:%M} does not exist in {timezone} (the clocks skip it); choose "
            "another time."
        )
    return at


def grant_terms(expires_at: dt.datetime | None, priority: int | None, timezone: str) -> str:
    """A grant's terms in words, its expiry on ``timezone``'s clock and in UTC:
    "expiring 6 Jan 2027 00:00 Asia/Kathmandu (5 Jan 2027 18:15 UTC), priority 5";
    "" for a grant that never expires with the default priority."""
    parts = []
    if expires_at is not None:
        utc = "" if timezone == "UTC" else f" ({when_in(expires_at, 'UTC')} UTC)"
        parts.append(f"expiring {when_in(expires_at, timezone)} {timezone}{utc}")
    if priority is not None:
        parts.append(f"priority {priority}")
    return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class AdjustmentRequest:
    """A checked credit adjustment waiting for confirmation."""

    organization_id: int
    organization_name: str
    amount: int  # signed: positive grants, negative deducts
    reason: str
    note: str | None
    idempotency_key: str
    balance_before: int
    # What the current user moved alone for this organization in the last 24 hours.
    moved_alone: int = 0
    # A grant's terms: its expiry (UTC; None: never) and priority (None: the default),
    # and the organization's zone the expiry was typed and is shown in.
    expires_at: dt.datetime | None = None
    priority: int | None = None
    timezone: str = "UTC"

    @property
    def terms(self) -> str:
        """The grant's terms in words (:func:`grant_terms`), or "" for a plain one."""
        return grant_terms(self.expires_at, self.priority, self.timezone)

    @property
    def direction(self) -> Direction:
        return "grant" if self.amount > 0 else "deduct"

    @property
    def balance_after(self) -> int:
        return self.balance_before + self.amount

    @property
    def needs_approval(self) -> bool:
        """Above ``CREDITS_APPROVAL_THRESHOLD``, alone or with what this person moved
        alone for the organization in the last 24 hours: confirming records a request
        for a second person (:func:`request_approval`) instead of moving credits."""
        return ledger.needs_approval(amount=self.amount, moved=self.moved_alone)

    @property
    def crosses_the_day(self) -> bool:
        """Needs a second person only because of the last 24 hours' movements."""
        return self.needs_approval and not ledger.needs_approval(amount=self.amount)


def check_adjustment(
    *,
    organization_id: int,
    organization_name: str,
    direction: object,
    amount: object,
    reason: object,
    note: object,
    balance: int,
    idempotency_key: str,
    moved_alone: int = 0,
    expiry_date: object = None,
    expiry_time: object = None,
    priority: object = None,
    timezone: str = "UTC",
    now: dt.datetime | None = None,
) -> AdjustmentRequest:
    """The adjustment a form asks for, or ``InvalidAdjustment`` with the reason.
    ``amount`` is what the person typed ("1500" or "1,500"); a fraction, an exponent or
    a sign is refused, never rounded. ``moved_alone`` is what the person moved alone
    for the organization in the last 24 hours (``data.moved_alone``).

    A grant may expire (``expiry_date`` at ``expiry_time``, on ``timezone``'s clock:
    the organization's) after ``now`` and carry a ``priority`` (0-255; the default, 10,
    is stored as no priority). A deduction takes neither."""
    if direction not in ("grant", "deduct"):
        raise InvalidAdjustment("Choose whether to grant or deduct credits.")
    signed = _adjustment_amount(amount, "grant" if direction == "grant" else "deduct")
    clean_note = _note(note, multiline=True, error=InvalidAdjustment)
    stored_reason = _stored_reason(reason, clean_note, what="adjustment", error=InvalidAdjustment)
    expires_at = grant_expiry(expiry_date, expiry_time, timezone)
    if priority == grants.DEFAULT_GRANT_PRIORITY:
        priority = None
    if signed < 0 and (expires_at is not None or priority is not None):
        raise InvalidAdjustment(
            "Only a grant can expire or carry a priority; a deduction draws from the "
            "grants in order. Clear the expiry and set the priority back to "
            f"{grants.DEFAULT_GRANT_PRIORITY}."
        )
    expires_at, rank = grants.check_grant_terms(
        amount=signed, expires_at=expires_at, priority=priority, error=InvalidAdjustment
    )
    if expires_at is not None and expires_at <= (now or dt.datetime.now(dt.UTC)):
        raise InvalidAdjustment(
            f"The expiry {when_in(expires_at, timezone)} {timezone} is not in the future; "
            "choose a later date and time, or none for credits that never expire."
        )
    if balance + signed < 0:
        raise InvalidAdjustment(
            f"Insufficient credits: the balance is {balance:,} credits, so at most "
            f"{balance:,} can be deducted, not {-signed:,}."
        )
    return AdjustmentRequest(
        organization_id=organization_id,
        organization_name=organization_name,
        amount=signed,
        reason=stored_reason,
        note=clean_note,
        idempotency_key=idempotency_key,
        balance_before=balance,
        moved_alone=moved_alone,
        expires_at=expires_at,
        priority=rank,
        timezone=timezone,
    )


def apply_adjustment(request: AdjustmentRequest) -> credits.LedgerEntry:
    """Make the adjustment once per idempotency key, as the current user."""
    user = auth.require("adjust_credits")
    entry = credits.adjust_credits(
        data.write_engine(),
        organization_id=request.organization_id,
        amount=request.amount,
        reason=request.reason,
        note=request.note,
        actor=user.email,
        idempotency_key=request.idempotency_key,
        expires_at=request.expires_at,
        priority=request.priority,
    )
    data.wrote(organization_id=request.organization_id)
    return entry


def request_approval(request: AdjustmentRequest) -> approvals.ApprovalRequest:
    """Record the adjustment as a pending approval request (once per idempotency key),
    requested by the current user; nothing moves until a second person approves it."""
    user = auth.require("adjust_credits")
    pending = approvals.request_adjustment(
        data.write_engine(),
        organization_id=request.organization_id,
        amount=request.amount,
        reason=request.reason,
        note=request.note,
        actor=user.email,
        idempotency_key=request.idempotency_key,
        expires_at=request.expires_at,
        priority=request.priority,
    )
    data.wrote(organization_id=request.organization_id)
    return pending


Decision = Literal["approve", "reject"]
REJECTION_REASONS: Final = (
    "No ticket or invoice",
    "Amount is wrong",
    "Wrong organization",
    "Not agreed with the customer",
    OTHER,
)


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    """A checked approval or rejection of one pending request, waiting for
    confirmation."""

    organization_id: int
    organization_name: str
    request_id: int
    amount: int
    reason: str  # the request's reason
    requested_by: str
    decision: Decision
    rejection: str | None  # the rejection's reason
    balance_before: int
    # The requested grant's terms in words (:func:`grant_terms`), "" when it has none.
    terms: str = ""

    @property
    def balance_after(self) -> int:
        return self.balance_before + (self.amount if self.decision == "approve" else 0)


def check_decision(
    *,
    organization_id: int,
    organization_name: str,
    pending: approvals.PendingApproval | None,
    decision: object,
    reason: object,
    note: object,
    approver: str,
) -> DecisionRequest:
    """The decision a form asks for, or ``InvalidAdjustment`` with the reason. Refuses
    the requester's own request here already (the data layer refuses it too)."""
    if pending is None:
        raise InvalidAdjustment("Choose the request to decide on.")
    if decision not in ("approve", "reject"):
        raise InvalidAdjustment("Choose whether to approve or reject the request.")
    # One person under any spelling is one person (queries.identity).
    if stored_identity(pending.requested_by) == canonical_identity(
        approver, "approver", error=InvalidAdjustment
    ):
        raise InvalidAdjustment(
            f"You requested this adjustment (request {pending.id}); a second person must "
            "decide on it."
        )
    rejection = None
    if decision == "reject":
        clean_note = _note(note, multiline=False, error=InvalidAdjustment)
        stored = _stored_reason(reason, clean_note, what="rejection", error=InvalidAdjustment)
        rejection = _reason_with_note(stored, clean_note, error=InvalidAdjustment)
    elif pending.balance + pending.amount < 0:
        raise InvalidAdjustment(
            f"Insufficient credits: the balance is {pending.balance:,} credits, so "
            f"{-pending.amount:,} cannot be deducted now."
        )
    return DecisionRequest(
        organization_id=organization_id,
        organization_name=organization_name,
        request_id=pending.id,
        amount=pending.amount,
        reason=pending.reason,
        requested_by=pending.requested_by,
        decision="approve" if decision == "approve" else "reject",
        rejection=rejection,
        balance_before=pending.balance,
        terms=grant_terms(pending.grant_expires_at, pending.grant_priority, pending.timezone),
    )


def apply_decision(
    request: DecisionRequest,
) -> credits.LedgerEntry | approvals.ApprovalRequest:
    """Approve (the ledger entry) or reject (the closed request), as the current user;
    once: confirming again returns the same outcome."""
    user = auth.require("adjust_credits")
    outcome: credits.LedgerEntry | approvals.ApprovalRequest
    if request.decision == "approve":
        outcome = approvals.approve(
            data.write_engine(), request_id=request.request_id, approver=user.email
        )
    else:
        outcome = approvals.reject(
            data.write_engine(),
            request_id=request.request_id,
            approver=user.email,
            reason=request.rejection or "",
        )
    data.wrote(organization_id=request.organization_id)
    return outcome


@dataclass(frozen=True, slots=True)
class ReversalRequest:
    """A checked reversal of one ledger entry, waiting for confirmation."""

    organization_id: int
    organization_name: str
    entry_id: int
    entry_amount: int
    entry_kind: str
    reason: str
    balance_before: int
    # What the reversal books (signed, ``credits.reversal_amount``): less than the
    # opposite of the entry's amount when part of its grant was used; None: that opposite.
    amount: int | None = None

    @property
    def moves(self) -> int:
        """The credits the reversal books, signed."""
        return -self.entry_amount if self.amount is None else self.amount

    @property
    def balance_after(self) -> int:
        return self.balance_before + self.moves


def check_reversal(
    *,
    organization_id: int,
    organization_name: str,
    entry_id: object,
    entry_amount: int,
    entry_kind: str,
    reason: object,
    note: object,
    balance: int,
    remaining: int | None = None,
    moved_alone: int = 0,
) -> ReversalRequest:
    """The reversal a form asks for, or ``InvalidAdjustment`` with the reason.

    ``remaining`` is what remains of the grant the entry made (None: it made none);
    ``moved_alone`` what the person moved alone for the organization in the last 24
    hours (``data.moved_alone``). A reversal that passes the approval threshold, alone
    or with those, is refused with the data layer's sentence
    (``ReversalApprovalRequired``): no request carries a reversal, so there is nothing
    to confirm."""
    if isinstance(entry_id, bool) or not isinstance(entry_id, numbers.Integral):
        raise InvalidAdjustment("Choose the ledger entry to reverse.")
    if entry_kind == "reversal":
        raise InvalidAdjustment("A reversal cannot itself be reversed; make a new adjustment.")
    clean_note = _note(note, multiline=False, error=InvalidAdjustment)
    stored = _stored_reason(reason, clean_note, what="reversal", error=InvalidAdjustment)
    full = _reason_with_note(stored, clean_note, error=InvalidAdjustment)
    amount = credits.reversal_amount(entry_amount=entry_amount, remaining=remaining)
    if amount == 0:
        raise NothingToReverse(
            f"Nothing remains of entry {entry_id}'s {entry_amount:,} credits, so there is "
            "nothing to reverse."
        )
    ledger.check_reversal_alone(
        entry_id=int(entry_id), amount=amount, moved=moved_alone, organization=organization_name
    )
    if balance + amount < 0:
        raise InvalidAdjustment(
            f"Insufficient credits: reversing entry {entry_id} takes {-amount:,} credits "
            f"away but the balance is {balance:,}."
        )
    return ReversalRequest(
        organization_id=organization_id,
        organization_name=organization_name,
        entry_id=int(entry_id),
        entry_amount=entry_amount,
        entry_kind=entry_kind,
        reason=full,
        balance_before=balance,
        amount=amount,
    )


def apply_reversal(request: ReversalRequest) -> credits.LedgerEntry:
    """Reverse the entry (once), as the current user."""
    user = auth.require("adjust_credits")
    entry = credits.reverse_adjustment(
        data.write_engine(),
        entry_id=request.entry_id,
        actor=user.email,
        reason=request.reason,
        organization_id=request.organization_id,
    )
    data.wrote(organization_id=request.organization_id)
    return entry


@dataclass(frozen=True, slots=True)
class LimitRequest:
    """A checked daily-limit change, waiting for confirmation. Its idempotency key was
    made when the form was drawn and is kept until the change succeeds."""

    organization_id: int
    organization_name: str
    type: str
    daily_limit: int
    reason: str
    effective: dt.date | None
    idempotency_key: str
    # The last day of a change that ends by itself; None: until changed again.
    until: dt.date | None = None


def check_limit_change(
    *,
    organization_id: int,
    organization_name: str,
    type: object,
    daily_limit: object,
    reason: object,
    note: object,
    effective: object,
    today: dt.date,
    idempotency_key: str,
    until: object = None,
) -> LimitRequest:
    """The limit change a form asks for, or ``InvalidLimitChange`` with the reason.
    ``daily_limit`` is what the person typed ("1500" or "1,500"); ``until`` the last day
    of a temporary change (None: open-ended)."""
    if not isinstance(type, str) or not type:
        raise InvalidLimitChange("Choose a generation type.")
    limit = _daily_limit(daily_limit)
    clean_note = _note(note, multiline=False, error=InvalidLimitChange)
    stored = _stored_reason(reason, clean_note, what="change", error=InvalidLimitChange)
    full = _reason_with_note(stored, clean_note, error=InvalidLimitChange)
    if effective is not None:
        effective = checks.check_date(effective, "effective day", error=InvalidLimitChange)
        if effective < today:
            raise InvalidLimitChange(
                f"{effective} is in the past for this organization (today is {today}); "
                "past days keep the limit they had."
            )
    if until is not None:
        until = checks.check_date(until, "end day", error=InvalidLimitChange)
        if until < (effective or today):
            raise InvalidLimitChange(
                f"The end day {until} is before the effective day {effective or today}; "
                "a change ends on or after the day it starts."
            )
    return LimitRequest(
        organization_id=organization_id,
        organization_name=organization_name,
        type=type,
        daily_limit=limit,
        reason=full,
        effective=effective,
        idempotency_key=idempotency_key,
        until=until,
    )


def apply_limit_change(
    request: LimitRequest,
) -> quotas.LimitChange | limit_approvals.LimitRequest:
    """Set the daily limit (audited with the current user as actor), once per
    idempotency key; a limit above what one person may set alone is filed instead, under
    the same key, as a request a second person approves."""
    user = auth.require("change_limits")
    engine = data.write_engine()
    change: quotas.LimitChange | limit_approvals.LimitRequest
    for write in (quotas.set_daily_limit, limit_approvals.request_limit_change):
        try:
            change = write(
                engine,
                organization_id=request.organization_id,
                type=request.type,
                daily_limit=request.daily_limit,
                actor=user.email,
                reason=request.reason,
                effective=request.effective,
                until=request.until,
                idempotency_key=request.idempotency_key,
            )
        except LimitApprovalRequired:
            continue  # (only set_daily_limit refuses so)
        break
    data.wrote(organization_id=request.organization_id)
    return change


@dataclass(frozen=True, slots=True)
class LimitModeRequest:
    """A checked switch of a type's limit between hard and soft, waiting for
    confirmation, with the idempotency key made when its form was drawn."""

    organization_id: int
    organization_name: str
    type: str
    soft: bool
    reason: str
    idempotency_key: str


LIMIT_MODES: Final = {"hard": False, "soft": True}


def check_limit_mode(
    *,
    organization_id: int,
    organization_name: str,
    type: object,
    mode: object,
    reason: object,
    note: object,
    idempotency_key: str,
) -> LimitModeRequest:
    """The switch a form asks for (``mode`` "hard" or "soft"), or ``InvalidLimitChange``
    with the reason."""
    if not isinstance(type, str) or not type:
        raise InvalidLimitChange("Choose a generation type.")
    if not isinstance(mode, str) or mode not in LIMIT_MODES:
        raise InvalidLimitChange("Choose hard or soft.")
    clean_note = _note(note, multiline=False, error=InvalidLimitChange)
    stored = _stored_reason(reason, clean_note, what="switch", error=InvalidLimitChange)
    return LimitModeRequest(
        organization_id=organization_id,
        organization_name=organization_name,
        type=type,
        soft=LIMIT_MODES[mode],
        reason=_reason_with_note(stored, clean_note, error=InvalidLimitChange),
        idempotency_key=idempotency_key,
    )


def apply_limit_mode(request: LimitModeRequest) -> quotas.LimitEnforcement:
    """Make the type's limit hard or soft (audited with the current user as actor), once
    per idempotency key."""
    user = auth.require("change_limits")
    switched = quotas.set_limit_enforcement(
        data.write_engine(),
        organization_id=request.organization_id,
        type=request.type,
        soft=request.soft,
        actor=user.email,
        reason=request.reason,
        idempotency_key=request.idempotency_key,
    )
    data.wrote(organization_id=request.organization_id)
    return switched


def decide_limit_request(
    pending: limit_approvals.PendingLimitRequest, *, approve: bool, reason: object
) -> quotas.LimitChange | limit_approvals.LimitRequest:
    """Approve (the change is made, once) or reject a limit request as the current user,
    who may not be its requester; a rejection needs one of ``REJECTION_REASONS``."""
    user = auth.require("change_limits")
    engine = data.write_engine()
    decided: quotas.LimitChange | limit_approvals.LimitRequest
    if approve:
        decided = limit_approvals.approve_limit_request(
            engine, request_id=pending.id, approver=user.email
        )
    else:
        if reason not in REJECTION_REASONS or reason == OTHER:
            raise InvalidLimitChange("Choose why the limit request is rejected.")
        decided = limit_approvals.reject_limit_request(
            engine, request_id=pending.id, approver=user.email, reason=str(reason)
        )
    data.wrote(organization_id=pending.organization_id)
    return decided


@dataclass(frozen=True, slots=True)
class TimezoneRequest:
    """A checked change of an organization's time zone, waiting for confirmation. Its
    idempotency key was made when the form was drawn and is kept until it succeeds."""

    organization_id: int
    organization_name: str
    previous: str
    timezone: str
    reason: str
    idempotency_key: str


def check_timezone_change(
    *,
    organization_id: int,
    organization_name: str,
    current: str,
    timezone: object,
    reason: object,
    note: object,
    idempotency_key: str,
) -> TimezoneRequest:
    """The time zone change a form asks for, or ``InvalidInput`` with the reason."""
    if not isinstance(timezone, str) or not timezone:
        raise InvalidInput("Choose a time zone.")
    zone = checks.check_timezone(timezone)
    if zone == current:
        raise InvalidInput(f"The organization is already in {zone}; choose another time zone.")
    clean_note = _note(note, multiline=False, error=InvalidInput)
    stored = _stored_reason(reason, clean_note, what="change", error=InvalidInput)
    return TimezoneRequest(
        organization_id=organization_id,
        organization_name=organization_name,
        previous=current,
        timezone=zone,
        reason=_reason_with_note(stored, clean_note, error=InvalidInput),
        idempotency_key=idempotency_key,
    )


def apply_timezone_change(request: TimezoneRequest) -> orgs.TimezoneChange:
    """Move the organization to the new time zone (its local days recounted, audited
    with the current user as actor), once per idempotency key."""
    user = auth.require("change_timezone")
    change = orgs.set_timezone(
        data.engine(),
        organization_id=request.organization_id,
        timezone=request.timezone,
        actor=user.email,
        reason=request.reason,
        idempotency_key=request.idempotency_key,
    )
    # The picker shows each organization's zone, so the directory is read again too.
    data.wrote(organization_id=request.organization_id, directory=True)
    return change


# A plan's allowance belongs to no organization: every one on the plan gets it.
PLAN_ORGANIZATION: Final = 0
PLAN_ORGANIZATIONS: Final = "every organization on the plan"
ALLOWANCE_REASONS: Final = (
    "New price list",
    "Plan change agreed with sales",
    "Correction",
    OTHER,
)


@dataclass(frozen=True, slots=True)
class AllowanceRequest:
    """A checked change of a plan's allowance, waiting for confirmation, with the values
    it replaces and the idempotency key made when its form was drawn."""

    organization_id: int
    organization_name: str
    plan: str
    monthly_allowance: int
    rollover_cap: int
    old_monthly_allowance: int
    old_rollover_cap: int
    reason: str
    idempotency_key: str


def check_plan_allowance(
    *,
    current: list[allowances.PlanAllowance],
    plan: object,
    monthly_allowance: object,
    rollover_cap: object,
    reason: object,
    note: object,
    idempotency_key: str,
) -> AllowanceRequest:
    """The plan allowance change a form asks for (``current``: the plans as shown), or
    ``InvalidAllowance`` with the reason."""
    auth.require("change_allowances")
    shown = {a.plan: a for a in current}
    if not isinstance(plan, str) or plan not in shown:
        raise InvalidAllowance("Choose a plan.")
    amount = checks.parse_whole(
        monthly_allowance,
        "monthly allowance",
        minimum=0,
        maximum=allowances.MAX_ALLOWANCE,
        error=InvalidAllowance,
    )
    cap = checks.parse_whole(
        rollover_cap,
        "rollover cap",
        minimum=0,
        maximum=allowances.MAX_ALLOWANCE,
        error=InvalidAllowance,
    )
    before = shown[plan]
    if (amount, cap) == (before.monthly_allowance, before.rollover_cap):
        raise InvalidAllowance(
            f"The {plan} plan already has {amount:,} credits a month and a rollover cap "
            f"of {cap:,}; change one of them."
        )
    clean_note = _note(note, multiline=False, error=InvalidAllowance)
    stored = _stored_reason(reason, clean_note, what="change", error=InvalidAllowance)
    return AllowanceRequest(
        organization_id=PLAN_ORGANIZATION,
        organization_name=PLAN_ORGANIZATIONS,
        plan=plan,
        monthly_allowance=amount,
        rollover_cap=cap,
        old_monthly_allowance=before.monthly_allowance,
        old_rollover_cap=before.rollover_cap,
        reason=_reason_with_note(stored, clean_note, error=InvalidAllowance),
        idempotency_key=idempotency_key,
    )


def apply_plan_allowance(request: AllowanceRequest) -> allowances.AllowanceChange:
    """Set the plan's allowance as the current user (an admin), recorded with who and
    why, once per idempotency key; it applies to the allowances granted from now on."""
    user = auth.require("change_allowances")
    change = allowances.set_plan_allowance(
        data.write_engine(),
        plan=request.plan,
        monthly_allowance=request.monthly_allowance,
        rollover_cap=request.rollover_cap,
        actor=user.email,
        reason=request.reason,
        idempotency_key=request.idempotency_key,
    )
    data.wrote_plans()
    return change


# A bulk file is bound to no one organization of the page: its rows name their own.
BULK_ORGANIZATION: Final = 0
BULK_ORGANIZATIONS: Final = "the organizations in the file"


@dataclass(frozen=True, slots=True)
class BulkRequest:
    """An uploaded bulk adjustment file and its dry run (``queries.bulk.plan_bulk``)."""

    organization_id: int
    organization_name: str
    file_name: str
    data: bytes
    plan: bulk.BulkPlan


def check_bulk(*, file_name: object, content: object) -> BulkRequest:
    """The dry run of an uploaded file, read from the primary (the balances it shows are
    the ones the apply checks again under lock). Rows count, as the apply counts them,
    with what the current user moved alone in the last 24 hours, so the preview shows
    the rows that will become requests. Nothing is written; the file's problems are in
    ``plan.errors``, each with its line."""
    user = auth.require("adjust_credits")
    name = checks.check_text(file_name, "file name", maximum=255, required=False) or "file"
    if not isinstance(content, bytes):
        raise InvalidAdjustment("The uploaded file could not be read; upload it again.")
    with data.engine().connect() as conn:
        plan = bulk.plan_bulk(conn, data=content, actor=user.email)
    return BulkRequest(BULK_ORGANIZATION, BULK_ORGANIZATIONS, name, content, plan)


def apply_bulk(request: BulkRequest) -> bulk.BulkPlan:
    """Apply the whole file as the current user, or nothing of it (``BulkRejected``);
    applying the same file again changes nothing."""
    user = auth.require("adjust_credits")
    done = bulk.apply_bulk(data.write_engine(), data=request.data, actor=user.email)
    for organization_id in sorted({r.organization_id for r in done.rows if r.organization_id}):
        data.wrote(organization_id=organization_id)
    return done
