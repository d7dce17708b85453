"""Statements (finance, admin): one organization's credits over one of its local months,
opening to closing, with the entries, the expired grants (in the month they took effect
in) and the consumption per day and type; downloads as
CSV and as the PDF finance sends to the customer.

The month is kept in the URL (``?month=2026-10``) so a statement can be shared; the
organization is the sidebar's. Without one the page opens on the organization's last
closed month, whose statement is final; the current month is offered too, marked as
running. A month that ended before the organization was created says so instead of
showing a statement of zeros, and offers no files.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from typing import Final

import pandas as pd
import streamlit as st

from dashboard import data, state, statement_files, ui, url
from dashboard.text import md
from queries.checks import MAX_DATE, MIN_DATE
from queries.statements import next_month, previous_month

K_MONTH: Final = "statements.month"  # the chosen month (its first day)
K_URL: Final = "statements._url"  # the URL value last applied or written
URL_KEY: Final = "month"
MONTHS_OFFERED: Final = 36
_MONTH: Final = re.compile(r"[0-9]{4}-[0-9]{2}")


def parse_month(
    raw: str, *, current: dt.date, default: dt.date
) -> tuple[dt.date | None, str | None]:
    """A month from the URL ("2026-10") and None, or None and the sentence saying why
    not (not YYYY-MM, out of range, or after the organization's ``current`` month); the
    sentence says that ``default`` is shown instead."""
    shown = raw if len(raw) <= 40 else raw[:40] + "…"
    instead = f"showing {default:%B %Y}, {_which(default, current)}"
    if not _MONTH.fullmatch(raw.strip()):
        return None, f"The link's month {shown!r} is not written YYYY-MM; {instead}."
    try:
        month = dt.date.fromisoformat(raw.strip() + "-01")
    except ValueError:
        return None, f"The link's month {shown!r} is not a real month; {instead}."
    if not MIN_DATE <= month <= MAX_DATE:
        return None, (
            f"The link's month {shown} is outside the years {MIN_DATE.year}–{MAX_DATE.year}; "
            f"{instead}."
        )
    if month > current:
        return None, f"There is no statement for {month:%B %Y} yet; {instead}."
    return month, None


def _which(month: dt.date, current: dt.date) -> str:
    if month == current:
        return "the organization's current month"
    return "the organization's last closed month"


def default_month(current: dt.date, *, created_on: dt.date | None = None) -> dt.date:
    """The month a page opens on: the last closed one (whose statement is final), or the
    current one if there is none before it or the organization was created this month."""
    if current <= MIN_DATE or (created_on is not None and created_on >= current):
        return current
    return previous_month(current)


def month_label(month: dt.date, *, current: dt.date, created_on: dt.date | None = None) -> str:
    """ "November 2026", "December 2026 (running, so far)" for the current month, or
    "October 2026 (before it was created)" for a month that ended before the
    organization's ``created_on``."""
    if month == current:
        return f"{month:%B %Y} (running, so far)"
    if created_on is not None and next_month(month) <= created_on:
        return f"{month:%B %Y} (before it was created)"
    return f"{month:%B %Y}"


def months_back(current: dt.date, count: int) -> list[dt.date]:
    """``count`` months, newest first, ending with ``current`` (a first of month)."""
    months = [current]
    while len(months) < count and months[-1] > MIN_DATE:
        months.append((months[-1] - dt.timedelta(days=1)).replace(day=1))
    return months


def _choose_month(timezone: str, created_on: dt.date | None) -> dt.date:
    ss = st.session_state
    current = state.today_in(timezone).replace(day=1)
    default = default_month(current, created_on=created_on)
    raw = st.query_params.get(URL_KEY)
    if raw is not None and raw != ss.get(K_URL):
        # A link (or an edited URL): its month wins over the session's.
        asked, notice = parse_month(raw, current=current, default=default)
        ss[K_MONTH] = asked if asked is not None else default
        if notice is not None:
            st.warning(md(notice), icon=":material/link_off:")
    options = months_back(current, MONTHS_OFFERED)
    chosen = ss.get(K_MONTH)
    if isinstance(chosen, dt.date) and chosen not in options and MIN_DATE <= chosen < current:
        options.append(chosen)  # an older month a link asked for
    elif chosen not in options:
        # No choice yet, or a month that is still to come in this organization's zone.
        ss[K_MONTH] = default
    month = st.selectbox(
        "Month",
        options=options,
        format_func=lambda m: month_label(m, current=current, created_on=created_on),
        key=K_MONTH,
        help=(
            "Months in the organization's own time zone. The page opens on the last closed "
            "month; the current one is running and its totals still move."
        ),
    )
    assert month is not None  # the options are never empty and one is always chosen
    written = f"{month:%Y-%m}"
    if st.query_params.get(URL_KEY) != written:
        st.query_params[URL_KEY] = written
    ss[K_URL] = written
    return month


def _entry_links(table: pd.DataFrame, f: state.Filters, what: str) -> url.Links:
    """Each line's ledger entry opens the organization's ledger at that entry (Credits)."""
    help = f"{what}; click it to open the organization's ledger at that entry (Credits)."
    return url.ledger_entries([f.organization_id] * len(table), table["Entry"], f, help)


def render() -> None:
    f = state.current()
    org = f.organization
    ui.page_header(
        "Statements",
        f"{md(org.name)}: credits month by month, opening to closing, in the organization's "
        f"time zone ({md(org.timezone)}).",
    )
    info = data.organization(organization_id=org.id)
    created_on = (
        info.created_at.astimezone(zoneinfo.ZoneInfo(org.timezone)).date() if info else None
    )
    month = _choose_month(org.timezone, created_on)
    with ui.section("The statement"):
        statement = data.statement(organization_id=org.id, month=month)
        if statement.before_organization:
            st.info(md(statement_files.before_organization(statement)), icon=":material/info:")
            return
        st.caption(md(f"Period: {statement_files.period(statement)}"))
        tiles = st.columns(6)
        for tile, (label, amount) in zip(tiles, statement_files.totals(statement), strict=True):
            tile.metric(label, f"{amount:,}", border=True)
        st.caption(statement_files.TOTALS_EXPLAINED)
        if statement.to_date:
            st.caption(
                "This month is not over: its closing balance is the balance now and moves "
                "with every grant and generation."
            )
        stem = statement_files.file_stem(statement)
        left, right, _ = st.columns([1, 1, 4])
        left.download_button(
            "Download CSV",
            data=statement_files.statement_csv(statement),
            file_name=f"{stem}.csv",
            mime="text/csv",
            icon=":material/download:",
            key="statements.csv",
            on_click="ignore",
        )
        right.download_button(
            "Download PDF",
            # Drawn when clicked, not on every run: a PDF costs more than the page.
            data=functools.partial(statement_files.statement_pdf, statement),
            file_name=f"{stem}.pdf",
            mime="application/pdf",
            icon=":material/picture_as_pdf:",
            key="statements.pdf",
            on_click="ignore",
        )

        st.subheader("Entries")
        if statement.entries:
            entries = statement_files.entries_frame(statement)
            url.table(
                entries,
                key="statements.entries",
                links={"Entry": _entry_links(entries, f, "The ledger entry")},
                hide_index=True,
                height="content",  # every entry of the month, no scroll box
                # Widths add up to less than the main area of a 1440 px window, so no
                # column hides behind a sideways scroll.
                column_config={
                    "Entry": st.column_config.NumberColumn(format="plain", width=60),
                    f"When ({statement.timezone})": st.column_config.TextColumn(width=145),
                    "Kind": st.column_config.TextColumn(width=80),
                    "Credits": st.column_config.NumberColumn(format="localized", width=80),
                    "Balance after": st.column_config.NumberColumn(
                        format="localized",
                        width=95,
                        help="The balance right after the entry, as the ledger recorded it.",
                    ),
                    "Reason": st.column_config.TextColumn(width=190),
                    "Note": st.column_config.TextColumn(width=135),
                    "Actor": st.column_config.TextColumn(width=170),
                },
            )
        else:
            st.info("No credits were granted, refunded, deducted or reversed this month.")
        if statement.expiries:
            st.subheader("Expired grants")
            expiries = statement_files.expiries_frame(statement)
            url.table(
                expiries,
                key="statements.expiries",
                links={
                    "Entry": _entry_links(
                        expiries, f, "The ledger's expired entry, blank while not yet written off"
                    )
                },
                hide_index=True,
                height="content",
                column_config={
                    "Grant": st.column_config.NumberColumn(format="plain"),
                    "Credits": st.column_config.NumberColumn(format="localized"),
                    "Entry": st.column_config.NumberColumn(format="plain"),
                },
            )
            st.caption(
                "Each expiry counts in the month it took effect in, even when the ledger "
                "wrote it off later; until then the credits can no longer be used."
            )
        st.subheader("Consumption per day and type")
        if statement.consumption:
            st.dataframe(
                statement_files.consumption_frame(statement),
                hide_index=True,
                column_config={
                    "Date": st.column_config.DateColumn(format="YYYY-MM-DD"),
                    "Generations": st.column_config.NumberColumn(format="localized"),
                    "Credits": st.column_config.NumberColumn(format="localized"),
                },
                key="statements.consumption",
            )
        else:
            st.info("No generations this month.")
        if statement.overage:
            st.subheader("Overage past soft limits")
            st.dataframe(
                statement_files.overage_frame(statement),
                hide_index=True,
                column_config={
                    "Generations over the limit": st.column_config.NumberColumn(format="localized"),
                },
                key="statements.overage",
            )
            st.caption(statement_files.OVERAGE_EXPLAINED)


render()
