"""Quotas (customer success): today's use of every daily limit in each organization's own
day, who is near or over, an organization's quota history, changing a daily limit
(audited, with the current user as actor) and, for admins, the organization's time zone
(``dashboard.timezone_form``).

The search, plans, types, statuses, the table's order ("Sort by") and its page are in the
URL (``q``, ``plan``, ``type``, ``status``, ``sort``, ``after``: :mod:`dashboard.url`).
Every organization listed (over, near, the table, the heatmap's) opens this page scoped
to it (its quota history) when its name is clicked, in the same tab, with ``form=limit``
for those who may change limits: the limit form at the top."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Final

import pandas as pd
import streamlit as st

from dashboard import (
    actions,
    auth,
    charts,
    clock,
    data,
    forecasts,
    paging,
    state,
    timezone_form,
    ui,
    url,
)
from dashboard.confirm import WriteFlow
from dashboard.text import md
from queries import limit_approvals, quotas
from queries.identity import canonical_identity, stored_identity
from queries.models import PLANS

FLASH: Final = "quotas"
THRESHOLD: Final = 0.8
ALL_TYPES: Final = ""
K_SEARCH: Final = "quotas.search"
K_TYPES: Final = "quotas.types"
K_STATUSES: Final = "quotas.statuses"
K_PLANS: Final = "quotas.plans"
K_SORT: Final = "quotas.sort"
TABLE_PAGE: Final = 50
HEATMAP_TOP: Final = 25
K_HISTORY_TYPE: Final = "quotas.history_type"
K_PENDING: Final = "quotas.pending"
K_KEY: Final = "quotas.idempotency_key"
K_RETRY: Final = "quotas.retry_key"
K_TYPE: Final = "quotas.limit_type"
K_LIMIT: Final = "quotas.limit_value"
K_EFFECTIVE: Final = "quotas.limit_effective"
K_UNTIL: Final = "quotas.limit_until"
K_REASON: Final = "quotas.limit_reason"
K_NOTE: Final = "quotas.limit_note"
K_MODE_PENDING: Final = "quotas.mode_pending"
K_MODE_RETRY: Final = "quotas.mode_retry_key"
K_MODE_KEY: Final = "quotas.mode_idempotency_key"
K_MODE_TYPE: Final = "quotas.mode_type"
K_MODE: Final = "quotas.mode"
K_MODE_REASON: Final = "quotas.mode_reason"
K_MODE_NOTE: Final = "quotas.mode_note"
STATUSES: Final = ("over", "at limit", "near", "ok")
K_FORM_FIRST: Final = "quotas.form_first"  # the limit form at the top (form=limit)
URL_PAGE: Final = "quotas"


# The orders of "every organization and type" (sorted in SQL over today's rows).
SORTS: Final[dict[quotas.UtilizationSort, str]] = {
    "utilization_desc": "Utilization, fullest first",
    "utilization_asc": "Utilization, emptiest first",
    "used_desc": "Used today, most first",
    "limit_desc": "Daily limit, highest first",
    "limit_asc": "Daily limit, lowest first",
    "name_asc": "Organization, A to Z",
}
DEFAULT_SORT: Final[quotas.UtilizationSort] = "utilization_desc"


def url_params(types: list[str]) -> tuple[url.Param[Any], ...]:
    return (
        url.text_param("q", K_SEARCH, "search"),
        url.choices_param("plan", K_PLANS, PLANS, "plans"),
        url.choices_param("type", K_TYPES, types, "types"),
        url.choices_param("status", K_STATUSES, STATUSES, "statuses"),
        paging.sort_param(K_SORT, SORTS, default=DEFAULT_SORT),
    )


FORM_PARAM: Final = url.choice_param("form", K_FORM_FIRST, {"limit": True}, default=False)


def links(rows: pd.DataFrame, f: state.Filters) -> dict[str, url.Links]:
    """Each organization's name opens this page for it (its quota history), with the
    limit form at the top for those who may change limits."""
    extra = {"form": "limit"} if auth.current_user().can("change_limits") else {}
    return {
        "Organization": url.organizations(
            rows["organization_id"],
            "quotas",
            f,
            "Click a name for this page scoped to the organization: its quota history "
            "and, if you may change limits, the limit form at the top.",
            **extra,
        )
    }


def utilization_table(df: pd.DataFrame) -> pd.DataFrame:
    """Rows as shown: readable names; an unlimited ratio (limit 0) left blank."""
    ratio = df["utilization"].where(df["utilization"].map(math.isfinite))
    return pd.DataFrame(
        {
            "Organization": df["name"],
            "Type": df["type"],
            "Used": df["used"],
            "Daily limit": df["daily_limit"],
            "Utilization": ratio,
            "Status": df["status"],
            "Limit": df["soft"].map({True: "soft", False: "hard"}),
            # Blank unless generations went past the limit (a soft one lets them).
            "Overage": df["overage"].where(df["overage"] > 0).astype("Int64"),
            "Plan": df["plan"],
            "Their today": df["date"].dt.date,
            "Time zone": df["timezone"],
        }
    )


UTILIZATION_COLUMNS: Final = {
    "Used": st.column_config.NumberColumn(format="localized"),
    "Daily limit": st.column_config.NumberColumn(format="localized"),
    "Utilization": st.column_config.ProgressColumn(
        format="percent", min_value=0.0, max_value=1.0, help="Used / daily limit", width=90
    ),
    "Limit": st.column_config.TextColumn(
        help="hard: generations past the limit are refused; soft: they go through and "
        "count as overage.",
        width=60,
    ),
    "Overage": st.column_config.NumberColumn(
        format="localized", help="Generations past the daily limit today (used − limit)."
    ),
}


def _today(f: state.Filters) -> None:
    st.subheader("Today")
    # Every read of today takes the page's instant: the organizations' own todays at it.
    now = clock.minute()
    heat, with_use = data.quota_heatmap(threshold=THRESHOLD, top=HEATMAP_TOP, now=now)
    if with_use == 0:
        st.info(
            "No organization has made a generation today (in its own day) yet, so no quota "
            "is in use. Press Refresh later."
        )
        return
    alerts = data.quota_alerts(threshold=THRESHOLD, now=now)
    over = alerts[alerts["status"] == "over"]
    near = alerts[alerts["status"].isin(["near", "at limit"])]
    left, right = st.columns(2)
    for column, title, rows, key in (
        (left, "Over the limit", over, "quotas.over"),
        (right, f"At or above {THRESHOLD:.0%}", near, "quotas.near"),
    ):
        column.markdown(f"**{md(title)} ({len(rows)})**")
        if rows.empty:
            column.caption("None right now.")
        else:
            url.table(
                utilization_table(rows)[
                    ["Organization", "Type", "Used", "Daily limit", "Utilization", "Overage"]
                ],
                key=key,
                links=links(rows, f),
                where=column,
                hide_index=True,
                height="content",
                column_config=UTILIZATION_COLUMNS,
            )

    table_tab, heatmap_tab = st.tabs(["Every organization and type", "Heatmap"])
    with table_tab:
        type_names = list(data.generation_types()["type"])
        params = url_params(type_names)
        url.apply(URL_PAGE, params)
        search_col, plans_col, types_col, status_col, sort_col = st.columns(5)
        search = search_col.text_input("Search organization", key=K_SEARCH, max_chars=url.MAX_TEXT)
        plans = plans_col.multiselect("Plans", PLANS, key=K_PLANS, placeholder="All plans")
        types = types_col.multiselect(
            "Types",
            type_names,
            key=K_TYPES,
            placeholder="All types",
        )
        statuses = status_col.multiselect(
            "Status", STATUSES, key=K_STATUSES, placeholder="Any status"
        )
        with sort_col:
            sort = paging.sort_select(K_SORT, SORTS, default=DEFAULT_SORT)
        url.write(URL_PAGE, params)
        # Sorted and stripped, so the same filters are the same cache entry.
        query = search.strip() or None
        chosen = tuple(sorted(plans)), tuple(sorted(types)), tuple(sorted(statuses))
        pager: paging.Pager[quotas.UtilizationCursor] = paging.Pager(
            "quotas",
            filters=(query, *chosen),
            page_size=TABLE_PAGE,
            url_page=URL_PAGE,
            cursor_type=quotas.UtilizationCursor,
            sort=sort,
        )
        page = data.quota_page(
            threshold=THRESHOLD,
            limit=TABLE_PAGE,
            search=query,
            plans=chosen[0],
            types=chosen[1],
            statuses=chosen[2],
            after=pager.after,
            sort=sort,
            now=now,
        )
        if page.rows.empty:
            st.info("No (organization, type) pair matches these filters. Clear a filter.")
        else:
            url.table(
                utilization_table(page.rows),
                key="quotas.table",
                links=links(page.rows, f),
                hide_index=True,
                height="content",  # every row of the page, no scroll box
                column_config=UTILIZATION_COLUMNS,
            )
            first = pager.first
            pager.buttons(next=page.next).caption(
                f"{first:,}–{first + len(page.rows) - 1:,} of {page.matching:,} matching "
                f"(organization, type) pairs, of {page.total:,} with use today, by "
                f"{SORTS[sort].lower()}. A type with no use today is not listed. "
                f"{paging.SORT_NOTE}"
            )
    with heatmap_tab:
        st.plotly_chart(charts.utilization_heatmap(heat, top=HEATMAP_TOP), key="quotas.heatmap")
        left_out = with_use - heat["organization_id"].nunique()
        st.caption(
            f"The {heat['organization_id'].nunique():,} fullest of {with_use:,} organizations "
            f"with use today, by their fullest type; {left_out:,} left out "
            "(see the table for every one)."
            if left_out
            else f"All {with_use:,} organizations with use today."
        )
        # The heatmap's rows, fullest first, as links (a chart cell cannot be one).
        fullest = heat.drop_duplicates("organization_id")
        url.table(
            pd.DataFrame({"Organization": fullest["name"]}),
            key="quotas.heatmap_links",
            links=links(fullest, f),
            hide_index=True,
            height="content",
            column_config={"Organization": st.column_config.TextColumn(width="medium")},
        )


def _history(f: state.Filters) -> None:
    st.subheader(f"Quota history · {md(f.organization.name)}")
    types = data.generation_types()
    labels = {ALL_TYPES: "All types"} | dict(zip(types["type"], types["label"], strict=True))
    if st.session_state.get(K_HISTORY_TYPE) not in labels:
        st.session_state[K_HISTORY_TYPE] = ALL_TYPES
    chosen = st.selectbox(
        "Type", options=list(labels), format_func=labels.__getitem__, key=K_HISTORY_TYPE
    )
    history = data.quota_history(
        organization_id=f.organization_id,
        start=f.start,
        end=f.end,
        type=chosen if chosen != ALL_TYPES else None,
    )
    relative = chosen == ALL_TYPES
    st.plotly_chart(charts.quota_history(history, relative=relative), key="quotas.history_chart")
    st.caption(
        f"Days are {md(f.organization.name)}'s own ({md(f.organization.timezone)}), "
        f"{f.period_label}. "
        + (
            "Each type's use as a share of that day's limit; choose a type to see counts."
            if relative
            else "The dashed line is the limit on days with use or a limit change."
        )
    )


def _restore_limit_form(request: actions.LimitRequest) -> None:
    """Fill the form with the request's values (Back, or after a refusal)."""
    st.session_state[K_TYPE] = request.type
    st.session_state[K_LIMIT] = str(request.daily_limit)
    if request.effective is not None:
        st.session_state[K_EFFECTIVE] = request.effective
    st.session_state[K_UNTIL] = request.until


