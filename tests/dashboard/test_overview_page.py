"""Overview: KPI tiles against the previous period, timeline by type, top users and the
drill-down into the most recent generations, on the demo data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text
from streamlit.testing.v1 import AppTest

from dashboard import ui
from queries.timelines import period_kpis, top_users
from tests.dashboard.apptest import (
    DEMO_RANGE,
    figures,
    make_app,
    metrics,
    plain_texts,
    table_with,
    texts,
)


@pytest.fixture
def orgs(demo_engine: Engine, demo_url: str, use_database: Callable[[str], None]) -> list[int]:
    """Demo organizations, the busiest first."""
    use_database(demo_url)
    with demo_engine.connect() as conn:
        rows = conn.execute(
            text("SELECT organization_id FROM generations GROUP BY 1 ORDER BY count(*) DESC")
        )
        return [int(r[0]) for r in rows]


def overview(org: int, **query: str) -> AppTest:
    return make_app(role="manager", query={**DEMO_RANGE, "org": str(org), **query}).run()


def test_the_overview_renders_every_part_on_the_demo_data(
    orgs: list[int], demo_engine: Engine
) -> None:
    at = overview(orgs[0])
    assert not at.exception and not at.error
    tiles = metrics(at)
    assert {"Generations", "Credits consumed", "Active users", "Credit balance"} <= tiles.keys()
    with demo_engine.connect() as conn:
        kpis = period_kpis(
            conn,
            organization_id=orgs[0],
            start=dt.date(2026, 10, 22),
            end=dt.date(2026, 11, 20),
        )
    assert tiles["Generations"] == (f"{kpis.generations:,}", ui.change(kpis.generations_change))
    assert tiles["Credits consumed"][0] == f"{kpis.credits:,}"
    timeline = figures(at)[0]
    assert {trace["name"] for trace in timeline["data"]} >= {"chat", "image"}
    assert table_with(at, "Share of credits")["Credits"].is_monotonic_decreasing
    assert len(table_with(at, "Time")) == 25
    assert any(c.startswith("Data as of ") for c in texts(at, "caption"))


def test_the_top_users_table_and_chart_show_the_same_users(
    orgs: list[int], demo_engine: Engine
) -> None:
    at = overview(orgs[0])
    with demo_engine.connect() as conn:
        top = top_users(
            conn, organization_id=orgs[0], start=dt.date(2026, 10, 22), end=dt.date(2026, 11, 20)
        )
    table = table_with(at, "Share of credits")
    chart = figures(at)[1]
    assert len(table) == 10
    # One bar per user, keyed by id: the chart's "Name (#id)" in the table's order.
    assert list(top["name"]) == list(table["User"])
    ids = list(top["user_id"])
    assert list(reversed(chart["data"][0]["y"])) == [
        f"{name} (#{user_id})" for name, user_id in zip(table["User"], ids, strict=True)
    ]
    assert any(c.startswith("The 10 users who used the most credits") for c in texts(at, "caption"))


def test_another_organization_shows_other_figures(orgs: list[int]) -> None:
    at = overview(orgs[0])
    before = metrics(at)["Generations"]
    at.selectbox(key="filters.org").set_value(orgs[-1]).run()
    assert not at.exception
    assert metrics(at)["Generations"] != before


def test_the_granularity_changes_the_timeline_buckets(orgs: list[int]) -> None:
    at = overview(orgs[0])
    days = len(set(figures(at)[0]["data"][0]["x"]))
    at.radio(key="filters.grain").set_value("week").run()
    weeks = len(set(figures(at)[0]["data"][0]["x"]))
    assert days == 30 and weeks == 5


def test_utc_reads_the_same_period_in_utc(orgs: list[int]) -> None:
    at = overview(orgs[0])
    at.radio(key="filters.tz").set_value("utc").run()
    assert not at.exception
    assert any("dates in UTC" in c for c in texts(at, "caption"))


def test_the_drilldown_pages_back_in_time_and_returns_to_the_newest(orgs: list[int]) -> None:
    at = overview(orgs[0])
    first = table_with(at, "Time")
    at.button(key="overview.next").click().run()
    second = table_with(at, "Time")
    assert not at.exception
    assert second["Time"].max() <= first["Time"].min()
    assert not set(first["Id"]) & set(second["Id"])
    assert any("Generations 26–50" in c for c in texts(at, "caption"))
    at.button(key="overview.next").click().run()
    at.button(key="overview.previous").click().run()
    assert list(table_with(at, "Time")["Id"]) == list(second["Id"])
    at.button(key="overview.first").click().run()
    assert list(table_with(at, "Time")["Id"]) == list(first["Id"])


def test_the_drilldown_narrows_to_one_user(orgs: list[int]) -> None:
    at = overview(orgs[0])
    user = str(table_with(at, "Share of credits")["User"].iloc[0])
    charts_before = len(figures(at))
    picker = at.selectbox(key="overview.scope")
    picker.select_index(next(i for i, o in enumerate(picker.options) if o.startswith(f"{user} ·")))
    at.run()
    assert not at.exception
    assert set(table_with(at, "Time")["User"]) == {user}
    assert len(figures(at)) == charts_before + 1  # the user's own timeline


def test_a_period_without_generations_says_so(orgs: list[int]) -> None:
    at = overview(orgs[0], **{"from": "2020-01-01", "to": "2020-01-31"})
    assert not at.exception
    assert any("made no generations" in i for i in texts(at, "info"))
    assert metrics(at)["Generations"][0] == "0"


def test_times_are_shown_in_the_chosen_zone(orgs: list[int], demo_engine: Engine) -> None:
    with demo_engine.connect() as conn:
        zone = conn.execute(
            text("SELECT timezone FROM organizations WHERE id = :o"), {"o": orgs[0]}
        ).scalar_one()
    at = overview(orgs[0])
    local = table_with(at, "Time")["Time"]
    at.radio(key="filters.tz").set_value("utc").run()
    utc = table_with(at, "Time")["Time"]
    assert str(local.dt.tz) == zone and str(utc.dt.tz) == "UTC"


def test_a_comparison_says_when_the_previous_period_is_only_partly_covered(
    orgs: list[int], demo_engine: Engine
) -> None:
    # A 30-day period that starts 10 days after the organization's data does: the
    # previous 30 days have data for 10 of them.
    with demo_engine.connect() as conn:
        first = conn.execute(
            text("SELECT min(date) FROM usage_limits WHERE organization_id = :o AND used > 0"),
            {"o": orgs[0]},
        ).scalar_one()
    start = first + dt.timedelta(days=10)
    end = start + dt.timedelta(days=29)
    at = overview(orgs[0], **{"from": start.isoformat(), "to": end.isoformat()})
    assert not at.exception and not at.error
    tile = next(m for m in at.metric if m.label == "Generations")
    # The tile's delta description is short (it is cut off on a narrow tile); the
    # caveat is said in full under the tiles and in the help.
    assert tile.proto.delta_description == "vs previous 30 days"
    assert "The previous period has data for 10 of 30 days" in tile.proto.help
    assert f"starts on {first}" in tile.proto.help
    assert any(
        "The previous period has data for 10 of 30 days" in c
        and "compares 30 days with 10: read it with care." in c
        for c in plain_texts(at, "caption")
    )

    # A period whose previous one is wholly covered says nothing of the kind.
    later = overview(orgs[0])
    tile = next(m for m in later.metric if m.label == "Generations")
    assert tile.proto.delta_description == "vs previous 30 days"
    assert "data for" not in tile.proto.help
    assert not any("data for" in c for c in plain_texts(later, "caption"))


def test_partial_first_and_last_weeks_are_hatched_and_named(orgs: list[int]) -> None:
    # 22 Oct (a Thursday) - 20 Nov (a Friday) 2026: the first and last weeks are cut.
    at = overview(orgs[0], grain="week")
    assert not at.exception
    bars = figures(at)[0]["data"][0]
    shapes = bars["marker"]["pattern"]["shape"]
    assert shapes[0] == "/" and shapes[-1] == "/" and set(shapes[1:-1]) == {""}
    captions = texts(at, "caption")
    assert any(
        c.startswith("Hatched: a partial week")
        and "19 Oct 2026 (4 of 7 days in the period)" in c
        and "16 Nov 2026 (5 of 7 days in the period" in c
        for c in captions
    ), captions


def test_compare_previous_overlays_both_timelines_with_the_previous_period(
    orgs: list[int],
) -> None:
    at = overview(orgs[0], compare="previous", grain="week")
    assert not at.exception and not at.error
    assert at.toggle(key="overview.compare").value is True
    timeline = figures(at)[0]
    line = timeline["data"][-1]
    # 22 Oct - 20 Nov is 30 days: weeks are compared 5 weeks (35 days) earlier.
    assert line["name"] == "previous period (17 Sep 2026 – 16 Oct 2026)"
    assert line["line"]["dash"] == "dash"
    bars = timeline["data"][0]["x"]
    assert line["x"] == bars  # on this period's Mondays
    assert line["customdata"][0] == "week of Mon 14 Sep 2026"
    assert any(
        "5 weeks earlier so that its weeks also start on Monday" in c for c in texts(at, "caption")
    )
    # The user's drill-down timeline is compared too (a drilled-down user leads).
    at.selectbox(key="overview.scope").select_index(1).run()
    user_timeline = figures(at)[0]
    assert user_timeline["data"][-1]["name"] == line["name"]
    assert at.query_params["compare"] == "previous"


def test_the_compare_toggle_writes_the_url_and_off_leaves_it_out(orgs: list[int]) -> None:
    at = overview(orgs[0])
    assert "compare" not in at.query_params
    assert all(t["type"] == "bar" for t in figures(at)[0]["data"])
    at.toggle(key="overview.compare").set_value(True).run()
    assert at.query_params["compare"] == "previous"
    assert figures(at)[0]["data"][-1]["line"]["dash"] == "dash"
    bad = make_app(role="manager").run()  # a new tab, then the link
    for key, value in {**DEMO_RANGE, "org": str(orgs[0]), "compare": "1"}.items():
        bad.query_params[key] = value
    bad.switch_page("app_pages/overview.py").run()
    assert not bad.exception and bad.toggle(key="overview.compare").value is False
    # One notice, though both timelines ask; the value leaves the link.
    assert [t for t in plain_texts(bad, "toast") if "compare='1'" in t] != []
    assert len([t for t in plain_texts(bad, "toast") if "compare=" in t]) == 1
    assert "compare" not in bad.query_params


def test_the_timelines_metric_is_in_the_url_and_a_link_brings_it_back(orgs: list[int]) -> None:
    at = overview(orgs[0])
    assert "metric" not in at.query_params  # credits, the default, is left out
    at.button_group[0].set_value("generations").run()
    assert not at.exception
    assert at.query_params["metric"] == "generations"
    timeline = figures(at)[0]
    assert "Generations" in str(timeline["layout"])
    again = overview(orgs[0], metric="generations")
    assert again.button_group[0].value == "generations" and not again.toast
    assert figures(again)[0]["layout"] == timeline["layout"]
    at.button_group[0].set_value("credits").run()
    assert "metric" not in at.query_params


@pytest.mark.parametrize("value", ["Generations", "both", "credits,generations"])
def test_a_bad_metric_in_the_link_is_dropped_with_a_notice(orgs: list[int], value: str) -> None:
    at = overview(orgs[0], metric=value)
    assert not at.exception and not at.error
    assert any(f"metric={value!r}" in t for t in plain_texts(at, "toast"))
    assert at.button_group[0].value == "credits" and "metric" not in at.query_params


def test_a_drilled_down_user_leads_the_page_and_the_organization_follows(
    orgs: list[int], demo_engine: Engine
) -> None:
    with demo_engine.connect() as conn:
        top = top_users(
            conn,
            organization_id=orgs[0],
            start=dt.date(2026, 10, 22),
            end=dt.date(2026, 11, 20),
            limit=1,
        ).iloc[0]
    at = overview(orgs[0], user=str(int(top["user_id"])))
    assert not at.exception and not at.error
    # The title names the user; their numbers come first, then their generations; the
    # organization's figures follow under a header of their own.
    assert at.title[0].value == f"Overview · {top['name']}"
    labels = [m.label for m in at.metric]
    assert labels[:3] == ["Generations", "Credits consumed", "Share of the organization's credits"]
    assert labels[3:] == ["Generations", "Credits consumed", "Active users", "Credit balance"]
    assert at.metric[0].value == f"{int(top['generations']):,}"
    assert at.metric[1].value == f"{int(top['credits']):,}"
    assert set(table_with(at, "Id")["User"]) == {top["name"]}
    assert at.header[0].value.startswith("The organization · ")
    # Back to the whole organization: its view leads again, and the link says so.
    at.button(key="overview.back").click().run()
    assert not at.exception and "user" not in at.query_params
    assert [m.label for m in at.metric][:3] == ["Generations", "Credits consumed", "Active users"]
    assert at.selectbox(key="overview.scope").value == 0
