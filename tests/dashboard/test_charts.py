"""Figures from DataFrames, checked without a browser."""

from __future__ import annotations

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


def test_an_empty_period_says_so_instead_of_an_empty_axis() -> None:
    zeros = pd.DataFrame({"bucket": DAYS, "type": ["chat"] * 2, "generations": 0, "credits": 0})
    assert "No credits" in annotation(charts.timeline_by_type(zeros, metric="credits"))
    assert "No user" in annotation(
        charts.top_users(pd.DataFrame(columns=["name", "email", "generations", "credits"]))
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
            "name": ["A", "B", "C"],
            "email": ["a@x", "b@x", "c@x"],
            "generations": [1, 2, 3],
            "credits": [10, 30, 20],
        }
    )
    fig = charts.top_users(df, top=2)
    assert list(fig.data[0].y) == ["C", "B"]  # plotly draws the last row on top


def test_usage_ranking_compares_consumed_with_granted() -> None:
    df = pd.DataFrame({"name": ["A", "B"], "credits_consumed": [5, 9], "credits_granted": [100, 0]})
    fig = charts.usage_ranking(df)
    assert [t.name for t in fig.data] == ["Consumed", "Granted"]
    assert list(fig.data[0].x) == ["B", "A"]


def test_monthly_trend_and_granted_vs_consumed_have_a_bar_per_measure() -> None:
    months = pd.DataFrame(
        {
            "month": pd.to_datetime(["2026-10-01", "2026-11-01"]),
            "credits_consumed": [10, 20],
            "credits_granted": [50, 0],
        }
    )
    assert [t.name for t in charts.monthly_trend(months).data] == ["Consumed", "Granted"]
    flow = pd.DataFrame(
        {
            "bucket": DAYS,
            "credits_granted": [5, 0],
            "credits_deducted": [0, 1],
            "credits_consumed": [2, 3],
        }
    )
    assert [t.name for t in charts.granted_vs_consumed(flow).data] == [
        "Granted",
        "Deducted",
        "Consumed",
    ]
    assert "No credits moved" in annotation(
        charts.granted_vs_consumed(
            flow.assign(credits_granted=0, credits_deducted=0, credits_consumed=0)
        )
    )


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
