"""Audit trail: who changed what, when and why (credit adjustments, reversals, refunds and
daily-limit changes), filterable and downloadable; below it, the changes of plans'
allowances, which belong to no organization (``plan_allowance_changes``), with the same
dates, actor and order, paged and downloadable on their own.

The scope, action, actor, the order (newest or oldest first, "Sort by") and the page
shown are in the URL (``scope``, ``action``, ``actor``, ``sort``, ``after``:
:mod:`dashboard.url`); the CSV follows the order. Each organization's name opens its
Overview in the same tab.

For one organization, dates and times are in the zone the sidebar names (its "Time
zone" filter): the organization's own, or UTC. Across all organizations they are in the
company zone (``DASHBOARD_TIMEZONE``, :mod:`dashboard.zones`), the range included, so
the trail two people read for the same dates is the same whichever organization each has
selected.

The plan allowance changes follow the dates, the zone, the actor and the order; not the
organizations (a plan has none), and an Action other than "Any change" leaves them out
(none of them is such a change). Their page is not in the URL (``after`` is the
trail's), as the pending approvals beside the ledger on Credits."""

from __future__ import annotations

import re
from typing import Final

import pandas as pd
import streamlit as st

from dashboard import data, paging, state, ui, url, zones
from dashboard.text import md
from queries.allowances import AllowanceChange
from queries.audit import AUDIT_ACTIONS, AuditCursor, AuditSort, PlanChangeCursor

K_SCOPE: Final = "audit.scope"
K_ACTION: Final = "audit.action"
K_ACTOR: Final = "audit.actor"
K_SORT: Final = "audit.sort"
SORTS: Final[dict[AuditSort, str]] = paging.TIME_ORDERS
DEFAULT_SORT: Final[AuditSort] = "newest"
ANY: Final = ""
PAGE_SIZE: Final = 100
PLAN_PAGE_SIZE: Final = 50  # plan allowance changes are rare: a short list below the trail
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
            "Entry": df["ledger_entry_id"],
            "Details": df["details"],
        }
    )


def links(rows: pd.DataFrame, f: state.Filters) -> dict[str, url.Links]:
    """Each organization's name opens its Overview, with the same dates; each ledger
    entry the organization's ledger at that entry."""
    return {
        "Organization": url.organizations(
            rows["organization_id"],
            "overview",
            f,
            "Click a name for the organization's Overview, with the same dates.",
        ),
        "Entry": url.ledger_entries(
            rows["organization_id"],
            rows["ledger_entry_id"],
            f,
            "The ledger entry of a credit change (for an approval, the entry it booked): "
            "click it to open the organization's ledger at that entry (Credits).",
        ),
    }


def _from_to(old: int, new: int) -> str:
    """A value before and after a change, as "100,000 → 120,000"."""
    return f"{new:,} (unchanged)" if old == new else f"{old:,} → {new:,}"


def plan_changes_table(changes: list[AllowanceChange], timezone: str = "UTC") -> pd.DataFrame:
    """Plan allowance changes as shown and downloaded, times in ``timezone``; each amount
    as its value before and after (the reason and actor stay data: dataframe cells)."""
    at = pd.Series([c.created_at for c in changes], dtype="datetime64[us, UTC]")
    return pd.DataFrame(
        {
            "When": ui.local_times(at, timezone),
            "Plan": [c.plan.capitalize() for c in changes],
            "Actor": [c.actor for c in changes],
            "Reason": [c.reason for c in changes],
            "Monthly allowance": [
                _from_to(c.old_monthly_allowance, c.monthly_allowance) for c in changes
            ],
            "Rollover cap": [_from_to(c.old_rollover_cap, c.rollover_cap) for c in changes],
        }
    )


def _actor_slug(actor: str) -> list[str]:
    slug = re.sub(r"[^a-z0-9]+", "-", actor.strip().lower()).strip("-")
    return [f"actor-{slug}"] if slug else []


def csv_name(f: state.Filters, *, organization: str | None, action: str, actor: str) -> str:
    parts = ["audit", f.start.isoformat(), f.end.isoformat()]
    parts.append(f"org-{organization}" if organization else "all-orgs")
    if action:
        parts.append(action)
    return "_".join([*parts, *_actor_slug(actor)]) + ".csv"


