"""The shared filters: presets, reading a URL, and the URL and widgets kept in step."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import streamlit as st
from hypothesis import given, settings
from hypothesis import strategies as hs
from sqlalchemy import Engine, create_engine, text
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Selectbox

from dashboard import state
from queries.checks import MAX_DATE, MIN_DATE
from queries.errors import InvalidInput
from tests.dashboard.apptest import make_app, open_page, page_file, plain_texts, texts
from tooling.demo_data import append_only_guard_lifted

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
        ({"from": "2026-13-01", "to": "2026-12-01"}, "not a real date"),
        ({"from": "0001-01-01", "to": "2026-01-31"}, "outside the years 2000–2100"),
        ({"from": "2026-01-01", "to": "9999-12-31"}, "outside the years 2000–2100"),
        ({"from": "٢٠٢٦-01-01", "to": "2026-01-02"}, "written YYYY-MM-DD"),
        ({"org": "²"}, "no such organization"),
        ({"org": "①"}, "no such organization"),
        ({"org": "٣"}, "no such organization"),  # an Arabic-Indic three is not 3
        ({"org": "5" * 5000}, "not an organization id"),
        ({"org": "0"}, "not an organization id"),
        ({"org": "x" * 201}, "slug in a link can be at most 200 characters"),
        ({"org": "-3"}, "no such organization"),
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


def test_a_long_url_value_is_cut_short_in_its_notice() -> None:
    (notice,) = state.parse_url({"org": "5" * 5000}, ORGS).notices
    assert len(notice) < 200


def test_a_lookup_that_refuses_the_value_is_a_notice_not_an_error() -> None:
    def refusing(key: int | str) -> state.Organization | None:
        raise InvalidInput("The search is too long (at most 200 characters).")

    url = state.parse_url({"org": "acme", "range": "7d"}, refusing)
    assert url.org is None and url.preset == "7d"  # the rest of the link still applies
    assert url.notices == [
        "Ignored org='acme' from the link: The search is too long (at most 200 characters)."
    ]


def test_a_201_character_slug_in_the_link_keeps_the_page_with_a_notice(
    demo_url: str, use_database: Callable[[str], None]
) -> None:
    use_database(demo_url)
    at = make_app(role="manager", query={"org": "x" * 201}).run()
    assert not at.exception and not at.error, plain_texts(at, "error")
    assert any("at most 200 characters" in n for n in plain_texts(at, "toast"))
    assert at.title[0].value.startswith("Overview · ")  # the first organization's page


_URL_VALUE = hs.one_of(hs.text(), hs.lists(hs.text(), max_size=4))
_INTERESTING = hs.sampled_from(
    ["", " ", "3", "7", "acme", "²", "①", "5" * 5000, "0001-01-01", "9999-12-31", "2026-01-01",
     "custom", "day", "utc", "\x00", "![x](http://h/p.png)"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    params=hs.dictionaries(
        hs.one_of(hs.sampled_from(state.URL_KEYS), hs.text(max_size=5)),
        hs.one_of(_URL_VALUE, _INTERESTING, hs.lists(_INTERESTING, max_size=3)),
    )
)
def test_parsing_any_url_never_raises_and_keeps_only_checked_values(
    params: dict[str, str | list[str]],
) -> None:
    url = state.parse_url(params, ORGS)
    assert url.org in (None, 3, 7)
    assert url.preset in (None, *state.PRESETS)
    assert url.grain in (None, *state.GRAINS) and url.zone in (None, *state.ZONES)
    for day in (url.start, url.end):
        assert day is None or MIN_DATE <= day <= MAX_DATE
    assert (url.start is None) == (url.end is None)
    assert all(isinstance(notice, str) for notice in url.notices)


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
    notices = plain_texts(at, "toast")
    for fragment in ("org='999999'", "range='fortnight'", "grain='hour'", "tz='mars'", "from="):
        assert any(fragment in n for n in notices), (fragment, notices)
    assert at.query_params == {"org": str(orgs[0][0]), "range": "30d", "grain": "day", "tz": "org"}


def test_a_stale_organization_keeps_the_current_one(orgs: list[tuple[int, str, str]]) -> None:
    at = make_app(query={"org": str(orgs[1][0])}).run()
    at.query_params["org"] = "424242"
    at.run()
    assert any("no such organization" in n for n in plain_texts(at, "toast"))
    assert at.selectbox(key=state.K_ORG).value == orgs[1][0]
    assert at.query_params["org"] == str(orgs[1][0])


def test_filters_survive_switching_pages(orgs: list[tuple[int, str, str]]) -> None:
    at = make_app(query={"org": str(orgs[2][0]), "grain": "week"})
    at = open_page(at, "credits")
    assert not at.exception
    assert at.selectbox(key=state.K_ORG).value == orgs[2][0]
    assert at.radio(key=state.K_GRAIN).value == "week"
    assert orgs[2][1] in at.title[0].value


def drawn(at: AppTest) -> set[str]:
    """The keys of the widgets drawn in the sidebar."""
    kinds = ("selectbox", "radio", "text_input", "date_input")
    return {str(w.key) for kind in kinds for w in getattr(at.sidebar, kind)}


def test_filters_a_page_does_not_use_are_hidden_and_keep_their_value(
    orgs: list[tuple[int, str, str]],
) -> None:
    at = make_app(query={"org": str(orgs[2][0]), "grain": "week", "tz": "utc"})
    at = open_page(at, "usage")  # uses the dates only
    assert not at.exception
    shown = drawn(at)
    assert state.K_RANGE in shown
    for hidden in (state.K_ORG, state.K_ORG_SEARCH, state.K_GRAIN, state.K_ZONE):
        assert hidden not in shown, hidden
    assert not any(w.disabled for w in at.sidebar.selectbox)  # hidden, not greyed out
    at.run()  # a second run without them still remembers them
    assert at.query_params["grain"] == "week" and at.query_params["tz"] == "utc"
    assert at.query_params["org"] == str(orgs[2][0])

    at = at.switch_page("app_pages/overview.py").run()  # a page that uses them all
    assert at.selectbox(key=state.K_ORG).value == orgs[2][0]
    assert at.radio(key=state.K_GRAIN).value == "week"
    assert at.radio(key=state.K_ZONE).value == "utc"

    at = at.switch_page("app_pages/reconciliation.py").run()  # uses none
    assert not at.exception
    assert not drawn(at) & {state.K_ORG, state.K_RANGE, state.K_GRAIN, state.K_ZONE}
    assert "Filters" not in [h.value for h in at.sidebar.header]


@pytest.mark.parametrize("page", ["overview", "audit"])
@pytest.mark.parametrize(
    "query",
    [
        {"org": "²"},
        {"org": "①"},
        {"org": "9" * 5000},
        {"range": "custom", "from": "0001-01-01", "to": "0001-01-31"},
        {"range": "custom", "from": "2026-11-01", "to": "9999-12-31"},
        {"org": "![x](http://127.0.0.1:9/p.png)"},
    ],
)
def test_crafted_link_values_give_a_notice_never_an_error_box(
    orgs: list[tuple[int, str, str]], page: str, query: dict[str, str]
) -> None:
    at = make_app(query=query)
    at.run()
    at.switch_page(page_file(page)).run()
    at = make_app(query=query)  # a fresh session straight onto the page, as a pasted link
    at.switch_page(page_file(page)).run()
    assert not at.exception
    assert not texts(at, "error"), texts(at, "error")
    notices = plain_texts(at, "toast")
    assert notices and all(n.startswith("Ignored ") for n in notices), notices
    # Toasts are Markdown: what the link said is escaped, so it cannot become an image.
    assert not any("![" in raw or "](" in raw for raw in texts(at, "toast"))
    assert at.selectbox(key=state.K_ORG).value == orgs[0][0]


# -------------------------------------------- the selection is held by id


@pytest.fixture
def writable_orgs(
    fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]
) -> list[tuple[int, str]]:
    use_database(fresh_url)
    with fresh_engine.connect() as conn:
        rows = conn.execute(text("SELECT id, name FROM organizations ORDER BY name")).all()
    return [(int(r[0]), str(r[1])) for r in rows]


def _sql(engine: Engine, statement: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)
    st.cache_data.clear()  # the organization list is cached; this is its expiry


def _browser_sends(at: AppTest, key: str, label: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``at`` once with the selectbox ``key`` sending ``label`` back, as a browser
    does with the label it shows (AppTest itself only sends labels among the options)."""
    box_id = at.selectbox(key=key).id
    original = Selectbox._widget_state

    def sent(self: Selectbox[Any]) -> WidgetState:
        if self.id != box_id:
            return original.fget(self)  # type: ignore[attr-defined,no-any-return]
        return WidgetState(id=box_id, string_value=label)

    with monkeypatch.context() as patched:
        patched.setattr(Selectbox, "_widget_state", property(sent))
        at.run()


