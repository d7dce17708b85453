"""Reversing a ledger entry: an entry of the ledger page shown, and its review.

A reversal is held to the two-person rule as an adjustment is: one that moves more than
``CREDITS_APPROVAL_THRESHOLD`` credits, alone or with what the person moved alone for
the organization in the last 24 hours, is refused under the form with the data layer's
sentence (no request carries a reversal), and nothing is drafted or written.
"""

from __future__ import annotations

import logging
from typing import Final

import pandas as pd
import streamlit as st

from dashboard import actions, auth, data, state, ui
from dashboard.app_pages.credits import FLASH
from dashboard.confirm import WriteFlow
from dashboard.text import md
from queries.credits import LedgerEntry
from queries.errors import InvalidInput

_log = logging.getLogger(__name__)
K_REVERSAL: Final = "credits.reversal_pending"
K_REVERSAL_RETRY: Final = "credits.reversal_retry"


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


def render(f: state.Filters, entries: pd.DataFrame, balance: int) -> None:
    """Reversing an entry of the ledger page shown (``entries``), or the reversal
    waiting for confirmation."""
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
                after.metric("Balance after", f"{request.balance_after:,}", f"{request.moves:+,}")
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
        # A reversal is not reversed, nor an expiry (grant the credits again instead).
        reversible = entries[
            ~entries["kind"].isin(["reversal", "expired"]) & entries["reversed_by_id"].isna()
        ]
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

        def checked() -> actions.ReversalRequest:
            if chosen.empty:
                raise InvalidInput("Choose the ledger entry to reverse.")
            row = chosen.iloc[0]
            remaining, moved = _what_it_moves(f, int(row["id"]))
            return actions.check_reversal(
                organization_id=f.organization_id,
                organization_name=f.organization.name,
                entry_id=int(row["id"]),
                entry_amount=int(row["amount"]),
                entry_kind=str(row["kind"]),
                reason=st.session_state.get("credits.reverse_reason"),
                note=st.session_state.get("credits.reverse_note"),
                balance=balance,
                remaining=remaining,
                moved_alone=moved,
            )

        REVERSAL.check(checked)


def _what_it_moves(f: state.Filters, entry_id: int) -> tuple[int | None, int]:
    """What remains of the grant ``entry_id`` made (None: it made none) and what the
    current user moved alone for the organization in the last 24 hours: what the review
    needs to tell whether one person may apply the reversal (``actions.check_reversal``).
    The write reads both again under the organization's lock and refuses alike."""
    try:
        grants = data.credit_grants(organization_id=f.organization_id)
        moved = data.moved_alone(f.organization_id, actor=auth.current_user().email)
    except ui.EXPECTED_ERRORS as exc:
        _log.warning("reading what a reversal would move failed: %r", exc)
        st.caption(
            "Could not read what this reversal moves or what you moved for this "
            "organization in the last 24 hours; confirming checks it again."
        )
        return None, 0
    # The opening grant covers the entries before grants began, not one entry of its own.
    made = [g for g in grants if g.ledger_entry_id == entry_id and g.source != "opening"]
    return (made[0].remaining if made else None), moved