def plan_csv_name(f: state.Filters, *, actor: str) -> str:
    parts = ["plan-allowance-changes", f.start.isoformat(), f.end.isoformat()]
    return "_".join([*parts, *_actor_slug(actor)]) + ".csv"


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
    chosen_action, chosen_actor = action or None, actor.strip() or None
    with ui.section("The audit trail"):
        org_id = f.organization_id if one else None
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
                        format="YYYY-MM-DD HH:mm", width=125, help=f"In {md(zone)}."
                    ),
                    "Organization": st.column_config.TextColumn(width=150),
                    "Action": st.column_config.TextColumn(width=125),
                    "Actor": st.column_config.TextColumn(width=160),
                    "Reason": st.column_config.TextColumn(width=140),
                    "Credits": st.column_config.NumberColumn(
                        format="localized",
                        width=65,
                        help="Credits the change added or took away; blank for a limit change.",
                    ),
                    "Entry": st.column_config.NumberColumn(format="%d", width=55),
                    "Details": st.column_config.TextColumn(
                        width=120,
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

    with ui.section("Plan allowance changes"):
        plan_changes(f, zone=zone, action=chosen_action, actor=chosen_actor, sort=sort)


def plan_changes(
    f: state.Filters, *, zone: str, action: str | None, actor: str | None, sort: AuditSort
) -> None:
    """The changes of plans' allowances in the page's dates (in ``zone``), by ``actor``,
    in the page's order, with their own pager and CSV."""
    st.subheader("Plan allowance changes")
    st.caption(
        "A plan belongs to no organization: a change of its monthly allowance or rollover "
        "cap applies to every organization on it, from the next grant-allowances run on. "
        "Listed for the dates, actor and order above, whichever organizations are chosen."
    )
    if action is not None:
        st.caption(
            f"None is listed while Action is {ACTION_LABELS[action]}; choose Any change to "
            "list them."
        )
        return
    pager: paging.Pager[PlanChangeCursor] = paging.Pager(
        "audit.plans",
        filters=(f.start, f.end, zone, actor),
        page_size=PLAN_PAGE_SIZE,
        sort=sort,
    )
    page = data.plan_allowance_changes(
        start=f.start,
        end=f.end,
        timezone=zone,
        actor=actor,
        limit=PLAN_PAGE_SIZE,
        after=pager.after,
        sort=sort,
    )
    table = plan_changes_table(page.rows, zone)
    if table.empty:
        by = " by an actor matching the filter" if actor else ""
        st.caption(f"No plan's allowance was changed in this period{by}.")
        return
    event = st.dataframe(
        table,
        key="audit.plans_table",
        hide_index=True,
        height="content",
        on_select="rerun",
        selection_mode="single-row",
        # As the trail's: the widths fit the main area of a 1440 px window.
        column_config={
            "When": st.column_config.DatetimeColumn(
                format="YYYY-MM-DD HH:mm", width=125, help=f"In {md(zone)}."
            ),
            "Plan": st.column_config.TextColumn(width=80),
            "Actor": st.column_config.TextColumn(width=175),
            "Reason": st.column_config.TextColumn(width=220),
            "Monthly allowance": st.column_config.TextColumn(
                width=160, help="Credits a month, before → after the change."
            ),
            "Rollover cap": st.column_config.TextColumn(
                width=140,
                help="The most of a month's unused allowance that rolls over, "
                "before → after the change.",
            ),
        },
    )
    ui.in_full(
        table, event.selection.rows, heading=("Plan", "Actor"), fields=("Reason",), what="reason"
    )
    if not (pager.on_first_page and page.next_cursor is None):
        first = pager.first
        earlier, later = ("Newer", "Older") if sort == "newest" else ("Older", "Newer")
        pager.buttons(
            next=page.next_cursor, previous_label=f"← {earlier}", next_label=f"{later} →"
        ).caption(f"Plan changes {first:,}–{first + len(table) - 1:,}, {SORTS[sort].lower()}.")

    def read_all() -> tuple[pd.DataFrame, str | None]:
        export = data.plan_allowance_changes(
            start=f.start, end=f.end, timezone=zone, actor=actor, limit=MAX_CSV_ROWS, sort=sort
        )
        cut = (
            f"The CSV holds the {sort} {MAX_CSV_ROWS:,} matching plan changes; narrow the "
            "dates or the actor for the others."
            if export.next_cursor is not None
            else None
        )
        return plan_changes_table(export.rows, zone), cut

    ui.csv_download(
        "audit.plans",
        filters=(f.start, f.end, zone, actor, sort),
        complete=table if pager.on_first_page and page.next_cursor is None else None,
        read_all=read_all,
        file_name=plan_csv_name(f, actor=actor or ""),
        prepare_label="Prepare CSV of every matching plan change",
        label="Download plan changes CSV",
    )


render()