def test_renaming_or_adding_organizations_keeps_the_selection(
    writable_orgs: list[tuple[int, str]], fresh_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen, _ = writable_orgs[2]
    at = make_app().run()
    at.selectbox(key=state.K_ORG).set_value(chosen).run()
    assert at.query_params["org"] == str(chosen)
    shown = at.selectbox(key=state.K_ORG).options[2]  # the label the browser holds

    # Renamed so that it sorts last, while it is selected.
    _sql(fresh_engine, "UPDATE organizations SET name = 'Zzzz renamed' WHERE id = :id", id=chosen)
    at.run()
    assert not at.exception
    assert at.selectbox(key=state.K_ORG).value == chosen
    assert "Zzzz renamed" in at.title[0].value
    # A browser sends back the label it showed before the rename (Streamlit exchanges a
    # selectbox's value as its label); no option has it any more. That used to reset the
    # picker to the first organization by name.
    _browser_sends(at, state.K_ORG, shown, monkeypatch)
    assert not at.exception
    assert at.selectbox(key=state.K_ORG).value == chosen
    assert "Zzzz renamed" in at.title[0].value
    assert at.query_params["org"] == str(chosen)

    # A new organization that sorts before every other one.
    _sql(
        fresh_engine,
        "INSERT INTO organizations (name, slug, timezone, plan) "
        "VALUES ('AAA first', 'aaa-first', 'UTC', 'free')",
    )
    at.run()
    assert at.selectbox(key=state.K_ORG).options[0].startswith("AAA first")
    assert at.selectbox(key=state.K_ORG).value == chosen
    assert "Zzzz renamed" in at.title[0].value
    assert not at.toast

    # A person's own choice still changes it.
    other = writable_orgs[4][0]
    at.selectbox(key=state.K_ORG).set_value(other).run()
    assert at.selectbox(key=state.K_ORG).value == other
    assert at.query_params["org"] == str(other)


# Children first; each statement written out, never assembled.
# Every table with a key to organizations (the demo load gives some organizations limit
# changes, requests and alerts; which ones depends on the day it ends).
_REMOVE_ORGANIZATION = (
    "DELETE FROM limit_changes WHERE organization_id = :id",
    "DELETE FROM limit_requests WHERE organization_id = :id",
    "DELETE FROM limit_enforcement WHERE organization_id = :id",
    "DELETE FROM approval_requests WHERE organization_id = :id",
    "DELETE FROM alert_deliveries WHERE organization_id = :id",
    "DELETE FROM reconciliation_checkpoints WHERE organization_id = :id",
    "DELETE FROM usage_edges WHERE organization_id = :id",
    "DELETE FROM user_daily_usage WHERE organization_id = :id",
    "DELETE FROM quarter_hour_usage WHERE organization_id = :id",
    "DELETE FROM organization_daily_usage WHERE organization_id = :id",
    "DELETE FROM organization_monthly_usage WHERE organization_id = :id",
    "DELETE FROM usual_days WHERE organization_id = :id",
    "DELETE FROM generations WHERE organization_id = :id",
    "DELETE FROM usage_limits WHERE organization_id = :id",
    "DELETE FROM credit_grants WHERE organization_id = :id",
    "DELETE FROM credit_ledger WHERE organization_id = :id",
    "DELETE FROM credit_balances WHERE organization_id = :id",
    "DELETE FROM audit_log WHERE organization_id = :id",
    "DELETE FROM users WHERE organization_id = :id",
)


def test_a_removed_organization_is_reported_not_replaced(
    writable_orgs: list[tuple[int, str]], fresh_engine: Engine
) -> None:
    chosen, name = writable_orgs[3]
    at = open_page(make_app(query={"org": str(chosen), "grain": "week"}), "credits")
    assert name in at.title[0].value
    # Its rows go with it (a test database; the product never deletes an organization,
    # and the append-only guard must be lifted, as the demo reset does, to try).
    with fresh_engine.begin() as conn, append_only_guard_lifted(conn):
        # Held here, not found on the day the demo load happens to fill a new table.
        keyed = conn.execute(
            text(
                "SELECT conrelid::regclass::text FROM pg_constraint "
                "WHERE contype = 'f' AND confrelid = 'organizations'::regclass"
            )
        ).scalars()
        assert set(keyed) <= {s.split()[2] for s in _REMOVE_ORGANIZATION}
        for statement in _REMOVE_ORGANIZATION:
            conn.execute(text(statement), {"id": chosen})
        conn.execute(text("DELETE FROM organizations WHERE id = :id"), {"id": chosen})
    st.cache_data.clear()  # the organization list is cached; this is its expiry
    at.run()
    assert not at.exception
    (warning,) = [w for w in plain_texts(at, "warning") if "no longer in the database" in w]
    assert f"{name} (id {chosen})" in warning
    assert at.selectbox(key=state.K_ORG).value is None
    assert not at.metric and not at.dataframe  # nothing shown for another organization

    other = writable_orgs[0][0]
    at.selectbox(key=state.K_ORG).set_value(other).run()
    assert not at.exception
    assert at.selectbox(key=state.K_ORG).value == other
    assert at.radio(key=state.K_GRAIN).value == "week"  # the other filters were kept
    assert at.metric


# ------------------------------------------- thousands of organizations in the picker

MANY = 2_000


@pytest.fixture
def many_orgs(fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]) -> Engine:
    """The small load plus 2,000 organizations (one INSERT ... SELECT, in the test's own
    copy of the database)."""
    _sql(
        fresh_engine,
        """
        INSERT INTO organizations (name, slug, plan, timezone)
        SELECT 'Tenant ' || lpad(i::text, 5, '0'), 'tenant-' || i,
               (ARRAY['free', 'starter', 'pro', 'enterprise'])[1 + i % 4], 'Asia/Kolkata'
        FROM generate_series(1, :n) AS i
        """,
        n=MANY,
    )
    use_database(fresh_url)
    return fresh_engine


