"""Quotas: today's utilization in each organization's own day, who is near or over, an
organization's history, and the audited form that changes a daily limit."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from streamlit.testing.v1 import AppTest

from dashboard import actions, auth
from tests.dashboard.apptest import figures, make_app, open_page, plain, scalar, table_with, texts
from tests.dashboard.shown import shown
from tests.factories import make_org

PENDING = "quotas.pending"
OVER_TODAY = """
    SELECT count(*) FROM usage_limits u JOIN organizations o ON o.id = u.organization_id
    WHERE u.date = (now() AT TIME ZONE o.timezone)::date AND u.used > u.daily_limit
"""


def quotas_page(org: int, *, role: str = "support") -> AppTest:
    at = make_app(role=role, email=f"{role}@example.com", query={"org": str(org)})
    return open_page(at, "quotas")


def first_org(engine: Engine) -> int:
    return int(scalar(engine, "SELECT id FROM organizations ORDER BY name, id LIMIT 1"))


def audit_rows(engine: Engine) -> int:
    return int(scalar(engine, "SELECT count(*) FROM audit_log"))


@pytest.fixture
def today_engine(today_url: str, use_database: Callable[[str], None]) -> Iterator[Engine]:
    use_database(today_url)
    engine = create_engine(today_url)
    yield engine
    engine.dispose()


def test_today_shows_every_organization_and_who_is_near_or_over(today_engine: Engine) -> None:
    at = quotas_page(first_org(today_engine), role="manager")
    assert not at.exception and not at.error
    over = int(scalar(today_engine, OVER_TODAY))
    assert any(m.value.startswith(f"**Over the limit ({over})") for m in at.markdown)
    table = table_with(at, "Their today")
    assert table["Utilization"].dropna().is_monotonic_decreasing
    assert len(table) == int(
        scalar(
            today_engine,
            "SELECT count(*) FROM usage_limits u JOIN organizations o "
            "ON o.id = u.organization_id WHERE u.date = (now() AT TIME ZONE o.timezone)::date",
        )
    )
    names = [f.get("layout", {}).get("yaxis", {}).get("title", {}).get("text") for f in figures(at)]
    assert "Share of the daily limit" in names  # the organization's history, all types
    assert len(figures(at)) == 2  # and the heatmap

    at.selectbox(key="quotas.history_type").set_value("chat").run()
    history = next(f for f in figures(at) if "Generations per day" in json.dumps(f["layout"]))
    assert [t["name"] for t in history["data"]] == ["chat used", "chat limit"]


def test_the_table_filters_by_status(today_engine: Engine) -> None:
    at = quotas_page(first_org(today_engine), role="manager")
    everything = table_with(at, "Their today")
    at.multiselect(key="quotas.statuses").set_value(["ok"]).run()
    ok = table_with(at, "Their today")
    assert set(ok["Status"]) == {"ok"}
    at.multiselect(key="quotas.statuses").set_value(["over", "at limit", "near"]).run()
    alerts = table_with(at, "Their today")
    assert set(alerts["Status"]) <= {"over", "at limit", "near"}
    assert len(ok) + len(alerts) == len(everything)


def test_a_manager_reads_quotas_but_has_no_limit_form(today_engine: Engine) -> None:
    at = quotas_page(first_org(today_engine), role="manager")
    assert not [b for b in at.button if b.label.startswith("Review change")]
    assert any("can read quotas but not change limits" in c for c in texts(at, "caption"))


def test_finance_has_no_quotas_page(today_engine: Engine) -> None:
    at = make_app(role="finance").run()
    at.switch_page("app_pages/quotas.py").run()
    assert at.title[0].value.startswith("Overview")
    assert [plain(str(w.value)) for w in at.main.warning] == [
        "Quotas is for support, manager and admin; your role (finance) cannot open it."
    ]


# ------------------------------------------------------------------ changing a limit


@pytest.fixture
def org(fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]) -> int:
    use_database(fresh_url)
    return first_org(fresh_engine)


def fill(
    at: AppTest,
    *,
    type: str | None = "image",
    limit: int | str | None = 1234,
    reason: str | None = "Customer request",
    note: str = "ticket 9",
    effective: dt.date | None = None,
    until: dt.date | None = None,
) -> AppTest:
    if type is not None:
        at.selectbox(key="quotas.limit_type").set_value(type)
    at.text_input(key="quotas.limit_value").input("" if limit is None else str(limit))
    if reason is not None:
        at.selectbox(key="quotas.limit_reason").set_value(reason)
    at.text_input(key="quotas.limit_note").input(note)
    if effective is not None:
        at.date_input(key="quotas.limit_effective").set_value(effective)
    if until is not None:
        at.date_input(key="quotas.limit_until").set_value(until)
    next(b for b in at.button if b.label == "Review change").click()
    return at.run()


def test_changing_a_limit_sets_it_from_today_and_is_audited(org: int, fresh_engine: Engine) -> None:
    audits = audit_rows(fresh_engine)
    at = fill(quotas_page(org))
    assert not at.exception
    assert any("to 1,234" in m.value for m in at.markdown)
    assert audit_rows(fresh_engine) == audits, "reviewing must not write"
    next(b for b in at.button if b.label == "Confirm limit").click()
    at.run()
    assert not at.exception
    (success,) = texts(at, "success")
    assert "The daily image limit is now 1,234" in success and "audit trail" in success
    assert audit_rows(fresh_engine) == audits + 1
    with fresh_engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT actor, reason, details->>'new_limit' AS new_limit FROM audit_log "
                "WHERE organization_id = :o ORDER BY id DESC LIMIT 1"
            ),
            {"o": org},
        ).one()
        limit_today = conn.execute(
            text(
                "SELECT u.daily_limit FROM usage_limits u JOIN organizations o "
                "ON o.id = u.organization_id WHERE u.organization_id = :o AND u.type = 'image' "
                "AND u.date = (now() AT TIME ZONE o.timezone)::date"
            ),
            {"o": org},
        ).scalar_one()
    assert (row.actor, row.reason, row.new_limit) == (
        "support@example.com",
        "Customer request: ticket 9",
        "1234",
    )
    assert limit_today == 1234
    at.run()  # a rerun does not apply it again
    assert audit_rows(fresh_engine) == audits + 1
    assert (
        table_with(at, "Daily limit now").set_index("Type").loc["image", "Daily limit now"] == 1234
    )


def test_a_limit_until_a_day_is_written_with_its_end_and_shown_as_raised_until_it(
    org: int, fresh_engine: Engine
) -> None:
    today = scalar(
        fresh_engine,
        "SELECT (now() AT TIME ZONE timezone)::date FROM organizations WHERE id = :o",
        o=org,
    )
    until = today + dt.timedelta(days=2)
    after = scalar(
        fresh_engine,
        "SELECT daily_limit FROM limit_in_force(:o, 'image', :d)",
        o=org,
        d=until + dt.timedelta(days=1),
    )
    limit = after + 5
    at = fill(quotas_page(org), limit=limit, until=until)
    assert not at.exception
    label = f"{until.day} {until:%b}" + ("" if until.year == today.year else f" {until:%Y}")
    assert any(f"through {label}" in m.value for m in at.markdown), "the review names the end"
    next(b for b in at.button if b.label == "Confirm limit").click()
    at.run()
    assert not at.exception
    (success,) = texts(at, "success")
    assert f"now {limit:,}" in success and f"through {label}" in success
    stored = scalar(
        fresh_engine,
        "SELECT until FROM limit_changes WHERE organization_id = :o ORDER BY id DESC LIMIT 1",
        o=org,
    )
    assert stored == until
    at.run()
    row = table_with(at, "Daily limit now").set_index("Type").loc["image"]
    assert (row["Daily limit now"], row["Until"]) == (limit, f"raised until {label}")


def test_a_limit_ending_before_it_starts_is_refused_and_writes_nothing(
    org: int, fresh_engine: Engine
) -> None:
    audits = audit_rows(fresh_engine)
    effective = dt.date.today() + dt.timedelta(days=5)
    at = fill(quotas_page(org), effective=effective, until=effective - dt.timedelta(days=1))
    assert not at.exception
    assert any(
        "before the effective day" in e and "Nothing was changed" in e for e in texts(at, "error")
    )
    assert audit_rows(fresh_engine) == audits


@pytest.mark.parametrize("role", ["support", "admin"])
def test_a_limit_changed_from_a_rows_link_form_limit_is_written(
    org: int, fresh_engine: Engine, role: str
) -> None:
    """The link of a quota row opens the form at the top (form=limit); confirming it
    writes the change for whoever may change limits, never "may not change"."""
    audits = audit_rows(fresh_engine)
    at = make_app(role=role, email=f"{role}@example.com", query={"org": str(org), "form": "limit"})
    at = fill(open_page(at, "quotas"))
    assert not at.exception and not at.error
    assert not any("can read quotas but not change limits" in c for c in texts(at, "caption"))
    next(b for b in at.button if b.label == "Confirm limit").click()
    at.run()
    assert not at.exception and not at.error, texts(at, "error")
    (success,) = texts(at, "success")
    assert "The daily image limit is now 1,234" in success
    assert audit_rows(fresh_engine) == audits + 1
    assert scalar(fresh_engine, "SELECT actor FROM audit_log ORDER BY id DESC LIMIT 1") == (
        f"{role}@example.com"
    )


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"type": None}, "Choose a generation type"),
        ({"limit": None}, "Enter the new daily limit"),
        ({"limit": -1}, "whole number such as 1500"),
        ({"reason": None}, "Choose a reason"),
        ({"reason": actions.OTHER, "note": ""}, "explain the reason"),
        ({"effective": dt.date(2020, 1, 1)}, "in the past"),
    ],
    ids=["no-type", "no-limit", "negative", "no-reason", "other-without-note", "past"],
)
def test_an_invalid_limit_change_shows_an_error_and_writes_nothing(
    org: int, fresh_engine: Engine, changes: dict[str, object], error: str
) -> None:
    audits = audit_rows(fresh_engine)
    at = fill(quotas_page(org), **changes)  # type: ignore[arg-type]
    assert not at.exception
    assert any(error in e and "Nothing was changed" in e for e in texts(at, "error"))
    assert PENDING not in at.session_state
    assert audit_rows(fresh_engine) == audits


def test_a_forged_limit_change_is_refused(
    org: int, fresh_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    audits = audit_rows(fresh_engine)
    request = actions.LimitRequest(
        organization_id=org,
        organization_name="forged",
        type="video",
        daily_limit=10_000,
        reason="forged",
        effective=None,
        idempotency_key="forged",
    )
    at = quotas_page(org, role="manager")
    at.session_state[PENDING] = request
    at.run()
    assert any("may not change daily limits" in e for e in texts(at, "error"))

    monkeypatch.setattr(auth, "_secrets", dict)
    monkeypatch.setenv("DASHBOARD_ROLE", "finance")
    with pytest.raises(auth.AccessDenied, match="may not change daily limits"):
        actions.apply_limit_change(request)
    assert audit_rows(fresh_engine) == audits


# ------------------------------------------- whole numbers, drafts, refusals, keys


def confirm_limit(at: AppTest) -> AppTest:
    next(b for b in at.button if b.label.startswith("Confirm limit")).click()
    return at.run()


@pytest.mark.parametrize("typed", ["1.5", "1e3", "0.999", "2.5", "-3", "abc"])
def test_a_limit_that_is_not_a_whole_number_is_refused_never_rounded(
    org: int, fresh_engine: Engine, typed: str
) -> None:
    audits = audit_rows(fresh_engine)
    at = fill(quotas_page(org), limit=typed)
    assert not at.exception
    errors = [e for e in shown(at, "error") if "whole number" in e]
    assert errors and f"not '{typed}'" in errors[0] and "Nothing was changed" in errors[0]
    assert PENDING not in at.session_state
    assert at.text_input(key="quotas.limit_value").value == typed
    assert audit_rows(fresh_engine) == audits


def test_a_limit_grouped_by_commas_is_accepted_and_keeps_its_key_until_it_succeeds(
    org: int, fresh_engine: Engine
) -> None:
    at = quotas_page(org)
    key = at.session_state["quotas.idempotency_key"]
    at = fill(at, limit="1,500")
    request = at.session_state[PENDING]
    assert (request.daily_limit, request.idempotency_key) == (1500, key)
    next(b for b in at.button if b.label == "Back").click()
    at.run()
    assert at.text_input(key="quotas.limit_value").value == "1500"
    at = fill(at, limit="1,500")
    assert at.session_state[PENDING].idempotency_key == key, "a new key before success"
    at = confirm_limit(at)
    assert any("is now 1,500" in s for s in shown(at, "success"))
    assert at.session_state["quotas.idempotency_key"] != key, "the next change gets a new key"


def test_a_nul_in_the_reason_is_refused_clearly_and_the_form_stays_usable(
    org: int, fresh_engine: Engine
) -> None:
    audits = audit_rows(fresh_engine)
    at = fill(quotas_page(org), note="ticket\x00 9")
    assert not at.exception
    errors = [e for e in shown(at, "error") if "NUL" in e]
    assert errors and "note" in errors[0] and "Nothing was changed" in errors[0]
    assert PENDING not in at.session_state
    assert audit_rows(fresh_engine) == audits
    at = confirm_limit(fill(at, note="ticket 9"))
    assert any("is now 1,234" in s for s in shown(at, "success"))
    assert audit_rows(fresh_engine) == audits + 1


def test_a_confirmation_the_database_side_refuses_returns_to_the_form(
    org: int, fresh_engine: Engine
) -> None:
    """A request that passed the form's checks but is refused when it is made (here a
    NUL smuggled into the reason) ends with a clear error, nothing written, and the
    form back: never a confirmation that fails the same way forever."""
    audits = audit_rows(fresh_engine)
    at = fill(quotas_page(org))
    at.session_state[PENDING] = dataclasses.replace(
        at.session_state[PENDING], reason="Customer request: ticket\x00 9"
    )
    at = confirm_limit(at)
    assert not at.exception
    errors = shown(at, "error")
    assert any("Nothing was changed" in e for e in errors), errors
    assert PENDING not in at.session_state
    assert any(b.label == "Review change" for b in at.button)
    assert at.text_input(key="quotas.limit_value").value == "1234"
    assert audit_rows(fresh_engine) == audits


def test_a_limit_change_drafted_for_another_organization_is_refused_until_switched_back(
    org: int, fresh_engine: Engine
) -> None:
    with fresh_engine.connect() as conn:
        (a, a_name), (b, b_name) = conn.execute(
            text("SELECT id, name FROM organizations ORDER BY name, id LIMIT 2")
        ).all()
    audits = audit_rows(fresh_engine)
    at = fill(quotas_page(a))
    at.selectbox(key="filters.org").set_value(b).run()
    assert any(
        f"This limit change was drafted for {a_name} (#{a}), but the page now shows "
        f"{b_name} (#{b})" in w
        for w in shown(at, "warning")
    )
    assert next(x for x in at.button if x.label.startswith("Confirm limit")).disabled
    assert audit_rows(fresh_engine) == audits
    at.selectbox(key="filters.org").set_value(a).run()
    at = confirm_limit(at)
    assert audit_rows(fresh_engine) == audits + 1
    assert (
        scalar(fresh_engine, "SELECT organization_id FROM audit_log ORDER BY id DESC LIMIT 1") == a
    )


# ------------------------------------------------------ thousands of organizations

MANY = 2_000


@pytest.fixture
def many_quotas(
    fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]
) -> Engine:
    """The small load plus 2,000 organizations with use of one type today (UTC):
    organization i used i % 150 of 100, in the test's own copy of the database."""
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
                SELECT o.id, 'chat', (now() AT TIME ZONE 'UTC')::date,
                       substr(o.slug, 6)::int % 150, substr(o.slug, 6)::int % 150, 100
                FROM organizations o WHERE o.slug LIKE 'bulk-%'
                """
            )
        )
    use_database(fresh_url)
    return fresh_engine


def test_thousands_of_organizations_page_the_table_and_cut_the_heatmap(
    many_quotas: Engine,
) -> None:
    at = quotas_page(first_org(many_quotas), role="manager")
    assert not at.exception and not at.error
    table = table_with(at, "Their today")
    assert len(table) == 50  # one page of more than 2,000 pairs
    assert table["Utilization"].dropna().is_monotonic_decreasing
    total = int(
        scalar(
            many_quotas,
            "SELECT count(*) FROM usage_limits u JOIN organizations o "
            "ON o.id = u.organization_id "
            "WHERE u.date = (now() AT TIME ZONE o.timezone)::date",
        )
    )
    assert any(f"of {total:,} with use today" in c for c in texts(at, "caption"))
    heatmap = next(f for f in figures(at) if f["data"] and f["data"][0]["type"] == "heatmap")
    assert len(heatmap["data"][0]["y"]) == 25
    assert any("left out" in c and "25 fullest" in c for c in texts(at, "caption"))

    at.button(key="quotas.next").click().run()
    second = table_with(at, "Their today")
    assert not set(second["Organization"]) & set(table["Organization"])

    # Filters in SQL: pro organizations over their limit, "bulk 01" in the name.
    at.multiselect(key="quotas.plans").set_value(["pro"]).run()
    at.multiselect(key="quotas.statuses").set_value(["over"]).run()
    at.text_input(key="quotas.search").input("bulk 01").run()
    assert not at.exception
    shown = table_with(at, "Their today")
    assert set(shown["Status"]) == {"over"} and set(shown["Plan"]) == {"pro"}
    assert all(n.startswith("Bulk 01") for n in shown["Organization"])
    # Bulk 01000-01999, i % 4 == 2, 100 < i % 150 < 150: counted in Python.
    expected = sum(1 for i in range(1000, 2000) if i % 4 == 2 and i % 150 > 100)
    assert any(f"of {expected:,} matching" in c for c in texts(at, "caption"))


def test_the_limits_in_force_reach_back_past_any_window_and_name_the_plan_default(
    fresh_engine: Engine, fresh_url: str, use_database: Callable[[str], None]
) -> None:
    """A limit set long ago is still the one in force, and a type never limited shows
    the plan's default: the rule the writes use (limit_in_force), not a 90-day look."""
    use_database(fresh_url)
    long_ago = dt.date.today() - dt.timedelta(days=400)
    with fresh_engine.begin() as conn:
        org = make_org(conn, name="Long ago Ltd", plan="starter")
        conn.execute(
            text(
                "INSERT INTO usage_limits (organization_id, type, date, used, credits_used, "
                "daily_limit) VALUES (:o, 'image', :d, 0, 0, 4321)"
            ),
            {"o": org, "d": long_ago},
        )
        defaults: dict[str, int] = dict(
            conn.execute(text("SELECT type, default_daily_limit FROM generation_types")).all()
        )
    at = quotas_page(org)
    assert not at.exception
    rows = table_with(at, "Daily limit now").set_index("Type")
    assert rows.loc["image", "Daily limit now"] == 4321
    assert rows.loc["image", "From"] == f"set for {long_ago}"
    assert rows.loc["chat", "Daily limit now"] == int(defaults["chat"] * 3 // 10)
    assert rows.loc["chat", "From"] == "starter plan default"


def test_sort_by_orders_the_table_and_is_kept_in_the_url(today_engine: Engine) -> None:
    at = quotas_page(first_org(today_engine), role="manager")
    at.selectbox(key="quotas.sort").set_value("limit_desc").run()
    assert not at.exception
    assert at.query_params["sort"] == "limit_desc"
    table = table_with(at, "Their today")
    assert table["Daily limit"].is_monotonic_decreasing
    at.selectbox(key="quotas.sort").set_value("name_asc").run()
    names = list(table_with(at, "Their today")["Organization"])
    with today_engine.connect() as conn:
        expected = list(
            conn.scalars(
                text(
                    "SELECT o.name FROM usage_limits u"
                    " JOIN organizations o ON o.id = u.organization_id"
                    " WHERE u.date = (now() AT TIME ZONE o.timezone)::date"
                    " ORDER BY o.name, o.id, u.type LIMIT 50"
                )
            )
        )
    assert names == expected
    # A link with an order that does not exist: a notice, and the fullest first.
    linked = make_app(role="manager", query={"org": str(first_org(today_engine)), "sort": "x"})
    linked = open_page(linked, "quotas")
    assert any("Ignored sort='x'" in plain(t) for t in texts(linked, "toast"))
    assert table_with(linked, "Their today")["Utilization"].dropna().is_monotonic_decreasing


def _most_alone(engine: Engine, org: int, type: str) -> int:
    # The plan's limit times the default LIMIT_APPROVAL_FACTOR, 10.
    return 10 * int(
        scalar(
            engine,
            "SELECT floor(t.default_daily_limit * plan_limit_factor(o.plan))::int "
            "FROM organizations o, generation_types t WHERE o.id = :o AND t.type = :t",
            o=org,
            t=type,
        )
    )


def test_a_limit_above_the_approval_factor_is_requested_then_approved_by_a_second_person(
    org: int, fresh_engine: Engine
) -> None:
    limit = _most_alone(fresh_engine, org, "image") + 1
    before = scalar(
        fresh_engine,
        "SELECT f.daily_limit FROM organizations o, "
        "limit_in_force(o.id, 'image', (now() AT TIME ZONE o.timezone)::date) f WHERE o.id = :o",
        o=org,
    )
    at = fill(quotas_page(org), limit=limit)
    assert not at.exception
    assert any("needs a second person" in w for w in texts(at, "warning")), "the review says so"
    next(b for b in at.button if b.label == "Request approval").click()
    at.run()
    assert not at.exception
    (success,) = texts(at, "success")
    assert "needs a second person" in success and "Nothing changes" in success
    request_id, status = (
        scalar(
            fresh_engine, "SELECT max(id) FROM limit_requests WHERE organization_id = :o", o=org
        ),
        scalar(
            fresh_engine,
            "SELECT status FROM limit_requests WHERE organization_id = :o ORDER BY id DESC LIMIT 1",
            o=org,
        ),
    )
    assert status == "pending"
    assert any("a second person decides on it" in c.value for c in at.caption), "not for me"
    assert not [b for b in at.button if b.key == f"quotas.approve.{request_id}"]

    lead = make_app(role="support", email="lead@example.com", query={"org": str(org)})
    lead = open_page(lead, "quotas")
    next(b for b in lead.button if b.key == f"quotas.reject.{request_id}").click()
    lead.run()
    assert any("Choose why" in e for e in texts(lead, "error")), "a rejection needs a reason"
    next(b for b in lead.button if b.key == f"quotas.approve.{request_id}").click()
    lead.run()
    assert not lead.exception
    (approved,) = texts(lead, "success")
    assert f"Approved limit request {request_id}" in approved and f"{limit:,}" in approved
    with fresh_engine.connect() as conn:
        audit = conn.execute(
            text(
                "SELECT actor, details FROM audit_log WHERE organization_id = :o "
                "AND action = 'set_daily_limit' ORDER BY id DESC LIMIT 1"
            ),
            {"o": org},
        ).one()
    assert audit.actor == "lead@example.com"
    assert audit.details["requested_by"] == "support@example.com"
    assert (audit.details["old_limit"], audit.details["new_limit"]) == (before, limit)
    assert (
        table_with(lead, "Daily limit now").set_index("Type").loc["image", "Daily limit now"]
        == limit
    )


# ------------------------------------------------------------------ hard or soft limits


def switch(at: AppTest, *, type: str | None = "image", mode: str | None = "soft") -> AppTest:
    if type is not None:
        at.selectbox(key="quotas.mode_type").set_value(type)
    if mode is not None:
        at.radio(key="quotas.mode").set_value(mode)
    at.selectbox(key="quotas.mode_reason").set_value("Exception agreed with the customer")
    at.text_input(key="quotas.mode_note").input("ticket 12")
    next(b for b in at.button if b.label == "Review switch").click()
    return at.run()


def test_a_limit_made_soft_is_reviewed_confirmed_audited_and_shown(
    org: int, fresh_engine: Engine
) -> None:
    audits = audit_rows(fresh_engine)
    at = switch(quotas_page(org))
    assert not at.exception
    assert any("limit of" in m.value and "soft?" in m.value for m in at.markdown)
    assert audit_rows(fresh_engine) == audits, "reviewing must not write"
    next(b for b in at.button if b.label == "Confirm switch").click()
    at.run()
    assert not at.exception
    (success,) = texts(at, "success")
    assert "The daily image limit" in success and "is now soft (was hard)" in success
    with fresh_engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT action, actor, reason, details FROM audit_log "
                "WHERE organization_id = :o ORDER BY id DESC LIMIT 1"
            ),
            {"o": org},
        ).one()
        soft = conn.execute(
            text(
                "SELECT soft FROM limit_enforcement WHERE organization_id = :o AND type = 'image'"
            ),
            {"o": org},
        ).scalar_one()
    assert tuple(row) == (
        "set_limit_enforcement",
        "support@example.com",
        "Exception agreed with the customer: ticket 12",
        {"type": "image", "old_mode": "hard", "new_mode": "soft"},
    )
    assert soft is True
    at.run()  # a rerun does not switch it again
    assert audit_rows(fresh_engine) == audits + 1
    assert table_with(at, "Daily limit now").set_index("Type").loc["image", "Limit"] == "soft"


