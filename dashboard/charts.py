"""Plotly figures, each built from a DataFrame by a small function (no Streamlit here),
so they can be tested without a browser. An empty frame gives a figure that says so.

Plotly draws a subset of HTML in trace names, tick labels and hover text, so every name
that comes from the data (organizations, users, emails, types) goes through
:func:`dashboard.text.plotly_text` and is shown as typed."""

from __future__ import annotations

import calendar
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import pandas as pd
import plotly.graph_objects as go

from dashboard.text import plotly_text, plotly_texts
from queries.words import counted

HEIGHT: Final = 340
GRAIN_LABEL: Final = {"day": "Day", "week": "Week (from Monday)", "month": "Month"}
# One colour per generation type, in every chart.
TYPE_COLORS: Final = {
    "chat": "#2563eb",
    "image": "#16a34a",
    "image_hd": "#84cc16",
    "voice": "#f59e0b",
    "video": "#dc2626",
}
# Text on the charts (tick labels, axis titles, legends, chart titles) and the background
# they are drawn on, set here rather than left to the theme: Streamlit's theme draws tick
# labels in a grey of 3.7:1 on white. This slate is 10.3:1 (WCAG AA asks 4.5:1); the
# background is the app theme's (.streamlit/config.toml, cli/server.py).
TEXT: Final = "#374151"
BACKGROUND: Final = "#ffffff"
# Weekly buckets start on Monday: their ticks are the buckets' own days, at most this many.
MAX_WEEK_TICKS: Final = 10
GRANTED: Final = "#16a34a"
DEDUCTED: Final = "#f59e0b"
CONSUMED: Final = "#2563eb"
PREVIOUS: Final = "#6b7280"  # the previous period's dashed line, behind no type colour


# Every chart's layout is one plain dict, built from these and handed to ``go.Figure``
# with the traces in one go: Plotly validates a nested dict once, where each
# ``update_layout``/``update_xaxes`` call parsed its "magic underscore" paths and ran
# the relayout machinery again (about 25 ms of a chart's 30-60 ms in cProfile).
_TEXT_FONT: Final = {"color": TEXT}
_AXIS_TEXT: Final = {"tickfont": _TEXT_FONT}
_LEGEND: Final = {
    "orientation": "h",
    "yanchor": "bottom",
    "y": 1.02,
    "x": 0,
    "traceorder": "normal",  # stacked bars otherwise list their legend backwards
    "font": _TEXT_FONT,
}
_MARGIN: Final = {"l": 8, "r": 8, "t": 72, "b": 8}  # the title, then the legend


# A trace as a plain dict ("type" and its properties): go.Figure validates it once,
# where a go.Bar passed to it was validated when built and then rebuilt from its
# properties and validated again.
Trace = dict[str, object]


def _axis(title: str | None, **options: object) -> dict[str, object]:
    """An axis whose tick labels and title are in :data:`TEXT`."""
    return {**_AXIS_TEXT, "title": {"text": title, "font": _TEXT_FONT}, **options}


def _text_layout(title: str) -> dict[str, object]:
    """The chart's title (its accessible name: what it shows) and every text in
    :data:`TEXT` on :data:`BACKGROUND`."""
    return {
        "title": {"text": title, "x": 0, "xanchor": "left", "font": {"size": 15, "color": TEXT}},
        "font": _TEXT_FONT,
        "paper_bgcolor": BACKGROUND,
        "plot_bgcolor": BACKGROUND,
        "legend": {"font": _TEXT_FONT},
    }


