"""Adjusting credits: the form, its review with the balance before and after, and the
warning before the same movement is made twice.

A grant can expire (a date and time on the organization's own clock, converted to UTC)
and carry a priority (0-255, lower drawn first); the confirmation states both, and an
approval request carries them to the entry its approval books.

An adjustment above ``CREDITS_APPROVAL_THRESHOLD`` is never applied by one person: the
same form, confirmed, records an approval request instead (:mod:`.approvals` decides
it). The request carries an idempotency key made when the form was drawn and kept until
the adjustment succeeds, so a double click or a rerun applies it once.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from typing import Final

import streamlit as st

from dashboard import actions, auth, clock, data, state, ui
from dashboard.app_pages.credits import FLASH
from dashboard.confirm import WriteFlow
from dashboard.text import md
from queries.approvals import ApprovalRequest
from queries.credits import LedgerEntry, approval_threshold
from queries.grants import DEFAULT_GRANT_PRIORITY, MAX_GRANT_PRIORITY

_log = logging.getLogger(__name__)
K_KEY: Final = "credits.idempotency_key"
K_PENDING: Final = "credits.pending"
K_DIRECTION: Final = "credits.direction"
K_AMOUNT: Final = "credits.amount"
K_REASON: Final = "credits.reason"
K_NOTE: Final = "credits.note"
K_EXPIRY_DATE: Final = "credits.expiry_date"
K_EXPIRY_TIME: Final = "credits.expiry_time"
K_PRIORITY: Final = "credits.priority"
K_RETRY: Final = "credits.retry_key"  # the key of a request to "Confirm again"
DIRECTIONS: Final = {"grant": "Grant credits", "deduct": "Deduct credits"}


def _restore_adjustment_form(request: actions.AdjustmentRequest) -> None:
    """Fill the form with the request's values (Back, or after a refusal)."""
    st.session_state[K_DIRECTION] = request.direction
    st.session_state[K_AMOUNT] = str(abs(request.amount))
    st.session_state[K_REASON] = actions.OTHER if request.reason == "Other" else request.reason
    st.session_state[K_NOTE] = request.note or ""
    local = (
        None
        if request.expires_at is None
        else request.expires_at.astimezone(zoneinfo.ZoneInfo(request.timezone))
    )
    st.session_state[K_EXPIRY_DATE] = None if local is None else local.date()
    st.session_state[K_EXPIRY_TIME] = dt.time() if local is None else local.time()
    st.session_state[K_PRIORITY] = (
        DEFAULT_GRANT_PRIORITY if request.priority is None else request.priority
    )


def _adjusted(request: actions.AdjustmentRequest, entry: LedgerEntry) -> str:
    verb = "Granted" if entry.amount > 0 else "Deducted"
    direction = "to" if entry.amount > 0 else "from"
    terms = f", {md(request.terms)}" if request.terms else ""
    return (
        f"{verb} {abs(entry.amount):,} credits{terms} {direction} "
        f"{md(request.organization_name)}. New balance: {entry.balance_after:,} credits "
        f"(ledger entry {entry.id})."
    )


ADJUSTMENT: Final = WriteFlow(
    what="adjustment",
    request_type=actions.AdjustmentRequest,
    flash=FLASH,
    pending=K_PENDING,
    retry=K_RETRY,
    apply=actions.apply_adjustment,
    succeeded=_adjusted,
    token=lambda request: request.idempotency_key,
    form_key=K_KEY,
    restore=_restore_adjustment_form,
)


def _requested(request: actions.AdjustmentRequest, pending: ApprovalRequest) -> str:
    verb = "grant" if pending.amount > 0 else "deduction"
    terms = f" ({md(request.terms)})" if request.terms else ""
    return (
        f"Requested approval of the {verb} of {abs(pending.amount):,} credits{terms} for "
        f"{md(request.organization_name)} (request {pending.id}). Nothing moves until a "
        "second person approves it under Pending approvals."
    )


# Above the threshold the adjustment form's request is confirmed as an approval
# request: the same draft (same session keys and idempotency key), another write.
APPROVAL_REQUEST: Final = WriteFlow(
    what="approval request",
    request_type=actions.AdjustmentRequest,
    flash=FLASH,
    pending=K_PENDING,
    retry=K_RETRY,
    apply=actions.request_approval,
    succeeded=_requested,
    token=lambda request: request.idempotency_key,
    form_key=K_KEY,
    restore=_restore_adjustment_form,
)


