"""The dashboard's writes: check a form's input, then make the change as the current user.

``check_*`` turn what a person typed into a request, or raise an ``InvalidInput`` whose
message is the sentence to show; nothing is written. ``apply_*`` ask
:func:`dashboard.auth.require` for the permission again right before calling
``queries`` (the page hiding a form is not access control), record the current user's
email as the actor, and empty the read caches after the change.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import operator
import uuid
from dataclasses import dataclass
from typing import Final, Literal

from dashboard import auth, data
from queries import credits, quotas
from queries.errors import InvalidAdjustment, InvalidLimitChange

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


def whole_number(value: object) -> int | None:
    """``value`` as an int if it is a whole number (an int, or a float without a
    fraction), else None. Booleans are not numbers here."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return operator.index(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def new_idempotency_key() -> str:
    """A fresh key for one adjustment form: a retry with it applies once."""
    return f"dashboard:{uuid.uuid4()}"


def _stored_reason(reason: object, note: str | None, *, what: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidAdjustment(f"Choose a reason for the {what}.")
    if reason == OTHER:
        if not note:
            raise InvalidAdjustment("You chose “Other”: explain the reason in the note.")
        return "Other"
    return reason


def _note(note: object) -> str | None:
    if note is None:
        return None
    if not isinstance(note, str):
        raise InvalidAdjustment("The note must be text.")
    note = note.strip()
    if len(note) > credits.MAX_NOTE:
        raise InvalidAdjustment(
            f"The note is too long ({len(note):,} characters; at most {credits.MAX_NOTE:,})."
        )
    return note or None


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

    @property
    def direction(self) -> Direction:
        return "grant" if self.amount > 0 else "deduct"

    @property
    def balance_after(self) -> int:
        return self.balance_before + self.amount


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
) -> AdjustmentRequest:
    """The adjustment a form asks for, or ``InvalidAdjustment`` with the reason."""
    if direction not in ("grant", "deduct"):
        raise InvalidAdjustment("Choose whether to grant or deduct credits.")
    if amount is None or (isinstance(amount, str) and not amount.strip()):
        raise InvalidAdjustment("Enter the number of credits.")
    whole = whole_number(amount)
    if whole is None:
        raise InvalidAdjustment(f"The amount must be a whole number of credits, not {amount!r}.")
    if whole <= 0:
        raise InvalidAdjustment(
            "The amount must be a positive whole number of credits "
            "(choose Deduct to take credits away)."
        )
    limit = credits.max_adjustment()
    if whole > limit:
        raise InvalidAdjustment(
            f"One adjustment may move at most {limit:,} credits; {whole:,} is too many."
        )
    clean_note = _note(note)
    stored_reason = _stored_reason(reason, clean_note, what="adjustment")
    signed = whole if direction == "grant" else -whole
    if balance + signed < 0:
        raise InvalidAdjustment(
            f"Insufficient credits: the balance is {balance:,} credits, so at most "
            f"{balance:,} can be deducted, not {whole:,}."
        )
    return AdjustmentRequest(
        organization_id=organization_id,
        organization_name=organization_name,
        amount=signed,
        reason=stored_reason,
        note=clean_note,
        idempotency_key=idempotency_key,
        balance_before=balance,
    )


def apply_adjustment(request: AdjustmentRequest) -> credits.LedgerEntry:
    """Make the adjustment once per idempotency key, as the current user."""
    user = auth.require("adjust_credits")
    entry = credits.adjust_credits(
        data.engine(),
        organization_id=request.organization_id,
        amount=request.amount,
        reason=request.reason,
        note=request.note,
        actor=user.email,
        idempotency_key=request.idempotency_key,
    )
    data.clear()
    return entry


@dataclass(frozen=True, slots=True)
class ReversalRequest:
    """A checked reversal of one ledger entry, waiting for confirmation."""

    organization_id: int
    entry_id: int
    entry_amount: int
    entry_kind: str
    reason: str
    balance_before: int

    @property
    def balance_after(self) -> int:
        return self.balance_before - self.entry_amount