def day_label(day: dt.date, today: dt.date) -> str:
    """A local day as the page names it: "12 Dec", with the year when not this year's."""
    return f"{day.day} {day:%b}" if day.year == today.year else f"{day.day} {day:%b %Y}"


def temporary(until: dt.date | None, limit: int, after: int | None, today: dt.date) -> str:
    """How a limit that ends is shown: "raised until 12 Dec" against what applies after
    it; blank for a limit that does not end."""
    if until is None:
        return ""
    end = day_label(until, today)
    if after is None or after == limit:
        return f"until {end}"
    return f"{'raised' if limit > after else 'lowered'} until {end}"


def _until_phrase(until: dt.date | None, today: dt.date) -> str:
    return (
        "" if until is None else f", through {day_label(until, today)} (then the limit before it)"
    )


def _limit_changed(
    request: actions.LimitRequest, change: quotas.LimitChange | limit_approvals.LimitRequest
) -> str:
    if isinstance(change, limit_approvals.LimitRequest):
        return (
            f"The daily {md(change.type)} limit of {change.daily_limit:,} for "
            f"{md(request.organization_name)} from {change.effective}"
            f"{_until_phrase(change.until, change.effective)} needs a second person: it is "
            f'limit request {change.id}, waiting under "Limit requests". Nothing changes '
            "until someone else approves it."
        )
    return (
        f"The daily {md(change.type)} limit is now {change.new_limit:,} (was "
        f"{change.old_limit:,}) for {md(request.organization_name)} from {change.effective}"
        f"{_until_phrase(change.until, change.effective)}; "
        f"{change.used_on_effective:,} already used that day. Recorded in the audit "
        f"trail (entry {change.audit_id})."
    )


