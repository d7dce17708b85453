"""Usage review: every organization ranked by credits consumed, the monthly trend, and a
CSV of exactly the table shown, named after the filters."""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from sqlalchemy import Engine, text
from streamlit.testing.v1 import AppTest

from queries.db import get_engine
from queries.timelines import all_organizations_timeline
from queries.usage import all_orgs_usage
from tests.dashboard.apptest import (
    DEMO_RANGE,
    capture_downloads,
    figures,
    make_app,
    open_page,
    plain,
    plain_texts,
    table_with,
    texts,
)
from tests.statements import recording


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
    # The timeline across organizations is read only when asked (timeline=shown).
    _, monthly = figures(at)
    assert at.toggle(key="usage.timeline").value is False
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
    # The table as shown, without its "Adjust" links (the names link to the Overview).
    shown = table_with(at, "Credits consumed").drop(columns=["Adjust"])
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


def test_support_opening_usage_review_lands_on_the_overview_told_why(
    usage_page: Callable[..., AppTest],
) -> None:
    at = make_app(role="support").run()
    at.switch_page("app_pages/usage.py").run()
    assert not at.exception
    assert at.title[0].value.startswith("Overview")
    assert [plain(str(w.value)) for w in at.main.warning] == [
        "Usage review is for finance, manager and admin; your role (support) cannot open it."
    ]


# ------------------------------------------------------ thousands of organizations

MANY = 2_000


@pytest.fixture
def many_usage(fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]) -> Engine:
    """The small load plus 2,000 organizations that used credits today (their own day,
    all UTC), in the test's own copy of the database, with the rollups and kept edges
    record_generation would have written."""
    with fresh_engine.begin() as conn:
        conn.execute(
            text(
                """
                INSERT INTO organizations (name, slug, plan, timezone)
                SELECT 'Bulk ' || lpad(i::text, 5, '0'), 'bulk-' || i,
                       (ARRAY['free', 'starter', 'pro', 'enterprise'])[1 + i % 4], 'UTC'
                FROM generate_series(1, :n) AS i
                """
            ),
            {"n": MANY},
        )
        conn.execute(
            text(
                """
                INSERT INTO usage_limits (organization_id, type, date, used, credits_used,
                                          daily_limit)
                SELECT o.id, t.type, (now() AT TIME ZONE 'UTC')::date, 1,
                       substr(o.slug, 6)::bigint * 100000, 100000
                FROM organizations o, (SELECT min(type) AS type FROM generation_types) t
                WHERE o.slug LIKE 'bulk-%'
                """
            )
        )
        # The cross-organization rollups of that day, as record_generation keeps them.
        conn.execute(
            text(
                """
                INSERT INTO organization_daily_usage (organization_id, date, generations,
                    credits, generations_through, credits_through)
                SELECT u.organization_id, u.date, u.used, u.credits_used, u.used, u.credits_used
                FROM usage_limits u JOIN organizations o ON o.id = u.organization_id
                WHERE o.slug LIKE 'bulk-%'
                """
            )
        )
        conn.execute(
            text(
                """
                INSERT INTO organization_monthly_usage (organization_id, month, generations,
                                                        credits)
                SELECT d.organization_id, date_trunc('month', d.date)::date, d.generations,
                       d.credits
                FROM organization_daily_usage d JOIN organizations o ON o.id = d.organization_id
                WHERE o.slug LIKE 'bulk-%'
                """
            )
        )
        # And the kept usage edges after that day (migration 0025), from those rollups.
        conn.execute(
            text(
                """
                INSERT INTO usage_edges (edge, organization_id, generations, credits)
                SELECT k.edge, o.id, b.generations, b.credits
                FROM kept_usage_edges k CROSS JOIN organizations o
                CROSS JOIN LATERAL usage_before(o.id, o.timezone, k.edge) b
                WHERE o.slug LIKE 'bulk-%' AND b.generations > 0
                """
            )
        )
    use_database(fresh_url)
    return fresh_engine


