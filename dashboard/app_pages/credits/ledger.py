"""The ledger: the balance, burn rate and runway; the entries (filtered, paginated,
downloadable); granted and deducted against consumed.

The ledger's kinds, actor and page are in the URL (``kind``, ``actor``, ``after``,
``dates``: :mod:`dashboard.url`). ``entry=<id>`` opens it at one entry of the
organization's (the links of ledger entry numbers elsewhere: :func:`url.ledger_entries`):
that entry alone, named, with a way back to the full ledger. A value that cannot be shown
(not an entry number, or no entry of this organization's) is said in a sentence, and
the full ledger is shown.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

import pandas as pd
import streamlit as st

from dashboard import charts, clock, data, exports, paging, state, ui, url
from dashboard.text import md
from queries import forecast
from queries.checks import parse_id
from queries.errors import InvalidInput
from queries.models import LEDGER_KINDS
from queries.usage import LedgerCursor
from queries.words import counted

LEDGER_PAGE: Final = 50
K_KINDS: Final = "credits.kinds"
K_ACTOR: Final = "credits.actor"
K_LEDGER_DATES: Final = "credits.ledger_dates"  # the ledger follows the sidebar's dates
K_ENTRY: Final = "credits.entry"  # (organization id, entry id): the ledger opened at it
K_PAGES: Final = "credits.ledger.cursors"  # the ledger pager's cursors (paging.Pager)
URL_PAGE: Final = "credits"
URL_PARAMS: Final = (
    url.choices_param("kind", K_KINDS, LEDGER_KINDS, "ledger kinds"),
    url.text_param("actor", K_ACTOR, "actor"),
    # dates=sidebar: the ledger only within the sidebar's dates (default: every date).
    url.choice_param("dates", K_LEDGER_DATES, {"sidebar": True}, default=False),
)


# How far ahead the runway tile looks (the expiries it walks): ten years.
RUNWAY_HORIZON_DAYS: Final = 3650


def balance(f: state.Filters) -> int | None:
    """The balance, burn rate and runway tiles; the balance, or None (with a warning)
    when the organization no longer exists."""
    runway = data.runway(organization_id=f.organization_id, now=clock.minute())
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
    # At that burn, counting the grants that expire before it could use them. With no
    # burn, it runs out only when an expiry takes the last of its credits.
    ahead = data.low_runway(
        within_days=RUNWAY_HORIZON_DAYS, organization_id=f.organization_id, now=clock.minute()
    )
    if ahead.empty:
        if runway.runway_days is None:
            tiles[2].metric("Runway", "No burn", help="Nothing was consumed recently.", border=True)
            return runway.balance
        # Further away than the horizon.
        days, why = runway.runway_days, f"lasts beyond {RUNWAY_HORIZON_DAYS:,} days"
    else:
        row = ahead.iloc[0]
        days = float(row["runway_days"])
        why = forecast.runway_reason(
            balance=int(row["balance"]),
            cause=str(row["cause"]),
            runs_out_on=None if pd.isna(row["runs_out_on"]) else row["runs_out_on"],
            expiring_unused=int(row["expiring_unused"]),
            expiring_then=int(row["expiring_then"]),
        )
    basis = (
        "Nothing was consumed recently, yet" if runway.runway_days is None else "At that burn rate"
    )
    tiles[2].metric(
        "Runway",
        counted(days, "day", fmt=",.0f"),
        help=f"{basis} the balance {why} (the organization's own dates).",
        border=True,
    )
    return runway.balance


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


def _entries_table(shown: pd.DataFrame, f: state.Filters, *, key: str) -> None:
    """Ledger rows as shown (:func:`ledger_view`); a selected row's reason and note in
    full below."""
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
        key=key,
    )
    ui.in_full(
        shown,
        event.selection.rows,
        heading=("Entry", "Kind", "Amount", "Actor"),
        fields=("Reason", "Note"),
        what="reason and note",
    )


def opened_entry(f: state.Filters) -> pd.DataFrame | None:
    """The entry the ledger is opened at (``entry=<id>``), as one row of the ledger; None
    for the full ledger. A link's value that cannot be shown (not an entry number, or
    not an entry of this organization's: another's is not read) gets a sentence. The
    entry belongs to the organization it was opened for: choosing another one in the
    sidebar shows that one's full ledger."""
    ss = st.session_state
    problem: str | None = None
    raw = url.incoming(URL_PAGE, url.ENTRY)
    if raw is not None:
        ss.pop(K_ENTRY, None)
        try:
            ss[K_ENTRY] = (f.organization_id, parse_id(raw, "ledger entry"))
        except InvalidInput:
            why = "a ledger entry is a positive whole number."
            problem = f"{url.notice(url.ENTRY, raw, why)} Showing the full ledger."
    elif url.arrived(URL_PAGE) and url.ENTRY not in st.query_params:
        ss.pop(K_ENTRY, None)  # a link to the page without an entry: the full ledger
    kept = ss.get(K_ENTRY)
    entry: pd.DataFrame | None = None
    if isinstance(kept, tuple) and kept[0] == f.organization_id:
        found = data.ledger_entry(organization_id=f.organization_id, entry_id=kept[1])
        if found.empty:
            problem = (
                f"{f.organization.name} has no ledger entry {kept[1]}. Showing its full ledger."
            )
        else:
            entry = found
    if entry is None:
        ss.pop(K_ENTRY, None)
    url.put(URL_PAGE, url.ENTRY, None if entry is None else str(int(entry["id"].iloc[0])))
    if problem is not None:
        st.warning(md(problem), icon=":material/link_off:")
    return entry


def _full_ledger() -> None:
    """ "Show the full ledger": the entry's parameter cleared, the first page."""
    st.session_state.pop(K_ENTRY, None)
    st.session_state.pop(K_PAGES, None)


def _one_entry(f: state.Filters, entry: pd.DataFrame) -> pd.DataFrame:
    """The ledger opened at one entry: that entry, named, and the way back."""
    entry_id = int(entry["id"].iloc[0])
    st.caption(f"Showing ledger entry {entry_id} of {md(f.organization.name)}.")
    _entries_table(ledger_view(entry, f.timezone), f, key="credits.ledger_entry")
    st.button(
        "Show the full ledger",
        key="credits.full_ledger",
        on_click=_full_ledger,
        icon=":material/list:",
        help="Every entry of the organization, newest first (the link's entry is cleared).",
    )
    return entry


def render(f: state.Filters) -> pd.DataFrame:
    """The ledger's filters, the page of entries and its CSV, or the one entry a link
    opened it at; the entries shown."""
    st.subheader("Ledger")
    # Newest or oldest first (sort=oldest in the URL), read in that order in SQL.
    k_sort, orders = "credits.ledger_sort", paging.TIME_ORDERS
    params = (*URL_PARAMS, paging.sort_param(k_sort, orders, default="newest"))
    url.apply(URL_PAGE, params)
    entry = opened_entry(f)
    if entry is not None:
        return _one_entry(f, entry)
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
        _entries_table(ledger_view(entries, f.timezone), f, key="credits.ledger")
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
    return entries


def granted_vs_consumed(f: state.Filters) -> None:
    """Running totals of what was granted, deducted and consumed over the sidebar's dates."""
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