LIMIT_CHANGE: Final = WriteFlow(
    what="limit change",
    request_type=actions.LimitRequest,
    flash=FLASH,
    pending=K_PENDING,
    retry=K_RETRY,
    apply=actions.apply_limit_change,
    succeeded=_limit_changed,
    token=lambda request: request.idempotency_key,
    form_key=K_KEY,
    restore=_restore_limit_form,
)


def _confirm_limit(
    request: actions.LimitRequest,
    f: state.Filters,
    in_force: pd.DataFrame,
    today: dt.date,
) -> None:
    here = request.organization_id == f.organization_id
    with st.container(border=True):
        if here:
            row = in_force[in_force["type"] == request.type]
            current = f"{int(row['daily_limit'].iloc[0]):,}" if len(row) else "its current limit"
            st.markdown(
                f"**Set the daily {md(request.type)} limit of {md(request.organization_name)} "
                f"from {current} to {request.daily_limit:,}, from "
                f"{request.effective or today}{_until_phrase(request.until, today)}?**  \n"
                f"Reason: {md(request.reason)}"
            )
            if len(row):
                st.caption(f"Where the current limit comes from: {md(row['source'].iloc[0])}.")
        most = data.most_alone_limits(organization_id=request.organization_id).get(request.type)
        second = most is not None and request.daily_limit > most
        if second:
            st.warning(
                f"This is above {most:,}, the most one person may set alone "
                "(LIMIT_APPROVAL_FACTOR times the plan's limit): it needs a second person. "
                "Confirming files a request; nothing changes until someone else approves it.",
                icon=":material/group:",
            )
        LIMIT_CHANGE.buttons(
            request,
            shown=(f.organization_id, f.organization.name),
            label="Request approval" if second else "Confirm limit",
            again_label="Confirm limit again",
            key="quotas.confirm",
            back=("Back", "quotas.back"),
            discard=("Discard", "quotas.discard"),
        )


