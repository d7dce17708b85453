"""Audit trail: who changed what, when and why (credit adjustments, reversals, refunds and
daily-limit changes), filterable and downloadable.

The scope, action, actor, the order (newest or oldest first, "Sort by") and the page
shown are in the URL (``scope``, ``action``, ``actor``, ``sort``, ``after``:
:mod:`dashboard.url`); the CSV follows the order. Each organization's name opens its
Overview in the same tab.

For one organization, dates and times are in the zone the sidebar names (its "Time
zone" filter): the organization's own, or UTC. Across all organizations they are in the
company zone (``DASHBOARD_TIMEZONE``, :mod:`dashboard.zones`), the range included, so
the trail two people read for the same dates is the same whichever organization each has
selected."""

from __future__ import annotations

import re
from typing import Final

import pandas as pd
import streamlit as st

from dashboard import data, paging, state, ui, url, zones
from dashboard.text import md
from queries.audit import AUDIT_ACTIONS, AuditCursor, AuditSort

K_SCOPE: Final = "audit.scope"
K_ACTION: Final = "audit.action"
K_ACTOR: Final = "audit.actor"
K_SORT: Final = "audit.sort"
SORTS: Final[dict[AuditSort, str]] = paging.TIME_ORDERS
DEFAULT_SORT: Final[AuditSort] = "newest"
ANY: Final = ""
PAGE_SIZE: Final = 100
MAX_CSV_ROWS: Final = 10_000
# One change (a row of the trail) and all changes of that kind (the filter).
_LABELS: Final = {
    "grant": ("Credit grant", "Credit grants"),
    "deduct": ("Credit deduction", "Credit deductions"),
    "refund": ("Refund", "Refunds"),
    "reversal": ("Reversal", "Reversals"),
    "set_daily_limit": ("Daily-limit change", "Daily-limit changes"),
    "set_limit_enforcement": ("Limit made hard or soft", "Hard/soft limit switches"),
    "request_adjustment": ("Approval requested", "Approval requests"),
    "approve_adjustment": ("Adjustment approved", "Approvals"),
    "reject_adjustment": ("Adjustment rejected", "Rejections"),
    "request_limit_change": ("Limit change requested", "Limit requests"),
    "reject_limit_change": ("Limit change rejected", "Limit rejections"),
}
URL_PAGE: Final = "audit"
URL_PARAMS: Final = (
    url.choice_param("scope", K_SCOPE, {"all": "all", "org": "one"}, default="all"),
    url.choice_param("action", K_ACTION, {a: a for a in AUDIT_ACTIONS}, default=ANY),
    url.text_param("actor", K_ACTOR, "actor"),
    paging.sort_param(K_SORT, SORTS, default=DEFAULT_SORT),
)
ROW_LABELS: Final = {a: _LABELS[a][0] if a in _LABELS else a for a in AUDIT_ACTIONS}
ACTION_LABELS: Final = {ANY: "Any change"} | {
    a: _LABELS[a][1] if a in _LABELS else a for a in AUDIT_ACTIONS
}


def audit_table(df: pd.DataFrame, timezone: str = "UTC") -> pd.DataFrame:
    """The trail as shown and downloaded, times in ``timezone``; actions by their labels,
    as in the filter."""
    return pd.DataFrame(
        {
            "When": ui.local_times(df["at"], timezone),
            "Organization": df["organization"],
            "Action": df["action"].map(lambda a: ROW_LABELS.get(a, a)),
            "Actor": df["actor"],
            "Reason": df["reason"],
            "Credits": df["amount"],
            "Details": df["details"],
        }
    )


def links(rows: pd.DataFrame, f: state.Filters) -> dict[str, url.Links]:
    """Each organization's name opens its Overview, with the same dates."""
    return {
        "Organization": url.organizations(
            rows["organization_id"],
            "overview",
            f,
            "Click a name for the organization's Overview, with the same dates.",
        )
    }


def csv_name(f: state.Filters, *, organization: str | None, action: str, actor: str) -> str:
    parts = ["audit", f.start.isoformat(), f.end.isoformat()]
    parts.append(f"org-{organization}" if organization else "all-orgs")
    if action:
        parts.append(action)
    slug = re.sub(r"[^a-z0-9]+", "-", actor.strip().lower()).strip("-")
    if slug:
        parts.append(f"actor-{slug}")
    return "_".join(parts) + ".csv"


