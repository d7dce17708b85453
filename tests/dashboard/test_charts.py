"""Figures from DataFrames, checked without a browser."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd

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