def _limit(f: state.Filters) -> None:
    st.subheader(f"Change a daily limit · {md(f.organization.name)}")
    today = state.today_in(f.organization.timezone)
    types = data.generation_types()
    in_force = data.limits_in_force(organization_id=f.organization_id, day=today)
    request = LIMIT_CHANGE.request()
    if request is not None:
        _confirm_limit(request, f, in_force, today)
        return

    st.dataframe(
        pd.DataFrame(
            {
                "Type": in_force["type"],
                "Daily limit now": in_force["daily_limit"],
                "From": in_force["source"],
                "Until": [
                    temporary(
                        None if pd.isna(until) else until.date(),
                        int(limit),
                        None if pd.isna(after) else int(after),
                        today,
                    )
                    for until, limit, after in zip(
                        in_force["until"],
                        in_force["daily_limit"],
                        in_force["limit_after"],
                        strict=True,
                    )
                ],
                "Limit": in_force["soft"].map({True: "soft", False: "hard"}),
            }
        ),
        hide_index=True,
        column_config={
            "Daily limit now": st.column_config.NumberColumn(format="localized"),
            "Limit": UTILIZATION_COLUMNS["Limit"],
        },
        key="quotas.in_force",
    )
    key = st.session_state.setdefault(K_KEY, actions.new_idempotency_key())
    if not isinstance(st.session_state.get(K_LIMIT), str):
        st.session_state[K_LIMIT] = ""
    if not isinstance(st.session_state.get(K_EFFECTIVE), dt.date):
        st.session_state[K_EFFECTIVE] = today
    if not isinstance(st.session_state.get(K_UNTIL), dt.date):
        st.session_state[K_UNTIL] = None
    labels = dict(zip(types["type"], types["label"], strict=True))
    with st.form("quotas.limit_form"):
        left, middle, right, end = st.columns(4)
        left.selectbox(
            "Type",
            options=list(labels),
            format_func=lambda t: f"{labels[t]} ({t})",
            index=None,
            key=K_TYPE,
            placeholder="Choose a type",
        )
        # Text, not a number input: the browser would round 2.5 before we saw it.
        middle.text_input(
            "New daily limit", key=K_LIMIT, placeholder="a whole number, e.g. 500", max_chars=40
        )
        right.date_input("Effective from", key=K_EFFECTIVE, help="Their own day; today or later.")
        end.date_input(
            "Until (optional)",
            key=K_UNTIL,
            help="Their own day, the last the new limit applies; afterwards the limit in "
            "force without this change applies again. Empty: until changed again.",
        )
        reason_col, note_col = st.columns(2)
        reason_col.selectbox(
            "Reason", actions.LIMIT_REASONS, index=None, key=K_REASON, placeholder="Choose a reason"
        )
        note_col.text_input("Note", key=K_NOTE, placeholder="Ticket or context (optional)")
        submitted = st.form_submit_button("Review change", type="primary")
    if not submitted:
        return
    LIMIT_CHANGE.check(
        lambda: actions.check_limit_change(
            organization_id=f.organization_id,
            organization_name=f.organization.name,
            type=st.session_state.get(K_TYPE),
            daily_limit=st.session_state.get(K_LIMIT),
            reason=st.session_state.get(K_REASON),
            note=st.session_state.get(K_NOTE),
            effective=st.session_state.get(K_EFFECTIVE),
            until=st.session_state.get(K_UNTIL),
            today=today,
            idempotency_key=key,
        )
    )


