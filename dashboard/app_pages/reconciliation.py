"""Reconciliation: do the books close? Balances, the ledger's balance_after chain, the
credit grants (and their expiries) and every rollup checked against the raw rows, with
the first ledger entry or day of each drift. Opening the page checks what changed since the last verified checkpoints (fast
after the nightly run); "Full check" rechecks everything. The page only checks: the
checkpoints belong to the reconciler (`dashboard reconcile` as a dashboard_auditor
login), and the app's role may not write them."""

from __future__ import annotations

from typing import Final

import pandas as pd
import streamlit as st

from dashboard import auth, data, state, ui, url
from queries.reconciliation import Drift, Reconciliation, reconcile
from queries.words import counted

K_RESULT: Final = "reconciliation.result"
# What each invariant means, in the words of the page.
CHECK_LABELS: Final = {
    "checkpoint": "Verified checkpoints (written by no verifying run)",
    "balance": "Balance = ledger − consumption",
    "ledger": "Ledger balance_after chain",
    "grants": "Grant remaining = amount − drawn − expired − reversed",
    "grants.balance": "Balance = the grants' remaining amounts",
    "grants.expiry": "Expiry entries match their grants",
    "grants.ledger": "Grants match the entries that made them",
    "grants.marks": "The balance row's marks match the grants",
    "usage_limits": "Daily quota counts (usage_limits)",
    "user_daily_usage": "Per-user days (user_daily_usage)",
    "quarter_hour_usage": "Quarter-hours (quarter_hour_usage)",
    "organization_daily_usage": "Organization days (organization_daily_usage)",
    "organization_daily_usage.through": "Running totals (organization_daily_usage)",
    "organization_monthly_usage": "Organization months (organization_monthly_usage)",
}


def drift_table(drifts: tuple[Drift, ...]) -> pd.DataFrame:
    """The drifts as shown: one row each, where it first appears and by how much."""
    return pd.DataFrame(
        {
            "Organization": [d.slug for d in drifts],
            "Check": [CHECK_LABELS.get(d.check, d.check) for d in drifts],
            "What": [d.what for d in drifts],
            "First seen": [d.where for d in drifts],
            "First entry": pd.array([d.first_entry for d in drifts], dtype="Int64"),
            "First day": [d.first_date for d in drifts],
            "Expected": [d.expected for d in drifts],
            "Found": [d.found for d in drifts],
            "Drifted rows": [d.rows for d in drifts],
        }
    )


def ledgers(drifts: tuple[Drift, ...], f: state.Filters) -> url.Links:
    """Each drifted organization opens its ledger (Credits), else its Overview."""
    page = "credits" if url.may_open("credits") else "overview"
    what = "ledger (Credits)" if page == "credits" else "Overview"
    return url.organizations(
        [d.organization_id for d in drifts],
        page,
        f,
        f"Click an organization for its {what}, with the sidebar's dates.",
    )


def links(drifts: tuple[Drift, ...], f: state.Filters) -> dict[str, url.Links]:
    """Each drift's organization opens its ledger (:func:`ledgers`), and its first entry
    the ledger at that entry."""
    return {
        "Organization": ledgers(drifts, f),
        "First entry": url.ledger_entries(
            [d.organization_id for d in drifts],
            [d.first_entry for d in drifts],
            f,
            "The ledger entry where the drift first appears: click it to open the "
            "organization's ledger at that entry (Credits).",
        ),
    }


def summary(result: Reconciliation) -> str:
    scope = (
        "every day"
        if result.days_checked is None
        else f"{counted(result.days_checked, 'day')} changed since the last verified checkpoints"
    )
    kind = "Full check" if result.full else "Check of what changed"
    return (
        f"{kind} at {result.checked_at:%Y-%m-%d %H:%M} UTC: "
        f"{counted(result.organizations_checked, 'organization')} and {scope}; "
        "the balances of all organizations."
    )


def _run(*, full: bool) -> None:
    # The role again, not only the navigation: a full check reads every row.
    auth.require("view_reconciliation")
    with st.spinner("Checking the books…"):
        # Checks only: recording checkpoints is the reconciler's (dashboard_auditor).
        st.session_state[K_RESULT] = reconcile(data.engine(), full=full, checkpoint=False)


def render() -> None:
    ui.page_header(
        "Reconciliation",
        "Do the books close? Every balance against its ledger and generations, every "
        "ledger entry's balance after, every rollup against the generations it counts.",
    )
    left, right, _ = st.columns([2, 2, 3])
    again = left.button("Check what changed", icon=":material/sync:", key="reconciliation.check")
    full = right.button(
        "Full check",
        icon=":material/fact_check:",
        key="reconciliation.full",
        help="Recheck every organization and day from the raw rows (slower).",
    )
    with ui.section("The reconciliation"):
        if full or again or K_RESULT not in st.session_state:
            _run(full=full)
        result: Reconciliation = st.session_state[K_RESULT]
        st.caption(summary(result))
        if result.ok:
            # Good news is no banner: the page reads like any other when all holds.
            st.badge("The books close", icon=":material/check_circle:", color="green")
            st.markdown("Nothing drifted.")
        else:
            orgs = len({d.organization_id for d in result.drifts})
            st.error(
                f"{counted(len(result.drifts), 'drift')} in {counted(orgs, 'organization')}. "
                "Each row is "
                "where the drift first appears; the organization stays unverified, and is "
                "checked again on every run, until it is mended.",
                icon=":material/error:",
            )
            # A dataframe shows the slugs and keys as plain text, never as Markdown.
            url.table(
                drift_table(result.drifts),
                key="reconciliation.table",
                links=links(result.drifts, state.current()),
                hide_index=True,
                height="content",
                column_config={
                    "First day": st.column_config.DateColumn(format="YYYY-MM-DD"),
                    "Expected": st.column_config.NumberColumn(format="localized"),
                    "Found": st.column_config.NumberColumn(format="localized"),
                },
            )
    with st.expander("What is checked"):
        st.markdown(
            "- **Balance**: the balance equals the sum of the ledger minus the credits of "
            "the generations.\n"
            "- **Ledger chain**: each entry's balance after is one a history can give: "
            "what the generations before it consumed is a running total of their credits "
            "in the order they were recorded, and never goes down from one entry to the "
            "next.\n"
            "- **Rollups**: daily quota counts, per-user days, quarter-hours, organization "
            "days with their running totals and months, each against a recount of the "
            "generations in the organization's own time zone.\n\n"
            "When `dashboard reconcile` (the nightly run) finds all checks of an "
            "organization hold, it records a verified checkpoint per day; the next check "
            "reads only generations and ledger entries recorded after it, and the newest "
            "day of every rollup. A checkpoint dated in the future or past the newest "
            "rows is itself a drift. A full check also finds a verified day edited "
            "directly in the database. This page checks; it records nothing."
        )


render()
