"""The admins' form that moves an organization to another time zone
(``queries.orgs.set_timezone``), through the review-then-confirm flow and audited with
a reason. The Quotas page draws it: a time zone decides the organization's days, and
so its daily quotas."""

from __future__ import annotations

import functools
import zoneinfo
from typing import Final

import streamlit as st

from dashboard import actions, state, ui
from dashboard.confirm import WriteFlow
from dashboard.text import md
from queries.orgs import TimezoneChange

FLASH: Final = "quotas.zone"
K_PENDING: Final = "quotas.zone_pending"
K_RETRY: Final = "quotas.zone_retry"
K_KEY: Final = "quotas.zone_idempotency_key"
K_ZONE: Final = "quotas.zone"
K_REASON: Final = "quotas.zone_reason"
K_NOTE: Final = "quotas.zone_note"


@functools.cache
def zones() -> tuple[str, ...]:
    """Every IANA time zone name Python knows, sorted (the database checks it too)."""
    return tuple(sorted(zoneinfo.available_timezones()))


def _restore(request: actions.TimezoneRequest) -> None:
    st.session_state[K_ZONE] = request.timezone


def _changed(request: actions.TimezoneRequest, change: TimezoneChange) -> str:
    return (
        f"{md(request.organization_name)} is now in {md(change.timezone)} (was "
        f"{md(change.previous_timezone)}); its daily quotas and per-user days were recounted "
        f"in its new days. Recorded in the audit trail (entry {change.audit_id})."
    )


TIMEZONE_CHANGE: Final = WriteFlow(
    what="time zone change",
    request_type=actions.TimezoneRequest,
    flash=FLASH,
    pending=K_PENDING,
    retry=K_RETRY,
    apply=actions.apply_timezone_change,
    succeeded=_changed,
    token=lambda request: request.idempotency_key,
    form_key=K_KEY,
    restore=_restore,
)


def render(f: state.Filters) -> None:
    """The form, or the request waiting for confirmation, for the shown organization."""
    st.subheader(f"Time zone · {md(f.organization.name)}")
    ui.show_flash(FLASH)
    request = TIMEZONE_CHANGE.request()
    if request is not None:
        with st.container(border=True):
            if request.organization_id == f.organization_id:
                st.markdown(
                    f"**Move {md(request.organization_name)} from {md(request.previous)} to "
                    f"{md(request.timezone)}?**  \nReason: {md(request.reason)}"
                )
                st.caption(
                    "Its local days change: today's and past daily quota counts and per-user "
                    "days are recounted in the new zone (each day keeps its limit)."
                )
            TIMEZONE_CHANGE.buttons(
                request,
                shown=(f.organization_id, f.organization.name),
                label="Confirm time zone",
                again_label="Confirm time zone again",
                key="quotas.zone_confirm",
                back=("Back", "quotas.zone_back"),
                discard=("Discard", "quotas.zone_discard"),
            )
        return

    st.caption(
        f"Now {md(f.organization.timezone)}. Its days (and so its daily quotas) are days "
        "in this zone."
    )
    key = st.session_state.setdefault(K_KEY, actions.new_idempotency_key())
    with st.form("quotas.zone_form"):
        zone_col, reason_col, note_col = st.columns(3)
        zone_col.selectbox(
            "New time zone", zones(), index=None, key=K_ZONE, placeholder="Choose a time zone"
        )
        reason_col.selectbox(
            "Reason",
            actions.TIMEZONE_REASONS,
            index=None,
            key=K_REASON,
            placeholder="Choose a reason",
        )
        note_col.text_input("Note", key=K_NOTE, placeholder="Ticket or context (optional)")
        submitted = st.form_submit_button("Review time zone change")
    if not submitted:
        return
    TIMEZONE_CHANGE.check(
        lambda: actions.check_timezone_change(
            organization_id=f.organization_id,
            organization_name=f.organization.name,
            current=f.organization.timezone,
            timezone=st.session_state.get(K_ZONE),
            reason=st.session_state.get(K_REASON),
            note=st.session_state.get(K_NOTE),
            idempotency_key=key,
        )
    )