def _mode_switched(request: actions.LimitModeRequest, switched: quotas.LimitEnforcement) -> str:
    mode = "soft" if switched.soft else "hard"
    effect = (
        "generations past it go through and count as overage"
        if switched.soft
        else "generations past it are refused"
    )
    return (
        f"The daily {md(switched.type)} limit of {md(request.organization_name)} is now "
        f"{mode} (was {'soft' if switched.old_soft else 'hard'}): {effect}. Recorded in "
        f"the audit trail (entry {switched.audit_id})."
    )


def _restore_mode_form(request: actions.LimitModeRequest) -> None:
    st.session_state[K_MODE_TYPE] = request.type
    st.session_state[K_MODE] = "soft" if request.soft else "hard"


LIMIT_MODE: Final = WriteFlow(
    what="hard/soft switch",
    request_type=actions.LimitModeRequest,
    flash=FLASH,
    pending=K_MODE_PENDING,
    retry=K_MODE_RETRY,
    apply=actions.apply_limit_mode,
    succeeded=_mode_switched,
    token=lambda request: request.idempotency_key,
    form_key=K_MODE_KEY,
    restore=_restore_mode_form,
)


def _limit_mode(f: state.Filters) -> None:
    """Switch a type's limit between hard (refused past it) and soft (let through and
    counted as overage), reviewed then confirmed like a limit change."""
    st.markdown("**Hard or soft limit**")
    request = LIMIT_MODE.request()
    if request is not None:
        with st.container(border=True):
            mode = "soft" if request.soft else "hard"
            st.markdown(
                f"**Make the daily {md(request.type)} limit of "
                f"{md(request.organization_name)} {mode}?**  \n"
                f"Reason: {md(request.reason)}"
            )
            st.caption(
                "Soft: generations past the limit go through and count as overage (on this "
                "page, in alerts and in statements). Hard: they are refused."
            )
            LIMIT_MODE.buttons(
                request,
                shown=(f.organization_id, f.organization.name),
                label="Confirm switch",
                again_label="Confirm switch again",
                key="quotas.mode_confirm",
                back=("Back", "quotas.mode_back"),
                discard=("Discard", "quotas.mode_discard"),
            )
        return
    types = data.generation_types()
    labels = dict(zip(types["type"], types["label"], strict=True))
    key = st.session_state.setdefault(K_MODE_KEY, actions.new_idempotency_key())
    with st.form("quotas.mode_form"):
        left, middle = st.columns(2)
        left.selectbox(
            "Type",
            options=list(labels),
            format_func=lambda t: f"{labels[t]} ({t})",
            index=None,
            key=K_MODE_TYPE,
            placeholder="Choose a type",
        )
        middle.radio(
            "Limit",
            options=list(actions.LIMIT_MODES),
            format_func=lambda m: {
                "hard": "Hard: refuse past the limit",
                "soft": "Soft: let through, count as overage",
            }[m],
            index=None,
            key=K_MODE,
            horizontal=True,
        )
        reason_col, note_col = st.columns(2)
        reason_col.selectbox(
            "Reason",
            actions.LIMIT_MODE_REASONS,
            index=None,
            key=K_MODE_REASON,
            placeholder="Choose a reason",
        )
        note_col.text_input("Note", key=K_MODE_NOTE, placeholder="Ticket or context (optional)")
        submitted = st.form_submit_button("Review switch")
    if not submitted:
        return
    LIMIT_MODE.check(
        lambda: actions.check_limit_mode(
            organization_id=f.organization_id,
            organization_name=f.organization.name,
            type=st.session_state.get(K_MODE_TYPE),
            mode=st.session_state.get(K_MODE),
            reason=st.session_state.get(K_MODE_REASON),
            note=st.session_state.get(K_MODE_NOTE),
            idempotency_key=key,
        )
    )


