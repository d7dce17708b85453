"""Pending approvals: every organization's adjustments waiting for a second person,
and approving or rejecting one of the organization shown.

Each organization in the queue links to this page scoped to it, where its requests are
decided.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Final

import pandas as pd
import streamlit as st

from dashboard import actions, clock, data, paging, state, url
from dashboard.app_pages.credits import FLASH
from dashboard.confirm import WriteFlow
from dashboard.text import md
from queries.approvals import ApprovalCursor, ApprovalRequest, PendingApproval
from queries.credits import LedgerEntry, approval_threshold

APPROVALS_PAGE: Final = 20
K_DECISION: Final = "credits.decision_pending"
K_DECISION_RETRY: Final = "credits.decision_retry"
K_DECIDE_REQUEST: Final = "credits.decide_request"
K_DECIDE_ACTION: Final = "credits.decide_action"
K_DECIDE_REASON: Final = "credits.decide_reason"
K_DECIDE_NOTE: Final = "credits.decide_note"


def _decided(request: actions.DecisionRequest, outcome: LedgerEntry | ApprovalRequest) -> str:
    if isinstance(outcome, LedgerEntry):
        return (
            f"Approved request {request.request_id} by {md(request.requested_by)}: "
            f"{outcome.amount:+,} credits for {md(request.organization_name)}. New balance: "
            f"{outcome.balance_after:,} credits (ledger entry {outcome.id})."
        )
    return (
        f"Rejected request {request.request_id} by {md(request.requested_by)} "
        f"({request.amount:+,} credits). Nothing was moved."
    )


DECISION: Final = WriteFlow(
    what="approval decision",
    request_type=actions.DecisionRequest,
    flash=FLASH,
    pending=K_DECISION,
    retry=K_DECISION_RETRY,
    apply=actions.apply_decision,
    succeeded=_decided,
    # A request is decided once: confirming the same decision again returns it.
    token=lambda request: (request.request_id, request.decision),
)


def _local(at: dt.datetime, timezone: str) -> str:
    """``at`` as YYYY-MM-DD HH:MM in ``timezone`` (each request in its organization's
    zone: the queue spans organizations, so one column type cannot carry every zone)."""
    return f"{at.astimezone(zoneinfo.ZoneInfo(timezone)):%Y-%m-%d %H:%M}"


def _expires_in(at: dt.datetime) -> str:
    """How long a request has left before it expires ("in 6 d 23 h"): the same in
    every zone, and narrow enough for the queue to keep its zone column."""
    left = int((at - clock.now()).total_seconds() // 60)
    if left <= 0:
        return "expired"
    days, minutes = divmod(left, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return f"in {days} d {hours} h" if days else f"in {hours} h {minutes} min"


def _terms(r: PendingApproval) -> str:
    """A requested grant's expiry (in the organization's zone) and priority, if any."""
    parts = []
    if r.grant_expires_at is not None:
        parts.append(f"expires {_local(r.grant_expires_at, r.timezone)}")
    if r.grant_priority is not None:
        parts.append(f"priority {r.grant_priority}")
    return ", ".join(parts)


def approvals_table(rows: tuple[PendingApproval, ...]) -> pd.DataFrame:
    """The queue as shown: one row per request waiting for a second person."""
    return pd.DataFrame(
        {
            "Request": [r.id for r in rows],
            "Requested": [_local(r.created_at, r.timezone) for r in rows],
            "Organization": [r.organization for r in rows],
            "Amount": [r.amount for r in rows],
            "Grant terms": [_terms(r) for r in rows],
            "Balance now": [r.balance for r in rows],
            "Reason": [r.reason for r in rows],
            "Note": [r.note for r in rows],
            "Requested by": [r.requested_by for r in rows],
            "Zone": [r.timezone for r in rows],
            "Expires": [_expires_in(r.expires_at) for r in rows],
        }
    )


def _queue(f: state.Filters) -> None:
    st.subheader("Pending approvals")
    pager: paging.Pager[ApprovalCursor] = paging.Pager(
        "credits.approvals", filters=(), page_size=APPROVALS_PAGE
    )
    page = data.pending_approvals(limit=APPROVALS_PAGE, after=pager.after)
    if not page.rows:
        st.caption(
            "No adjustment is waiting for approval. Adjustments above "
            f"{approval_threshold():,} credits wait here for a second person."
        )
        return
    url.table(
        approvals_table(page.rows),
        key="credits.approvals_table",
        # The organization's name opens this page scoped to it, where its requests are
        # decided (below), in the same tab.
        links={
            "Organization": url.organizations(
                [r.organization_id for r in page.rows],
                "credits",
                f,
                "This page for the organization: its requests are decided below.",
            )
        },
        hide_index=True,
        height="content",
        # As the ledger's: the widths fit the main area of a 1440 px wide window.
        column_config={
            "Request": st.column_config.NumberColumn(format="%d", width=55),
            "Requested": st.column_config.TextColumn(
                width=115, help="In the organization's own zone (Zone), as its ledger."
            ),
            "Organization": st.column_config.TextColumn(width=120),
            "Amount": st.column_config.NumberColumn(format="localized", width=80),
            "Grant terms": st.column_config.TextColumn(
                width=95,
                help="The grant's expiry (in the organization's zone) and priority, which "
                "the approved entry keeps; empty: never expires, default priority.",
            ),
            "Balance now": st.column_config.NumberColumn(format="localized", width=85),
            "Reason": st.column_config.TextColumn(width=90),
            "Note": st.column_config.TextColumn(width=60),
            "Requested by": st.column_config.TextColumn(width=100),
            "Zone": st.column_config.TextColumn(
                width=80, help="The organization's time zone: its ledger's and these times'."
            ),
            "Expires": st.column_config.TextColumn(
                width=75, help="Time left before the request expires and leaves the queue."
            ),
        },
        placeholder="",
    )
    pager.buttons(next=page.next_cursor, previous_label="← Older", next_label="Newer →").caption(
        "Every organization's requests, oldest first. Choose an organization in the "
        "sidebar to approve or reject its requests below."
    )


def _confirm_decision(request: actions.DecisionRequest, f: state.Filters) -> None:
    here = request.organization_id == f.organization_id
    with st.container(border=True):
        if here:
            verb = "Approve" if request.decision == "approve" else "Reject"
            st.markdown(
                f"**{verb} request {request.request_id}: {request.amount:+,} credits"
                + (f", {md(request.terms)}," if request.terms else "")
                + f" for {md(request.organization_name)}?**  \nRequested by "
                f"{md(request.requested_by)} · Reason: {md(request.reason)}"
                + (f"  \nRejection: {md(request.rejection)}" if request.rejection else "")
            )
            if request.decision == "approve":
                before, after = st.columns(2)
                before.metric("Balance now", f"{request.balance_before:,}")
                after.metric("Balance after", f"{request.balance_after:,}", f"{request.amount:+,}")
        label = "Confirm approval" if request.decision == "approve" else "Confirm rejection"
        DECISION.buttons(
            request,
            shown=(f.organization_id, f.organization.name),
            label=label,
            again_label=f"{label} again",
            key="credits.decide_confirm",
            back=None,
            discard=("Cancel" if here else "Discard", "credits.decide_cancel"),
        )


def _decision(f: state.Filters, email: str) -> None:
    request = DECISION.request()
    if request is not None:
        _confirm_decision(request, f)
        return
    mine = data.pending_approvals(organization_id=f.organization_id, limit=APPROVALS_PAGE).rows
    if not mine:
        st.caption(f"No request of {md(f.organization.name)} is waiting for approval.")
        return
    by_id = {r.id: r for r in mine}
    # Select-box options are plain text (no Markdown): reasons and emails as stored.
    labels = {
        r.id: f"#{r.id} · {r.amount:+,}"
        + (f" ({_terms(r)})" if _terms(r) else "")
        + f" · {r.reason} · by {r.requested_by}"
        for r in mine
    }
    with st.form("credits.decide_form", border=True):
        st.markdown(f"**Decide on a request of {md(f.organization.name)}**")
        st.selectbox(
            "Request",
            options=list(labels),
            format_func=labels.__getitem__,
            index=None,
            key=K_DECIDE_REQUEST,
            placeholder="Choose a request",
        )
        st.radio(
            "Decision",
            options=["approve", "reject"],
            format_func=lambda d: "Approve" if d == "approve" else "Reject",
            key=K_DECIDE_ACTION,
            horizontal=True,
        )
        left, right = st.columns(2)
        left.selectbox(
            "Rejection reason",
            actions.REJECTION_REASONS,
            index=None,
            key=K_DECIDE_REASON,
            placeholder="Only when rejecting",
        )
        right.text_input("Rejection note", key=K_DECIDE_NOTE)
        submitted = st.form_submit_button("Review decision", type="primary")
    if not submitted:
        return
    chosen = st.session_state.get(K_DECIDE_REQUEST)
    DECISION.check(
        lambda: actions.check_decision(
            organization_id=f.organization_id,
            organization_name=f.organization.name,
            pending=by_id.get(chosen) if isinstance(chosen, int) else None,
            decision=st.session_state.get(K_DECIDE_ACTION),
            reason=st.session_state.get(K_DECIDE_REASON),
            note=st.session_state.get(K_DECIDE_NOTE),
            approver=email,
        )
    )


def render(f: state.Filters, email: str) -> None:
    """Every organization's queue, then the decision on a request of ``f``'s
    organization by ``email``."""
    _queue(f)
    _decision(f, email)
