"""Every row a link, the whole view in the URL: a link copied from a page reproduces its
table (same rows, same page) and its CSV, bad link values are dropped with a notice, and
the links in the tables carry ids and the current filters."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
import streamlit as st
from sqlalchemy import Engine, text
from streamlit.testing.v1 import AppTest

from queries.approvals import request_adjustment
from tests.dashboard import test_quotas_page as quotas_tests
from tests.dashboard.apptest import (
    DEMO_RANGE,
    capture_downloads,
    click,
    has_links,
    links_of,
    make_app,
    open_page,
    page_file,
    plain_texts,
    scalar,
    table_with,
    texts,
)


@pytest.fixture
def demo(demo_url: str, use_database: Callable[[str], None]) -> None:
    use_database(demo_url)


def copied(at: AppTest) -> dict[str, str]:
    """The URL as a person would copy it from the address bar."""
    return {key: at.query_params[key] for key in at.query_params}


def open_link(query: dict[str, str], page: str, *, role: str = "admin") -> AppTest:
    """A new session (another person, another tab) opening a link to ``page``.

    AppTest starts on the first page, so the session starts there without the link and
    then opens it, as a browser tab opens ``/<page>?<query>``."""
    at = make_app(role=role).run()
    for key, value in query.items():
        at.query_params[key] = value
    return at.switch_page(page_file(page)).run()


def reopen(at: AppTest, page: str, *, role: str = "admin") -> AppTest:
    """A new session opening the link copied from ``at``."""
    return open_link(copied(at), page, role=role)


def query_of(link: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(link)
    return parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}


def deferred_downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, Callable[[], object]]:
    """file name -> the function a download button calls for its data on a click (AppTest
    never clicks one, so the test calls it)."""
    from streamlit.elements.widgets.button import ButtonMixin

    offered: dict[str, Callable[[], object]] = {}
    original = ButtonMixin.download_button

    def download_button(self: ButtonMixin, label: str, data: object, **kwargs: object) -> object:
        if callable(data) and isinstance(kwargs.get("file_name"), str):
            offered[str(kwargs["file_name"])] = data
        return original(self, label, data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ButtonMixin, "download_button", download_button)
    # st.download_button is the main area's method, bound when streamlit was imported.
    main = st.download_button

    def st_download_button(label: str, data: object, **kwargs: object) -> object:
        if callable(data) and isinstance(kwargs.get("file_name"), str):
            offered[str(kwargs["file_name"])] = data
        return main(label, data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(st, "download_button", st_download_button)
    return offered


def same_rows(left: pd.DataFrame, right: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        left.reset_index(drop=True), right.reset_index(drop=True), check_dtype=False
    )


# ------------------------------------------------------------------- usage review


def test_a_usage_link_reproduces_the_filtered_ranking_and_its_csv(
    demo: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads = capture_downloads(monkeypatch)
    at = open_page(make_app(role="finance", query=DEMO_RANGE), "usage")
    plan = str(table_with(at, "Plan")["Plan"].iloc[0])
    at.multiselect(key="usage.plans").set_value([plan]).run()
    at.text_input(key="usage.search").input("a").run()
    assert not at.exception
    assert at.query_params["plan"] == plan and at.query_params["q"] == "a"
    shown = table_with(at, "Credits consumed")

    again = reopen(at, "usage", role="finance")
    assert not again.exception and not again.toast
    same_rows(table_with(again, "Credits consumed"), shown)
    assert again.multiselect(key="usage.plans").value == [plan]
    csv = pd.read_csv(
        io.BytesIO(downloads[f"usage_2026-10-22_2026-11-20_plan-{plan}_search-a.csv"])
    )
    same_rows(csv, shown.drop(columns=["Adjust"]))


def test_a_name_in_the_ranking_opens_its_overview_with_the_current_filters(
    demo: None,
) -> None:
    at = open_page(make_app(role="finance", query={**DEMO_RANGE, "grain": "week"}), "usage")
    table = table_with(at, "Credits consumed")
    name = str(table["Organization"].iloc[1])
    overview = links_of(at, "usage.table", "Organization")[1]
    adjust = links_of(at, "usage.table", "Adjust")[1]
    assert overview.page == "overview" and adjust.page == "credits"
    assert adjust.query == overview.query  # the same organization and filters
    assert name not in overview.query.values()  # ids, never names

    click(at, "usage.table", 1, "Organization")
    assert not at.exception
    assert at.title[0].value == f"Overview · {name}"
    query = copied(at)
    assert query["range"] == "custom" and query["from"] == "2026-10-22"
    assert query["to"] == "2026-11-20" and query["grain"] == "week"
    assert query["org"] == overview.query["org"]
    # The URL it landed on is the view: a new session opening it shows the same.
    opened = make_app(role="finance", query=query).run()
    assert opened.title[0].value == f"Overview · {name}"


def test_a_name_clicked_opens_the_view_the_link_says_not_the_sessions_last(
    demo: None,
) -> None:
    at = open_page(make_app(role="finance", query=DEMO_RANGE), "usage")
    first = links_of(at, "usage.table", "Organization")[0].query["org"]
    name = str(table_with(at, "Credits consumed")["Organization"].iloc[0])
    # That organization's Overview, on the third page of its generations.
    at = make_app(role="finance", query={**DEMO_RANGE, "org": first}).run()
    at.button(key="overview.next").click().run()
    at.button(key="overview.next").click().run()
    assert "after" in at.query_params
    # Then, from the ranking, its name: the Overview as the link says, the newest first.
    at.switch_page("app_pages/usage.py").run()
    click(at, "usage.table", 0, "Organization")
    assert not at.exception
    assert at.title[0].value == f"Overview · {name}"
    assert "after" not in at.query_params
    assert any(c.startswith("Generations 1–25") for c in texts(at, "caption"))


def test_adjust_in_the_ranking_opens_the_organizations_credits(demo: None) -> None:
    at = open_page(make_app(role="finance", query=DEMO_RANGE), "usage")
    name = str(table_with(at, "Credits consumed")["Organization"].iloc[0])
    click(at, "usage.table", 0, "Adjust")
    assert not at.exception
    assert name in at.title[0].value.replace("\\", "") and "Credits" in at.title[0].value
    assert at.query_params["from"] == "2026-10-22"


def test_managers_get_no_adjust_link(demo: None) -> None:
    at = open_page(make_app(role="manager", query=DEMO_RANGE), "usage")
    assert "Adjust" not in table_with(at, "Credits consumed").columns
    assert list(at.session_state["url._tables"]["usage.table"]) == ["Organization"]


@pytest.mark.parametrize(
    ("params", "notice"),
    [
        ({"plan": "platinum"}, "plan='platinum'"),
        ({"q": "a\x07b"}, "control character"),
        ({"after": "not-a-cursor"}, "after='not-a-cursor'"),
        (
            {"after": "WzIsIjEiLCJ4IiwzLCJjcmVkaXRzX2Rlc2MiXQ"},
            "after=",
        ),  # [2,"1","x",3,...]: a string for an int
    ],
)
def test_bad_usage_link_values_are_dropped_with_a_notice(
    demo: None, params: dict[str, str], notice: str
) -> None:
    at = open_link({**DEMO_RANGE, **params}, "usage", role="finance")
    assert not at.exception and not at.error
    assert any(notice in t for t in plain_texts(at, "toast")), plain_texts(at, "toast")
    assert len(table_with(at, "Credits consumed")) == 30  # the whole, unfiltered list
    for key in params:
        assert key not in at.query_params


# ----------------------------------------------------------------------- overview


def test_an_overview_link_reproduces_the_drilled_down_user_and_page(demo: None) -> None:
    at = make_app(query=DEMO_RANGE).run()
    users = table_with(at, "Email")
    query = links_of(at, "overview.top_users", "User")[1].query
    assert query["grain"] == "day" and query["range"] == "custom"
    user = int(query["user"])
    at.selectbox(key="overview.scope").set_value(user).run()
    at.button(key="overview.next").click().run()
    at.button(key="overview.next").click().run()
    assert not at.exception
    assert at.query_params["user"] == str(user) and "after" in at.query_params
    shown = table_with(at, "Id")
    captions = [c for c in texts(at, "caption") if c.startswith("Generations 51–")]
    assert captions and set(shown["User"]) == {users["User"].iloc[1]}

    again = make_app(query=copied(at)).run()
    assert not again.exception and not again.toast
    assert again.selectbox(key="overview.scope").value == user
    same_rows(table_with(again, "Id"), shown)
    assert [c for c in texts(again, "caption") if c.startswith("Generations 51–")] == captions
    # "Newer" from a page opened by a link goes back to the newest generations.
    again.button(key="overview.previous").click().run()
    assert "after" not in again.query_params
    assert any(c.startswith("Generations 1–25") for c in texts(again, "caption"))


def test_a_top_users_name_opens_that_users_drill_down(demo: None) -> None:
    at = make_app(query=DEMO_RANGE).run()
    users = table_with(at, "Email")
    click(at, "overview.top_users", 0, "User")
    assert not at.exception
    user = int(at.query_params["user"])
    assert at.selectbox(key="overview.scope").value == user
    assert set(table_with(at, "Id")["User"]) == {users["User"].iloc[0]}
    assert at.query_params["from"] == DEMO_RANGE["from"]
    opened = make_app(query=copied(at)).run()  # the URL it landed on, in a new session
    assert not opened.exception
    assert opened.selectbox(key="overview.scope").value == user


@pytest.mark.parametrize(
    ("user", "notice"),
    [("abc", "user='abc'"), ("999999999", "no such user"), ("-1", "user='-1'")],
)
def test_a_bad_user_in_the_link_is_dropped_with_a_notice(
    demo: None, user: str, notice: str
) -> None:
    at = make_app(query={**DEMO_RANGE, "user": user}).run()
    assert not at.exception and not at.error
    assert any(notice in t for t in plain_texts(at, "toast")), plain_texts(at, "toast")
    assert at.selectbox(key="overview.scope").value == 0
    assert "user" not in at.query_params


# -------------------------------------------------------------------- audit trail


def test_an_audit_link_reproduces_the_filtered_page_and_the_csv_holds_it(
    demo: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads = capture_downloads(monkeypatch)
    history = {"range": "custom", "from": "2026-07-01", "to": "2026-11-20"}
    at = open_page(make_app(role="manager", query=history), "audit")
    at.text_input(key="audit.actor").input("@").run()
    at.button(key="audit.next").click().run()
    assert not at.exception
    assert at.query_params["actor"] == "@" and "after" in at.query_params
    shown = table_with(at, "Actor")
    caption = [c for c in texts(at, "caption") if c.startswith("Changes 101–")]
    assert caption and len(shown) > 0

    again = reopen(at, "audit", role="manager")
    assert not again.exception and not again.toast
    same_rows(table_with(again, "Actor"), shown)
    assert [c for c in texts(again, "caption") if c.startswith("Changes 101–")] == caption
    # The CSV holds every page of that filtered list; this page is its rows 101 on.
    again.button(key="audit.prepare_csv").click().run()
    (csv_bytes,) = downloads.values()
    csv = pd.read_csv(io.BytesIO(csv_bytes))
    assert list(csv["Reason"][100 : 100 + len(shown)]) == list(shown["Reason"])
    assert list(csv["Actor"][100 : 100 + len(shown)]) == list(shown["Actor"])


def test_audit_scope_and_action_travel_and_rows_link_to_the_organization(demo: None) -> None:
    at = open_page(make_app(role="manager", query=DEMO_RANGE), "audit")
    at.selectbox(key="audit.action").set_value("set_daily_limit").run()
    first = links_of(at, "audit.table", "Organization")[0].query
    at.selectbox(key="filters.org").set_value(int(first["org"]))
    at.radio(key="audit.scope").set_value("one").run()
    assert (at.query_params["action"], at.query_params["scope"]) == ("set_daily_limit", "org")
    shown = table_with(at, "Actor")
    assert set(shown["Action"]) == {"Daily-limit change"}
    again = reopen(at, "audit", role="manager")
    assert again.radio(key="audit.scope").value == "one"
    same_rows(table_with(again, "Actor"), shown)
    at.radio(key="audit.scope").set_value("all").run()
    rows = table_with(at, "Actor")
    opens = links_of(at, "audit.table", "Organization")
    for name, link in zip(rows["Organization"], opens, strict=True):
        assert link.page == "overview" and link.query["from"] == "2026-10-22"
        assert name not in link.query.values()
    name = str(rows["Organization"].iloc[0])
    click(at, "audit.table", 0, "Organization")
    assert not at.exception and at.title[0].value == f"Overview · {name}"


@pytest.mark.parametrize(
    ("params", "notice"),
    [
        ({"action": "drop_table"}, "action='drop_table'"),
        ({"scope": "everyone"}, "scope='everyone'"),
        ({"actor": "x" * 300}, "too long"),
        ({"after": "W10"}, "after='W10'"),
    ],
)
def test_bad_audit_link_values_are_dropped_with_a_notice(
    demo: None, params: dict[str, str], notice: str
) -> None:
    at = open_link({**DEMO_RANGE, **params}, "audit", role="manager")
    assert not at.exception and not at.error
    assert any(notice in t for t in plain_texts(at, "toast")), plain_texts(at, "toast")
    for key in params:
        assert key not in at.query_params


# ------------------------------------------------------------------------ credits

HISTORY = {"range": "custom", "from": "2026-07-01", "to": "2026-11-20"}


def test_a_credits_link_reproduces_the_ledger_page_and_the_csv_holds_the_list(
    demo: None, demo_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads = deferred_downloads(monkeypatch)
    org = scalar(
        demo_engine,
        "SELECT organization_id FROM credit_ledger WHERE created_at >= '2026-07-01' "
        "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
    )
    at = open_page(make_app(role="finance", query={**HISTORY, "org": str(org)}), "credits")
    at.multiselect(key="credits.kinds").set_value(["grant", "deduct"]).run()
    at.text_input(key="credits.actor").input("@").run()
    at.toggle(key="credits.ledger_dates").set_value(True).run()
    assert at.query_params["kind"] == "grant,deduct" and at.query_params["actor"] == "@"
    assert at.query_params["dates"] == "sidebar"
    # (The demo ledgers fit one page; paging through a link is tested on the
    # Overview and the audit trail, with the same pager.)
    shown = table_with(at, "Balance after")
    assert not at.exception and len(shown) > 0 and set(shown["Kind"]) <= {"grant", "deduct"}

    again = reopen(at, "credits", role="finance")
    assert not again.exception and not again.toast
    assert again.multiselect(key="credits.kinds").value == ["grant", "deduct"]
    assert again.toggle(key="credits.ledger_dates").value is True
    same_rows(table_with(again, "Balance after"), shown)
    # The CSV holds every page of that filtered ledger.
    (name,) = [n for n in downloads if "_kind-deduct-grant" in n and "all-dates" not in n]
    content = downloads[name]()
    assert isinstance(content, bytes)
    csv = pd.read_csv(io.BytesIO(content))
    assert list(csv["Entry"]) == list(shown["Entry"])
    assert list(csv["Reason"]) == list(shown["Reason"])


def test_the_ledger_oldest_first_is_kept_in_the_link_and_the_csv_follows_it(
    demo: None, demo_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads = deferred_downloads(monkeypatch)
    org = scalar(
        demo_engine,
        "SELECT organization_id FROM credit_ledger GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
    )
    at = open_page(make_app(role="finance", query={**HISTORY, "org": str(org)}), "credits")
    newest = table_with(at, "Balance after")
    at.selectbox(key="credits.ledger_sort").set_value("oldest").run()
    oldest = table_with(at, "Balance after")
    assert at.query_params["sort"] == "oldest" and len(oldest) > 1
    assert oldest["Time"].is_monotonic_increasing
    assert oldest["Time"].iloc[0] <= newest["Time"].min()
    again = reopen(at, "credits", role="finance")
    assert not again.exception and not again.toast
    assert again.selectbox(key="credits.ledger_sort").value == "oldest"
    same_rows(table_with(again, "Balance after"), oldest)
    (name,) = [n for n in downloads if n.startswith("ledger_")]
    content = downloads[name]()
    assert isinstance(content, bytes)
    csv = pd.read_csv(io.BytesIO(content))
    assert list(csv["Entry"][: len(oldest)]) == list(oldest["Entry"])


@pytest.mark.parametrize(
    ("params", "notice"),
    [
        ({"kind": "grant,steal"}, "kind='grant,steal'"),
        ({"after": "%%%"}, "after='%%%'"),
        ({"dates": "all"}, "dates='all'"),
    ],
)
def test_bad_credits_link_values_are_dropped_with_a_notice(
    demo: None, params: dict[str, str], notice: str
) -> None:
    at = open_link({**DEMO_RANGE, **params}, "credits", role="finance")
    assert not at.exception and not at.error
    assert any(notice in t for t in plain_texts(at, "toast")), plain_texts(at, "toast")
    assert at.multiselect(key="credits.kinds").value == []


# ------------------------------------------------------------------------- quotas


@pytest.fixture
def today(today_url: str, use_database: Callable[[str], None]) -> None:
    use_database(today_url)


def test_a_quotas_link_reproduces_the_filtered_table(today: None) -> None:
    at = open_page(make_app(role="support"), "quotas")
    everything = table_with(at, "Their today")
    # Filters taken from a row of today's table, so they match whatever today holds at
    # the hour the test runs (at 06:30 UTC no "ok" or "near" row of the first row's type
    # had an "a" in its name, and the filtered table was empty).
    row = everything.iloc[0]
    kind, status, search = str(row["Type"]), str(row["Status"]), str(row["Organization"])[:3]
    statuses = [status, "ok" if status != "ok" else "near"]
    at.multiselect(key="quotas.types").set_value([kind]).run()
    at.multiselect(key="quotas.statuses").set_value(statuses).run()
    at.text_input(key="quotas.search").input(search).run()
    assert not at.exception
    assert at.query_params["type"] == kind
    # The link lists statuses in the order of the page's Status options.
    order = ("over", "at limit", "near", "ok")
    assert at.query_params["status"] == ",".join(s for s in order if s in statuses)
    assert at.query_params["q"] == search
    shown = table_with(at, "Their today")

    again = reopen(at, "quotas", role="support")
    assert not again.exception and not again.toast
    same_rows(table_with(again, "Their today"), shown)


def test_quota_rows_link_to_the_organization_with_the_limit_form_at_the_top(
    today: None,
) -> None:
    at = open_page(make_app(role="support"), "quotas")
    table = table_with(at, "Their today")
    row = table.iloc[0]
    link = links_of(at, "quotas.table", "Organization")[0]
    query = dict(link.query)
    assert link.page == "quotas" and query["org"].isdigit() and query["form"] == "limit"
    assert query["range"] == "30d" and row["Organization"] not in query.values()
    # Over and near the limit (the alert lists), and the heatmap's organizations.
    assert has_links(at, "quotas.heatmap_links")
    assert any(has_links(at, key) for key in ("quotas.over", "quotas.near"))

    click(at, "quotas.table", 0, "Organization")
    assert not at.exception
    headers = [h.value for h in at.subheader]
    assert headers[0].startswith("Change a daily limit"), headers
    assert row["Organization"] in headers[0].replace("\\", "")
    assert at.query_params["form"] == "limit" and at.query_params["org"] == query["org"]
    # Managers read quotas but change no limit: their links open the page as it is.
    manager = open_page(make_app(role="manager"), "quotas")
    plain_query = dict(links_of(manager, "quotas.table", "Organization")[0].query)
    assert "form" not in plain_query
    opened = open_link({**plain_query, "form": "limit"}, "quotas", role="manager")
    assert not opened.exception
    assert not any(h.value.startswith("Change a daily limit") for h in opened.subheader)


@pytest.mark.parametrize(
    ("params", "notice"),
    [
        ({"status": "panic"}, "status='panic'"),
        ({"type": "teleport"}, "type='teleport'"),
        ({"form": "delete"}, "form='delete'"),
    ],
)
def test_bad_quotas_link_values_are_dropped_with_a_notice(
    today: None, params: dict[str, str], notice: str
) -> None:
    at = open_link(params, "quotas", role="support")
    assert not at.exception and not at.error
    assert any(notice in t for t in plain_texts(at, "toast")), plain_texts(at, "toast")
    for key in params:
        assert key not in at.query_params


def test_the_approvals_queue_links_each_request_to_its_organizations_decision(
    fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]
) -> None:
    use_database(fresh_url)
    first, second = (
        int(
            scalar(
                fresh_engine, "SELECT id FROM organizations ORDER BY name LIMIT 1 OFFSET :n", n=n
            )
        )
        for n in (0, 1)
    )
    request = request_adjustment(
        fresh_engine,
        organization_id=second,
        amount=250_000,
        reason="Enterprise renewal",
        note=None,
        actor="ana@example.com",
        idempotency_key="links-approval",
    )
    at = open_page(make_app(role="finance", query={"org": str(first)}), "credits")
    queue = table_with(at, "Requested by").reset_index(drop=True)
    row = int(queue.index[queue["Request"].astype(int) == request.id][0])
    link = links_of(at, "credits.approvals_table", "Organization")[row]
    assert link.page == "credits" and link.query["org"] == str(second)
    assert queue["Organization"][row] not in link.query.values()  # ids, never names

    # A click on the organization's name opens its Credits page in this tab, where its
    # requests are decided.
    click(at, "credits.approvals_table", row, "Organization")
    assert not at.exception
    assert copied(at)["org"] == str(second)
    options = at.selectbox(key="credits.decide_request").options
    assert any(option.startswith(f"#{request.id} ·") for option in options), options


# The Quotas tests' 2,000 organizations with use today (a fixture of that module).
many_quotas = quotas_tests.many_quotas


def test_a_quotas_link_reproduces_a_later_page_of_thousands(many_quotas: Engine) -> None:
    at = open_page(make_app(role="manager"), "quotas")
    at.multiselect(key="quotas.plans").set_value(["pro", "starter"]).run()
    at.button(key="quotas.next").click().run()
    at.button(key="quotas.next").click().run()
    assert not at.exception and "after" in at.query_params
    shown = table_with(at, "Their today")
    caption = [c for c in texts(at, "caption") if c.startswith("101–150 of")]
    assert len(shown) == 50 and caption

    again = reopen(at, "quotas", role="manager")
    assert not again.exception and not again.toast
    same_rows(table_with(again, "Their today"), shown)
    assert [c for c in texts(again, "caption") if c.startswith("101–150 of")] == caption


# ----------------------------------------------------------------- reconciliation


def test_a_drifted_organization_links_to_its_ledger(
    fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]
) -> None:
    use_database(fresh_url)
    with fresh_engine.begin() as conn:
        org = conn.execute(text("SELECT id FROM organizations ORDER BY id LIMIT 1")).scalar_one()
        conn.execute(
            text("UPDATE credit_balances SET balance = balance + 11 WHERE organization_id = :o"),
            {"o": org},
        )
    at = open_page(make_app(role="finance"), "reconciliation")
    # No run recorded on this copy: the page checks when asked.
    at.button(key="reconciliation.check").click().run()
    assert not at.exception
    link = links_of(at, "reconciliation.table", "Organization")[0]
    assert link.page == "credits" and link.query["org"] == str(org)
    click(at, "reconciliation.table", 0, "Organization")
    assert not at.exception and "Credits" in at.title[0].value


# ------------------------------------------------------------- crafted page tokens


def crafted(text: str) -> str:
    """``text`` as an ``after`` token (base64url JSON, as the dashboard writes one)."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# The links of issue 15 that crashed a page or replaced part of it with an error.
