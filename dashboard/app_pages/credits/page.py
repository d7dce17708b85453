"""The Credits page: its sections in order (see :mod:`dashboard.app_pages.credits`)."""

from __future__ import annotations

import streamlit as st

from dashboard import auth, forecasts, state, ui
from dashboard.app_pages.credits import FLASH, adjust, approvals, bulk, grants, ledger, reversal
from dashboard.app_pages.credits import allowances as plan_allowances
from dashboard.text import md

# The drafts a role without adjust_credits must not keep (a session whose role changed).
FLOWS = (adjust.ADJUSTMENT, reversal.REVERSAL, approvals.DECISION, bulk.BULK)


def render() -> None:
    f = state.current()
    user = auth.current_user()
    can_adjust = user.can("adjust_credits")
    ui.page_header(
        f"Credits · {md(f.organization.name)}",
        f"{md(f.organization.plan.capitalize())} plan · chart dates {f.period_label}",
    )
    ui.show_flash(FLASH)
    balance = ledger.balance(f)
    if balance is None:
        return
    if can_adjust:
        with ui.section("The adjustment form"):
            adjust.render(f, balance)
        with ui.section("Pending approvals"):
            approvals.render(f, user.email)
        with ui.section("Bulk adjustments"):
            bulk.render()
    else:
        drafts = [st.session_state.pop(flow.pending, None) for flow in FLOWS]
        if any(drafts):
            st.error(
                f"{md(user.email)} ({md(user.role)}) may not adjust credits; the request was "
                "discarded. Nothing was changed.",
                icon=":material/block:",
            )
        st.caption(f"Your role ({md(user.role)}) can read credits but not adjust them.")
    with ui.section("The ledger"):
        entries = ledger.render(f)
        if can_adjust:
            reversal.render(f, entries, balance)
    with ui.section("The grants"):
        grants.render(f)
    with ui.section("Expiring credits"):
        grants.expiring(f)
    with ui.section("Granted against consumed"):
        ledger.granted_vs_consumed(f)
    with ui.section("Low runway"):
        forecasts.low_runway("credits", f)
    with ui.section("Plan allowances"):
        plan_allowances.render(user)


render()
