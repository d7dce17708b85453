"""Figures from DataFrames, checked without a browser."""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest

from cli.server import SETTINGS
from dashboard import charts

DAYS = pd.to_datetime(["2026-11-01", "2026-11-02"])


def annotation(fig: object) -> str:
    return str(fig.layout.annotations[0].text)  # type: ignore[attr-defined]


def test_a_timeline_stacks_one_trace_per_type() -> None:
    df = pd.DataFrame(
        {
            "bucket": list(DAYS) * 2,
            "type": ["chat", "chat", "video", "video"],
            "generations": [3, 4, 1, 0],
            "credits": [3, 4, 40, 0],
        }
    )
    fig = charts.timeline_by_type(df, metric="credits", granularity="day")
    assert [t.name for t in fig.data] == ["chat", "video"]
    assert fig.layout.barmode == "stack"
    assert list(fig.data[1].y) == [40, 0]
    assert fig.data[0].marker.color == charts.TYPE_COLORS["chat"]
    assert fig.layout.xaxis.title.text == "Day"


def test_partial_first_and_last_weeks_and_todays_bucket_are_hatched() -> None:
    # 4 - 26 Nov 2026 by week (from Monday): the week of 2 Nov has 5 of its days in the
    # period, the week of 23 Nov holds today (25 Nov) and 4 of its days in the period.
    weeks = pd.to_datetime(["2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23"])
    df = pd.DataFrame(
        {
            "bucket": list(weeks) * 2,
            "type": ["chat"] * 4 + ["video"] * 4,
            "generations": 1,
            "credits": [5, 9, 9, 3, 1, 1, 1, 1],
        }
    )
    start, end, today = dt.date(2026, 11, 4), dt.date(2026, 11, 26), dt.date(2026, 11, 25)
    cover = charts.bucket_coverage(
        pd.Series(weeks), granularity="week", start=start, end=end, today=today
    )
    assert list(cover["days"]) == [5, 7, 7, 4]
    assert list(cover["partial"]) == [True, False, False, True]
    assert list(cover["unfinished"]) == [False, False, False, True]
    assert cover["note"][3] == "partial: 4 of 7 days in the period, today is not over"
    fig = charts.timeline_by_type(
        df, metric="credits", granularity="week", start=start, end=end, today=today
    )
    for bars in fig.data:
        assert list(bars.marker.pattern.shape) == ["/", "", "", "/"]
        assert "partial: 5 of 7 days" in bars.customdata[0] and bars.customdata[1] == ""
    caption = charts.partial_caption(cover, pd.Series(weeks), "week")
    assert caption is not None and "02 Nov 2026 (5 of 7 days in the period)" in caption
    assert "23 Nov 2026 (4 of 7 days in the period, today is not over)" in caption

    # By day, only today is partial; a whole past period has no partial bucket.
    days = pd.Series(pd.date_range("2026-11-20", "2026-11-25"))
    by_day = charts.bucket_coverage(
        days, granularity="day", start=dt.date(2026, 11, 20), end=today, today=today
    )
    assert list(by_day["partial"]) == [False] * 5 + [True]
    months = pd.Series(pd.to_datetime(["2026-09-01", "2026-10-01"]))
    whole = charts.bucket_coverage(
        months,
        granularity="month",
        start=dt.date(2026, 9, 1),
        end=dt.date(2026, 10, 31),
        today=today,
    )
    assert not whole["partial"].any() and charts.partial_caption(whole, months, "month") is None


def test_an_empty_period_says_so_instead_of_an_empty_axis() -> None:
    zeros = pd.DataFrame({"bucket": DAYS, "type": ["chat"] * 2, "generations": 0, "credits": 0})
    assert "No credits" in annotation(charts.timeline_by_type(zeros, metric="credits"))
    assert "No user" in annotation(
        charts.top_users(
            pd.DataFrame(columns=["user_id", "name", "email", "generations", "credits"])
        )
    )
    assert "no quota history" in annotation(
        charts.quota_history(pd.DataFrame(columns=["date", "type", "used", "daily_limit"]))
    )
    assert "No organization" in annotation(
        charts.utilization_heatmap(pd.DataFrame(columns=["name", "type", "utilization"]))
    )


