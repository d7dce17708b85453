"""Credits (finance): an organization's balance, burn rate and runway; its ledger
(filtered, paginated, downloadable); adjusting credits and reversing ledger entries;
the queue of adjustments waiting for a second person, and approving or rejecting them.

An adjustment above ``CREDITS_APPROVAL_THRESHOLD`` is never applied by one person: the
same form, confirmed, records an approval request instead, which someone else
approves or rejects here. Every write goes through the one review-then-confirm flow
(:class:`dashboard.confirm.WriteFlow`).

Money moves in two steps: a form is checked into a request (nothing is written), then
the request is confirmed with the balance before and after. The request carries an
idempotency key made when the form was drawn and kept until the adjustment succeeds,
so a double click or a rerun applies it once.

The ledger's kinds, actor and page are in the URL (``kind``, ``actor``, ``after``:
:mod:`dashboard.url`). The adjustment form leads the page, right under the balance, so
an "Adjust" link from another page is ``credits?org=ID``; each organization in the queue
of pending approvals links to this page scoped to it, where its requests are decided.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import zoneinfo
from typing import Final

import pandas as pd
import streamlit as st

from dashboard import (
    actions,
    auth,
    charts,
    clock,
    data,
    exports,
    forecasts,
    paging,
    state,
    ui,
    url,
)
from dashboard.confirm import WriteFlow
from dashboard.text import md
from queries.approvals import ApprovalCursor, ApprovalRequest, PendingApproval
from queries.bulk import BulkPlan, BulkRow
from queries.credits import LedgerEntry, approval_threshold
from queries.errors import InvalidInput
from queries.models import LEDGER_KINDS
from queries.usage import LedgerCursor
from queries.words import counted

_log = logging.getLogger(__name__)
FLASH: Final = "credits"
LEDGER_PAGE: Final = 50
K_KEY: Final = "credits.idempotency_key"
K_PENDING: Final = "credits.pending"
K_DIRECTION: Final = "credits.direction"
K_AMOUNT: Final = "credits.amount"
K_REASON: Final = "credits.reason"
K_NOTE: Final = "credits.note"
K_RETRY: Final = "credits.retry_key"  # the key of a request to "Confirm again"
K_REVERSAL: Final = "credits.reversal_pending"
K_REVERSAL_RETRY: Final = "credits.reversal_retry"
K_DECISION: Final = "credits.decision_pending"
K_DECISION_RETRY: Final = "credits.decision_retry"
K_DECIDE_REQUEST: Final = "credits.decide_request"
K_DECIDE_ACTION: Final = "credits.decide_action"
K_DECIDE_REASON: Final = "credits.decide_reason"
K_DECIDE_NOTE: Final = "credits.decide_note"
APPROVALS_PAGE: Final = 20
K_BULK: Final = "credits.bulk_pending"
K_BULK_RETRY: Final = "credits.bulk_retry"
K_BULK_FILE: Final = "credits.bulk_file"
K_KINDS: Final = "credits.kinds"
K_ACTOR: Final = "credits.actor"
K_LEDGER_DATES: Final = "credits.ledger_dates"  # the ledger follows the sidebar's dates
URL_PAGE: Final = "credits"
URL_PARAMS: Final = (
    url.choices_param("kind", K_KINDS, LEDGER_KINDS, "ledger kinds"),
    url.text_param("actor", K_ACTOR, "actor"),
    # dates=sidebar: the ledger only within the sidebar's dates (default: every date).
    url.choice_param("dates", K_LEDGER_DATES, {"sidebar": True}, default=False),
)

DIRECTIONS: Final = {"grant": "Grant credits", "deduct": "Deduct credits"}


# ---------------------------------------------------------------- balance and burn


def _balance(f: state.Filters) -> int | None:
    runway = data.runway(organization_id=f.organization_id)
    if runway is None:
        st.warning(
            f"{md(f.organization.name)} no longer exists. Choose another organization in "
            "the sidebar."
        )
        return None
    tiles = st.columns(3)
    tiles[0].metric("Balance", f"{runway.balance:,} credits", border=True)
    tiles[1].metric(
        "Burn rate",
        f"{runway.daily_burn:,.0f} / day",
        help=f"Average credits consumed per day over the last {runway.burn_days} complete "
        f"days (to {runway.today - dt.timedelta(days=1)}, the organization's own days).",
        border=True,
    )
    if runway.runway_days is None:
        tiles[2].metric("Runway", "No burn", help="Nothing was consumed recently.", border=True)
    else:
        empty_on = runway.today + dt.timedelta(days=int(runway.runway_days))
        tiles[2].metric(
            "Runway",
            counted(runway.runway_days, "day", fmt=",.0f"),
            help=f"At that burn rate the balance lasts until about {empty_on}.",
            border=True,
        )
    return runway.balance


# ------------------------------------------------------------------ the adjustment


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
    try:
        request = actions.check_adjustment(
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
    except InvalidInput as exc:
        st.error(ui.describe_write_error(exc), icon=":material/block:")
        return
    ADJUSTMENT.draft(request)
    st.rerun()


def _adjustment(f: state.Filters, balance: int) -> None:
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


# ------------------------------------------------------------------------ reversal


def _reversed(request: actions.ReversalRequest, entry: LedgerEntry) -> str:
    return (
        f"Reversed ledger entry {request.entry_id} ({entry.amount:+,} credits, entry "
        f"{entry.id}). New balance: {entry.balance_after:,} credits."
    )


REVERSAL: Final = WriteFlow(
    what="reversal",
    request_type=actions.ReversalRequest,
    flash=FLASH,
    pending=K_REVERSAL,
    retry=K_REVERSAL_RETRY,
    apply=actions.apply_reversal,
    succeeded=_reversed,
    # A reversal's key is its entry: confirming again applies at most once.
    token=lambda request: request.entry_id,
)


def _reversal(f: state.Filters, entries: pd.DataFrame, balance: int) -> None:
    request = REVERSAL.request()
    with st.expander("Reverse a ledger entry", expanded=request is not None):
        if request is not None:
            here = request.organization_id == f.organization_id
            if here:
                st.markdown(
                    f"**Reverse entry {request.entry_id}** ({md(request.entry_kind)}, "
                    f"{request.entry_amount:+,} credits)?  \nReason: {md(request.reason)}"
                )
                before, after = st.columns(2)
                before.metric("Balance now", f"{request.balance_before:,}")
                after.metric(
                    "Balance after", f"{request.balance_after:,}", f"{-request.entry_amount:+,}"
                )
            REVERSAL.buttons(
                request,
                shown=(f.organization_id, f.organization.name),
                label="Confirm reversal",
                again_label="Confirm reversal again",
                key="credits.reverse_confirm",
                back=None,
                discard=("Cancel" if here else "Discard", "credits.reverse_cancel"),
            )
            return
        reversible = entries[(entries["kind"] != "reversal") & entries["reversed_by_id"].isna()]
        if reversible.empty:
            st.caption("No entry on this ledger page can be reversed.")
            return
        # Select-box options are plain text (no Markdown), so the reason and actor are
        # shown as stored.
        labels = {
            int(row["id"]): f"#{row['id']} · {row['kind']} {row['amount']:+,} · "
            f"{row['reason']} · {row['actor']}"
            for row in reversible.to_dict("records")
        }
        with st.form("credits.reverse_form"):
            st.selectbox(
                "Entry (from the ledger page shown)",
                options=list(labels),
                format_func=labels.__getitem__,
                index=None,
                key="credits.reverse_entry",
                placeholder="Choose an entry",
            )
            st.selectbox(
                "Reason",
                actions.REVERSAL_REASONS,
                index=None,
                key="credits.reverse_reason",
                placeholder="Choose a reason",
            )
            st.text_input("Note", key="credits.reverse_note")
            submitted = st.form_submit_button("Review reversal")
        if not submitted:
            return
        entry_id = st.session_state.get("credits.reverse_entry")
        chosen = reversible[reversible["id"] == entry_id]
        try:
            if chosen.empty:
                raise InvalidInput("Choose the ledger entry to reverse.")
            row = chosen.iloc[0]
            reversal = actions.check_reversal(
                organization_id=f.organization_id,
                organization_name=f.organization.name,
                entry_id=int(row["id"]),
                entry_amount=int(row["amount"]),
                entry_kind=str(row["kind"]),
                reason=st.session_state.get("credits.reverse_reason"),
                note=st.session_state.get("credits.reverse_note"),
                balance=balance,
            )
        except InvalidInput as exc:
            st.error(ui.describe_write_error(exc), icon=":material/block:")
            return
        REVERSAL.draft(reversal)
        st.session_state.pop(K_REVERSAL_RETRY, None)
        st.rerun()


# --------------------------------------------------------------- pending approvals


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


def approvals_table(
    rows: tuple[PendingApproval, ...], f: state.Filters | None = None
) -> pd.DataFrame:
    """The queue as shown: one row per request waiting for a second person; with the
    filters, each organization links to this page scoped to it (to decide)."""
    links = (
        {"Decide": [url.link("credits", f, organization_id=r.organization_id) for r in rows]}
        if f is not None
        else {}
    )
    return pd.DataFrame(
        {
            "Request": [r.id for r in rows],
            "Requested": [_local(r.created_at, r.timezone) for r in rows],
            "Organization": [r.organization for r in rows],
            **links,
            "Amount": [r.amount for r in rows],
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
    st.dataframe(
        approvals_table(page.rows, f),
        hide_index=True,
        height="content",
        # As the ledger's: the widths fit the main area of a 1440 px wide window.
        column_config={
            "Request": st.column_config.NumberColumn(format="%d", width=55),
            "Requested": st.column_config.TextColumn(
                width=125, help="In the organization's own zone (Zone), as its ledger."
            ),
            "Organization": st.column_config.TextColumn(width=115),
            "Decide": url.open_column(
                "This page for the organization: its requests are decided below.", width=40
            ),
            "Amount": st.column_config.NumberColumn(format="localized", width=80),
            "Balance now": st.column_config.NumberColumn(format="localized", width=85),
            "Reason": st.column_config.TextColumn(width=100),
            "Note": st.column_config.TextColumn(width=70),
            "Requested by": st.column_config.TextColumn(width=120),
            "Zone": st.column_config.TextColumn(
                width=100, help="The organization's time zone: its ledger's and these times'."
            ),
            "Expires": st.column_config.TextColumn(
                width=75, help="Time left before the request expires and leaves the queue."
            ),
        },
        placeholder="",
        key="credits.approvals_table",
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
                f"**{verb} request {request.request_id}: {request.amount:+,} credits for "
                f"{md(request.organization_name)}?**  \nRequested by "
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
    labels = {r.id: f"#{r.id} · {r.amount:+,} · {r.reason} · by {r.requested_by}" for r in mine}
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
    try:
        decision = actions.check_decision(
            organization_id=f.organization_id,
            organization_name=f.organization.name,
            pending=by_id.get(chosen) if isinstance(chosen, int) else None,
            decision=st.session_state.get(K_DECIDE_ACTION),
            reason=st.session_state.get(K_DECIDE_REASON),
            note=st.session_state.get(K_DECIDE_NOTE),
            approver=email,
        )
    except InvalidInput as exc:
        st.error(ui.describe_write_error(exc), icon=":material/block:")
        return
    DECISION.draft(decision)
    st.rerun()


# -------------------------------------------------------------------------- ledger


def ledger_csv_name(
    f: state.Filters,
    *,
    kinds: tuple[str, ...],
    actor: str,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> str:
    """The CSV's name: the organization, the dates when the ledger is narrowed to them
    (else "all-dates"), and the kind and actor filters."""
    parts = ["ledger", f.organization.slug]
    parts += [start.isoformat(), end.isoformat()] if start and end else ["all-dates"]
    if kinds:
        parts.append("kind-" + "-".join(sorted(kinds)))
    slug = re.sub(r"[^a-z0-9]+", "-", actor.strip().lower()).strip("-")
    if slug:
        parts.append(f"actor-{slug}")
    return "_".join(parts) + ".csv"


def ledger_table(entries: pd.DataFrame, timezone: str) -> pd.DataFrame:
    """The ledger for the CSV: one column per field, ids as numbers."""
    return pd.DataFrame(
        {
            "Entry": entries["id"],
            "Time": ui.local_times(entries["created_at"], timezone),
            "Kind": entries["kind"],
            "Amount": entries["amount"],
            "Balance after": entries["balance_after"],
            "Reason": entries["reason"],
            "Note": entries["note"],
            "Actor": entries["actor"],
            "Reverses": entries["reverses_id"],
            "Reversed by": entries["reversed_by_id"],
        }
    )


def reversal_links(entries: pd.DataFrame) -> pd.Series:
    """ "reverses #14", "reversed by #17" or "" for each entry (an entry is at most one:
    a reversal cannot itself be reversed)."""
    reverses = entries["reverses_id"].astype("Int64")
    reversed_by = entries["reversed_by_id"].astype("Int64")
    links = [
        f"reverses #{a}" if not pd.isna(a) else f"reversed by #{b}" if not pd.isna(b) else ""
        for a, b in zip(reverses, reversed_by, strict=True)
    ]
    return pd.Series(links, index=entries.index, dtype="object")


def ledger_view(entries: pd.DataFrame, timezone: str) -> pd.DataFrame:
    """The ledger as shown: as :func:`ledger_table`, with "Reverses" and "Reversed by"
    in one "Reversal" column so that every column fits a 1440 px wide window."""
    table = ledger_table(entries, timezone).drop(columns=["Reverses", "Reversed by"])
    return table.assign(Reversal=reversal_links(entries))


def _ledger(f: state.Filters, *, balance: int, can_adjust: bool) -> None:
    st.subheader("Ledger")
    # Newest or oldest first (sort=oldest in the URL), read in that order in SQL.
    k_sort, orders = "credits.ledger_sort", paging.TIME_ORDERS
    params = (*URL_PARAMS, paging.sort_param(k_sort, orders, default="newest"))
    url.apply(URL_PAGE, params)
    left, right, order_col = st.columns([2, 2, 1])
    kinds = tuple(left.multiselect("Kinds", LEDGER_KINDS, key=K_KINDS, placeholder="All kinds"))
    actor = right.text_input(
        "Actor contains", key=K_ACTOR, placeholder="part of an email", max_chars=url.MAX_TEXT
    )
    with order_col:
        sort = paging.sort_select(k_sort, orders, default="newest")
    # Newest first over every date unless asked: an adjustment is always made now, so a
    # ledger that followed a sidebar range ending in the past hid the entry just made.
    dated = st.toggle(
        f"Only the sidebar's dates ({f.start:%d %b %Y} – {f.end:%d %b %Y})",
        key=K_LEDGER_DATES,
        help="Off: every entry, newest first, whatever the sidebar's dates.",
    )
    url.write(URL_PAGE, params)
    start, end = (f.start, f.end) if dated else (None, None)
    pager: paging.Pager[LedgerCursor] = paging.Pager(
        "credits.ledger",
        filters=(f.organization_id, kinds, actor.strip(), start, end),
        page_size=LEDGER_PAGE,
        url_page=URL_PAGE,
        cursor_type=LedgerCursor,
        sort=sort,
    )
    page = data.ledger_page(
        organization_id=f.organization_id,
        kinds=kinds or None,
        actor=actor.strip() or None,
        start=start,
        end=end,
        limit=LEDGER_PAGE,
        after=pager.after,
        sort=sort,
    )
    entries = page.entries
    if entries.empty:
        st.info(
            f"No ledger entries in {f.period_label} match these filters. Turn off "
            '"Only the sidebar\'s dates" or clear the kind and actor filters.'
            if dated
            else "No ledger entries match these filters. Clear the kind and actor filters."
        )
    else:
        shown = ledger_view(entries, f.timezone)
        event = st.dataframe(
            shown,
            hide_index=True,
            height="content",  # every entry of the page, no scroll box
            on_select="rerun",
            selection_mode="single-row",
            # Widths add up to less than the main area of a 1440 px window, so no
            # column hides behind a sideways scroll; the rest is shared out evenly.
            column_config={
                "Entry": st.column_config.NumberColumn(format="%d", width=55),
                "Time": st.column_config.DatetimeColumn(
                    format="YYYY-MM-DD HH:mm", width=125, help=f"In {f.timezone}."
                ),
                "Kind": st.column_config.TextColumn(width=65),
                "Amount": st.column_config.NumberColumn(format="localized", width=70),
                "Balance after": st.column_config.NumberColumn(format="localized", width=100),
                "Reason": st.column_config.TextColumn(width=155),
                "Note": st.column_config.TextColumn(width=95),
                # (The row selection box takes about 30 px of what the actor had.)
                "Actor": st.column_config.TextColumn(width=160),
                "Reversal": st.column_config.TextColumn(
                    width=110,
                    help="The entry this one reverses, or the entry that reversed it.",
                ),
            },
            placeholder="",  # no note: a blank cell, not "None"
            key="credits.ledger",
        )
        ui.in_full(
            shown,
            event.selection.rows,
            heading=("Entry", "Kind", "Amount", "Actor"),
            fields=("Reason", "Note"),
            what="reason and note",
        )
    first = pager.first
    earlier, later = ("Newer", "Older") if sort == "newest" else ("Older", "Newer")
    pager.buttons(
        next=page.next_cursor, previous_label=f"← {earlier}", next_label=f"{later} →"
    ).caption(
        (
            f"Entries {first:,}–{first + len(entries) - 1:,}, {orders[sort].lower()}. "
            f"{paging.SORT_NOTE} "
            if len(entries)
            else ""
        )
        + (
            f"Dates are {md(f.organization.name)}'s own days; "
            if dated
            else "Every date (the sidebar's dates do not apply); "
        )
        + f"times in {md(f.timezone)}."
    )
    organization_id, timezone = f.organization_id, f.timezone

    def every_entry() -> bytes:
        rows = data.ledger_all(
            organization_id, kinds=kinds, actor=actor, start=start, end=end, sort=sort
        )
        return exports.csv_bytes(ledger_table(rows, timezone))

    st.download_button(
        "Download CSV (all pages)",
        data=every_entry,
        file_name=ledger_csv_name(f, kinds=kinds, actor=actor, start=start, end=end),
        mime="text/csv",
        icon=":material/download:",
        key="credits.download",
        on_click="ignore",
        disabled=entries.empty,
    )
    if can_adjust:
        _reversal(f, entries, balance)


# ----------------------------------------------------------------------------- bulk

BULK_STATUS: Final = {
    "apply": "will be applied",
    "request": "approval request",
    "exists": "already there",
    "applied": "applied",
    "requested": "requested",
    "error": "error",
}


def bulk_table(rows: tuple[BulkRow, ...]) -> pd.DataFrame:
    """A bulk file's rows for a table: customer text stays data (a dataframe cell)."""
    return pd.DataFrame(
        {
            "Line": [r.line for r in rows],
            "Organization": [r.slug or "" for r in rows],
            "Amount": pd.array([r.amount for r in rows], dtype="Int64"),
            "Reason": [r.reason or "" for r in rows],
            "Status": [BULK_STATUS[r.status] for r in rows],
            "Balance before": pd.array([r.balance_before for r in rows], dtype="Int64"),
            "Balance after": pd.array([r.balance_after for r in rows], dtype="Int64"),
            "Problems": [" ".join(r.errors) for r in rows],
        }
    )