def check_reversal(
    *,
    organization_id: int,
    entry_id: object,
    entry_amount: int,
    entry_kind: str,
    reason: object,
    note: object,
    balance: int,
) -> ReversalRequest:
    """The reversal a form asks for, or ``InvalidAdjustment`` with the reason."""
    if isinstance(entry_id, bool) or not isinstance(entry_id, numbers.Integral):
        raise InvalidAdjustment("Choose the ledger entry to reverse.")
    if entry_kind == "reversal":
        raise InvalidAdjustment("A reversal cannot itself be reversed; make a new adjustment.")
    clean_note = _note(note)
    stored = _stored_reason(reason, clean_note, what="reversal")
    full = f"{stored}: {clean_note}" if clean_note else stored
    if len(full) > credits.MAX_REASON:
        raise InvalidAdjustment(
            f"Reason and note together are too long for a reversal "
            f"({len(full)} characters; at most {credits.MAX_REASON})."
        )
    if balance - entry_amount < 0:
        raise InvalidAdjustment(
            f"Insufficient credits: reversing entry {entry_id} takes {entry_amount:,} credits "
            f"away but the balance is {balance:,}."
        )
    return ReversalRequest(
        organization_id=organization_id,
        entry_id=int(entry_id),
        entry_amount=entry_amount,
        entry_kind=entry_kind,
        reason=full,
        balance_before=balance,
    )


def apply_reversal(request: ReversalRequest) -> credits.LedgerEntry:
    """Reverse the entry (once), as the current user."""
    user = auth.require("adjust_credits")
    entry = credits.reverse_adjustment(
        data.engine(),
        entry_id=request.entry_id,
        actor=user.email,
        reason=request.reason,
        organization_id=request.organization_id,
    )
    data.clear()
    return entry


@dataclass(frozen=True, slots=True)
class LimitRequest:
    """A checked daily-limit change."""

    organization_id: int
    type: str
    daily_limit: int
    reason: str
    effective: dt.date | None


def check_limit_change(
    *,
    organization_id: int,
    type: object,
    daily_limit: object,
    reason: object,
    note: object,
    effective: object,
    today: dt.date,
) -> LimitRequest:
    """The limit change a form asks for, or ``InvalidLimitChange`` with the reason."""
    if not isinstance(type, str) or not type:
        raise InvalidLimitChange("Choose a generation type.")
    if daily_limit is None:
        raise InvalidLimitChange("Enter the new daily limit.")
    limit = whole_number(daily_limit)
    if limit is None or not 0 <= limit <= quotas.MAX_DAILY_LIMIT:
        raise InvalidLimitChange(
            f"The daily limit must be a whole number from 0 to {quotas.MAX_DAILY_LIMIT:,}."
        )
    clean_note = note.strip() if isinstance(note, str) else ""
    if not isinstance(reason, str) or not reason:
        raise InvalidLimitChange("Choose a reason for the change.")
    if reason == OTHER and not clean_note:
        raise InvalidLimitChange("You chose “Other”: explain the reason in the note.")
    stored = "Other" if reason == OTHER else reason
    full = f"{stored}: {clean_note}" if clean_note else stored
    if len(full) > 320:
        raise InvalidLimitChange("Reason and note together are too long (at most 320 characters).")
    if effective is not None and not isinstance(effective, dt.date):
        raise InvalidLimitChange("The effective day must be a date.")
    if isinstance(effective, dt.date) and effective < today:
        raise InvalidLimitChange(
            f"{effective} is in the past for this organization (today is {today}); "
            "past days keep the limit they had."
        )
    return LimitRequest(
        organization_id=organization_id,
        type=type,
        daily_limit=limit,
        reason=full,
        effective=effective if isinstance(effective, dt.date) else None,
    )


def apply_limit_change(request: LimitRequest) -> quotas.LimitChange:
    """Set the daily limit (audited with the current user as actor)."""
    user = auth.require("change_limits")
    change = quotas.set_daily_limit(
        data.engine(),
        organization_id=request.organization_id,
        type=request.type,
        daily_limit=request.daily_limit,
        actor=user.email,
        reason=request.reason,
        effective=request.effective,
    )
    data.clear()
    return change