def _ago(at: dt.datetime) -> str:
    minutes = max(0, int((dt.datetime.now(dt.UTC) - at).total_seconds() // 60))
    when = f"{at.astimezone(dt.UTC):%H:%M} UTC"
    return f"at {when}, just now" if minutes == 0 else f"at {when}, {minutes} min ago"


def _duplicate_warning(request: actions.AdjustmentRequest) -> None:
    """Warn when the same person made the same movement for this organization a few
    minutes ago (a second tab, a double submission), naming that entry."""
    try:
        actor = auth.current_user().email
        entry = data.recent_duplicate(request.organization_id, actor=actor, amount=request.amount)
    except ui.EXPECTED_ERRORS as exc:
        _log.warning("checking for a recent duplicate failed: %r", exc)
        st.caption("Could not check for a recent identical adjustment.")
        return
    if entry is None:
        return
    if entry.idempotency_key == request.idempotency_key:
        st.info(
            f"This adjustment has already been applied: ledger entry #{entry.id} "
            f"({entry.amount:+,} credits, {_ago(entry.created_at)}). Confirming again "
            "changes nothing.",
            icon=":material/task_alt:",
        )
        return
    st.warning(
        f"You made the same movement for {md(request.organization_name)} a few minutes "
        f"ago: ledger entry #{entry.id}, {entry.amount:+,} credits, {_ago(entry.created_at)} "
        f"(reason: {md(entry.reason)}). Confirm only if it should be applied twice.",
        icon=":material/content_copy:",
    )


def _confirm_adjustment(request: actions.AdjustmentRequest, f: state.Filters) -> None:
    with st.container(border=True):
        verb = "Grant" if request.amount > 0 else "Deduct"
        direction = "to" if request.amount > 0 else "from"
        asked = "Request approval to " + verb.lower() if request.needs_approval else verb
        terms = f", {md(request.terms)}," if request.terms else ""
        st.markdown(
            f"**{asked} {abs(request.amount):,} credits{terms} {direction} "
            f"{md(request.organization_name)}?**  \nReason: {md(request.reason)}"
            + (f" · Note: {md(request.note)}" if request.note else "")
        )
        if request.amount > 0 and request.expires_at is None:
            st.caption("These credits never expire.")
        if request.crosses_the_day:
            st.info(
                f"You moved {request.moved_alone:,} credits for "
                f"{md(request.organization_name)} in the last 24 hours; with this "
                f"{abs(request.amount):,} it passes the approval threshold of "
                f"{approval_threshold():,}, so a second person must approve it. Confirming "
                "records a request; someone else approves or rejects it under Pending "
                "approvals, and nothing moves until then.",
                icon=":material/group:",
            )
        elif request.needs_approval:
            st.info(
                f"This is above the approval threshold of {approval_threshold():,} credits, "
                "so one person cannot apply it. Confirming records a request; someone else "
                "approves or rejects it under Pending approvals, and nothing moves until "
                "then.",
                icon=":material/group:",
            )
        else:
            _duplicate_warning(request)
        before, after = st.columns(2)
        before.metric("Balance now", f"{request.balance_before:,}")
        after.metric(
            "Balance after approval" if request.needs_approval else "Balance after",
            f"{request.balance_after:,}",
            f"{request.amount:+,}",
        )
        _adjustment_buttons(request, f)


def _adjustment_buttons(request: actions.AdjustmentRequest, f: state.Filters) -> None:
    verb = "grant" if request.amount > 0 else "deduct"
    flow = APPROVAL_REQUEST if request.needs_approval else ADJUSTMENT
    if request.needs_approval:
        verb = f"request approval to {verb}"
    flow.buttons(
        request,
        shown=(f.organization_id, f.organization.name),
        label=f"Confirm: {verb} {abs(request.amount):,}",
        again_label=f"Confirm again: {verb} {abs(request.amount):,}",
        key="credits.confirm",
        back=("Back", "credits.back"),
        discard=("Discard", "credits.discard"),
    )


def _grant_terms(f: state.Filters) -> None:
    """A grant's optional expiry, on the organization's own clock (its zone is in the
    label: the time is converted to UTC), and its priority."""
    zone = f.organization.timezone
    today = state.today_in(zone, now=clock.now())
    # Defaults through the session, not ``value=``: Back refills these keys.
    st.session_state.setdefault(K_EXPIRY_DATE, None)
    if st.session_state.get(K_EXPIRY_TIME) is None:
        st.session_state[K_EXPIRY_TIME] = dt.time()
    if not isinstance(st.session_state.get(K_PRIORITY), int):
        st.session_state[K_PRIORITY] = DEFAULT_GRANT_PRIORITY
    day, time, rank = st.columns([2, 1, 1])
    day.date_input(
        f"Expires ({zone})",
        min_value=today,
        max_value=dt.date(2099, 12, 31),
        key=K_EXPIRY_DATE,
        format="YYYY-MM-DD",
        help=f"Grants only. The day the credits expire, in {zone}, the organization's "
        "own zone (stored in UTC). Empty: they never expire.",
    )
    time.time_input(
        f"at ({zone})",
        key=K_EXPIRY_TIME,
        step=dt.timedelta(minutes=15),
        help=f"The time of day the credits expire, in {zone}; 00:00 is the start of the day.",
    )
    rank.number_input(
        "Priority",
        min_value=0,
        max_value=MAX_GRANT_PRIORITY,
        step=1,
        key=K_PRIORITY,
        help=f"Grants only: lower is drawn first (0-{MAX_GRANT_PRIORITY}, default "
        f"{DEFAULT_GRANT_PRIORITY}); among equal priorities the soonest expiry goes first.",
    )


def _adjustment_form(f: state.Filters, balance: int) -> None:
    key = st.session_state.setdefault(K_KEY, actions.new_idempotency_key())
    if st.session_state.get(K_DIRECTION) not in DIRECTIONS:
        st.session_state[K_DIRECTION] = "grant"
    if not isinstance(st.session_state.get(K_AMOUNT), str):
        st.session_state[K_AMOUNT] = ""
    with st.form("credits.adjust_form", border=True):
        st.radio(
            "Action",
            options=list(DIRECTIONS),
            format_func=DIRECTIONS.__getitem__,
            key=K_DIRECTION,
            horizontal=True,
        )
        left, right = st.columns(2)
        # Text, not a number input: the browser would round 1.5 or 1e3 before we saw it.
        left.text_input(
            "Credits",
            key=K_AMOUNT,
            placeholder="a whole number, e.g. 1500 or 1,500",
            max_chars=40,
        )
        right.selectbox(
            "Reason",
            actions.ADJUSTMENT_REASONS,
            index=None,
            key=K_REASON,
            placeholder="Choose a reason",
        )
        st.text_area("Note", key=K_NOTE, placeholder="Ticket, invoice or context (optional)")
        _grant_terms(f)
        submitted = st.form_submit_button("Review adjustment", type="primary")
    if not submitted:
        return
    try:
        moved = data.moved_alone(f.organization_id, actor=auth.current_user().email)
    except ui.EXPECTED_ERRORS as exc:
        # The preview only: the write counts the 24 hours again under the lock and
        # refuses (nothing changed) a movement that crosses the threshold.
        _log.warning("reading the last 24 hours' movements failed: %r", exc)
        st.caption(
            "Could not read what you moved for this organization in the last 24 hours; "
            "confirming checks it again."
        )
        moved = 0
    ADJUSTMENT.check(
        lambda: actions.check_adjustment(
            organization_id=f.organization_id,
            organization_name=f.organization.name,
            direction=st.session_state.get(K_DIRECTION),
            amount=st.session_state.get(K_AMOUNT),
            reason=st.session_state.get(K_REASON),
            note=st.session_state.get(K_NOTE),
            balance=balance,
            idempotency_key=key,
            moved_alone=moved,
            expiry_date=st.session_state.get(K_EXPIRY_DATE),
            expiry_time=st.session_state.get(K_EXPIRY_TIME),
            priority=st.session_state.get(K_PRIORITY),
            timezone=f.organization.timezone,
            now=clock.now(),
        )
    )


def render(f: state.Filters, balance: int) -> None:
    """The adjustment form, or the adjustment waiting for confirmation."""
    st.subheader("Adjust credits")
    request = ADJUSTMENT.request()
    if request is not None:
        if request.organization_id == f.organization_id:
            _confirm_adjustment(request, f)
        else:
            # A draft for another organization: it can be discarded, or confirmed after
            # switching back (the button refuses here).
            with st.container(border=True):
                _adjustment_buttons(request, f)
        return
    _adjustment_form(f, balance)
