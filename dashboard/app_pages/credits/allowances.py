"""Plan allowances: every plan's monthly allowance and rollover cap (``queries.allowances``),
read by every role that sees Credits; changed by admins only, reviewed then confirmed.

A plan belongs to no organization, so its change is drafted for all of them
(``actions.PLAN_ORGANIZATION``): switching the organization shown does not disable it.
"""

from __future__ import annotations

from typing import Final

import pandas as pd
import streamlit as st

from dashboard import actions, auth, data
from dashboard.app_pages.credits import FLASH
from dashboard.confirm import WriteFlow
from dashboard.text import md
from queries.allowances import AllowanceChange, PlanAllowance

K_PENDING: Final = "credits.allowance_pending"
K_RETRY: Final = "credits.allowance_retry"
K_KEY: Final = "credits.allowance_key"
K_PLAN: Final = "credits.allowance_plan"
K_MONTHLY: Final = "credits.allowance_monthly"
K_CAP: Final = "credits.allowance_cap"
K_REASON: Final = "credits.allowance_reason"
K_NOTE: Final = "credits.allowance_note"
_SHOWN: Final = (actions.PLAN_ORGANIZATION, actions.PLAN_ORGANIZATIONS)


def allowance_table(plans: list[PlanAllowance]) -> pd.DataFrame:
    """The plans for a table (who changed them last stays data: a dataframe cell)."""
    return pd.DataFrame(
        {
            "Plan": [p.plan.capitalize() for p in plans],
            "Monthly allowance": [p.monthly_allowance for p in plans],
            "Rollover cap": [p.rollover_cap for p in plans],
            "Changed": [p.updated_at for p in plans],
            "By": [p.updated_by for p in plans],
        }
    )


def _changed(request: actions.AllowanceRequest, change: AllowanceChange) -> str:
    return (
        f"The {md(change.plan)} plan now grants {change.monthly_allowance:,} credits a month "
        f"(was {change.old_monthly_allowance:,}) with a rollover cap of "
        f"{change.rollover_cap:,} (was {change.old_rollover_cap:,}), from the next "
        f"grant-allowances run on. Recorded as change {change.id}."
    )


def _restore(request: actions.AllowanceRequest) -> None:
    st.session_state[K_PLAN] = request.plan
    st.session_state[K_MONTHLY] = f"{request.monthly_allowance}"
    st.session_state[K_CAP] = f"{request.rollover_cap}"


ALLOWANCE: Final = WriteFlow(
    what="plan allowance change",
    request_type=actions.AllowanceRequest,
    flash=FLASH,
    pending=K_PENDING,
    retry=K_RETRY,
    apply=actions.apply_plan_allowance,
    succeeded=_changed,
    token=lambda request: request.idempotency_key,
    form_key=K_KEY,
    restore=_restore,
)


def render(user: auth.CurrentUser) -> None:
    """The plans' allowances; for an admin, the form that changes one, or its review."""
    plans = data.plan_allowances()
    st.caption(
        "Each organization gets its plan's allowance for its local month, expiring at the "
        "end of it; what remains then rolls into the next month, up to the cap "
        "(`dashboard grant-allowances`)."
    )
    st.dataframe(
        allowance_table(plans),
        hide_index=True,
        key="credits.allowances_table",
        column_config={
            "Monthly allowance": st.column_config.NumberColumn(format="localized"),
            "Rollover cap": st.column_config.NumberColumn(format="localized"),
            "Changed": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm z"),
        },
    )
    if not user.can("change_allowances"):
        if st.session_state.pop(K_PENDING, None) is not None:
            st.error(
                f"{md(user.email)} ({md(user.role)}) may not change a plan's allowance; the "
                "request was discarded. Nothing was changed.",
                icon=":material/block:",
            )
        return
    request = ALLOWANCE.request()
    with st.expander("Change a plan's allowance", expanded=request is not None):
        if request is not None:
            _review(request)
            return
        _form(plans)


def _review(request: actions.AllowanceRequest) -> None:
    st.markdown(
        f"**Change the {md(request.plan)} plan's allowance?**  \n"
        f"Monthly allowance: {request.old_monthly_allowance:,} → "
        f"{request.monthly_allowance:,} credits  \n"
        f"Rollover cap: {request.old_rollover_cap:,} → {request.rollover_cap:,} credits  \n"
        f"Reason: {md(request.reason)}"
    )
    st.caption(
        "Every organization on the plan gets the new values from the next "
        "grant-allowances run on; allowances already granted keep their amounts."
    )
    ALLOWANCE.buttons(
        request,
        shown=_SHOWN,
        label="Confirm change",
        again_label="Confirm change again",
        key="credits.allowance_confirm",
        back=("Back", "credits.allowance_back"),
        discard=("Discard", "credits.allowance_discard"),
    )


def _form(plans: list[PlanAllowance]) -> None:
    key = st.session_state.setdefault(K_KEY, actions.new_idempotency_key())
    with st.form("credits.allowance_form"):
        plan_col, monthly_col, cap_col = st.columns(3)
        plan_col.selectbox(
            "Plan",
            options=[p.plan for p in plans],
            format_func=str.capitalize,
            index=None,
            key=K_PLAN,
            placeholder="Choose a plan",
        )
        monthly_col.text_input("Monthly allowance (credits)", key=K_MONTHLY)
        cap_col.text_input("Rollover cap (credits)", key=K_CAP)
        reason_col, note_col = st.columns(2)
        reason_col.selectbox(
            "Reason",
            actions.ALLOWANCE_REASONS,
            index=None,
            key=K_REASON,
            placeholder="Choose a reason",
        )
        note_col.text_input("Note", key=K_NOTE, placeholder="Ticket or context (optional)")
        submitted = st.form_submit_button("Review change")
    if not submitted:
        return
    ALLOWANCE.check(
        lambda: actions.check_plan_allowance(
            current=plans,
            plan=st.session_state.get(K_PLAN),
            monthly_allowance=st.session_state.get(K_MONTHLY),
            rollover_cap=st.session_state.get(K_CAP),
            reason=st.session_state.get(K_REASON),
            note=st.session_state.get(K_NOTE),
            idempotency_key=key,
        )
    )