def _figure(
    traces: Sequence[Trace],
    *,
    title: str,
    y_title: str,
    x_title: str | None = None,
    height: int = HEIGHT,
    xaxis: Mapping[str, object] | None = None,
    yaxis: Mapping[str, object] | None = None,
    **layout: object,
) -> go.Figure:
    """A chart's figure: its traces and the shared layout (height, margins, a legend
    above the plot, hover for the whole bucket, the text colours), with ``xaxis``,
    ``yaxis`` and ``layout`` added to it, validated once."""
    return go.Figure(
        data=list(traces),
        layout={
            **_text_layout(title),
            "height": height,
            "margin": _MARGIN,
            "legend": _LEGEND,
            "hovermode": "x unified",
            "xaxis": _axis(x_title, **(xaxis or {})),
            "yaxis": _axis(y_title, **(yaxis or {})),
            **layout,
        },
    )


def empty(message: str, *, title: str) -> go.Figure:
    """A blank figure, titled as the chart it stands for, that says why there is
    nothing to draw."""
    return go.Figure(
        layout={
            **_text_layout(title),
            "annotations": [
                {"text": message, "showarrow": False, "font": {"size": 14}, "x": 0.5, "y": 0.5}
            ],
            "xaxis": {"visible": False, **_AXIS_TEXT, "title": {"font": _TEXT_FONT}},
            "yaxis": {"visible": False, **_AXIS_TEXT, "title": {"font": _TEXT_FONT}},
            "height": HEIGHT // 2,
            "margin": {"l": 8, "r": 8, "t": 40, "b": 8},
        }
    )


