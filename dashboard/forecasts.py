"""Sections that see trouble coming (``queries.forecast``): who will hit a daily limit
today and when, in their own clock; whose use spikes far above their habit; whose
balance runs out within N days. The Quotas page shows the first two; Usage review and
Credits share :func:`low_runway` (one component, two pages)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

import pandas as pd
import streamlit as st

from dashboard import auth, clock, data, state, ui, url
from queries import forecast
from queries.words import counted

RUNWAY_DEFAULT_DAYS: Final = 14
RUNWAY_MAX_DAYS: Final = 365
# Of a list, the most urgent this many are drawn; the CSV has them all. At 10,000
# organizations a 14-day runway list can hold a few thousand rows, the limits hit today
# and the spikes a few hundred, and drawing them (a styled table with a link per row) cost Usage
# review and Credits 0.18 s, Quotas 0.02 s, on every run, warm or cold.
RUNWAY_SHOWN: Final = 50
LIMIT_TODAY_SHOWN: Final = 50
SPIKES_SHOWN: Final = 50


def local_clock(at: pd.Series, timezones: pd.Series) -> pd.Series:
    """UTC instants as the local time of each row's zone: "14:30 Asia/Kathmandu"; blank
    for NaT."""
    return pd.Series(
        [
            "" if pd.isna(ts) else f"{ts.tz_convert(str(tz)):%H:%M} {tz}"
            for ts, tz in zip(at, timezones, strict=True)
        ],
        index=at.index,
        dtype="object",
    )


def limit_today_table(df: pd.DataFrame) -> pd.DataFrame:
    """The forecast rows that hit their limit later today, as shown, soonest first."""
    hits = df[df["hits_limit_at"].notna()]
    return pd.DataFrame(
        {
            "Organization": hits["name"],
            "Type": hits["type"],
            "Used / limit": [
                f"{used:,} / {limit:,}"
                for used, limit in zip(hits["used"], hits["daily_limit"], strict=True)
            ],
            "Projected today": hits["projected_used"].round(),
            "Hits the limit at": local_clock(hits["hits_limit_at"], hits["timezone"]),
            "Basis": hits["basis"],
        }
    ).reset_index(drop=True)


def spikes_table(df: pd.DataFrame) -> pd.DataFrame:
    """Spikes as shown: the factor as "4.0×", "new" when there was no usual use."""
    return pd.DataFrame(
        {
            "Organization": df["name"],
            "Credits, last hours": df["recent_credits"],
            "Usual for these hours": df["baseline_credits"].round(1),
            "Factor": ["new" if math.isinf(f) else f"{f:.1f}×" for f in df["factor"]],
            "Time zone": df["timezone"],
        }
    ).reset_index(drop=True)


def runway_table(df: pd.DataFrame) -> pd.DataFrame:
    """Low-runway rows as shown: with what expires unused at this pace, and why it runs
    out ("runs out on 14 Dec, when 8,000 credits expire"; dates in its own zone)."""
    return pd.DataFrame(
        {
            "Organization": df["name"],
            "Plan": df["plan"],
            "Balance": df["balance"],
            "Daily burn": df["daily_burn"].round(1),
            "Runway (days)": df["runway_days"].clip(lower=0).round(1),
            "Runs out on": df["runs_out_on"],
            "Expires unused": df["expiring_unused"],
            "Why": [
                forecast.runway_reason(
                    balance=int(balance),
                    cause=str(cause),
                    runs_out_on=None if pd.isna(on) else on,
                    expiring_unused=int(unused),
                    expiring_then=int(then),
                )
                for balance, cause, on, unused, then in zip(
                    df["balance"],
                    df["cause"],
                    df["runs_out_on"],
                    df["expiring_unused"],
                    df["expiring_then"],
                    strict=True,
                )
            ],
        }
    ).reset_index(drop=True)


def limit_today(f: state.Filters) -> None:
    """ "Will hit its limit today": who reaches a daily limit before their local midnight
    at today's pace, and at what local time. Each row opens the Quotas page for that
    organization, with the limit form at the top for those who may change limits."""
    st.subheader("Will hit its limit today")
    hits = data.quota_forecast(hits_only=True, now=clock.minute())
    extra = {"form": "limit"} if auth.current_user().can("change_limits") else {}
    table = limit_today_table(hits)
    if table.empty:
        st.caption(
            "At today's pace, no organization reaches a daily limit before its own midnight."
        )
    else:
        _first(
            table,
            hits["organization_id"],
            key="forecasts.limit_today",
            shown=LIMIT_TODAY_SHOWN,
            which="soonest",
            of=f"{counted(len(table), 'limit')} hit today at this pace",
            link=lambda ids: url.organizations(
                ids,
                "quotas",
                f,
                "Click a name for its quotas: the history and the limit form.",
                **extra,
            ),
            column_config={
                "Projected today": st.column_config.NumberColumn(
                    format="localized", help="Generations by the end of their local day."
                ),
                "Hits the limit at": st.column_config.TextColumn(
                    help="Their local time, in their zone."
                ),
            },
            csv=("limit forecast", "will-hit-limit-today.csv", "today"),
        )
    st.caption(
        "The pace is today's use so far, weighed against how far into a usual day the "
        "organization is by now (same weekday of the last 4 weeks, its own hours; "
        "'uniform' where there is no such history), or that of the last "
        f"{forecast.RECENT_HOURS} hours if faster: a late start at a steady rate hits "
        "when that rate reaches the limit. Late in the day a high share is not an "
        "emergency; early in the day a steep pace is. Already over: see below."
    )


def spikes(f: state.Filters) -> None:
    """Organizations whose last hours are far above their own usual for those hours; each
    row opens the organization's Overview (its timeline and top users)."""
    st.subheader("Spikes")
    rows = data.usage_spikes(now=clock.minute())
    if rows.empty:
        st.caption("No organization is spending far above its usual for these hours.")
    else:
        _first(
            spikes_table(rows),
            rows["organization_id"],
            key="forecasts.spikes",
            shown=SPIKES_SHOWN,
            which="highest",
            of=counted(len(rows), "spike"),
            link=lambda ids: url.organizations(
                ids,
                "overview",
                f,
                "Click a name for its Overview: the timeline and who is using it.",
            ),
            column_config={
                "Credits, last hours": st.column_config.NumberColumn(format="localized"),
                "Usual for these hours": st.column_config.NumberColumn(format="localized"),
            },
            csv=("spikes", "spikes.csv", "now"),
        )
    st.caption(
        "Credits of the last 3 hours against the same local weekday and hours of the 4 "
        f"weeks before (average; weeks since their first use), at least 3× and "
        f"{forecast.MIN_SPIKE_CREDITS:,} credits, so tiny tenants do not flap. "
        "'new': no use in those hours before."
    )