def test_top_users_puts_the_largest_on_top() -> None:
    df = pd.DataFrame(
        {
            "user_id": [1, 2, 3],
            "name": ["A", "B", "C"],
            "email": ["a@x", "b@x", "c@x"],
            "generations": [1, 2, 3],
            "credits": [10, 30, 20],
        }
    )
    fig = charts.top_users(df, top=2)
    assert list(fig.data[0].y) == ["C (#3)", "B (#2)"]  # plotly draws the last row on top
    assert list(fig.layout.yaxis.categoryarray) == ["C (#3)", "B (#2)"]


def test_same_name_users_get_separate_bars_ordered_by_credits() -> None:
    # Two different people called "Ana Lima", listed out of order: each keeps a bar.
    df = pd.DataFrame(
        {
            "user_id": [7, 3, 9, 4],
            "name": ["Ana Lima", "Bo", "Ana Lima", "Cy"],
            "email": ["ana@a.example", "bo@x", "ana@b.example", "cy@x"],
            "generations": [5, 1, 2, 2],
            "credits": [40, 10, 70, 10],
        }
    )
    fig = charts.top_users(df)
    (bars,) = fig.data
    # Bottom to top: plotly draws the first category at the bottom, so the most on top.
    assert list(bars.y) == ["Bo (#3)", "Cy (#4)", "Ana Lima (#7)", "Ana Lima (#9)"]
    assert list(bars.x) == [10, 10, 40, 70]
    assert len(set(bars.y)) == 4  # one bar per user id, none merged
    assert fig.layout.yaxis.categoryorder == "array"
    assert list(fig.layout.yaxis.categoryarray) == list(bars.y)
    # Same credits: more generations first (Cy above Bo), as the query orders them.
    assert [c[0] for c in bars.customdata] == ["bo@x", "cy@x", "ana@a.example", "ana@b.example"]


def test_top_users_shows_ten_by_default_as_the_overview_table_does() -> None:
    df = pd.DataFrame(
        {
            "user_id": range(25),
            "name": [f"U{i}" for i in range(25)],
            "email": [f"u{i}@x" for i in range(25)],
            "generations": range(25),
            "credits": range(25),
        }
    )
    assert len(charts.top_users(df).data[0].y) == 10


def test_usage_ranking_compares_consumed_with_granted() -> None:
    df = pd.DataFrame({"name": ["A", "B"], "credits_consumed": [5, 9], "credits_granted": [100, 0]})
    fig = charts.usage_ranking(df)
    assert [t.name for t in fig.data] == ["Consumed", "Granted"]
    assert list(fig.data[0].x) == ["B", "A"]


def test_monthly_trend_has_a_bar_per_measure() -> None:
    months = pd.DataFrame(
        {
            "month": pd.to_datetime(["2026-10-01", "2026-11-01"]),
            "credits_consumed": [10, 20],
            "credits_granted": [50, 0],
        }
    )
    fig = charts.monthly_trend(months)
    assert [t.name for t in fig.data] == ["Consumed", "Granted"]
    assert list(fig.layout.xaxis.ticktext) == ["Oct 2026", "Nov 2026"]


