"""Adjusting credits: the form, its review with the balance before and after, and the
warning before the same movement is made twice.

An adjustment above ``CREDITS_APPROVAL_THRESHOLD`` is never applied by one person: the
same form, confirmed, records an approval request instead (:mod:`.approvals` decides
it). The request carries an idempotency key made when the form was drawn and kept until
the adjustment succeeds, so a double click or a rerun applies it once.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Final

import streamlit as st

from dashboard import actions, auth, data, state, ui
from dashboard.app_pages.credits import FLASH
from dashboard.confirm import WriteFlow
from dashboard.text import md
from queries.approvals import ApprovalRequest
from queries.credits import LedgerEntry, approval_threshold

_log = logging.getLogger(__name__)
K_KEY: Final = "credits.idempotency_key"
K_PENDING: Final = "credits.pending"
K_DIRECTION: Final = "credits.direction"
K_AMOUNT: Final = "credits.amount"
K_REASON: Final = "credits.reason"
K_NOTE: Final = "credits.note"
K_RETRY: Final = "credits.retry_key"  # the key of a request to "Confirm again"
DIRECTIONS: Final = {"grant": "Grant credits", "deduct": "Deduct credits"}


def _restore_adjustment_form(request: actions.AdjustmentRequest) -> None:
    """Fill the form with the request's values (Back, or after a refusal)."""
    st.session_state[K_DIRECTION] = request.direction
    st.session_state[K_AMOUNT] = str(abs(request.amount))
    st.session_state[K_REASON] = actions.OTHER if request.reason == "Other" else request.reason
    st.session_state[K_NOTE] = request.note or ""


def _adjusted(request: actions.AdjustmentRequest, entry: LedgerEntry) -> str:
    verb = "Granted" if entry.amount > 0 else "Deducted"
    direction = "to" if entry.amount > 0 else "from"
    return (
        f"{verb} {abs(entry.amount):,} credits {direction} {md(request.organization_name)}. "
        f"New balance: {entry.balance_after:,} credits (ledger entry {entry.id})."
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
    return (
        f"Requested approval of the {verb} of {abs(pending.amount):,} credits for "
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
        st.markdown(
            f"**{asked} {abs(request.amount):,} credits {direction} "
            f"{md(request.organization_name)}?**  \nReason: {md(request.reason)}"
            + (f" · Note: {md(request.note)}" if request.note else "")
        )
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