def _week_ticks(buckets: pd.Series) -> dict[str, object]:
    """The x axis's ticks on the weekly buckets' own days (Mondays), every k-th week so
    that there are at most ``MAX_WEEK_TICKS``; plotly's own date ticks fall on Sundays."""
    weeks = sorted(pd.to_datetime(pd.Series(buckets)).drop_duplicates())
    step = max(1, -(-len(weeks) // MAX_WEEK_TICKS))
    shown = weeks[::step]
    return {"tickmode": "array", "tickvals": shown, "ticktext": [f"{w:%d %b}" for w in shown]}


SHARE_SCALES: Final = (1.0, 2.0, 5.0, 10.0, 20.0, 25.0, 50.0, 100.0)


def share_scale(shares: pd.Series) -> float:
    """Where a share bar (percent) is full: the first of :data:`SHARE_SCALES` that holds
    the largest share shown. Drawn to 100 %, shares of a few percent (most
    organizations') were bars of a pixel or two; to the largest shown, they show."""
    largest = float(shares.max()) if len(shares) else 0.0
    largest = largest if math.isfinite(largest) else 100.0
    return next((scale for scale in SHARE_SCALES if largest <= scale), 100.0)


def bucket_coverage(
    buckets: pd.Series,
    *,
    granularity: str,
    start: dt.date,
    end: dt.date,
    today: dt.date | None = None,
) -> pd.DataFrame:
    """How much of each bucket (its first day; weeks from Monday) a period covers.

    Columns: days (of the bucket in [start, end]), of (days in the bucket), unfinished
    (the bucket holds ``today``, which is not over), partial (cut by the period or
    unfinished: a short bar that is not a quiet week or month), note (for hover text
    and captions, "" for a whole bucket).
    """
    rows = []
    for first in (b.date() for b in pd.to_datetime(buckets)):
        if granularity == "month":
            of = calendar.monthrange(first.year, first.month)[1]
        else:
            of = 7 if granularity == "week" else 1
        last = first + dt.timedelta(days=of - 1)
        days = max(0, (min(last, end) - max(first, start)).days + 1)
        unfinished = today is not None and first <= today <= last and today <= end
        notes = []
        if days < of:
            notes.append(f"{days} of {counted(of, 'day')} in the period")
        if unfinished:
            notes.append("today is not over")
        rows.append(
            (days, of, unfinished, bool(notes), "partial: " + ", ".join(notes) if notes else "")
        )
    return pd.DataFrame(rows, columns=["days", "of", "unfinished", "partial", "note"]).astype(
        {"days": "int64", "of": "int64", "unfinished": "bool", "partial": "bool", "note": "str"}
    )


def partial_caption(coverage: pd.DataFrame, buckets: pd.Series, granularity: str) -> str | None:
    """A sentence naming the partial buckets of a chart (hatched), or None."""
    unit = {"day": "day", "week": "week", "month": "month"}.get(granularity, "bucket")
    parts = [
        f"{first:%d %b %Y} ({note.removeprefix('partial: ')})"
        for first, note, partial in zip(
            pd.to_datetime(buckets), coverage["note"], coverage["partial"], strict=True
        )
        if partial
    ]
    if not parts:
        return None
    return f"Hatched: a partial {unit}, so a shorter bar: " + "; ".join(parts) + "."


@dataclass(frozen=True, slots=True)
class PreviousPeriod:
    """The span a timeline is compared with, and how its buckets lie under the current
    ones: shifted by ``shift_days`` (days, weeks), or by position (months)."""

    start: dt.date
    end: dt.date
    shift_days: int
    by_position: bool

    @property
    def label(self) -> str:
        """The legend's name: "previous period (02 Oct 2026 – 31 Oct 2026)"."""
        return f"previous period ({self.start:%d %b %Y} – {self.end:%d %b %Y})"


def previous_period(start: dt.date, end: dt.date, granularity: str) -> PreviousPeriod:
    """The span of as many days just before [start, end], drawn on the current dates.

    Days: the days just before, each under the day ``days`` later. Weeks: shifted by
    whole weeks (the period's length rounded up to 7 days), so both spans have the same
    weekdays and the same Monday-to-Sunday buckets, each week under the week it precedes
    (up to 6 days lie between the spans). Months have different lengths, so months are
    aligned by position: the previous span's first month under this one's first."""
    days = (end - start).days + 1
    shift = 7 * -(-days // 7) if granularity == "week" else days
    return PreviousPeriod(
        start=start - dt.timedelta(days=shift),
        end=end - dt.timedelta(days=shift),
        shift_days=shift,
        by_position=granularity == "month",
    )


def previous_caption(period: PreviousPeriod, granularity: str) -> str:
    """What the dashed line is and how it is placed, for the caption under the chart."""
    days = (period.end - period.start).days + 1
    what = f"Dashed: the {period.label}, {counted(days, 'day')}, drawn on this period's dates"
    if granularity == "month":
        return (
            f"{what}: months are aligned by position (its first month over this "
            "period's first, and so on), since months differ in length. Hover for its dates."
        )
    if granularity == "week" and period.shift_days != days:
        return (
            f"{what}, {counted(period.shift_days // 7, 'week')} earlier so that its weeks "
            "also start on Monday. Hover for its dates."
        )
    return f"{what}, {counted(period.shift_days, 'day')} earlier. Hover for its dates."


def _bucket_name(bucket: pd.Timestamp, granularity: str) -> str:
    if granularity == "month":
        return f"{bucket:%b %Y}"
    if granularity == "week":
        return f"week of {bucket:%a %d %b %Y}"
    return f"{bucket:%a %d %b %Y}"


def previous_trace(
    previous: pd.DataFrame,
    *,
    metric: Literal["generations", "credits"],
    period: PreviousPeriod,
    granularity: str,
    buckets: pd.Series,
) -> Trace:
    """The previous period's totals per bucket (all types) as a dashed line on the
    current ``buckets``; its hover names the previous bucket it is.

    ``previous``: bucket, [type,] generations, credits (as the current timeline)."""
    totals = previous.groupby("bucket")[metric].sum().sort_index()
    was = pd.to_datetime(pd.Series(totals.index))
    if period.by_position:
        now = sorted(pd.to_datetime(pd.Series(buckets)).drop_duplicates())
        n = min(len(now), len(was))
        x: list[pd.Timestamp] = list(now[:n])
        was, values = was[:n], totals.iloc[:n]
    else:
        x = list(was + pd.Timedelta(days=period.shift_days))
        values = totals
    return dict(
        type="scatter",
        name=period.label,
        x=x,
        y=values.tolist(),
        mode="lines+markers",
        line={"color": PREVIOUS, "dash": "dash", "width": 2},
        marker={"color": PREVIOUS, "size": 5},
        customdata=[_bucket_name(b, granularity) for b in was],
        hovertemplate="Previous period, %{customdata}: %{y:,}<extra></extra>",
    )


def timeline_by_type(
    df: pd.DataFrame,
    *,
    metric: Literal["generations", "credits"],
    granularity: str = "day",
    start: dt.date | None = None,
    end: dt.date | None = None,
    today: dt.date | None = None,
    previous: pd.DataFrame | None = None,
    period: PreviousPeriod | None = None,
    title: str | None = None,
) -> go.Figure:
    """Stacked bars of ``metric`` per bucket, one colour per type.

    With the period's ``start`` and ``end`` (and ``today`` in the zone the buckets are
    in), a bucket the period cuts (a first or last week or month) or today's unfinished
    one is hatched and its hover says so (:func:`bucket_coverage`). With ``previous``
    (the same read over ``period``, :func:`previous_period`), the previous period's
    totals are a dashed line over the bars (:func:`previous_trace`).

    ``df``: bucket, type, generations, credits (as ``timelines.generation_timeline``).
    """
    title = title or f"{metric.capitalize()} per {granularity} by generation type"
    compared = previous is not None and period is not None
    before = int(previous[metric].sum()) if previous is not None and compared else 0
    if (df.empty or int(df[metric].sum()) == 0) and before == 0:
        also = " or in the previous period" if compared else ""
        return empty(f"No {metric} in this period{also}.", title=title)
    notes: dict[pd.Timestamp, str] = {}
    if start is not None and end is not None:
        buckets = pd.Series(pd.to_datetime(df["bucket"]).unique())
        cover = bucket_coverage(buckets, granularity=granularity, start=start, end=end, today=today)
        notes = {b: n for b, n in zip(buckets, cover["note"], strict=True) if n}
    traces: list[Trace] = []
    for type_, rows in df.groupby("type", sort=True):
        when = pd.to_datetime(rows["bucket"])
        traces.append(
            dict(
                type="bar",
                name=plotly_text(type_),
                x=rows["bucket"],
                y=rows[metric],
                marker={
                    "color": TYPE_COLORS.get(str(type_), "#6b7280"),
                    "pattern": {
                        "shape": ["/" if b in notes else "" for b in when],
                        "fillmode": "overlay",
                    },
                },
                customdata=[f" ({notes[b]})" if b in notes else "" for b in when],
                hovertemplate=f"{plotly_text(type_)}: %{{y:,}}%{{customdata}}<extra></extra>",
            )
        )
    if previous is not None and period is not None:
        traces.append(
            previous_trace(
                previous,
                metric=metric,
                period=period,
                granularity=granularity,
                buckets=df["bucket"],
            )
        )
    return _figure(
        traces,
        title=title,
        y_title=metric.capitalize(),
        x_title=GRAIN_LABEL.get(granularity),
        xaxis=_week_ticks(df["bucket"]) if granularity == "week" else None,
        barmode="stack",
    )


def user_label(name: object, user_id: int) -> str:
    """A user as a chart shows them: the name and the id, so two users with the same
    name stay two ("Ana Lima (#12)"). Plain text: pass it through ``plotly_text``."""
    return f"{name} (#{int(user_id)})"


def top_users(df: pd.DataFrame, *, top: int = 10) -> go.Figure:
    """Horizontal bars of credits per user, one bar per user id, the most credits on top
    (ties: more generations, then the lower id, as ``timelines.top_users`` orders them).

    Bars are keyed by "Name (#id)": plotly puts bars with the same category label on
    one row, so keyed by name two users called "Ana" became one bar, and the axis kept
    the order in which labels first appeared rather than the order of credits.

    ``df``: user_id, name, email, generations, credits (as ``timelines.top_users``).
    """
    title = "Top users by credits consumed"
    if df.empty:
        return empty("No user made a generation in this period.", title=title)
    ranked = df.sort_values(
        ["credits", "generations", "user_id"], ascending=[False, False, True], kind="stable"
    ).head(top)
    shown = ranked.iloc[::-1]  # plotly draws the first category at the bottom
    labels = plotly_texts(
        user_label(name, user_id)
        for name, user_id in zip(shown["name"], shown["user_id"], strict=True)
    )
    bars: Trace = dict(
        type="bar",
        x=shown["credits"],
        y=labels,
        orientation="h",
        marker={"color": CONSUMED},
        customdata=list(
            zip(plotly_texts(shown["email"]), shown["generations"].tolist(), strict=True)
        ),
        hovertemplate="%{y} (%{customdata[0]}): %{x:,} credits, "
        "%{customdata[1]:,} generations<extra></extra>",
    )
    return _figure(
        [bars],
        title=title,
        y_title="",
        x_title="Credits",
        yaxis={"type": "category", "categoryorder": "array", "categoryarray": labels},
        hovermode="closest",
    )


def usage_ranking(df: pd.DataFrame, *, top: int = 15) -> go.Figure:
    """Grouped bars of credits consumed and granted for the ``top`` consumers.

    ``df``: name, credits_consumed, credits_granted (as ``usage.all_orgs_usage``).
    """
    title = f"Credits consumed and granted by the {top} largest consumers"
    if df.empty or int(df["credits_consumed"].sum() + df["credits_granted"].sum()) == 0:
        return empty("No credits were consumed or granted in this period.", title=title)
    shown = df.nlargest(top, "credits_consumed")
    names = plotly_texts(shown["name"])
    return _figure(
        [
            dict(
                type="bar",
                name="Consumed",
                x=names,
                y=shown["credits_consumed"],
                marker={"color": CONSUMED},
            ),
            dict(
                type="bar",
                name="Granted",
                x=names,
                y=shown["credits_granted"],
                marker={"color": GRANTED},
            ),
        ],
        title=title,
        y_title="Credits",
        barmode="group",
    )


def month_coverage(months: pd.Series, start: dt.date, end: dt.date) -> pd.DataFrame:
    """How many days of each month lie in [start, end].

    ``months``: first days of months. Columns: days (in the period), of (in the month),
    partial (bool: the period cuts the month).
    """
    rows = []
    for month in pd.to_datetime(months):
        first = month.date().replace(day=1)
        of = calendar.monthrange(first.year, first.month)[1]
        last = first.replace(day=of)
        days = max(0, (min(last, end) - max(first, start)).days + 1)
        rows.append((days, of, days < of))
    return pd.DataFrame(rows, columns=["days", "of", "partial"]).astype(
        {"days": "int64", "of": "int64", "partial": "bool"}
    )


def monthly_trend(
    df: pd.DataFrame, *, start: dt.date | None = None, end: dt.date | None = None
) -> go.Figure:
    """Credits consumed and granted per month, all organizations.

    With the period's ``start`` and ``end``, a month the period cuts is hatched and its
    label says how many of its days count ("5 of 31 days"), so a short bar is not read
    as a quiet month.

    ``df``: month, credits_consumed, credits_granted (as ``usage.all_orgs_monthly_credits``).
    """
    title = "Credits consumed and granted per month, all organizations"
    if df.empty or int(df["credits_consumed"].sum() + df["credits_granted"].sum()) == 0:
        return empty("No credits were consumed or granted in these months.", title=title)
    months = pd.to_datetime(df["month"]).reset_index(drop=True)
    labels = [f"{m:%b %Y}" for m in months]
    hatch = [""] * len(months)
    if start is not None and end is not None:
        cover = month_coverage(months, start, end)
        for i, (days, of, partial) in enumerate(
            zip(cover["days"], cover["of"], cover["partial"], strict=True)
        ):
            if partial:
                labels[i] += f"<br>partial: {days} of {counted(of, 'day')}"
                hatch[i] = "/"
    return _figure(
        [
            dict(
                type="bar",
                name=name,
                x=months,
                y=df[column],
                marker={"color": color, "pattern": {"shape": hatch, "fillmode": "overlay"}},
                hovertemplate=f"{name}: %{{y:,}}<extra></extra>",
            )
            for name, column, color in (
                ("Consumed", "credits_consumed", CONSUMED),
                ("Granted", "credits_granted", GRANTED),
            )
        ],
        title=title,
        y_title="Credits",
        x_title="Month",
        xaxis={"tickmode": "array", "tickvals": months, "ticktext": labels},
        barmode="group",
    )


def granted_vs_consumed(
    df: pd.DataFrame,
    *,
    granularity: str = "month",
    start: dt.date | None = None,
    end: dt.date | None = None,
    today: dt.date | None = None,
) -> go.Figure:
    """Running totals of credits granted, deducted and consumed for one organization,
    from the first bucket of the period.

    One axis for all three, so they compare directly: a monthly grant is one step up
    instead of a bar that dwarfs each day's consumption, and the gap between Granted
    and Consumed at the right edge is what the period added to (or took from) the
    balance, before deductions. Hovering shows each bucket's own amount as well. With
    the period's ``start`` and ``end`` (and ``today``), a partial bucket (cut by the
    period, or today's, not over) has an open marker and says so on hover.

    ``df``: bucket, credits_granted, credits_deducted, credits_consumed (per bucket).
    """
    # After a grant and its reversal, Granted and Deducted run through the same values:
    # each line has its own width, dash and marker, and the thin dashed Deducted is drawn
    # over the wide Granted, so both stay visible where they coincide.
    measures = (
        ("Granted", "credits_granted", GRANTED, {"width": 6}, "circle", 9),
        ("Deducted", "credits_deducted", DEDUCTED, {"width": 2, "dash": "dash"}, "x", 7),
        ("Consumed", "credits_consumed", CONSUMED, {"width": 3}, "circle", 5),
    )
    total = df[[m[1] for m in measures]].to_numpy().sum()
    title = f"Credits granted, deducted and consumed per {granularity}, running totals"
    if df.empty or int(total) == 0:
        return empty("No credits moved in this period.", title=title)
    unit = {"day": "that day", "week": "that week", "month": "that month"}.get(
        granularity, "in the bucket"
    )
    notes = [""] * len(df)
    if start is not None and end is not None:
        cover = bucket_coverage(
            df["bucket"], granularity=granularity, start=start, end=end, today=today
        )
        notes = [f"; {n}" if n else "" for n in cover["note"]]
    return _figure(
        [
            dict(
                type="scatter",
                name=name,
                x=df["bucket"],
                y=df[column].cumsum(),
                customdata=df[column],
                text=notes,
                mode="lines+markers",
                line={"color": color, **line},
                marker={
                    "size": size,
                    "symbol": [f"{symbol}-open" if n else symbol for n in notes],
                },
                hovertemplate=f"{name}: %{{y:,}} so far (%{{customdata:,}} {unit}%{{text}})"
                "<extra></extra>",
            )
            for name, column, color, line, symbol, size in measures
        ],
        title=title,
        y_title="Credits since the start of the period",
        x_title=GRAIN_LABEL.get(granularity),
        xaxis=_week_ticks(df["bucket"]) if granularity == "week" else None,
        yaxis={"rangemode": "tozero"},
    )


# The relative quota history's limit: a dashed line across the plot at 100 %, labelled
# at its right end (what ``add_hline(y=1.0, annotation_text="limit")`` adds).
LIMIT_LINE: Final = {
    "type": "line",
    "xref": "x domain",
    "x0": 0,
    "x1": 1,
    "yref": "y",
    "y0": 1.0,
    "y1": 1.0,
    "line": {"color": "#b91c1c", "dash": "dash"},
}
LIMIT_LABEL: Final = {
    "text": "limit",
    "showarrow": False,
    "xref": "x domain",
    "x": 1,
    "xanchor": "right",
    "yref": "y",
    "y": 1.0,
    "yanchor": "bottom",
}


def quota_history(df: pd.DataFrame, *, relative: bool = False) -> go.Figure:
    """Daily use against the daily limit, one colour per type.

    Absolute (``relative=False``): use as a solid line, the limit dashed. Relative: use
    as a share of each day's limit, with the limit as one dashed line at 100 %, so types
    with very different limits can be compared.

    ``df``: date, type, used, daily_limit, utilization (as ``quotas.quota_history``).
    """
    title = (
        "Daily use as a share of the daily limit, by type"
        if relative
        else "Daily use against the daily limit, by type"
    )
    if df.empty:
        return empty("No generations in this period, so there is no quota history.", title=title)
    traces: list[Trace] = []
    for type_, rows in df.groupby("type", sort=True):
        color = TYPE_COLORS.get(str(type_), "#6b7280")
        label = plotly_text(type_)
        if relative:
            share = rows["utilization"].where(rows["used"] > 0, 0.0)
            traces.append(
                dict(
                    type="scatter",
                    x=rows["date"],
                    y=share,
                    name=label,
                    mode="lines+markers",
                    line={"color": color},
                    hovertemplate=f"{label}: %{{y:.0%}} of the limit<extra></extra>",
                )
            )
            continue
        traces.append(
            dict(
                type="scatter",
                x=rows["date"],
                y=rows["used"],
                name=f"{label} used",
                mode="lines+markers",
                line={"color": color},
            )
        )
        traces.append(
            dict(
                type="scatter",
                x=rows["date"],
                y=rows["daily_limit"].astype("float64"),
                name=f"{label} limit",
                mode="lines",
                line={"color": color, "dash": "dash", "shape": "hv"},
                connectgaps=False,
            )
        )
    if relative:
        return _figure(
            traces,
            title=title,
            y_title="Share of the daily limit",
            x_title="Day (organization's own)",
            yaxis={"tickformat": ".0%"},
            shapes=[LIMIT_LINE],
            annotations=[LIMIT_LABEL],
        )
    return _figure(
        traces, title=title, y_title="Generations per day", x_title="Day (organization's own)"
    )


def utilization_heatmap(df: pd.DataFrame, *, top: int = 25) -> go.Figure:
    """Today's utilization (used / limit) of the ``top`` fullest organizations, per type.

    ``df``: name, type, utilization (as ``quotas.all_orgs_quota_utilization``).
    """
    title = "Today's use of each daily limit, the fullest organizations by type"
    if df.empty:
        return empty("No organization has used anything today.", title=title)
    finite = df.assign(utilization=df["utilization"].clip(upper=2.0))
    order = finite.groupby("name")["utilization"].max().nlargest(top).index
    grid = (
        finite[finite["name"].isin(order)]
        .pivot_table(index="name", columns="type", values="utilization", aggfunc="max")
        .reindex(order)
    )
    heat: Trace = dict(
        type="heatmap",
        z=grid.to_numpy(),
        x=plotly_texts(grid.columns),
        y=plotly_texts(grid.index),
        zmin=0,
        zmax=1.2,
        colorscale=[[0, "#e0f2fe"], [0.66, "#fde68a"], [0.83, "#f97316"], [1, "#b91c1c"]],
        colorbar={
            "title": {"text": "used / limit", "font": {"color": TEXT}},
            "tickformat": ".0%",
            "tickfont": {"color": TEXT},
        },
        hovertemplate="%{y} · %{x}: %{z:.0%}<extra></extra>",
    )
    return _figure(
        [heat],
        title=title,
        y_title="",
        x_title="Type",
        height=max(HEIGHT, 22 * len(grid) + 80),
        yaxis={"autorange": "reversed"},
        hovermode="closest",
    )