def test_monthly_trend_marks_the_months_the_period_cuts_as_partial() -> None:
    months = pd.DataFrame(
        {
            "month": pd.to_datetime(["2026-10-01", "2026-11-01", "2026-12-01"]),
            "credits_consumed": [10, 200, 30],
            "credits_granted": [0, 100, 0],
        }
    )
    # 27 Oct - 3 Dec: five days of October, all of November, three days of December.
    fig = charts.monthly_trend(months, start=dt.date(2026, 10, 27), end=dt.date(2026, 12, 3))
    labels = list(fig.layout.xaxis.ticktext)
    assert labels[0].startswith("Oct 2026") and "partial: 5 of 31 days" in labels[0]
    assert labels[1] == "Nov 2026"
    assert "partial: 3 of 31 days" in labels[2]
    for bars in fig.data:
        assert list(bars.marker.pattern.shape) == ["/", "", "/"]
    cover = charts.month_coverage(months["month"], dt.date(2026, 10, 27), dt.date(2026, 12, 3))
    assert list(cover["days"]) == [5, 30, 3] and list(cover["partial"]) == [True, False, True]


def test_granted_vs_consumed_draws_running_totals_on_one_scale() -> None:
    flow = pd.DataFrame(
        {
            "bucket": pd.to_datetime(["2026-11-01", "2026-11-02", "2026-11-03"]),
            "credits_granted": [6000, 0, 99],
            "credits_deducted": [0, 580, 0],
            "credits_consumed": [200, 300, 250],
        }
    )
    fig = charts.granted_vs_consumed(flow, granularity="day")
    assert [t.name for t in fig.data] == ["Granted", "Deducted", "Consumed"]
    granted, deducted, consumed = fig.data
    # A monthly grant is one step of the granted line, not a bar 30 times a day's use.
    assert list(granted.y) == [6000, 6000, 6099]
    assert list(deducted.y) == [0, 580, 580]
    assert list(consumed.y) == [200, 500, 750]
    assert list(consumed.customdata) == [200, 300, 250]  # each day's own amount on hover
    assert "that day" in consumed.hovertemplate
    assert all(t.yaxis in (None, "y") for t in fig.data)  # one axis: directly comparable
    assert fig.layout.xaxis.title.text == "Day"
    assert "No credits moved" in annotation(
        charts.granted_vs_consumed(
            flow.assign(credits_granted=0, credits_deducted=0, credits_consumed=0)
        )
    )


def test_granted_vs_consumed_marks_partial_months_with_open_markers() -> None:
    flow = pd.DataFrame(
        {
            "bucket": pd.to_datetime(["2026-09-01", "2026-10-01", "2026-11-01"]),
            "credits_granted": [100, 100, 100],
            "credits_deducted": [0, 0, 0],
            "credits_consumed": [10, 20, 30],
        }
    )
    fig = charts.granted_vs_consumed(
        flow,
        granularity="month",
        start=dt.date(2026, 9, 20),
        end=dt.date(2026, 11, 25),
        today=dt.date(2026, 11, 25),
    )
    for trace in fig.data:
        symbols = list(trace.marker.symbol)
        assert symbols[0].endswith("-open") and symbols[2].endswith("-open")
        assert not symbols[1].endswith("-open")
    consumed = fig.data[2]
    assert "11 of 30 days in the period" in consumed.text[0] and consumed.text[1] == ""
    assert "today is not over" in consumed.text[2]
    assert "%{text}" in consumed.hovertemplate


def test_granted_and_deducted_stay_visible_when_a_reversal_makes_them_equal() -> None:
    # A grant of 500 and its reversal: both running totals are 0, 500, 500.
    flow = pd.DataFrame(
        {
            "bucket": pd.to_datetime(["2026-11-01", "2026-11-02", "2026-11-03"]),
            "credits_granted": [0, 500, 0],
            "credits_deducted": [0, 500, 0],
            "credits_consumed": [10, 10, 10],
        }
    )
    granted, deducted, _ = charts.granted_vs_consumed(flow).data
    assert list(granted.y) == list(deducted.y)  # the same values ...
    # ... drawn differently: the wide solid line shows around the thin dashed one on top.
    assert granted.line.width > deducted.line.width
    assert deducted.line.dash == "dash" and granted.line.dash in (None, "solid")
    assert granted.marker.symbol != deducted.marker.symbol
    assert granted.marker.size > deducted.marker.size
    names = [t.name for t in charts.granted_vs_consumed(flow).data]
    assert names.index("Deducted") > names.index("Granted")  # later traces draw on top


