"""Usage review (finance): every organization ranked by credits consumed in the period,
granted against consumed, current balances, the monthly trend, and a CSV of exactly the
table shown.

The ranking is filtered, sorted and paged in SQL (``usage.all_orgs_usage_page``), so the
page reads one page of organizations whatever their number; the CSV holds every
filtered row up to ``usage.MAX_USAGE_ROWS`` and says when it was cut.

The plans, the search and the page shown are in the URL (``plan``, ``q``, ``after``:
:mod:`dashboard.url`). Each organization links to its Overview and, for those who may
adjust credits, to its Credits page (which leads with the adjustment form): the name
and "Adjust" open them in the same tab (:func:`dashboard.url.table`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

import pandas as pd
import streamlit as st

from dashboard import auth, charts, data, forecasts, paging, state, ui, url, zones
from dashboard.text import md
from queries.models import PLANS
from queries.usage import MAX_USAGE_ROWS, UsageCursor

K_PLANS: Final = "usage.plans"
K_SEARCH: Final = "usage.search"
PAGE_SIZE: Final = 50
URL_PAGE: Final = "usage"
URL_PARAMS: Final = (
    url.choices_param("plan", K_PLANS, PLANS, "plans"),
    url.text_param("q", K_SEARCH, "search"),
)

# The table as shown and downloaded. The slug is not a column (the search still matches
# it), so that every column fits a 1440 px wide window without scrolling sideways.
COLUMNS: Final = {
    "rank": "Rank",
    "name": "Organization",
    "plan": "Plan",
    "generations": "Generations",
    "credits_consumed": "Credits consumed",
    "credits_granted": "Credits granted",
    "credits_deducted": "Credits deducted",
    "balance": "Balance",
    "share": "Share %",
}


def ranking_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The ranking as shown and downloaded (rows already filtered in SQL): readable
    column names and the share in percent."""
    table = rows[list(COLUMNS)].assign(share=(rows["share"] * 100).round(2))
    return table.rename(columns=COLUMNS).reset_index(drop=True)


def links(rows: pd.DataFrame, f: state.Filters) -> dict[str, url.Links]:
    """The ranking's links: each name opens the organization's Overview and, for those
    who may adjust credits, "Adjust" its Credits page (the adjustment form leads it)."""
    ids = rows["organization_id"]
    shown = {
        "Organization": url.organizations(
            ids, "overview", f, "Click a name for the organization's Overview, same dates."
        )
    }
    if auth.current_user().can("adjust_credits") and url.may_open("credits"):
        shown["Adjust"] = url.organizations(
            ids, "credits", f, "The organization's Credits page: the adjustment form is at the top."
        )
    return shown


def with_adjust(table: pd.DataFrame, links: dict[str, url.Links]) -> pd.DataFrame:
    """The ranking as shown: an "Adjust" word after the name when it opens something."""
    if "Adjust" not in links:
        return table
    shown = table.copy()
    shown.insert(2, "Adjust", "Adjust")
    return shown


def csv_name(f: state.Filters, *, plans: Sequence[str], search: str) -> str:
    """``usage_<start>_<end>[_plan-a-b][_search-x].csv``: the filters travel with the file."""
    parts = ["usage", f.start.isoformat(), f.end.isoformat()]
    if plans:
        parts.append("plan-" + "-".join(sorted(plans)))
    slug = re.sub(r"[^a-z0-9]+", "-", search.strip().lower()).strip("-")
    if slug:
        parts.append(f"search-{slug}")
    return "_".join(parts) + ".csv"