def low_runway(page: str, f: state.Filters) -> None:
    """Organizations whose balance runs out within N days (a number input) at their
    burn of the last 30 complete days, or, with no burn, when every credit they hold
    expires within those days. ``page`` prefixes the widgets' keys. Each row
    opens the Credits page for that organization (its balance, ledger and the
    adjustment form) when the person may open it, else its Overview."""
    st.subheader("Low runway")
    days = st.number_input(
        "Running out within (days)",
        min_value=0,
        max_value=RUNWAY_MAX_DAYS,
        value=RUNWAY_DEFAULT_DAYS,
        step=1,
        key=f"{page}.runway_days",
    )
    rows = data.low_runway(within_days=int(days), now=clock.minute())
    if rows.empty:
        st.caption(f"No organization runs out of credits within {counted(int(days), 'day')}.")
    else:
        credits = url.may_open("credits")
        _first(
            runway_table(rows),
            rows["organization_id"],
            key=f"{page}.low_runway",
            shown=RUNWAY_SHOWN,
            which="that run out soonest",
            of=counted(len(rows), "organization"),
            link=lambda ids: url.organizations(
                ids,
                "credits" if credits else "overview",
                f,
                "Click a name for its credits: balance, ledger and the adjustment form."
                if credits
                else "Click a name for its Overview.",
            ),
            column_config={
                "Balance": st.column_config.NumberColumn(format="localized"),
                "Daily burn": st.column_config.NumberColumn(format="localized"),
                "Expires unused": st.column_config.NumberColumn(
                    format="localized",
                    help="Credits of grants that expire before the burn would use them.",
                ),
            },
            csv=("low runway", f"low-runway_within-{int(days)}-days.csv", int(days)),
        )
    st.caption(
        "Across all organizations: the balance now over the average credits consumed per "
        "day in the last 30 complete days of their own (today not counted), drawn in the "
        "grants' order (priority, then soonest expiry): a grant that expires before the "
        "burn reaches it is lost, and may end the runway itself. 'Runs out on' is their "
        "local date. An organization that consumed nothing is listed only when all its "
        "credits expire within those days: it runs out at the expiry that takes the last."
    )


def _first(
    table: pd.DataFrame,
    organization_ids: pd.Series,
    *,
    key: str,
    shown: int,
    which: str,
    of: str,
    link: Callable[[pd.Series], url.Links],
    column_config: dict[str, Any],
    csv: tuple[str, str, object],
) -> None:
    """A forecast list, most urgent first: its first ``shown`` rows drawn with each name
    a link (``link`` of their ``organization_ids``), a caption when there are more ("The
    50 {which} of {of}": "that run out soonest", "2,391 organizations"), and a CSV of
    every row. ``csv`` is (what its buttons name, the file name, the filters the list
    was read for)."""
    url.table(
        table.head(shown),
        key=key,
        links={"Organization": link(organization_ids.head(shown))},
        hide_index=True,
        column_config=column_config,
    )
    if len(table) > shown:
        st.caption(f"The {shown} {which} of {of}; the CSV has all of them.")
    what, file_name, filters = csv
    ui.csv_download(
        key,
        filters=filters,
        complete=table if len(table) <= shown else None,
        read_all=lambda: (table, None),
        file_name=file_name,
        prepare_label=f"Prepare {what} CSV",
        label=f"Download {what} CSV",
    )