def test_quota_history_draws_use_and_the_limit_for_each_type() -> None:
    df = pd.DataFrame(
        {
            "date": list(DAYS) * 2,
            "type": ["chat", "chat", "image", "image"],
            "used": [10, 0, 5, 6],
            "daily_limit": pd.array([100, None, 8, 8], dtype="Int64"),
        }
    )
    df["utilization"] = (df["used"] / df["daily_limit"]).astype("float64")
    fig = charts.quota_history(df)
    assert [t.name for t in fig.data] == ["chat used", "chat limit", "image used", "image limit"]
    assert fig.data[1].line.dash == "dash"
    assert math.isnan(fig.data[1].y[1])  # no row that day: a gap, not a zero limit
    shares = charts.quota_history(df, relative=True)
    assert [t.name for t in shares.data] == ["chat", "image"]
    assert list(shares.data[0].y) == [0.1, 0.0]  # a day without use is 0 %, not a gap
    assert list(shares.data[1].y) == [0.625, 0.75]


def test_the_heatmap_caps_unlimited_use_and_lists_the_fullest_first() -> None:
    df = pd.DataFrame(
        {
            "name": ["A", "B", "B"],
            "type": ["chat", "chat", "video"],
            "utilization": [0.2, math.inf, 0.5],
        }
    )
    fig = charts.utilization_heatmap(df)
    heat = fig.data[0]
    assert list(heat.y) == ["B", "A"]
    assert heat.z[0][0] == 2.0  # infinite (limit 0) is drawn as "far over"


HTML_NAME = '<b>x</b> <a href="http://127.0.0.1:9/">y</a> & <img src=z>'
SAFE_NAME = (
    '&lt;b&gt;x&lt;/b&gt; &lt;a href="http://127.0.0.1:9/"&gt;y&lt;/a&gt; &amp; &lt;img src=z&gt;'
)


def test_names_from_the_data_are_never_html_in_ticks_hover_text_or_legends() -> None:
    users = pd.DataFrame(
        {
            "user_id": [5],
            "name": [HTML_NAME],
            "email": ["<i>a</i>@example.com"],
            "generations": [2],
            "credits": [5],
        }
    )
    fig = charts.top_users(users)
    assert list(fig.data[0].y) == [f"{SAFE_NAME} (#5)"]  # tick labels and the hover's %{y}
    assert fig.data[0].customdata[0][0] == "&lt;i&gt;a&lt;/i&gt;@example.com"

    ranking = pd.DataFrame(
        {"name": [HTML_NAME, "plain"], "credits_consumed": [5, 3], "credits_granted": [1, 0]}
    )
    assert list(charts.usage_ranking(ranking).data[0].x) == [SAFE_NAME, "plain"]

    util = pd.DataFrame({"name": [HTML_NAME], "type": ["chat"], "utilization": [0.5]})
    assert list(charts.utilization_heatmap(util).data[0].y) == [SAFE_NAME]

    timeline = pd.DataFrame(
        {"bucket": DAYS, "type": ["<b>t</b>"] * 2, "generations": [1, 2], "credits": [1, 2]}
    )
    (trace,) = charts.timeline_by_type(timeline, metric="credits").data
    assert trace.name == "&lt;b&gt;t&lt;/b&gt;"  # the legend entry
    assert "<b>" not in trace.hovertemplate


# ------------------------------------------------- titles, contrast, weekly ticks

WEEKS = pd.to_datetime(["2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23"])


