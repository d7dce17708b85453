"""Usage review (finance): every organization ranked by credits consumed in the period,
granted against consumed, current balances, the monthly trend, and a CSV of exactly the
table shown.

The ranking is filtered, sorted and paged in SQL (``usage.all_orgs_usage_page``), so the
page reads one page of organizations whatever their number; the CSV holds every
filtered row up to ``usage.MAX_USAGE_ROWS`` and says when it was cut.

The timeline across organizations counts credits (or generations) per bucket and type
for the organizations of the chosen plans, optionally over the previous period too.

The plans, the search, the order ("Sort by"), the page shown and the comparison are in
the URL (``plan``, ``q``, ``sort``, ``after``, ``compare``: :mod:`dashboard.url`); the CSV
follows the order. Each organization links to its Overview and, for those who may adjust
credits, to its Credits page (which leads with the adjustment form): the name and
"Adjust" open them in the same tab (:func:`dashboard.url.table`)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Final, Literal

import pandas as pd
import streamlit as st

from dashboard import auth, charts, data, exports, forecasts, paging, state, ui, url, zones
from dashboard.text import md
from queries.checks import MIN_DATE
from queries.models import PLANS
from queries.usage import MAX_USAGE_ROWS, UsageCursor, UsageSort

K_PLANS: Final = "usage.plans"
K_SEARCH: Final = "usage.search"
K_SORT: Final = "usage.sort"
PAGE_SIZE: Final = 50
URL_PAGE: Final = "usage"
# The orders of the ranking (sorted in SQL over every matching organization).
SORTS: Final[dict[UsageSort, str]] = {
    "credits_desc": "Credits consumed, most first",
    "credits_asc": "Credits consumed, least first",
    "generations_desc": "Generations, most first",
    "balance_asc": "Balance, lowest first",
    "balance_desc": "Balance, highest first",
    "name_asc": "Organization, A to Z",
}
DEFAULT_SORT: Final[UsageSort] = "credits_desc"
URL_PARAMS: Final = (
    url.choices_param("plan", K_PLANS, PLANS, "plans"),
    url.text_param("q", K_SEARCH, "search"),
    paging.sort_param(K_SORT, SORTS, default=DEFAULT_SORT),
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


K_TIMELINE_METRIC: Final = "usage.timeline_metric"
K_COMPARE: Final = "usage.compare"
K_SHOW_TIMELINE: Final = "usage.timeline"
# timeline=shown: the timeline across organizations is read (off, the default, is left out).
TIMELINE_PARAMS: Final = (
    url.choice_param("timeline", K_SHOW_TIMELINE, {"shown": True}, default=False),
    url.compare_param(K_COMPARE),
)


def timeline_csv(current: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """The timeline's CSV: one row per period, bucket and type (the previous period's
    at its own dates)."""
    parts = [current.assign(period="this period")]
    if previous is not None:
        parts.append(previous.assign(period="previous period"))
    rows = pd.concat(parts, ignore_index=True)
    return pd.DataFrame(
        {
            "Period": rows["period"],
            "Bucket starts": pd.to_datetime(rows["bucket"]).dt.date,
            "Type": rows["type"],
            "Generations": rows["generations"],
            "Credits": rows["credits"],
        }
    )


def _timeline(f: state.Filters, tz: str, plans: tuple[str, ...]) -> None:
    """Credits or generations of every organization of ``plans`` per bucket and type,
    in the company zone, optionally over the previous period too."""
    whose = "organizations on the " + ", ".join(plans) + " plans" if plans else "organizations"
    st.subheader(f"Timeline, all {whose}, by type")
    url.apply(URL_PAGE, TIMELINE_PARAMS)
    # Read when asked: it sums every organization's quarter-hours of the period (the
    # company zone's days cut most organizations' own days), seconds at 100M generations
    # where the rest of the page takes a fraction of one (docs/performance.md).
    shown_at_all = st.toggle(
        "Show the timeline",
        key=K_SHOW_TIMELINE,
        help="Sums every organization's use of the period in the company zone: it can take "
        "a few seconds with millions of generations, so it is read only when asked.",
    )
    if not shown_at_all:
        url.write(URL_PAGE, TIMELINE_PARAMS)
        st.caption(
            "Every organization's credits or generations per bucket and type, in the company "
            'zone. Turn on "Show the timeline" to read it (`timeline=shown` in the '
            "link)."
        )
        return
    left, right = st.columns([1, 2])
    with left:
        metric = st.segmented_control(
            "Show",
            options=("credits", "generations"),
            format_func=str.capitalize,
            default="credits",
            key=K_TIMELINE_METRIC,
            label_visibility="collapsed",
        )
    compare = right.toggle(
        "Compare with previous period",
        key=K_COMPARE,
        help="A dashed line: the same number of days just before this period, drawn on "
        "this period's dates.",
    )
    url.write(URL_PAGE, TIMELINE_PARAMS)
    shown: Literal["generations", "credits"] = (
        "generations" if metric == "generations" else "credits"
    )

    def read(start: dt.date, end: dt.date) -> pd.DataFrame:
        return data.all_organizations_timeline(
            start=start, end=end, timezone=tz, granularity=f.granularity, plans=plans
        )

    df = read(f.start, f.end)
    period = charts.previous_period(f.start, f.end, f.granularity) if compare else None
    previous = (
        read(period.start, period.end) if period is not None and period.start >= MIN_DATE else None
    )
    today = state.today_in(tz)
    st.plotly_chart(
        charts.timeline_by_type(
            df,
            metric=shown,
            granularity=f.granularity,
            start=f.start,
            end=f.end,
            today=today,
            previous=previous,
            period=period,
            title=f"{shown.capitalize()} per {f.granularity} by generation type, all {whose}",
        ),
        key="usage.timeline_chart",
    )
    st.caption(
        f"Buckets by {f.granularity}, days in {md(tz)} (the company zone); "
        + ("the plans chosen above." if plans else "every plan.")
    )
    buckets = pd.Series(pd.to_datetime(df["bucket"]).unique())
    cover = charts.bucket_coverage(
        buckets, granularity=f.granularity, start=f.start, end=f.end, today=today
    )
    partial = charts.partial_caption(cover, buckets, f.granularity)
    if partial is not None:
        st.caption(partial)
    if period is not None and previous is not None:
        st.caption(charts.previous_caption(period, f.granularity))
    stem = "_".join(["timeline", f.start.isoformat(), f.end.isoformat(), f.granularity])
    st.download_button(
        "Download timeline CSV",  # the ranking's button is "Download CSV"
        # Written when clicked, not on every run (as every list's CSV).
        data=lambda: exports.csv_bytes(timeline_csv(df, previous)),
        file_name=stem + ("_plan-" + "-".join(plans) if plans else "") + ".csv",
        mime="text/csv",
        icon=":material/download:",
        key="usage.timeline_csv",
        on_click="ignore",
    )


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
        url.apply(URL_PAGE, URL_PARAMS)
        # The rank is always by credits consumed; the heading names the order shown.
        order = SORTS.get(st.session_state.get(K_SORT, DEFAULT_SORT), SORTS[DEFAULT_SORT])
        st.subheader(f"Ranking · {order.lower()}")
        left, middle, right = st.columns([1, 1, 1])
        plans = left.multiselect("Plans", PLANS, key=K_PLANS, placeholder="All plans")
        search = middle.text_input(
            "Search organization", key=K_SEARCH, placeholder="name or slug", max_chars=200
        )
        with right:
            sort = paging.sort_select(K_SORT, SORTS, default=DEFAULT_SORT)
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
            sort=sort,
        )
        page = data.usage_page(
            start=f.start,
            end=f.end,
            timezone=tz,
            plans=chosen,
            search=query,
            limit=PAGE_SIZE,
            after=pager.after,
            sort=sort,
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
                f"{page.totals.organizations:,}, by {SORTS[sort].lower()}. "
                f"{paging.SORT_NOTE}"
            )

        # The CSV is every filtered row (not only this page) in the order chosen, up to
        # MAX_USAGE_ROWS.
        def read_all() -> tuple[pd.DataFrame, str | None]:
            rows = ranking_table(
                data.usage_page(
                    start=f.start,
                    end=f.end,
                    timezone=tz,
                    plans=chosen,
                    search=query,
                    limit=MAX_USAGE_ROWS,
                    sort=sort,
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
            filters=(f.start, f.end, tz, chosen, query, sort),
            complete=table if pager.on_first_page and page.next is None else None,
            read_all=read_all,
            file_name=csv_name(f, plans=plans, search=search),
            prepare_label=f"Prepare CSV of all {page.totals.organizations:,} organizations",
            disabled=table.empty,
        )
        # The largest consumers are the first page by credits consumed.
        top = (
            page
            if pager.on_first_page and sort == DEFAULT_SORT
            else data.usage_page(
                start=f.start, end=f.end, timezone=tz, plans=chosen, search=query, limit=PAGE_SIZE
            )
        )
        shown = top.rows
        st.subheader("The 15 largest consumers: consumed against granted")
        st.plotly_chart(charts.usage_ranking(shown), key="usage.ranking_chart")

    with ui.section("The timeline"):
        _timeline(f, tz, chosen)

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