def _org_id(engine: Engine, slug: str) -> int:
    with engine.connect() as conn:
        found = conn.execute(text("SELECT id FROM organizations WHERE slug = :s"), {"s": slug})
        return int(found.scalar_one())


def test_the_picker_lists_one_page_and_searches_the_server(many_orgs: Engine) -> None:
    at = make_app().run()
    assert not at.exception
    picker = at.selectbox(key=state.K_ORG)
    assert len(picker.options) == state.PICKER_PAGE  # not 2,008
    assert any("first 50 matches" in c for c in texts(at, "caption"))

    # A tenant far down the list by name is found by the search box, on the server.
    at.text_input(key=state.K_ORG_SEARCH).input("tenant 01999").run()
    picker = at.selectbox(key=state.K_ORG)
    wanted = _org_id(many_orgs, "tenant-1999")
    selected = int(at.query_params["org"])
    first = at.title[0].value
    # The selection stays, first, whatever the search; then the match.
    assert picker.value == selected
    assert picker.options[1:] == ["Tenant 01999 · tenant-1999"]
    picker.set_value(wanted).run()
    assert not at.exception
    assert "Tenant 01999" in at.title[0].value
    assert at.query_params["org"] == str(wanted)

    # An id typed in the box finds that organization first, whatever its name.
    at.text_input(key=state.K_ORG_SEARCH).input(str(selected)).run()
    options = at.selectbox(key=state.K_ORG).options
    assert options[0].startswith("Tenant 01999")  # the selection
    assert options[1].split(" · ")[0] in first  # the exact id
    # A search without matches says so, and keeps the selection.
    at.text_input(key=state.K_ORG_SEARCH).input("no such tenant").run()
    assert at.selectbox(key=state.K_ORG).value == wanted
    assert at.selectbox(key=state.K_ORG).options == ["Tenant 01999 · tenant-1999"]
    assert any("No organization matches" in c for c in texts(at, "caption"))


def test_a_slug_far_down_the_list_in_a_link_is_resolved_on_the_server(
    many_orgs: Engine,
) -> None:
    wanted = _org_id(many_orgs, "tenant-1500")
    at = make_app(query={"org": "tenant-1500"}).run()
    assert not at.exception and not at.toast
    assert at.selectbox(key=state.K_ORG).value == wanted
    assert "Tenant 01500" in at.title[0].value
    assert at.query_params["org"] == str(wanted)


def test_the_sidebar_reads_a_bounded_number_of_rows_and_statements(many_orgs: Engine) -> None:
    from queries.db import get_engine
    from tests.statements import recording

    at = make_app()
    at.run()
    st.cache_data.clear()
    with recording(get_engine()) as recorded:
        at.run()
    assert not at.exception
    sent = [s for s, _ in recorded.statements]
    # The picker reads one page (LIMIT 51) and the selected organization by id; the
    # whole list (orgs.list_organizations) is never read.
    pages = [s for s in sent if "FROM organizations" in s and "ORDER BY name, id" in s]
    assert len(pages) == 1 and "LIMIT" in pages[0], pages
    assert not any("FROM organizations ORDER BY name, id" in s for s in sent)
    assert len(sent) <= 12, sent  # the Overview page's reads included