def every_figure() -> dict[str, go.Figure]:
    """Every chart the pages draw, with data and without."""
    timeline = pd.DataFrame(
        {"bucket": DAYS, "type": ["chat"] * 2, "generations": [1, 2], "credits": [1, 2]}
    )
    users = pd.DataFrame(
        {"user_id": [5], "name": ["Ana"], "email": ["a@x"], "generations": [2], "credits": [5]}
    )
    ranking = pd.DataFrame({"name": ["A"], "credits_consumed": [5], "credits_granted": [1]})
    months = pd.DataFrame(
        {"month": pd.to_datetime(["2026-11-01"]), "credits_consumed": [1], "credits_granted": [0]}
    )
    moved = pd.DataFrame(
        {"bucket": DAYS, "credits_granted": [5, 0], "credits_deducted": [0, 0],
         "credits_consumed": [1, 2]}
    )  # fmt: skip
    quota = pd.DataFrame(
        {"date": DAYS, "type": ["chat"] * 2, "used": [1, 2],
         "daily_limit": pd.array([4, 4], dtype="Int64"), "utilization": [0.25, 0.5]}
    )  # fmt: skip
    util = pd.DataFrame({"name": ["A"], "type": ["chat"], "utilization": [0.5]})
    figures = {
        "timeline": charts.timeline_by_type(timeline, metric="credits"),
        "top_users": charts.top_users(users),
        "usage_ranking": charts.usage_ranking(ranking),
        "monthly_trend": charts.monthly_trend(months),
        "granted_vs_consumed": charts.granted_vs_consumed(moved, granularity="day"),
        "quota_history": charts.quota_history(quota),
        "quota_shares": charts.quota_history(quota, relative=True),
        "heatmap": charts.utilization_heatmap(util),
    }
    figures |= {
        "empty timeline": charts.timeline_by_type(timeline.head(0), metric="generations"),
        "empty top_users": charts.top_users(users.head(0)),
        "empty usage_ranking": charts.usage_ranking(ranking.head(0)),
        "empty monthly_trend": charts.monthly_trend(months.head(0)),
        "empty granted_vs_consumed": charts.granted_vs_consumed(moved.head(0)),
        "empty quota_history": charts.quota_history(quota.head(0)),
        "empty heatmap": charts.utilization_heatmap(util.head(0)),
    }
    return figures


def test_every_chart_has_a_title_that_names_what_it_shows() -> None:
    # The title is the chart's accessible name (the SVG's text), also when it is empty.
    titles = {name: fig.layout.title.text for name, fig in every_figure().items()}
    assert all(titles.values()), titles
    assert titles["timeline"] == "Credits per day by generation type"
    assert titles["empty timeline"] == "Generations per day by generation type"
    assert titles["heatmap"] == titles["empty heatmap"]
    assert titles["quota_history"] != titles["quota_shares"]


def test_every_chart_keeps_its_axes_hover_and_legend_from_the_shared_layout() -> None:
    # Built in one go from a prebuilt layout (no update_layout calls): each chart still
    # has its own axis titles, hover mode, height and the legend above the plot.
    figures = every_figure()
    axes = {
        name: (fig.layout.xaxis.title.text, fig.layout.yaxis.title.text, fig.layout.hovermode)
        for name, fig in figures.items()
        if not name.startswith("empty")
    }
    assert axes == {
        "timeline": ("Day", "Credits", "x unified"),
        "top_users": ("Credits", "", "closest"),
        "usage_ranking": (None, "Credits", "x unified"),
        "monthly_trend": ("Month", "Credits", "x unified"),
        "granted_vs_consumed": ("Day", "Credits since the start of the period", "x unified"),
        "quota_history": ("Day (organization's own)", "Generations per day", "x unified"),
        "quota_shares": ("Day (organization's own)", "Share of the daily limit", "x unified"),
        "heatmap": ("Type", "", "closest"),
    }
    for name, fig in figures.items():
        layout = fig.layout
        assert (layout.title.x, layout.title.xanchor, layout.title.font.size) == (0, "left", 15)
        if name.startswith("empty"):
            assert layout.height == charts.HEIGHT // 2, name
            assert layout.xaxis.visible is False and layout.yaxis.visible is False, name
            continue
        assert layout.height == charts.HEIGHT, name
        assert (layout.margin.t, layout.legend.orientation, layout.legend.y) == (72, "h", 1.02)
        assert layout.legend.traceorder == "normal", name
    assert figures["timeline"].layout.barmode == "stack"
    assert figures["usage_ranking"].layout.barmode == "group"
    assert figures["top_users"].layout.yaxis.categoryarray == ("Ana (#5)",)
    assert figures["heatmap"].layout.yaxis.autorange == "reversed"
    assert figures["granted_vs_consumed"].layout.yaxis.rangemode == "tozero"
    # Each chart's own traces keep their hover text and colours.
    [bar] = figures["top_users"].data
    assert bar.marker.color == charts.CONSUMED
    assert bar.hovertemplate.startswith("%{y} (%{customdata[0]}): %{x:,} credits")