def render() -> None:
    f = state.current()
    url.apply(URL_PAGE, URL_PARAMS)
    # One organization: its own zone or UTC, as the sidebar says. All organizations: the
    # company zone, so the range and the times do not depend on the organization selected.
    one = st.session_state.get(K_SCOPE, "all") == "one"
    if one:
        zone, whose = f.timezone, ""
    else:
        f, zone = zones.company_filters(f), zones.timezone()
        whose = ", the company zone"
    order = SORTS.get(st.session_state.get(K_SORT, DEFAULT_SORT), SORTS[DEFAULT_SORT])
    ui.page_header(
        "Audit trail",
        f"Who changed what, when and why · {f.start} – {f.end}, {order.lower()} · dates and "
        f"times in {md(zone)}{whose}.",
    )
    scope_col, action_col, actor_col, sort_col = st.columns([2, 2, 2, 1])
    # Radio options are Markdown: the organization's name is escaped.
    scopes = {"all": "All organizations", "one": md(f.organization.name)}
    scope_col.radio(
        "Organizations", options=list(scopes), format_func=scopes.__getitem__, key=K_SCOPE
    )
    action = action_col.selectbox(
        "Action", options=list(ACTION_LABELS), format_func=ACTION_LABELS.__getitem__, key=K_ACTION
    )
    actor = actor_col.text_input("Actor contains", key=K_ACTOR, placeholder="part of an email")
    with sort_col:
        sort = paging.sort_select(K_SORT, SORTS, default=DEFAULT_SORT)
    url.write(URL_PAGE, URL_PARAMS)
    with ui.section("The audit trail"):
        org_id = f.organization_id if one else None
        chosen_action, chosen_actor = action or None, actor.strip() or None
        pager: paging.Pager[AuditCursor] = paging.Pager(
            "audit",
            filters=(f.start, f.end, zone, org_id, chosen_action, chosen_actor),
            page_size=PAGE_SIZE,
            url_page=URL_PAGE,
            cursor_type=AuditCursor,
            sort=sort,
        )
        page = data.audit_page(
            start=f.start,
            end=f.end,
            timezone=zone,
            organization_id=org_id,
            action=chosen_action,
            actor=chosen_actor,
            limit=PAGE_SIZE,
            after=pager.after,
            sort=sort,
        )
        table = audit_table(page.rows, zone)
        if table.empty:
            st.info(
                "No change matches these filters in this period. Widen the dates in the "
                "sidebar or clear the filters."
            )
        else:
            event = url.table(
                table,
                key="audit.table",
                links=links(page.rows, f),
                selection_mode=["single-row"],
                hide_index=True,
                height="content",  # every row of the page, no scroll box
                # Widths add up to less than the main area of a 1440 px window, so no
                # column hides behind a sideways scroll; a selected row's reason and
                # details are shown in full below the table.
                column_config={
                    "When": st.column_config.DatetimeColumn(
                        format="YYYY-MM-DD HH:mm", width=125, help=f"In {zone}."
                    ),
                    "Organization": st.column_config.TextColumn(width=150),
                    "Action": st.column_config.TextColumn(width=125),
                    "Actor": st.column_config.TextColumn(width=175),
                    "Reason": st.column_config.TextColumn(width=155),
                    "Credits": st.column_config.NumberColumn(
                        format="localized",
                        width=65,
                        help="Credits the change added or took away; blank for a limit change.",
                    ),
                    "Details": st.column_config.TextColumn(
                        width=130,
                        help="Ledger entry, balance after, what it reverses and its note; "
                        "for a limit change the type, old and new limit. Select the row to "
                        "read it in full below.",
                    ),
                },
                placeholder="",  # a limit change moves no credits: blank, not "None"
            )
            ui.in_full(
                table,
                event.selection.rows,
                heading=("Action", "Organization", "Actor"),
                fields=("Reason", "Details"),
                what="reason and details",
            )
            first = pager.first
            earlier, later = ("Newer", "Older") if sort == "newest" else ("Older", "Newer")
            pager.buttons(
                next=page.next_cursor, previous_label=f"← {earlier}", next_label=f"{later} →"
            ).caption(
                f"Changes {first:,}–{first + len(table) - 1:,}, {SORTS[sort].lower()}. "
                f"{paging.SORT_NOTE}"
            )

        # The CSV is every matching change (not only this page) in the order chosen, up to
        # MAX_CSV_ROWS.
        def read_all() -> tuple[pd.DataFrame, str | None]:
            export = data.audit_page(
                start=f.start,
                end=f.end,
                timezone=zone,
                organization_id=org_id,
                action=chosen_action,
                actor=chosen_actor,
                limit=MAX_CSV_ROWS,
                sort=sort,
            )
            cut = (
                f"The CSV holds the {sort} {MAX_CSV_ROWS:,} matching changes; narrow the "
                "filters or the dates for the others."
                if export.next_cursor is not None
                else None
            )
            return audit_table(export.rows, zone), cut

        ui.csv_download(
            "audit",
            filters=(f.start, f.end, zone, org_id, chosen_action, chosen_actor, sort),
            complete=table if pager.on_first_page and page.next_cursor is None else None,
            read_all=read_all,
            file_name=csv_name(
                f, organization=f.organization.slug if one else None, action=action, actor=actor
            ),
            prepare_label="Prepare CSV of every matching change",
            disabled=table.empty,
        )


render()
