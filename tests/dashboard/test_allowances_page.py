"""Credits page, plan allowances: finance reads every plan's allowance and rollover cap;
only an admin changes one, reviewed then confirmed once, recorded with who and why."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from dashboard import actions, auth
from dashboard.app_pages.credits.allowances import K_PENDING
from tests.dashboard.apptest import make_app, open_page, plain, scalar, table_with, texts

FORM = "credits.allowance_"


@pytest.fixture
def org(fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]) -> int:
    use_database(fresh_url)
    return int(scalar(fresh_engine, "SELECT id FROM organizations ORDER BY name, id LIMIT 1"))


def credits_page(org: int, role: str) -> AppTest:
    at = make_app(role=role, email=f"{role}@example.com", query={"org": str(org)})
    return open_page(at, "credits")


def changes(engine: Engine) -> int:
    return int(scalar(engine, "SELECT count(*) FROM plan_allowance_changes"))


def review(
    at: AppTest, *, plan: str = "pro", monthly: str = "120,000", cap: str = "60000"
) -> AppTest:
    at.selectbox(key=FORM + "plan").set_value(plan)
    at.text_input(key=FORM + "monthly").input(monthly)
    at.text_input(key=FORM + "cap").input(cap)
    at.selectbox(key=FORM + "reason").set_value("New price list")
    next(b for b in at.button if b.label == "Review change").click()
    return at.run()


def test_finance_reads_the_plans_allowances_without_a_form(org: int) -> None:
    at = credits_page(org, "finance")
    assert not at.exception
    plans = table_with(at, "Rollover cap")
    assert list(plans["Plan"]) == ["Free", "Starter", "Pro", "Enterprise"]
    assert list(plans["Monthly allowance"]) == [1_000, 20_000, 100_000, 1_000_000]
    assert not [b for b in at.button if b.label == "Review change"]


def test_an_admin_changes_a_plan_once_with_who_and_why(org: int, fresh_engine: Engine) -> None:
    before = changes(fresh_engine)
    at = review(credits_page(org, "admin"))
    assert isinstance(at.session_state[K_PENDING], actions.AllowanceRequest)
    assert changes(fresh_engine) == before, "reviewing must not write"
    pending = at.session_state[K_PENDING]

    next(b for b in at.button if b.label == "Confirm change").click()
    at = at.run()
    assert not at.exception
    (success,) = texts(at, "success")
    assert "now grants 120,000 credits a month (was 100,000)" in plain(success)
    row = scalar(
        fresh_engine,
        "SELECT actor || '|' || reason || '|' || monthly_allowance || '|' || rollover_cap "
        "FROM plan_allowance_changes ORDER BY id DESC LIMIT 1",
    )
    assert row == "admin@example.com|New price list|120000|60000"
    assert list(table_with(at, "Rollover cap")["Monthly allowance"])[2] == 120_000

    # The same request again (a double click, a lost answer): recorded once.
    at.session_state[K_PENDING] = pending
    at.run()
    next(b for b in at.button if b.label.startswith("Confirm change")).click()
    at = at.run()
    assert changes(fresh_engine) == before + 1


def test_an_unchanged_or_bad_amount_is_refused_under_the_form(
    org: int, fresh_engine: Engine
) -> None:
    before = changes(fresh_engine)
    at = review(credits_page(org, "admin"), monthly="100,000", cap="50,000")
    assert any("already has 100,000 credits a month" in plain(e) for e in texts(at, "error"))
    at = review(at, monthly="1.5")
    assert any("must be a whole number" in plain(e) for e in texts(at, "error"))
    assert changes(fresh_engine) == before


def _forged() -> actions.AllowanceRequest:
    return actions.AllowanceRequest(
        organization_id=actions.PLAN_ORGANIZATION,
        organization_name=actions.PLAN_ORGANIZATIONS,
        plan="pro",
        monthly_allowance=1,
        rollover_cap=1,
        old_monthly_allowance=100_000,
        old_rollover_cap=50_000,
        reason="New price list",
        idempotency_key="forged",
    )


def test_a_forged_request_from_finance_is_discarded(org: int, fresh_engine: Engine) -> None:
    before = changes(fresh_engine)
    at = credits_page(org, "finance")
    at.session_state[K_PENDING] = _forged()
    at = at.run()
    assert any("may not change a plan's allowance" in plain(e) for e in texts(at, "error"))
    assert K_PENDING not in at.session_state
    assert changes(fresh_engine) == before


def test_the_write_handler_checks_the_role_itself(
    org: int, fresh_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "_secrets", dict)  # no secrets.toml of the developer's
    monkeypatch.setenv("DASHBOARD_USER", "fin@example.com")
    monkeypatch.setenv("DASHBOARD_ROLE", "finance")
    before = changes(fresh_engine)
    with pytest.raises(auth.AccessDenied, match="may not change a plan's allowance"):
        actions.apply_plan_allowance(_forged())
    assert changes(fresh_engine) == before
