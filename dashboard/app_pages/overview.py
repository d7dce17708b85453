"""Overview (managers): an organization's KPIs against the previous period, its timeline
by type, its top users, and a drill-down into its most recent generations.

The drilled-down user, the page of generations, the timeline's metric and the comparison
with the previous period are in the URL (``user``, ``after``, ``metric``, ``compare``:
:mod:`dashboard.url`). Each of the top users' names opens their drill-down in the same
tab; a drilled-down user leads the page (their numbers, timeline and generations), with
the organization's view below it."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Final

import pandas as pd
import streamlit as st

from dashboard import charts, clock, data, paging, state, ui, url
from dashboard.text import md
from queries.checks import MIN_DATE
from queries.generations import GenerationCursor
from queries.timelines import PeriodKpis
from queries.words import counted

PAGE_SIZE: Final = 25
TOP_USERS: Final = 10  # the table and the chart beside it show the same users
WHOLE_ORG: Final = 0
K_SCOPE: Final = "overview.scope"  # 0 = the whole organization, else a user id
K_METRIC: Final = "overview.metric"
K_COMPARE: Final = "overview.compare"  # both timelines overlay the previous period
URL_PAGE: Final = "overview"
COMPARE: Final = (url.compare_param(K_COMPARE),)
METRICS: Final = {"credits": "credits", "generations": "generations"}
METRIC_PARAM: Final = url.choice_param("metric", K_METRIC, METRICS, default="credits")


def comparison_text(kpis: PeriodKpis, timezone: str = "UTC") -> tuple[str, str, str | None]:
    """The tiles' help, their short delta description, and what the comparison must be
    read with, in full (shown under the tiles, never cut short on a tile): when the
    period reaches now, both periods are counted up to the same local time (``through``);
    when the previous period is only partly covered by the organization's data (from the
    first day with data the query reports, not a guess from zeros), the change compares
    a whole period with a part of one."""
    previous_end = kpis.start - dt.timedelta(days=1)
    days, covered = kpis.previous_days, kpis.previous_days_with_data
    against = (
        f"Change against the previous {counted(days, 'day')} "
        f"({kpis.previous_start} – {previous_end})."
    )
    versus = f"vs previous {counted(days, 'day')}"
    notes: list[str] = []
    if kpis.through is not None and kpis.previous_through is not None:
        zone = zoneinfo.ZoneInfo(timezone)
        cut = kpis.through.astimezone(zone)
        before = kpis.previous_through.astimezone(zone)
        notes.append(
            f"Today ({cut:%d %b}) is not over: both periods are counted up to {cut:%H:%M} "
            f"({timezone}), this one to {cut:%d %b %H:%M} and the previous one to "
            f"{before:%d %b %H:%M}, so the change compares equal spans."
        )
    if kpis.previous_partly_covered and covered > 0:
        notes.append(
            f"The previous period has data for {covered} of {counted(days, 'day')} (the "
            f"organization's data starts on {kpis.first_day}), so the change compares "
            f"{counted(days, 'day')} with {covered}: read it with care."
        )
    if notes:
        against += " " + " ".join(notes)
    return against, versus, " ".join(notes) or None


def _kpis(f: state.Filters) -> bool:
    """The KPI tiles; False when the period has no generations at all."""
    kpis = data.period_kpis(
        organization_id=f.organization_id,
        start=f.start,
        end=f.end,
        utc=f.utc,
        # To the quarter-hour, as the read counts: one cache entry per quarter-hour.
        now=clock.quarter_hour(),
    )
    info = data.organization(organization_id=f.organization_id)
    timeline = data.timeline_by_type(
        organization_id=f.organization_id,
        start=f.start,
        end=f.end,
        granularity=f.granularity,
        utc=f.utc,
    )
    per_bucket = timeline.groupby("bucket")[["generations", "credits"]].sum()
    against, versus, caveat = comparison_text(kpis, f.timezone)
    tiles = st.columns(4)
    for tile, label, value, change, spark, extra in (
        (tiles[0], "Generations", kpis.generations, kpis.generations_change, "generations", ""),
        (tiles[1], "Credits consumed", kpis.credits, kpis.credits_change, "credits", ""),
        (
            tiles[2],
            "Active users",
            kpis.active_users,
            kpis.active_users_change,
            None,
            "Users with at least one generation. ",
        ),
    ):
        tile.metric(
            label,
            ui.number(value),
            ui.change(change),
            help=extra + against,
            border=True,
            delta_arrow="off" if not change else "auto",
            delta_description=versus if change is not None else None,
            chart_data=per_bucket[spark].tolist() if spark else None,
            chart_type="bar",
            height="stretch",  # tiles without a sparkline as tall as those with one
        )
    tiles[3].metric(
        "Credit balance",
        ui.number(info.balance) if info else "–",
        help="The organization's shared credit pool, now.",
        border=True,
        height="stretch",
    )
    if caveat is not None:
        # In full under the tiles: a delta description is cut short on a narrow tile.
        st.caption(md(caveat))
    if kpis.generations == 0:
        st.info(
            f"{md(f.organization.name)} made no generations in {f.period_label}. "
            "Choose a longer period or another organization in the sidebar.",
            icon=":material/info:",
        )
        return False
    return True


def _compared() -> bool:
    """Whether the timelines overlay the previous period: a link's ``compare`` first,
    else the toggle's value (a toggle's change is in the session before the run). Both
    timelines ask; writing the URL at once makes the second ask a no-op (one notice)."""
    url.apply(URL_PAGE, COMPARE)
    url.write(URL_PAGE, COMPARE)
    return st.session_state.get(K_COMPARE) is True


def _previous(
    f: state.Filters, *, user_id: int | None = None
) -> tuple[pd.DataFrame | None, charts.PreviousPeriod | None]:
    """The same timeline over the previous period, when it is compared."""
    if not _compared():
        return None, None
    period = charts.previous_period(f.start, f.end, f.granularity)
    if period.start < MIN_DATE:
        return None, None
    previous = data.timeline_by_type(
        organization_id=f.organization_id,
        start=period.start,
        end=period.end,
        granularity=f.granularity,
        utc=f.utc,
        user_id=user_id,
    )
    return previous, period


def _compare_toggle() -> None:
    st.toggle(
        "Compare with previous period",
        key=K_COMPARE,
        help="A dashed line: the same number of days just before this period, drawn on "
        "this period's dates.",
    )


def _timeline(f: state.Filters, *, toggle: bool = True) -> None:
    """The organization's timeline; ``toggle``: with the comparison's switch (a drilled
    user's timeline carries it instead, above)."""
    st.subheader("Timeline by type")
    url.apply(URL_PAGE, (METRIC_PARAM,))
    if st.session_state.get(K_METRIC) not in METRICS:
        st.session_state[K_METRIC] = "credits"  # also when the chosen one is clicked off
    metric = st.segmented_control(
        "Show",
        options=tuple(METRICS),
        format_func=str.capitalize,
        key=K_METRIC,
        label_visibility="collapsed",
    )
    url.write(URL_PAGE, (METRIC_PARAM,))
    previous, period = _previous(f)
    if toggle:
        _compare_toggle()
    df = data.timeline_by_type(
        organization_id=f.organization_id,
        start=f.start,
        end=f.end,
        granularity=f.granularity,
        utc=f.utc,
    )
    today = state.today_in(f.timezone)
    st.plotly_chart(
        charts.timeline_by_type(
            df,
            metric="generations" if metric == "generations" else "credits",
            granularity=f.granularity,
            start=f.start,
            end=f.end,
            today=today,
            previous=previous,
            period=period,
        ),
        key="overview.timeline",
    )
    zone = "UTC" if f.utc else f"{md(f.organization.timezone)} (the organization's own)"
    st.caption(f"Buckets by {f.granularity}, dates in {zone}.")
    if period is not None:
        st.caption(charts.previous_caption(period, f.granularity))
    _partial_caption(df, f, today)


def _partial_caption(df: pd.DataFrame, f: state.Filters, today: dt.date) -> None:
    """Name the buckets the chart hatches: cut by the period, or today's, not over."""
    buckets = pd.Series(pd.to_datetime(df["bucket"]).unique())
    cover = charts.bucket_coverage(
        buckets, granularity=f.granularity, start=f.start, end=f.end, today=today
    )
    note = charts.partial_caption(cover, buckets, f.granularity)
    if note is not None:
        st.caption(note)


def _users(f: state.Filters) -> None:
    st.subheader("Top users")
    top = data.top_users(
        organization_id=f.organization_id, start=f.start, end=f.end, limit=TOP_USERS, utc=f.utc
    )
    if top.empty:
        st.caption("No user made a generation in this period.")
        return
    left, right = st.columns([7, 4])
    table = top.rename(
        columns={
            "name": "User",
            "email": "Email",
            "generations": "Generations",
            "credits": "Credits",
            "credit_share": "Share of credits",
        }
    )
    # The user's drill-down, by id (two users may share a name).
    drill = url.Links(
        [
            url.target("overview", f, organization_id=f.organization_id, user=str(int(i)))
            for i in table.pop("user_id")
        ],
        "Click a name for this user's numbers, timeline and most recent generations.",
    )
    url.table(
        table,
        key="overview.top_users",
        links={"User": drill},
        where=left,
        hide_index=True,
        height="content",
        column_config={
            "User": st.column_config.TextColumn(width=150),
            "Email": st.column_config.TextColumn(width=235),
            "Generations": st.column_config.NumberColumn(format="localized", width=80),
            "Credits": st.column_config.NumberColumn(format="localized", width=65),
            "Share of credits": st.column_config.ProgressColumn(
                "Share",
                help="The user's share of the organization's credits in the period.",
                format="percent",
                min_value=0.0,
                max_value=1.0,
                width=65,
            ),
        },
    )
    right.plotly_chart(charts.top_users(top, top=TOP_USERS), key="overview.top_users_chart")
    shown = f"The {len(top)} users" if len(top) > 1 else "The one user"
    st.caption(
        f"{shown} who used the most credits in {f.period_label}, in the table and the chart."
        if len(top) == TOP_USERS
        else f"{shown} who made generations in {f.period_label}, in the table and the chart."
    )


def _scope_options(users: pd.DataFrame) -> dict[int, str]:
    options = {WHOLE_ORG: "The whole organization"}
    for row in users.to_dict("records"):
        options[int(row["id"])] = f"{row['name']} · {row['email']}"
    return options


def _scope_params(options: dict[int, str]) -> tuple[url.Param[int], ...]:
    return (
        url.id_param(
            "user", K_SCOPE, options.__contains__, "user of this organization", default=WHOLE_ORG
        ),
    )


def _drilled_user(f: state.Filters) -> tuple[pd.DataFrame, int | None]:
    """The organization's users and the drilled-down one (None: the whole
    organization), with a ``user`` from a link applied."""
    users = data.users(organization_id=f.organization_id)
    options = _scope_options(users)
    url.apply(URL_PAGE, _scope_params(options))
    if st.session_state.get(K_SCOPE) not in options:
        st.session_state[K_SCOPE] = WHOLE_ORG
    scope = st.session_state[K_SCOPE]
    return users, None if scope == WHOLE_ORG else int(scope)


def _whole_organization() -> None:
    st.session_state[K_SCOPE] = WHOLE_ORG


def _user_timeline(f: state.Filters, user_id: int) -> pd.DataFrame:
    return data.timeline_by_type(
        organization_id=f.organization_id,
        start=f.start,
        end=f.end,
        granularity=f.granularity,
        utc=f.utc,
        user_id=user_id,
    )


def _user(f: state.Filters, user_id: int) -> None:
    """The drilled-down user's numbers in the period and their timeline."""
    df = _user_timeline(f, user_id)
    # Sums of the per-bucket rows the read aggregated (a few dozen), as the KPI tiles'.
    generations, credits = int(df["generations"].sum()), int(df["credits"].sum())
    organization = data.period_kpis(
        organization_id=f.organization_id,
        start=f.start,
        end=f.end,
        utc=f.utc,
        now=clock.quarter_hour(),
    )
    tiles = st.columns(3)
    tiles[0].metric("Generations", ui.number(generations), border=True)
    tiles[1].metric("Credits consumed", ui.number(credits), border=True)
    share = credits / organization.credits if organization.credits else None
    tiles[2].metric(
        "Share of the organization's credits",
        "–" if share is None else f"{share:.1%}",
        border=True,
        help="The user's credits over all of the organization's in the period.",
    )
    st.subheader("Timeline by type")
    previous, period = _previous(f, user_id=user_id)
    _compare_toggle()
    st.plotly_chart(
        charts.timeline_by_type(
            df,
            metric="credits",
            granularity=f.granularity,
            start=f.start,
            end=f.end,
            today=state.today_in(f.timezone),
            previous=previous,
            period=period,
        ),
        key="overview.user_timeline",
    )
    if period is not None:
        st.caption(charts.previous_caption(period, f.granularity))


def _drilldown(f: state.Filters, options: dict[int, str]) -> None:
    st.subheader("Most recent generations")
    params = _scope_params(options)
    scope = st.selectbox(
        "Generations of",
        options=list(options),
        format_func=options.__getitem__,
        key=K_SCOPE,
        help="Type part of a name or email to find a user.",
    )
    url.write(URL_PAGE, params)
    user_id = None if scope == WHOLE_ORG else int(scope)
    # A new organization or user starts again from the newest generations.
    pager: paging.Pager[GenerationCursor] = paging.Pager(
        "overview",
        filters=(f.organization_id, scope),
        page_size=PAGE_SIZE,
        url_page=URL_PAGE,
        cursor_type=GenerationCursor,
    )

    page = data.recent_generations(
        organization_id=f.organization_id, user_id=user_id, limit=PAGE_SIZE, before=pager.after
    )
    rows = page.rows
    if rows.empty:
        st.caption("No generations yet." if pager.on_first_page else "No older generations.")
    else:
        shown = pd.DataFrame(
            {
                "Time": ui.local_times(rows["created_at"], f.timezone),
                "User": rows["user_name"],
                "Type": rows["type"],
                "Credits": rows["credits"],
                "Id": rows["id"],
            }
        )
        st.dataframe(
            shown,
            hide_index=True,
            height="content",
            column_config={
                "Time": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss z"),
                "Id": st.column_config.NumberColumn(format="%d"),
            },
            key="overview.recent",
        )
    first = pager.first
    pager.buttons(
        next=page.next_cursor, previous_label="← Newer", next_label="Older →", first_label="Newest"
    ).caption(
        f"Generations {first:,}–{first + len(rows) - 1:,} from the newest, times in "
        f"{md(f.timezone)}."
        if len(rows)
        else f"Times in {md(f.timezone)}."
    )


def _organization(f: state.Filters, *, toggle: bool = True) -> None:
    """The organization's part: its key figures, timeline and top users."""
    has_data = False
    with ui.section("The key figures"):
        has_data = _kpis(f)
        if has_data:
            _timeline(f, toggle=toggle)
    if has_data:
        with ui.section("Top users"):
            _users(f)


def render() -> None:
    f = state.current()
    users, user_id = _drilled_user(f)
    options = _scope_options(users)
    if user_id is None:
        ui.page_header(
            f"Overview · {md(f.organization.name)}",
            f"{md(f.organization.plan.capitalize())} plan · {f.period_label}",
        )
        _organization(f)
        with ui.section("The most recent generations"):
            _drilldown(f, options)
        return
    # A drilled-down user leads: their numbers, timeline and generations first, the
    # organization's view below, and a way back to it at the top.
    user = users[users["id"] == user_id].iloc[0]
    ui.page_header(
        f"Overview · {md(user['name'])}",
        f"{md(user['email'])} · a user of {md(f.organization.name)} · {f.period_label}",
    )
    st.button(
        "The whole organization",
        icon=":material/arrow_back:",
        on_click=_whole_organization,
        key="overview.back",
        help="Leave this user: the organization's key figures, timeline and top users.",
    )
    with ui.section("The user's numbers"):
        _user(f, user_id)
    with ui.section("The most recent generations"):
        _drilldown(f, options)
    st.divider()
    st.header(f"The organization · {md(f.organization.name)}")
    _organization(f, toggle=False)


render()
