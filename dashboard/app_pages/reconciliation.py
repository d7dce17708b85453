"""Reconciliation: do the books close? Balances, the ledger's balance_after chain, the
credit grants (and their expiries) and every rollup checked against the raw rows, with
the first ledger entry or day of each drift.

Opening the page shows what the last recorded run found (the nightly `dashboard
reconcile`: ``reconciliation_runs``), when it ran and how long ago, and who ran it; it
checks nothing until asked (at 100M a check of what changed took 27 s and more). "Check
what changed" checks what changed since the last verified checkpoints, "Full check"
everything; the session's check is shown until a newer run is recorded. The page records
nothing: the checkpoints and the runs are the reconciler's (`dashboard reconcile` as a
dashboard_auditor login), and the app's role may not write them."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Final

import pandas as pd
import streamlit as st

from dashboard import auth, clock, data, state, ui, url, zones
from dashboard.text import md
from queries.reconciliation import Drift, Reconciliation, RecordedRun, reconcile
from queries.words import counted

K_RESULT: Final = "reconciliation.result"  # this session's own check (a Shown)
# The nightly run's result is late past this (a day and some slack): the page says so.
STALE_AFTER: Final = dt.timedelta(hours=26)
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


@dataclass(frozen=True, slots=True)
class Shown:
    """A result the page shows and where it came from: ``by`` says who or what ran it
    (Markdown), ``recorded`` whether `dashboard reconcile` recorded it or it is this
    session's own check."""

    result: Reconciliation
    by: str
    recorded: bool


def recorded_run(run: RecordedRun) -> Shown:
    return Shown(run.result, by=f"`dashboard reconcile` (login {md(run.ran_by)})", recorded=True)


def newest(mine: Shown | None, last: RecordedRun | None) -> Shown | None:
    """What the page shows: the newer of this session's own check and the last recorded
    run (the session's on a tie: it is what the person asked for)."""
    if last is None:
        return mine
    if mine is None or last.result.checked_at > mine.result.checked_at:
        return recorded_run(last)
    return mine


def when(at: dt.datetime, company: str) -> str:
    """An instant as the page shows times: in UTC, with the company zone's clock beside
    it when that is another zone."""
    utc = f"{at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
    if company == "UTC":
        return utc
    local = at.astimezone(zoneinfo.ZoneInfo(company))
    return f"{utc} ({local:%Y-%m-%d %H:%M} {company}, the company zone)"


def age(at: dt.datetime, now: dt.datetime) -> str:
    """How long before ``now`` ``at`` was, in words: "just now", "12 min ago", "9 h ago",
    "3 days ago"."""
    minutes = int((now - at).total_seconds() // 60)
    if minutes < 1:
        return "just now"
    if minutes < 60:
        return f"{minutes} min ago"
    if minutes < 48 * 60:
        return f"{minutes // 60} h ago"
    return f"{minutes // (24 * 60)} days ago"


def summary(shown: Shown, now: dt.datetime, company: str) -> str:
    """Which check, by whom, when and how long ago, and what it covered (Markdown)."""
    result = shown.result
    scope = (
        "every day"
        if result.days_checked is None
        else f"{counted(result.days_checked, 'day')} changed since the last verified checkpoints"
    )
    kind = "full check" if result.full else "check of what changed"
    source = "Last recorded run" if shown.recorded else "Checked in this session"
    return (
        f"**{source}**: {kind} by {shown.by}, at "
        f"{when(result.checked_at, company)}, **{age(result.checked_at, now)}**. It covered "
        f"{counted(result.organizations_checked, 'organization')} and {scope}; the balances "
        "of all organizations."
    )


def _run(*, full: bool) -> None:
    # The role again, not only the navigation: a full check reads every row.
    user = auth.require("view_reconciliation")
    with st.spinner("Checking the books…"):
        # Checks only: recording checkpoints and runs is the reconciler's (dashboard_auditor).
        result = reconcile(data.engine(), full=full, checkpoint=False, now=clock.now())
    st.session_state[K_RESULT] = Shown(
        result, by=f"you ({md(user.email)}) from this page, not recorded", recorded=False
    )


def _never_run() -> None:
    st.info(
        "No reconciliation run has been recorded on this database: the nightly "
        "`dashboard reconcile` has not run yet (the page's own checks are not recorded). "
        "**Check what changed** checks the books now.",
        icon=":material/info:",
    )


def _result(shown: Shown, now: dt.datetime) -> None:
    result = shown.result
    company = zones.timezone()
    at, ago = when(result.checked_at, company), age(result.checked_at, now)
    st.markdown(summary(shown, now, company))
    if now - result.checked_at > STALE_AFTER:
        late = " Is the nightly `dashboard reconcile` running?" if shown.recorded else ""
        st.warning(
            f"This result is from {at}, {ago}: the books may have changed since.{late} "
            "**Check what changed** checks them now.",
            icon=":material/history:",
        )
    if result.ok:
        # Good news is no banner: the page reads like any other when all holds. It says
        # when it held, never only that it holds.
        st.badge("The books closed", icon=":material/check_circle:", color="green")
        st.markdown(f"Nothing had drifted at {at} ({ago}).")
        return
    orgs = len({d.organization_id for d in result.drifts})
    st.error(
        f"{counted(len(result.drifts), 'drift')} in {counted(orgs, 'organization')} at "
        f"{at} ({ago}). Each row is where the drift first appears; the organization stays "
        "unverified, and is checked again on every run, until it is mended.",
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


def _last_full(shown: Shown, now: dt.datetime) -> None:
    """Under a check of what changed: when everything was last checked, since an
    incremental check cannot see a verified day edited in place."""
    if shown.result.full:
        return
    run = data.last_reconciliation(full=True)
    if run is None:
        st.caption(
            "No full check has been recorded: `dashboard reconcile --full` (weekly) also "
            "finds a verified day edited directly in the database."
        )
        return
    at = run.result.checked_at
    st.caption(
        f"The last recorded full check: {when(at, zones.timezone())}, {age(at, now)}, "
        f"{'the books closed' if run.result.ok else counted(len(run.result.drifts), 'drift')}."
    )


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
        if full or again:
            _run(full=full)
        mine = st.session_state.get(K_RESULT)
        shown = newest(mine if isinstance(mine, Shown) else None, data.last_reconciliation())
        now = clock.now()
        if shown is None:
            _never_run()
        else:
            _result(shown, now)
            _last_full(shown, now)
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
            "directly in the database. Each run records what it found, which this page "
            "shows when opened. This page checks only when asked, and records nothing."
        )


render()