K_REJECTION: Final = "quotas.rejection"


def _limit_requests() -> None:
    """The limit requests waiting for a second person, across organizations."""
    st.subheader("Limit requests")
    pending = data.pending_limit_requests()
    if not pending:
        st.caption("No limit change is waiting for a second person.")
        return
    me = auth.current_user().email
    for request in pending:
        with st.container(border=True):
            until = f" through {request.until}" if request.until else ""
            st.markdown(
                f"**{md(request.organization)}**: daily {md(request.type)} limit "
                f"{request.current_limit:,} → {request.daily_limit:,} from "
                f"{request.effective}{until}  \n"
                f"Requested by {md(request.requested_by)} · Reason: {md(request.reason)}"
            )
            mine = stored_identity(request.requested_by) == canonical_identity(me)
            if mine:
                st.caption("You requested this change; a second person decides on it.")
                continue
            approve, reason, reject = st.columns([1, 2, 1], vertical_alignment="bottom")
            if approve.button("Approve", key=f"quotas.approve.{request.id}", type="primary"):
                _decide(request, approve=True, reason=None)
            why = reason.selectbox(
                "Why reject",
                [r for r in actions.REJECTION_REASONS if r != actions.OTHER],
                index=None,
                key=f"{K_REJECTION}.{request.id}",
                placeholder="Choose a reason to reject",
            )
            if reject.button("Reject", key=f"quotas.reject.{request.id}"):
                _decide(request, approve=False, reason=why)