def _bulk_applied(request: actions.BulkRequest, done: BulkPlan) -> str:
    return (
        f"Applied {md(request.file_name)}: {counted(done.count('applied'), 'row')} applied, "
        f"{done.count('requested'):,} recorded as approval requests, "
        f"{done.count('exists'):,} already there (nothing changed for those)."
    )


BULK: Final = WriteFlow(
    what="bulk adjustment",
    request_type=actions.BulkRequest,
    flash=FLASH,
    pending=K_BULK,
    retry=K_BULK_RETRY,
    apply=actions.apply_bulk,
    succeeded=_bulk_applied,
    # The file's hash: the keys of its rows, so confirming again applies it once.
    token=lambda request: request.plan.digest,
)
_SHOWN_BULK: Final = (actions.BULK_ORGANIZATION, actions.BULK_ORGANIZATIONS)


def _bulk_review(request: actions.BulkRequest) -> None:
    plan = request.plan
    with st.container(border=True):
        st.markdown(f"**{md(request.file_name)}**: {counted(len(plan.rows), 'row')}")
        st.dataframe(bulk_table(plan.rows), hide_index=True, key="credits.bulk_table")
        if not plan.ok:
            st.error(
                f"{counted(len(plan.errors), 'problem')}; nothing of this file can be applied. "
                "Fix them and upload the file again.",
                icon=":material/block:",
            )
            for line, message in plan.errors[:50]:
                st.markdown(f"- Line {line}: {md(message)}")
            st.button("Discard", key="credits.bulk_discard", on_click=BULK.discard)
            return
        st.info(
            f"{counted(plan.count('apply'), 'row')} will be applied, {plan.count('request'):,} "
            f"become approval requests (above {approval_threshold():,} credits), "
            f"{plan.count('exists'):,} are already there. All or nothing: if anything "
            "changed since this check, nothing is applied.",
            icon=":material/fact_check:",
        )
        BULK.buttons(
            request,
            shown=_SHOWN_BULK,
            label=f"Confirm: apply {counted(len(plan.rows), 'row')}",
            again_label=f"Confirm again: apply {counted(len(plan.rows), 'row')}",
            key="credits.bulk_confirm",
            back=None,
            discard=("Discard", "credits.bulk_discard"),
        )


