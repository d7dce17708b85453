"""Grants: what the organization was granted and what remains of each grant, in the
order deductions and generations draw them; and every organization's grants that expire
in the next 30 days.

The grants are the database's (``queries.grants``): the balance is the sum of what
remains of the live ones. A grant due but not yet written off already shows as expired.
Expiries are shown on the organization's own clock and in UTC; the list across
organizations in UTC and, when it is another, the company zone (:mod:`dashboard.zones`).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence
from typing import Final

import pandas as pd
import streamlit as st

from dashboard import clock, data, state, ui, url, zones
from dashboard.actions import when_in
from dashboard.text import md
from queries.grants import CreditGrant, ExpiringGrant
from queries.words import counted

EXPIRING_WITHIN: Final = dt.timedelta(days=30)
EXPIRING_LIMIT: Final = 500
K_SHOW_SPENT: Final = "credits.grants_spent"
SOURCES: Final = {
    "opening": "opening balance",
    "manual": "adjustment",
    "bulk": "bulk file",
    "approval": "approved request",
    "allowance": "plan allowance",
    "rollover": "rollover",
    "refund": "refund",
    "restored": "reversed deduction",
}
STATUSES: Final = {
    "live": "live",
    "used": "used up",
    "expired": "expired",
    "reversed": "reversed",
}


def _when(at: dt.datetime | None, timezone: str) -> str:
    """An expiry as YYYY-MM-DD HH:MM in ``timezone``; "never" for none."""
    return "never" if at is None else f"{at.astimezone(zoneinfo.ZoneInfo(timezone)):%Y-%m-%d %H:%M}"


def grants_table(grants: Sequence[CreditGrant], timezone: str) -> pd.DataFrame:
    """Grants as shown and downloaded: one row each, expiries in ``timezone`` and UTC."""
    return pd.DataFrame(
        {
            "Grant": pd.array([g.id for g in grants], dtype="Int64"),
            "Status": [STATUSES.get(g.status, g.status) for g in grants],
            "Amount": pd.array([g.amount for g in grants], dtype="Int64"),
            "Remaining": pd.array([g.remaining for g in grants], dtype="Int64"),
            "Used": pd.array([g.drawn for g in grants], dtype="Int64"),
            "Expired": pd.array([g.expired for g in grants], dtype="Int64"),
            "Priority": pd.array([g.priority for g in grants], dtype="Int64"),
            f"Expires ({timezone})": [_when(g.expires_at, timezone) for g in grants],
            "Expires (UTC)": [_when(g.expires_at, "UTC") for g in grants],
            "Source": [SOURCES.get(g.source, g.source) for g in grants],
            # The opening grant made no entry: it is the balance when grants began.
            "Ledger entry": pd.array(
                [None if g.source == "opening" else g.ledger_entry_id for g in grants],
                dtype="Int64",
            ),
        }
    )


def _grants_frame(table: pd.DataFrame, f: state.Filters, *, key: str, timezone: str) -> None:
    """Grants as shown; each one's ledger entry opens the ledger at that entry."""
    url.table(
        table,
        key=key,
        links={
            "Ledger entry": url.ledger_entries(
                [f.organization_id] * len(table),
                table["Ledger entry"],
                f,
                "The ledger entry that made the grant: click it to open the ledger at that "
                "entry. None for the opening balance, the balance when grants began.",
            )
        },
        hide_index=True,
        placeholder="",
        # As the ledger's: the widths fit the main area of a 1440 px wide window.
        column_config={
            "Grant": st.column_config.NumberColumn(format="%d", width=55),
            "Status": st.column_config.TextColumn(width=60),
            "Amount": st.column_config.NumberColumn(format="localized", width=80),
            "Remaining": st.column_config.NumberColumn(
                format="localized", width=80, help="What can still be drawn from the grant."
            ),
            "Used": st.column_config.NumberColumn(
                format="localized", width=70, help="Drawn by deductions and generations."
            ),
            "Expired": st.column_config.NumberColumn(
                format="localized",
                width=70,
                help="Written off at its expiry (or due to be written off).",
            ),
            "Priority": st.column_config.NumberColumn(
                format="%d",
                width=55,
                help="Lower is drawn first; then the soonest expiry, then the oldest.",
            ),
            f"Expires ({timezone})": st.column_config.TextColumn(
                width=120, help=f"In {timezone}, the organization's own zone."
            ),
            "Expires (UTC)": st.column_config.TextColumn(width=120),
            "Source": st.column_config.TextColumn(width=110),
            "Ledger entry": st.column_config.NumberColumn(format="%d", width=70),
        },
    )