def test_a_switch_without_a_mode_is_refused_and_writes_nothing(
    org: int, fresh_engine: Engine
) -> None:
    audits = audit_rows(fresh_engine)
    at = switch(quotas_page(org), mode=None)
    assert [plain(str(e.value)) for e in at.error] == ["Choose hard or soft. Nothing was changed."]
    assert audit_rows(fresh_engine) == audits


def test_a_manager_has_no_hard_or_soft_control(today_engine: Engine) -> None:
    at = quotas_page(first_org(today_engine), role="manager")
    assert not [b for b in at.button if b.label == "Review switch"]


def test_todays_table_shows_a_soft_limit_and_its_overage(org: int, fresh_engine: Engine) -> None:
    with fresh_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO limit_enforcement (organization_id, type, soft) "
                "VALUES (:o, 'image', true)"
            ),
            {"o": org},
        )
        # Far past its limit today, so it leads the table (fullest first).
        conn.execute(
            text(
                "INSERT INTO usage_limits (organization_id, type, date, used, daily_limit) "
                "SELECT id, 'image', (now() AT TIME ZONE timezone)::date, 9000, 3 "
                "FROM organizations WHERE id = :o "
                "ON CONFLICT (organization_id, type, date) "
                "DO UPDATE SET used = 9000, daily_limit = 3"
            ),
            {"o": org},
        )
        name = conn.execute(text("SELECT name FROM organizations WHERE id = :o"), {"o": org})
    at = quotas_page(org)
    assert not at.exception
    table = table_with(at, "Their today")
    row = table[(table["Organization"] == name.scalar_one()) & (table["Type"] == "image")]
    assert row[["Used", "Daily limit", "Limit", "Overage"]].to_dict("records") == [
        {"Used": 9000, "Daily limit": 3, "Limit": "soft", "Overage": 8997}
    ]
    assert set(table.loc[table["Overage"].isna(), "Limit"]) <= {"hard", "soft"}