def render() -> None:
    f = state.current()
    # Across organizations: the sidebar's dates are days of the company zone.
    tz = zones.timezone()
    ui.page_header(
        "Usage review",
        f"All organizations, ranked by credits consumed in {f.period_label}. "
        f"{zones.note(tz)} Balances are current.",
    )
    with ui.section("The ranking"):
        st.subheader("Ranking by credits consumed")
        url.apply(URL_PAGE, URL_PARAMS)
        left, right = st.columns([1, 2])
        plans = left.multiselect("Plans", PLANS, key=K_PLANS, placeholder="All plans")
        search = right.text_input(
            "Search organization", key=K_SEARCH, placeholder="name or slug", max_chars=200
        )
        # Sorted and stripped, so the same filters are the same cache entry.
        chosen = tuple(sorted(plans))
        query = search.strip() or None
        url.write(URL_PAGE, URL_PARAMS)
        pager: paging.Pager[UsageCursor] = paging.Pager(
            "usage",
            filters=(f.start, f.end, tz, chosen, query),
            page_size=PAGE_SIZE,
            url_page=URL_PAGE,
            cursor_type=UsageCursor,
        )
        page = data.usage_page(
            start=f.start,
            end=f.end,
            timezone=tz,
            plans=chosen,
            search=query,
            limit=PAGE_SIZE,
            after=pager.after,
        )
        table = ranking_table(page.rows)
        totals = st.columns(4)
        totals[0].metric("Organizations", ui.number(page.totals.organizations), border=True)
        totals[1].metric("Credits consumed", ui.number(page.totals.credits_consumed), border=True)
        totals[2].metric("Credits granted", ui.number(page.totals.credits_granted), border=True)
        totals[3].metric("Generations", ui.number(page.totals.generations), border=True)
        if table.empty:
            st.info("No organization matches these filters. Clear the plan or search filter.")
        else:
            if page.totals.credits_consumed == 0:
                st.info(
                    f"No credits were consumed in {f.period_label}. Choose another period in "
                    "the sidebar."
                )
            full = charts.share_scale(table["Share %"])  # where a share bar is full
            ranking_links = links(page.rows, f)
            url.table(
                with_adjust(table, ranking_links),
                key="usage.table",
                links=ranking_links,
                hide_index=True,
                height="content",  # every row of the page, no scroll box
                column_config={
                    "Rank": st.column_config.NumberColumn(format="%d", width=50),
                    "Organization": st.column_config.TextColumn(width=150),
                    "Adjust": st.column_config.TextColumn(width=60),
                    "Plan": st.column_config.TextColumn(width=80),
                    "Generations": st.column_config.NumberColumn(format="localized", width=90),
                    "Credits consumed": st.column_config.NumberColumn(
                        format="localized", width=125
                    ),
                    "Credits granted": st.column_config.NumberColumn(
                        format="localized",
                        width=110,
                        help="Grants and refunds in the period.",
                    ),
                    "Credits deducted": st.column_config.NumberColumn(
                        format="localized",
                        width=115,
                        help="Deductions, and reversals that took credits back, in the period.",
                    ),
                    "Balance": st.column_config.NumberColumn(
                        format="localized", width=80, help="The balance now."
                    ),
                    "Share %": st.column_config.ProgressColumn(
                        format="%.1f %%",
                        min_value=0.0,
                        max_value=full,
                        width=90,
                        help="The organization's share of all credits consumed in the period. "
                        f"The bar is full at {full:g} %, so small shares show.",
                    ),
                },
            )
        if not table.empty:
            first = pager.first
            pager.buttons(next=page.next).caption(
                f"Organizations {first:,}–{first + len(table) - 1:,} of "
                f"{page.totals.organizations:,}, by credits consumed."
            )

        # The CSV is every filtered row (not only this page), up to MAX_USAGE_ROWS.
        def read_all() -> tuple[pd.DataFrame, str | None]:
            rows = ranking_table(
                data.usage_page(
                    start=f.start,
                    end=f.end,
                    timezone=tz,
                    plans=chosen,
                    search=query,
                    limit=MAX_USAGE_ROWS,
                ).rows
            )
            cut = (
                f"The CSV holds the first {len(rows):,} of {page.totals.organizations:,} "
                "matching organizations; narrow the filters for the rest."
                if page.totals.organizations > len(rows)
                else None
            )
            return rows, cut

        ui.csv_download(
            "usage",
            filters=(f.start, f.end, tz, chosen, query),
            complete=table if pager.on_first_page and page.next is None else None,
            read_all=read_all,
            file_name=csv_name(f, plans=plans, search=search),
            prepare_label=f"Prepare CSV of all {page.totals.organizations:,} organizations",
            disabled=table.empty,
        )
        # The largest consumers are the first page's (the ranking is by credits).
        top = (
            page
            if pager.on_first_page
            else data.usage_page(
                start=f.start, end=f.end, timezone=tz, plans=chosen, search=query, limit=PAGE_SIZE
            )
        )
        shown = top.rows
        st.subheader("The 15 largest consumers: consumed against granted")
        st.plotly_chart(charts.usage_ranking(shown), key="usage.ranking_chart")

    with ui.section("The monthly trend"):
        st.subheader(f"Monthly trend, all organizations (months in {md(tz)})")
        monthly = data.monthly_credits(start=f.start, end=f.end, timezone=tz)
        st.plotly_chart(
            charts.monthly_trend(monthly, start=f.start, end=f.end), key="usage.monthly_chart"
        )
        partial = charts.month_coverage(monthly["month"], f.start, f.end)["partial"].any()
        st.caption(
            (
                "Hatched bars are partial months: only the days of the period count, as "
                "their labels say, so they are not comparable with whole months. "
                if partial
                else ""
            )
            + "Granted includes grants and refunds; consumed is what generations used."
        )

    # Last: it reads every organization's burn (about 0.2 s across 10,000, cached for a
    # minute), so the ranking and the trend are on screen first.
    with ui.section("Low runway"):
        forecasts.low_runway("usage", f)


render()