def render(f: state.Filters) -> None:
    """The organization's live grants in draw order, its spent ones behind a toggle,
    and a CSV of what is shown."""
    st.subheader("Grants")
    timezone = f.organization.timezone
    grants = data.credit_grants(organization_id=f.organization_id)
    live = [g for g in grants if g.status == "live"]
    spent = [g for g in grants if g.status != "live"]
    if live:
        _grants_frame(grants_table(live, timezone), f, key="credits.grants", timezone=timezone)
        st.caption(
            f"{counted(len(live), 'live grant')} holding {sum(g.remaining for g in live):,} "
            "credits, in the order deductions and generations draw them: lower priority "
            "first, then the soonest expiry (never-expiring last), then the oldest."
        )
    else:
        st.caption(f"{md(f.organization.name)} has no live grant: its balance is 0.")
    show_spent = st.toggle(
        f"Show used, expired and reversed grants ({len(spent):,})",
        key=K_SHOW_SPENT,
        disabled=not spent,
    )
    if show_spent and spent:
        _grants_frame(
            grants_table(spent, timezone), f, key="credits.grants_spent_table", timezone=timezone
        )
    shown = [*live, *(spent if show_spent else [])]
    ui.csv_download(
        "credits.grants",
        filters=(f.organization_id, show_spent),
        complete=grants_table(shown, timezone),
        read_all=lambda: (grants_table(shown, timezone), None),
        file_name=f"grants_{f.organization.slug}.csv",
        prepare_label="Prepare the grants CSV",
        label="Download grants CSV",
        disabled=not shown,
    )


def _expires_in(at: dt.datetime, now: dt.datetime) -> str:
    """Time left ("in 6 d 23 h"), the same in every zone."""
    left = int((at - now).total_seconds() // 60)
    if left <= 0:
        return "now"
    days, minutes = divmod(left, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return f"in {days} d {hours} h" if days else f"in {hours} h {minutes} min"


def expiring_table(
    rows: Sequence[ExpiringGrant], *, now: dt.datetime, timezone: str = "UTC"
) -> pd.DataFrame:
    """The grants expiring soon across organizations, soonest first: when in UTC (and
    in ``timezone``, the company zone, when it is another)."""
    table: dict[str, object] = {
        "Organization": [r.name for r in rows],
        "Slug": [r.slug for r in rows],
        "Remaining": pd.array([r.remaining for r in rows], dtype="Int64"),
        "Expires (UTC)": [_when(r.expires_at, "UTC") for r in rows],
    }
    if timezone != "UTC":
        table[f"Expires ({timezone})"] = [_when(r.expires_at, timezone) for r in rows]
    table |= {
        "Left": [_expires_in(r.expires_at, now) for r in rows],
        "Source": [SOURCES.get(r.source, r.source) for r in rows],
        "Grant": pd.array([r.grant_id for r in rows], dtype="Int64"),
    }
    return pd.DataFrame(table)


def expiring(f: state.Filters) -> None:
    """Every organization's live grants that expire in the next 30 days; each
    organization opens its Credits view."""
    st.subheader("Expiring in the next 30 days")
    rows = data.expiring_grants(within=EXPIRING_WITHIN, limit=EXPIRING_LIMIT)
    if not rows:
        st.caption("No organization has credits that expire in the next 30 days.")
        return
    company = zones.timezone()
    table = expiring_table(rows, now=clock.now(), timezone=company)
    url.table(
        table,
        key="credits.expiring",
        links={
            "Organization": url.organizations(
                [r.organization_id for r in rows],
                "credits",
                f,
                "This page for the organization: its grants and ledger.",
            )
        },
        hide_index=True,
        column_config={
            "Organization": st.column_config.TextColumn(width=160),
            "Slug": st.column_config.TextColumn(width=120),
            "Remaining": st.column_config.NumberColumn(format="localized", width=90),
            "Expires (UTC)": st.column_config.TextColumn(width=125),
            f"Expires ({company})": st.column_config.TextColumn(
                width=125, help=f"In {company}, the company zone."
            ),
            "Left": st.column_config.TextColumn(
                width=85, help="Time left before the credits expire."
            ),
            "Source": st.column_config.TextColumn(width=115),
            "Grant": st.column_config.NumberColumn(format="%d", width=60),
        },
        placeholder="",
    )
    total = sum(r.remaining for r in rows)
    st.caption(
        f"{counted(len(rows), 'grant')} holding {total:,} credits expire by "
        f"{when_in(clock.now() + EXPIRING_WITHIN, 'UTC')} UTC, soonest first"
        + (f" (the first {EXPIRING_LIMIT:,})" if len(rows) >= EXPIRING_LIMIT else "")
        + ". What is not used by then is written off."
    )
    ui.csv_download(
        "credits.expiring",
        filters=(),
        complete=table,
        read_all=lambda: (table, None),
        file_name="grants_expiring_30_days.csv",
        prepare_label="Prepare the expiring CSV",
        label="Download expiring CSV",
    )