def _bulk() -> None:
    st.subheader("Bulk adjustments from a CSV")
    request = BULK.request()
    if request is not None:
        _bulk_review(request)
        return
    uploaded = st.file_uploader(
        "CSV file",
        type=["csv"],
        key=K_BULK_FILE,
        help="UTF-8, a header row, columns organization (slug), amount (negative to "
        "deduct), reason, note (optional), key (optional).",
    )
    if uploaded is None:
        st.caption(
            "Columns: organization (slug), amount, reason, note and key (optional). "
            "You see every row with its balance before and after before anything is applied."
        )
        return
    if not st.button("Check the file", type="primary", key="credits.bulk_check"):
        return
    try:
        checked = actions.check_bulk(file_name=uploaded.name, content=uploaded.getvalue())
    except InvalidInput as exc:
        st.error(ui.describe_write_error(exc), icon=":material/block:")
        return
    BULK.draft(checked)
    st.rerun()


def render() -> None:
    f = state.current()
    user = auth.current_user()
    ui.page_header(
        f"Credits · {md(f.organization.name)}",
        f"{md(f.organization.plan.capitalize())} plan · chart dates {f.period_label}",
    )
    ui.show_flash(FLASH)
    balance = _balance(f)
    if balance is None:
        return
    if user.can("adjust_credits"):
        with ui.section("The adjustment form"):
            _adjustment(f, balance)
        with ui.section("Pending approvals"):
            _queue(f)
            _decision(f, user.email)
        with ui.section("Bulk adjustments"):
            _bulk()
    else:
        drafts = [
            st.session_state.pop(k, None) for k in (K_PENDING, K_REVERSAL, K_DECISION, K_BULK)
        ]
        if any(drafts):
            st.error(
                f"{md(user.email)} ({md(user.role)}) may not adjust credits; the request was "
                "discarded. Nothing was changed.",
                icon=":material/block:",
            )
        st.caption(f"Your role ({md(user.role)}) can read credits but not adjust them.")
    with ui.section("The ledger"):
        _ledger(f, balance=balance, can_adjust=user.can("adjust_credits"))
    with ui.section("Granted against consumed"):
        st.subheader("Granted, deducted and consumed")
        df = data.granted_vs_consumed(
            organization_id=f.organization_id,
            start=f.start,
            end=f.end,
            granularity=f.granularity,
        )
        st.plotly_chart(
            charts.granted_vs_consumed(
                df,
                granularity=f.granularity,
                start=f.start,
                end=f.end,
                today=state.today_in(f.organization.timezone),  # its buckets' zone
            ),
            key="credits.flow_chart",
        )
        st.caption(
            f"Running totals from {f.start:%d %b %Y}, by {f.granularity}: a grant is a step "
            "up, consumption a steady climb, all on one scale. Where Consumed ends above "
            "Granted, the organization used more credits in the period than it was given. "
            f"Hover for each {f.granularity}'s own amounts; an open marker is a partial "
            f"{f.granularity} (cut by the dates, or not over yet). Granted includes refunds; "
            "deducted includes reversals that took credits back."
        )
    with ui.section("Low runway"):
        forecasts.low_runway("credits", f)


render()