def _decide(request: limit_approvals.PendingLimitRequest, *, approve: bool, reason: object) -> None:
    # Both decisions are idempotent for the same person: a double click or a retry
    # after a lost answer makes the change once.
    try:
        decided = actions.decide_limit_request(request, approve=approve, reason=reason)
    except ui.EXPECTED_ERRORS as exc:
        st.error(ui.describe_write_error(exc), icon=":material/block:")
        return
    if isinstance(decided, quotas.LimitChange):
        message = (
            f"Approved limit request {request.id}: the daily {md(decided.type)} limit of "
            f"{md(request.organization)} is now {decided.new_limit:,} from {decided.effective}"
            f"{_until_phrase(decided.until, decided.effective)}. Recorded in the audit trail "
            f"(entry {decided.audit_id})."
        )
    else:
        message = f"Rejected limit request {request.id}; nothing was changed."
    ui.flash(FLASH, "success", message)
    st.rerun()


def render() -> None:
    f = state.current()
    user = auth.current_user()
    ui.page_header(
        "Quotas", "Daily limits per organization and type, in each organization's own day."
    )
    ui.show_flash(FLASH)
    url.apply(URL_PAGE, (FORM_PARAM,))
    form_first = user.can("change_limits") and st.session_state.get(K_FORM_FIRST) is True
    if form_first:
        # From a row's "Change limit" link: the form first, not at the bottom.
        with ui.section("The limit form"):
            _limit(f)
            _limit_mode(f)
    # The forecast leads the page but is its slowest read (it weighs every organization's
    # day against its usual one: about 1.5 s across 10,000 organizations, then cached for
    # a minute). Its place is kept at the top and it is drawn last, so today's quotas and
    # the forms are on screen while it is read.
    forecast_slot = st.container()
    with forecast_slot:
        waiting = st.empty()
        waiting.caption("Forecasting who will hit a limit today…")
    with ui.section("Today's utilization"):
        _today(f)
    with ui.section("The quota history"):
        _history(f)
    if user.can("change_limits"):
        # Drawn once: at the top (form=limit) or here. Whoever may change limits never
        # reaches the refusal below, wherever their form is drawn.
        if not form_first:
            with ui.section("The limit form"):
                _limit(f)
                _limit_mode(f)
        with ui.section("The limit requests"):
            _limit_requests()
    else:
        discarded = [st.session_state.pop(k, None) for k in (K_PENDING, K_MODE_PENDING)]
        if any(discarded):
            st.error(
                f"{md(user.email)} ({md(user.role)}) may not change daily limits; the request was "
                "discarded. Nothing was changed.",
                icon=":material/block:",
            )
        st.caption(f"Your role ({md(user.role)}) can read quotas but not change limits.")
    if user.can("change_timezone"):
        with ui.section("The time zone form"):
            timezone_form.render(f)
    elif st.session_state.pop(timezone_form.K_PENDING, None):
        st.error(
            f"{md(user.email)} ({md(user.role)}) may not change an organization's time zone; "
            "the request was discarded. Nothing was changed.",
            icon=":material/block:",
        )
    with forecast_slot:
        waiting.empty()
        with ui.section("The forecast"):
            forecasts.limit_today(f)
        with ui.section("Spikes"):
            forecasts.spikes(f)
    url.write(URL_PAGE, (FORM_PARAM,))


render()
