"""The shared filters: presets, reading a URL, and the URL and widgets kept in step."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, create_engine
from streamlit.testing.v1 import AppTest

from dashboard import state
from tests.dashboard.apptest import make_app, open_page, texts

ORGS = [
    state.Organization(id=3, name="Acme", slug="acme", timezone="Europe/Berlin", plan="pro"),
    state.Organization(id=7, name="Beta", slug="beta-co", timezone="UTC", plan="free"),
]


@pytest.mark.parametrize(
    ("preset", "start", "end"),
    [
        ("7d", dt.date(2026, 3, 4), dt.date(2026, 3, 10)),
        ("30d", dt.date(2026, 2, 9), dt.date(2026, 3, 10)),
        ("90d", dt.date(2025, 12, 11), dt.date(2026, 3, 10)),
        ("this_month", dt.date(2026, 3, 1), dt.date(2026, 3, 10)),
        ("last_month", dt.date(2026, 2, 1), dt.date(2026, 2, 28)),
    ],
)
def test_presets_end_today_or_cover_the_last_calendar_month(
    preset: state.Preset, start: dt.date, end: dt.date
) -> None:
    assert state.preset_range(preset, dt.date(2026, 3, 10)) == (start, end)


def test_last_month_in_january_is_december() -> None:
    assert state.preset_range("last_month", dt.date(2026, 1, 15)) == (
        dt.date(2025, 12, 1),
        dt.date(2025, 12, 31),
    )


def test_today_is_the_date_in_the_zone() -> None:
    late = dt.datetime(2026, 3, 10, 23, 30, tzinfo=dt.UTC)
    assert state.today_in("Asia/Tokyo", now=late) == dt.date(2026, 3, 11)
    assert state.today_in("America/Los_Angeles", now=late) == dt.date(2026, 3, 10)
    assert state.today_in("Not/AZone", now=late) == dt.date(2026, 3, 10)


def test_a_good_url_is_read_whole() -> None:
    url = state.parse_url(
        {
            "org": "7",
            "range": "custom",
            "from": "2026-01-01",
            "to": "2026-01-31",
            "grain": "week",
            "tz": "utc",
        },
        ORGS,
    )
    assert (url.org, url.preset, url.start, url.end, url.grain, url.zone) == (
        7,
        "custom",
        dt.date(2026, 1, 1),
        dt.date(2026, 1, 31),
        "week",
        "utc",
    )
    assert url.notices == []
    assert state.parse_url({"org": "beta-co"}, ORGS).org == 7
    assert state.parse_url({"from": "2026-01-01", "to": "2026-01-02"}, ORGS).preset == "custom"


@pytest.mark.parametrize(
    ("params", "notice"),
    [
        ({"org": "999"}, "no such organization"),
        ({"org": "nobody"}, "no such organization"),
        ({"range": "yesterday"}, "use one of 7d"),
        ({"range": "custom"}, "needs from and to"),
        ({"from": "2026-13-01", "to": "2026-12-01"}, "not a date"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "is after"),
        ({"from": "2020-01-01", "to": "2026-01-01"}, "at most"),
        ({"from": "2026-01-01"}, "give both"),
        ({"grain": "hour"}, "day, week or month"),
        ({"tz": "mars"}, "org or utc"),
    ],
)
def test_a_bad_url_value_is_dropped_with_a_notice(params: dict[str, str], notice: str) -> None:
    url = state.parse_url(params, ORGS)
    assert len(url.notices) == 1 and notice in url.notices[0]
    assert (url.org, url.preset, url.start, url.grain, url.zone) == (None,) * 5


def test_filters_become_a_url_that_reads_back_the_same() -> None:
    filters = state.Filters(
        organization=ORGS[0],
        preset="custom",
        start=dt.date(2026, 1, 1),
        end=dt.date(2026, 1, 31),
        granularity="month",
        zone="utc",
    )
    params = state.to_url(filters)
    assert params == {
        "org": "3",
        "range": "custom",
        "from": "2026-01-01",
        "to": "2026-01-31",
        "grain": "month",
        "tz": "utc",
    }
    url = state.parse_url(params, ORGS)
    assert (url.org, url.preset, url.start, url.end, url.grain, url.zone) == (
        3,
        "custom",
        filters.start,
        filters.end,
        "month",
        "utc",
    )
    assert "from" not in state.to_url(
        state.Filters(ORGS[0], "7d", filters.start, filters.end, "day", "org")
    )


# ---------------------------------------------------------------- in the running app


@pytest.fixture
def orgs(today_url: str, use_database: Callable[[str], None]) -> list[tuple[int, str, str]]:
    use_database(today_url)
    engine: Engine = create_engine(today_url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT id, name, slug FROM organizations ORDER BY name")
            return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]
    finally:
        engine.dispose()


def sidebar_values(at: AppTest) -> dict[str, object]:
    values: dict[str, object] = {
        "org": at.selectbox(key=state.K_ORG).value,
        "range": at.selectbox(key=state.K_RANGE).value,
        "grain": at.radio(key=state.K_GRAIN).value,
        "tz": at.radio(key=state.K_ZONE).value,
    }
    if values["range"] == "custom":
        values["from"] = at.date_input(key=state.K_FROM).value
        values["to"] = at.date_input(key=state.K_TO).value
    return values


def test_a_link_reproduces_the_view(orgs: list[tuple[int, str, str]]) -> None:
    org_id, name, _ = orgs[1]
    query = {
        "org": str(org_id),
        "range": "custom",
        "from": "2026-11-01",
        "to": "2026-11-10",
        "grain": "week",
        "tz": "utc",
    }
    at = make_app(query=query).run()
    assert not at.exception and not at.toast
    assert sidebar_values(at) == {
        "org": org_id,
        "range": "custom",
        "from": dt.date(2026, 11, 1),
        "to": dt.date(2026, 11, 10),
        "grain": "week",
        "tz": "utc",
    }
    assert name in at.title[0].value
    assert at.query_params == query  # the URL is kept as it came


def test_a_slug_in_the_link_selects_the_organization_and_the_url_gets_its_id(
    orgs: list[tuple[int, str, str]],
) -> None:
    org_id, _, slug = orgs[2]
    at = make_app(query={"org": slug}).run()
    assert at.selectbox(key=state.K_ORG).value == org_id
    assert at.query_params["org"] == str(org_id)


def test_changing_a_filter_changes_the_view_and_the_url(orgs: list[tuple[int, str, str]]) -> None:
    at = make_app().run()
    assert at.query_params == {"org": str(orgs[0][0]), "range": "30d", "grain": "day", "tz": "org"}
    assert orgs[0][1] in at.title[0].value

    at.selectbox(key=state.K_ORG).set_value(orgs[3][0]).run()
    at.radio(key=state.K_GRAIN).set_value("month").run()
    at.selectbox(key=state.K_RANGE).set_value("7d").run()
    assert not at.exception
    assert orgs[3][1] in at.title[0].value
    assert at.query_params == {"org": str(orgs[3][0]), "range": "7d", "grain": "month", "tz": "org"}
    assert any("Buckets by month" in c for c in texts(at, "caption"))

    at.run()  # a rerun keeps what the widgets say
    assert at.radio(key=state.K_GRAIN).value == "month"

    # Browser "back" (or an edited address): a URL value this session did not write wins.
    at.query_params["grain"] = "week"
    at.run()
    assert at.radio(key=state.K_GRAIN).value == "week"


def test_custom_dates_round_trip_through_the_url(orgs: list[tuple[int, str, str]]) -> None:
    at = make_app().run()
    at.selectbox(key=state.K_RANGE).set_value("custom").run()
    at.date_input(key=state.K_FROM).set_value(dt.date(2026, 10, 5)).run()
    at.date_input(key=state.K_TO).set_value(dt.date(2026, 10, 20)).run()
    assert at.query_params["range"] == "custom"
    assert (at.query_params["from"], at.query_params["to"]) == ("2026-10-05", "2026-10-20")

    again = make_app(query=dict(at.query_params)).run()
    assert sidebar_values(again) == sidebar_values(at)


def test_bad_link_values_are_dropped_with_a_notice_never_a_traceback(
    orgs: list[tuple[int, str, str]],
) -> None:
    at = make_app(
        query={
            "org": "999999",
            "range": "fortnight",
            "grain": "hour",
            "tz": "mars",
            "from": "2026-02-30",
        }
    ).run()
    assert not at.exception
    notices = texts(at, "toast")
    for fragment in ("org='999999'", "range='fortnight'", "grain='hour'", "tz='mars'", "from="):
        assert any(fragment in n for n in notices), (fragment, notices)
    assert at.query_params == {"org": str(orgs[0][0]), "range": "30d", "grain": "day", "tz": "org"}


def test_a_stale_organization_keeps_the_current_one(orgs: list[tuple[int, str, str]]) -> None:
    at = make_app(query={"org": str(orgs[1][0])}).run()
    at.query_params["org"] = "424242"
    at.run()
    assert any("no such organization" in n for n in texts(at, "toast"))
    assert at.selectbox(key=state.K_ORG).value == orgs[1][0]
    assert at.query_params["org"] == str(orgs[1][0])


def test_filters_survive_switching_pages(orgs: list[tuple[int, str, str]]) -> None:
    at = make_app(query={"org": str(orgs[2][0]), "grain": "week"})
    at = open_page(at, "credits")
    assert not at.exception
    assert at.selectbox(key=state.K_ORG).value == orgs[2][0]
    assert at.radio(key=state.K_GRAIN).value == "week"
    assert orgs[2][1] in at.title[0].value


def test_filters_a_page_does_not_use_are_disabled(orgs: list[tuple[int, str, str]]) -> None:
    at = open_page(make_app(), "usage")
    assert at.selectbox(key=state.K_ORG).disabled
    assert at.radio(key=state.K_GRAIN).disabled
    assert not at.selectbox(key=state.K_RANGE).disabled