CRAFTED_TOKENS = [
    # OverflowError:
    ("quotas", "support", crafted("[2," + "9" * 1200 + ',1,"a",1,"chat","utilization_desc"]')),
    ("audit", "manager", crafted("[" * 1400)),  # RecursionError
    ("credits", "finance", crafted("[" * 1400)),
    ("overview", "admin", crafted("[" * 1400)),
    ("usage", "finance", crafted("[" * 1400)),
    # "The database refused a query (NumericValueOutOfRange)": the source is an integer.
    ("audit", "manager", crafted(f'[2,"2026-11-20T15:30:00+00:00",{2**63 - 1},5,"newest"]')),
    ("audit", "manager", crafted(f'[2,"2026-11-20T15:30:00+00:00",1,{-(2**63 - 1)},"newest"]')),
    ("usage", "finance", crafted(f'[2,1,"x",{-(2**63 - 1)},"credits_desc"]')),
    ("quotas", "support", crafted(f'[2,1,1,"a",{2**63},"chat","utilization_desc"]')),
]


@pytest.mark.parametrize(("page", "role", "token"), CRAFTED_TOKENS)
def test_a_crafted_page_token_shows_the_first_page_with_a_notice(
    today: None, page: str, role: str, token: str
) -> None:
    at = open_link({"after": token}, page, role=role)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, plain_texts(at, "error")
    notices = plain_texts(at, "toast")
    assert any(n.startswith("Ignored after=") and "Showing the first page." in n for n in notices)
    assert "after" not in at.query_params
    assert at.title and at.dataframe, "the page itself is shown, with its tables"


def test_a_bad_token_pasted_into_a_session_on_a_later_page_goes_to_the_first_page(
    demo: None,
) -> None:
    at = open_page(make_app(role="manager", query=HISTORY), "audit")
    first = table_with(at, "Actor")
    at.button(key="audit.next").click().run()
    assert "after" in at.query_params
    at.query_params["after"] = crafted("[" * 1400)
    at.run()
    assert not at.exception and not at.error
    assert any("Showing the first page." in n for n in plain_texts(at, "toast"))
    same_rows(table_with(at, "Actor"), first)
    assert "after" not in at.query_params