def test_the_share_of_the_limit_has_a_labelled_dashed_line_at_100_percent() -> None:
    quota = pd.DataFrame(
        {"date": DAYS, "type": ["chat"] * 2, "used": [1, 2],
         "daily_limit": pd.array([4, 4], dtype="Int64"), "utilization": [0.25, 0.5]}
    )  # fmt: skip
    shares = charts.quota_history(quota, relative=True)
    [line] = shares.layout.shapes
    assert (line.type, line.xref, line.x0, line.x1, line.y0, line.y1) == (
        "line", "x domain", 0, 1, 1.0, 1.0
    )  # fmt: skip
    assert (line.line.color, line.line.dash) == ("#b91c1c", "dash")
    [label] = shares.layout.annotations
    assert (label.text, label.x, label.xanchor, label.y, label.yanchor) == (
        "limit", 1, "right", 1.0, "bottom"
    )  # fmt: skip
    assert shares.layout.yaxis.tickformat == ".0%"
    assert not charts.quota_history(quota).layout.shapes  # counts: each type's own limit


def test_a_chart_can_be_drawn_many_times_without_sharing_its_layout() -> None:
    # The prebuilt layout pieces are shared by every figure: building one must not
    # change them for the next.
    first = charts.top_users(
        pd.DataFrame(
            {"user_id": [1], "name": ["A"], "email": ["a@x"], "generations": [1], "credits": [1]}
        )
    )
    first.update_layout(legend_orientation="v", xaxis_title_text="changed")
    again = every_figure()["top_users"]
    assert again.layout.legend.orientation == "h"
    assert again.layout.xaxis.title.text == "Credits"