def test_thousands_of_organizations_are_paged_and_filtered_in_sql(
    many_usage: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads = capture_downloads(monkeypatch)
    at = open_page(make_app(role="finance", query={"range": "7d"}), "usage")
    assert not at.exception
    table = table_with(at, "Credits consumed")
    assert len(table) == 50  # one page, not 2,008 rows
    assert list(table["Organization"][:2]) == ["Bulk 02000", "Bulk 01999"]
    assert any("Organizations 1–50 of 2,0" in c for c in texts(at, "caption"))

    at.button(key="usage.next").click().run()
    table = table_with(at, "Credits consumed")
    assert table["Organization"].iloc[0] == "Bulk 01950"
    assert list(table["Rank"][:1]) == [51]

    # Filters go to SQL and start from the first page again.
    st.cache_data.clear()  # count the statements of a cold run
    with recording(get_engine()) as recorded:
        at.multiselect(key="usage.plans").set_value(["pro"]).run()
        at.text_input(key="usage.search").input("bulk 01").run()
    assert not at.exception
    table = table_with(at, "Credits consumed")
    assert set(table["Plan"]) == {"pro"}
    assert table["Organization"].iloc[0] == "Bulk 01998"
    assert all(name.startswith("Bulk 01") for name in table["Organization"])
    assert len(recorded.statements) <= 30, [s[:80] for s, _ in recorded.statements]
    assert not any("FROM organizations ORDER BY name, id" in s for s, _ in recorded.statements)
    # pro = i % 4 == 2 among Bulk 01000..01999: 250 organizations, 5 pages of 50.
    assert any("of 250, by credits" in c for c in texts(at, "caption"))
    # 250 rows are more than a page: the full CSV is read when asked for.
    assert not any("plan-pro_search-bulk-01" in n for n in downloads)
    at.button(key="usage.prepare_csv").click().run()
    name = next(n for n in downloads if "plan-pro_search-bulk-01" in n)
    csv = pd.read_csv(io.BytesIO(downloads[name]))
    assert len(csv) == 250  # every filtered row, not only the page


def test_sort_by_orders_the_whole_ranking_is_kept_in_the_url_and_the_csv_follows_it(
    usage_page: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads = capture_downloads(monkeypatch)
    at = usage_page()
    at.selectbox(key="usage.sort").set_value("balance_asc").run()
    assert not at.exception
    assert at.query_params["sort"] == "balance_asc"
    shown = table_with(at, "Credits consumed").drop(columns=["Adjust"])
    assert shown["Balance"].is_monotonic_increasing
    assert not shown["Credits consumed"].is_monotonic_decreasing, "another order than the rank"
    assert any("by balance, lowest first" in c for c in texts(at, "caption"))
    assert any("Sort by orders the list" in c for c in texts(at, "caption"))
    csv = pd.read_csv(io.BytesIO(downloads["usage_2026-10-22_2026-11-20.csv"]))
    pd.testing.assert_frame_equal(csv, shown.reset_index(drop=True), check_dtype=False)
    # A link with the order opens the same table.
    opened = usage_page(sort="balance_asc")
    assert opened.selectbox(key="usage.sort").value == "balance_asc"
    assert list(table_with(opened, "Balance")["Organization"]) == list(shown["Organization"])


def test_an_unknown_order_in_a_link_gets_a_notice_and_the_ranking_by_credits(
    usage_page: Callable[..., AppTest],
) -> None:
    at = usage_page(sort="cheapest")
    assert not at.exception
    assert any("Ignored sort='cheapest'" in plain(t) for t in texts(at, "toast"))
    assert at.selectbox(key="usage.sort").value == "credits_desc"
    assert table_with(at, "Credits consumed")["Credits consumed"].is_monotonic_decreasing
    assert "sort" not in at.query_params


def _numbers(values: object) -> list[int]:
    """A figure's numbers, whether plain JSON or plotly's typed array ({dtype, bdata})."""
    if isinstance(values, dict):
        raw = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
        return [int(v) for v in raw]
    assert isinstance(values, list)
    return [int(v) for v in values]


def _timeline_figure(at: AppTest) -> dict[str, Any]:
    return next(f for f in figures(at) if "by generation type" in f["layout"]["title"]["text"])


def test_the_timeline_across_organizations_stacks_every_type_in_the_company_zone(
    usage_page: Callable[..., AppTest], demo_engine: Engine
) -> None:
    at = usage_page(grain="week", timeline="shown")
    assert not at.exception and not at.error
    chart = _timeline_figure(at)
    with demo_engine.connect() as conn:
        expected = all_organizations_timeline(
            conn, start=dt.date(2026, 10, 22), end=dt.date(2026, 11, 20), granularity="week"
        )
    chat = expected[expected["type"] == "chat"]
    trace = next(t for t in chart["data"] if t["name"] == "chat")
    assert _numbers(trace["y"]) == list(chat["credits"])
    assert {t["name"] for t in chart["data"]} == set(expected["type"])
    assert any("(the company zone)" in c for c in texts(at, "caption"))
    # 22 Oct is a Thursday: the first week is cut by the period, hatched and named.
    assert any(c.startswith("Hatched: a partial week") for c in texts(at, "caption"))
    # The plans chosen for the ranking narrow the timeline too.
    at.multiselect(key="usage.plans").set_value(["enterprise"]).run()
    narrowed = next(t for t in _timeline_figure(at)["data"] if t["name"] == "chat")
    assert sum(_numbers(narrowed["y"])) < sum(_numbers(trace["y"]))


def test_the_timeline_csv_holds_every_bucket_and_type_shown(
    usage_page: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads = capture_downloads(monkeypatch)
    at = usage_page(compare="previous", timeline="shown")
    name = "timeline_2026-10-22_2026-11-20_day.csv"
    assert name in downloads, list(downloads)
    csv = pd.read_csv(io.BytesIO(downloads[name]))
    assert list(csv.columns) == ["Period", "Bucket starts", "Type", "Generations", "Credits"]
    current = csv[csv["Period"] == "this period"]
    trace = next(t for t in _timeline_figure(at)["data"] if t["name"] == "chat")
    assert list(current[current["Type"] == "chat"]["Credits"]) == _numbers(trace["y"])
    previous = csv[csv["Period"] == "previous period"]
    assert previous["Bucket starts"].min() == "2026-09-22"


def test_compare_previous_in_the_url_overlays_the_previous_period(
    usage_page: Callable[..., AppTest],
) -> None:
    at = usage_page(compare="previous", timeline="shown")
    assert not at.exception
    assert at.toggle(key="usage.compare").value is True
    line = _timeline_figure(at)["data"][-1]
    assert line["name"] == "previous period (22 Sep 2026 – 21 Oct 2026)"
    assert line["line"]["dash"] == "dash"
    assert line["customdata"][0] == "Tue 22 Sep 2026"
    assert any(c.startswith("Dashed: the previous period") for c in texts(at, "caption"))
    # Turned off, the key leaves the URL (off is the default).
    at.toggle(key="usage.compare").set_value(False).run()
    assert "compare" not in at.query_params
    assert all(t["type"] == "bar" for t in _timeline_figure(at)["data"])


def test_a_bad_compare_value_is_dropped_with_a_notice(
    usage_page: Callable[..., AppTest],
) -> None:
    usage_page()  # the demo database
    at = make_app(role="finance").run()  # a new tab, then the link
    for key, value in {**DEMO_RANGE, "compare": "yes", "timeline": "shown"}.items():
        at.query_params[key] = value
    at.switch_page("app_pages/usage.py").run()
    assert not at.exception
    assert at.toggle(key="usage.compare").value is False
    notices = plain_texts(at, "toast")
    assert any("compare='yes'" in t and "use one of previous" in t for t in notices), notices


def test_the_timeline_across_organizations_is_read_when_asked_and_kept_in_the_link(
    usage_page: Callable[..., AppTest],
) -> None:
    at = usage_page()
    assert not at.exception
    assert not [f for f in figures(at) if "by generation type" in f["layout"]["title"]["text"]]
    assert "timeline" not in at.query_params
    at.toggle(key="usage.timeline").set_value(True).run()
    assert not at.exception
    assert at.query_params["timeline"] == "shown"
    assert _timeline_figure(at)["data"], "the timeline is drawn once asked"
    # A link with it opens it; a bad value is dropped with a notice.
    assert usage_page(timeline="shown").toggle(key="usage.timeline").value is True
    bad = usage_page(timeline="yes")
    assert bad.toggle(key="usage.timeline").value is False
    assert any("timeline='yes'" in t for t in plain_texts(bad, "toast"))
