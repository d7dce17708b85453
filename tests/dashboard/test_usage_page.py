"""Usage review: every organization ranked by credits consumed, the monthly trend, and a
CSV of exactly the table shown, named after the filters."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable

import pandas as pd
import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from queries.usage import all_orgs_usage
from tests.dashboard.apptest import (
    DEMO_RANGE,
    capture_downloads,
    figures,
    make_app,
    open_page,
    table_with,
    texts,
)


@pytest.fixture
def usage_page(demo_url: str, use_database: Callable[[str], None]) -> Callable[..., AppTest]:
    use_database(demo_url)

    def open_usage(**query: str) -> AppTest:
        return open_page(make_app(role="finance", query={**DEMO_RANGE, **query}), "usage")

    return open_usage


def test_every_organization_is_ranked_by_credits_consumed(
    usage_page: Callable[..., AppTest], demo_engine: Engine
) -> None:
    at = usage_page()
    assert not at.exception and not at.error
    table = table_with(at, "Credits consumed")
    with demo_engine.connect() as conn:
        expected = all_orgs_usage(conn, start=dt.date(2026, 10, 22), end=dt.date(2026, 11, 20))
    assert list(table["Organization"]) == list(expected["name"])
    assert list(table["Credits consumed"]) == list(expected["credits_consumed"])
    assert table["Credits consumed"].is_monotonic_decreasing
    assert list(table["Balance"]) == list(expected["balance"])
    assert {"Credits granted", "Credits deducted", "Share %"} <= set(table.columns)
    _, monthly = figures(at)
    assert [t["name"] for t in monthly["data"]] == ["Consumed", "Granted"]
    assert len(monthly["data"][0]["x"]) == 2  # October and November


def test_another_period_changes_the_ranking(usage_page: Callable[..., AppTest]) -> None:
    at = usage_page()
    before = table_with(at, "Credits consumed")
    at.date_input(key="filters.from").set_value(dt.date(2026, 11, 14)).run()
    after = table_with(at, "Credits consumed")
    assert not at.exception
    assert after["Credits consumed"].sum() < before["Credits consumed"].sum()
    assert at.query_params["from"] == "2026-11-14"


def test_the_csv_is_exactly_the_table_shown_with_the_filters_in_its_name(
    usage_page: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads = capture_downloads(monkeypatch)
    at = usage_page()
    plan = str(table_with(at, "Plan")["Plan"].iloc[0])
    at.multiselect(key="usage.plans").set_value([plan]).run()
    at.text_input(key="usage.search").input("a").run()
    shown = table_with(at, "Credits consumed")
    assert not at.exception and 0 < len(shown) < 30
    assert set(shown["Plan"]) == {plan}
    name = f"usage_2026-10-22_2026-11-20_plan-{plan}_search-a.csv"
    assert name in downloads, list(downloads)
    csv = pd.read_csv(io.BytesIO(downloads[name]))
    assert list(csv.columns) == list(shown.columns)
    pd.testing.assert_frame_equal(csv, shown.reset_index(drop=True), check_dtype=False)


def test_a_search_that_matches_nothing_says_so(usage_page: Callable[..., AppTest]) -> None:
    at = usage_page()
    at.text_input(key="usage.search").input("no such organization anywhere").run()
    assert not at.exception
    assert any("No organization matches" in i for i in texts(at, "info"))


def test_a_period_without_usage_says_so(usage_page: Callable[..., AppTest]) -> None:
    at = usage_page(**{"from": "2020-01-01", "to": "2020-01-31"})
    assert not at.exception
    assert any("No credits were consumed" in i for i in texts(at, "info"))


def test_support_has_no_usage_review(usage_page: Callable[..., AppTest]) -> None:
    at = make_app(role="support").run()
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("app_pages/usage.py")