def luminance(colour: str) -> float:
    """WCAG 2 relative luminance of ``#rrggbb``."""
    channels = [int(colour.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_contrast_helper_matches_wcag() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#808495", "#ffffff") == pytest.approx(3.7, abs=0.05)  # the theme's grey


def test_chart_text_is_at_least_4_5_to_1_on_the_apps_background() -> None:
    root = Path(__file__).resolve().parents[2]
    theme = tomllib.loads((root / ".streamlit" / "config.toml").read_text())["theme"]
    assert theme["backgroundColor"] == charts.BACKGROUND == SETTINGS["theme.backgroundColor"]
    for name, fig in every_figure().items():
        layout = fig.layout
        assert layout.paper_bgcolor == layout.plot_bgcolor == charts.BACKGROUND, name
        colours = {
            "font": layout.font.color,
            "title": layout.title.font.color,
            "legend": layout.legend.font.color,
            "x ticks": layout.xaxis.tickfont.color,
            "x title": layout.xaxis.title.font.color,
            "y ticks": layout.yaxis.tickfont.color,
            "y title": layout.yaxis.title.font.color,
        }
        for what, colour in colours.items():
            assert colour is not None, (name, what)
            assert contrast(colour, charts.BACKGROUND) >= 4.5, (name, what, colour)
    [heat] = every_figure()["heatmap"].data
    assert contrast(heat.colorbar.tickfont.color, charts.BACKGROUND) >= 4.5


def test_weekly_ticks_fall_on_mondays_where_the_bars_start() -> None:
    many = pd.Series(pd.date_range("2026-01-05", periods=30, freq="7D"))  # Mondays
    timeline = pd.DataFrame(
        {"bucket": many, "type": "chat", "generations": 1, "credits": range(1, 31)}
    )
    moved = pd.DataFrame(
        {"bucket": WEEKS, "credits_granted": [5, 0, 0, 0], "credits_deducted": 0,
         "credits_consumed": [1, 2, 3, 4]}
    )  # fmt: skip
    for fig, shown in (
        # 30 weeks: every third, 10 ticks; 4 weeks: each one.
        (charts.timeline_by_type(timeline, metric="credits", granularity="week"), 10),
        (charts.granted_vs_consumed(moved, granularity="week"), 4),
    ):
        ticks = pd.to_datetime(list(fig.layout.xaxis.tickvals))
        assert len(ticks) == shown <= charts.MAX_WEEK_TICKS
        assert set(ticks.day_of_week) == {0}, ticks  # Monday
        assert fig.layout.xaxis.ticktext[0] == f"{ticks[0]:%d %b}"
    # Days and months keep plotly's own ticks.
    daily = charts.timeline_by_type(timeline, metric="credits", granularity="day")
    assert daily.layout.xaxis.tickvals is None


def test_share_bars_are_scaled_so_small_shares_show() -> None:
    # Usage review's "Share %" column: drawn to 100 %, a 3 % share was a pixel.
    assert charts.share_scale(pd.Series([3.0, 1.2, 0.4])) == 5.0
    assert charts.share_scale(pd.Series([18.0, 2.0])) == 20.0
    assert charts.share_scale(pd.Series([20.0])) == 20.0
    assert charts.share_scale(pd.Series([61.0])) == 100.0
    assert charts.share_scale(pd.Series([0.0])) == 1.0
    assert charts.share_scale(pd.Series([], dtype="float64")) == 1.0
    # Every share shown fits its bar, and the largest fills at least a fifth of it.
    for largest in (0.3, 4.0, 12.5, 33.0, 99.0):
        scale = charts.share_scale(pd.Series([largest, largest / 10]))
        assert largest <= scale and largest / scale >= 0.2


def _typed(buckets: list[str], credits: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "bucket": pd.to_datetime(buckets),
            "type": "chat",
            "generations": 1,
            "credits": credits,
        }
    )


def test_the_previous_period_of_days_is_the_days_just_before() -> None:
    period = charts.previous_period(dt.date(2026, 11, 1), dt.date(2026, 11, 30), "day")
    assert (period.start, period.end) == (dt.date(2026, 10, 2), dt.date(2026, 10, 31))
    assert period.shift_days == 30 and not period.by_position
    assert period.label == "previous period (02 Oct 2026 – 31 Oct 2026)"


def test_the_previous_period_of_weeks_keeps_the_weekdays_and_the_number_of_weeks() -> None:
    # Wed 4 – Thu 26 Nov 2026 (23 days, 4 weekly buckets): shifted by 4 whole weeks.
    start, end = dt.date(2026, 11, 4), dt.date(2026, 11, 26)
    period = charts.previous_period(start, end, "week")
    assert period.shift_days == 28
    assert (period.start, period.end) == (dt.date(2026, 10, 7), dt.date(2026, 10, 29))
    assert (period.end - period.start) == (end - start)
    assert period.start.weekday() == start.weekday() == 2
    # Whole weeks: the span just before.
    weeks = charts.previous_period(dt.date(2026, 11, 2), dt.date(2026, 11, 29), "week")
    assert (weeks.start, weeks.end) == (dt.date(2026, 10, 5), dt.date(2026, 11, 1))
    assert "4 weeks earlier" not in charts.previous_caption(weeks, "week")
    assert "4 weeks earlier so that its weeks also start on Monday" in charts.previous_caption(
        period, "week"
    )


def test_the_previous_period_is_a_dashed_line_on_the_current_dates() -> None:
    current = _typed(["2026-11-01", "2026-11-02"], [5, 7])
    previous = _typed(["2026-10-30", "2026-10-31"], [2, 3])
    period = charts.previous_period(dt.date(2026, 11, 1), dt.date(2026, 11, 2), "day")
    fig = charts.timeline_by_type(
        current, metric="credits", granularity="day", previous=previous, period=period
    )
    line = fig.data[-1]
    assert isinstance(line, go.Scatter)
    assert line.name == "previous period (30 Oct 2026 – 31 Oct 2026)"
    assert line.line.dash == "dash"
    assert [pd.Timestamp(x) for x in line.x] == list(pd.to_datetime(["2026-11-01", "2026-11-02"]))
    assert list(line.y) == [2, 3]
    # Its hover names the previous day it is, not the day it is drawn on.
    assert list(line.customdata) == ["Fri 30 Oct 2026", "Sat 31 Oct 2026"]
    assert "%{customdata}" in line.hovertemplate


def test_a_previous_weekly_period_lies_on_the_same_mondays() -> None:
    start, end = dt.date(2026, 11, 4), dt.date(2026, 11, 26)
    period = charts.previous_period(start, end, "week")
    current = _typed(["2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23"], [1, 2, 3, 4])
    previous = _typed(["2026-10-05", "2026-10-12", "2026-10-19", "2026-10-26"], [4, 3, 2, 1])
    fig = charts.timeline_by_type(
        current, metric="credits", granularity="week", previous=previous, period=period
    )
    line = fig.data[-1]
    assert [pd.Timestamp(x) for x in line.x] == list(pd.to_datetime(current["bucket"]))
    assert all(pd.Timestamp(x).weekday() == 0 for x in line.x)
    assert line.customdata[0] == "week of Mon 05 Oct 2026"


def test_previous_months_are_aligned_by_position_and_the_caption_says_so() -> None:
    # 15 Oct – 14 Dec (61 days, three months) against 15 Aug – 14 Oct (three months).
    period = charts.previous_period(dt.date(2026, 10, 15), dt.date(2026, 12, 14), "month")
    assert period.by_position
    assert (period.start, period.end) == (dt.date(2026, 8, 15), dt.date(2026, 10, 14))
    current = _typed(["2026-10-01", "2026-11-01", "2026-12-01"], [1, 2, 3])
    previous = _typed(["2026-08-01", "2026-09-01", "2026-10-01"], [6, 5, 4])
    fig = charts.timeline_by_type(
        current, metric="credits", granularity="month", previous=previous, period=period
    )
    line = fig.data[-1]
    assert [pd.Timestamp(x) for x in line.x] == list(pd.to_datetime(current["bucket"]))
    assert list(line.customdata) == ["Aug 2026", "Sep 2026", "Oct 2026"]
    assert "aligned by position" in charts.previous_caption(period, "month")


def test_a_quiet_period_still_shows_its_busier_previous_one() -> None:
    current = _typed(["2026-11-01"], [0])
    previous = _typed(["2026-10-31"], [9])
    period = charts.previous_period(dt.date(2026, 11, 1), dt.date(2026, 11, 1), "day")
    fig = charts.timeline_by_type(
        current, metric="credits", granularity="day", previous=previous, period=period
    )
    assert list(fig.data[-1].y) == [9]
    none = charts.timeline_by_type(
        current,
        metric="credits",
        granularity="day",
        previous=previous.assign(credits=0),
        period=period,
    )
    assert annotation(none) == "No credits in this period or in the previous period."
