"""Credits page, two-person approval: above the threshold the adjustment form records a
request; the Pending approvals queue shows it; a second person approves or rejects
it; the requester cannot."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from queries.orgs import set_timezone
from tests.dashboard.apptest import make_app, open_page, plain_texts, scalar, table_with
from tests.dashboard.test_credits_page import (
    balance,
    button,
    confirm,
    first_org,
    ledger_rows,
    review,
)

ANA = "ana@example.com"
BEN = "ben@example.com"


@pytest.fixture
def org(fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]) -> int:
    use_database(fresh_url)
    return first_org(fresh_engine)


def page_as(email: str, org: int) -> AppTest:
    at = make_app(role="finance", email=email, query={"org": str(org)})
    return open_page(at, "credits")


def pending(engine: Engine, org: int) -> int:
    return int(
        scalar(
            engine,
            "SELECT count(*) FROM approval_requests WHERE organization_id = :o "
            "AND status = 'pending'",
            o=org,
        )
    )


def request_as_ana(engine: Engine, org: int, amount: int = 250_000) -> AppTest:
    at = review(page_as(ANA, org), amount=amount, reason="Plan top-up")
    assert any("approval threshold of 100,000" in t for t in plain_texts(at, "info"))
    return confirm(at)


def decide(at: AppTest, request_id: int, decision: str, reason: str | None = None) -> AppTest:
    at.selectbox(key="credits.decide_request").set_value(request_id)
    at.radio(key="credits.decide_action").set_value(decision)
    if reason is not None:
        at.selectbox(key="credits.decide_reason").set_value(reason)
    button(at, "Review decision").click()
    return at.run()


def test_above_the_threshold_the_form_records_a_request_and_moves_nothing(
    org: int, fresh_engine: Engine
) -> None:
    before = (balance(fresh_engine, org), ledger_rows(fresh_engine, org))
    at = request_as_ana(fresh_engine, org)
    assert not at.exception
    assert any(
        "Requested approval of the grant of 250,000" in t for t in plain_texts(at, "success")
    )
    assert (balance(fresh_engine, org), ledger_rows(fresh_engine, org)) == before
    assert pending(fresh_engine, org) == 1
    queue = table_with(at, "Requested by")
    assert list(queue["Amount"]) == [250_000]
    assert list(queue["Requested by"]) == [ANA]


def test_a_second_person_approves_from_the_queue_once(org: int, fresh_engine: Engine) -> None:
    request_as_ana(fresh_engine, org)
    request_id = int(scalar(fresh_engine, "SELECT max(id) FROM approval_requests"))
    before = balance(fresh_engine, org)
    at = decide(page_as(BEN, org), request_id, "approve")
    assert not at.exception, at.exception
    at = confirm(at)
    assert any(f"Approved request {request_id}" in t for t in plain_texts(at, "success"))
    assert balance(fresh_engine, org) == before + 250_000
    actor, note = (
        scalar(
            fresh_engine,
            "SELECT actor FROM credit_ledger WHERE idempotency_key = :k AND organization_id = :o",
            k=f"approval:{request_id}",
            o=org,
        ),
        scalar(
            fresh_engine,
            "SELECT note FROM credit_ledger WHERE idempotency_key = :k AND organization_id = :o",
            k=f"approval:{request_id}",
            o=org,
        ),
    )
    assert actor == BEN
    assert note.startswith(f"Requested by {ANA}, approved by {BEN}")
    assert pending(fresh_engine, org) == 0
    assert any("No adjustment is waiting" in str(c.value) for c in at.caption)
    actions = scalar(
        fresh_engine,
        "SELECT string_agg(action || ' by ' || actor, ', ' ORDER BY id) FROM audit_log "
        "WHERE organization_id = :o AND action LIKE '%adjustment'",
        o=org,
    )
    assert actions == f"request_adjustment by {ANA}, approve_adjustment by {BEN}"


def test_the_requester_cannot_approve_their_own_request(org: int, fresh_engine: Engine) -> None:
    request_as_ana(fresh_engine, org)
    request_id = int(scalar(fresh_engine, "SELECT max(id) FROM approval_requests"))
    before = (balance(fresh_engine, org), ledger_rows(fresh_engine, org))
    at = decide(page_as(ANA, org), request_id, "approve")
    assert any("a second person must decide" in t for t in plain_texts(at, "error"))
    assert not [b for b in at.button if b.label.startswith("Confirm approval")]
    assert (balance(fresh_engine, org), ledger_rows(fresh_engine, org)) == before
    assert pending(fresh_engine, org) == 1


def test_the_requester_in_another_case_cannot_approve_their_own_request(
    org: int, fresh_engine: Engine
) -> None:
    at = review(page_as("ANA@Example.com", org), amount=250_000, reason="Plan top-up")
    confirm(at)
    request_id = int(scalar(fresh_engine, "SELECT max(id) FROM approval_requests"))
    assert (
        scalar(
            fresh_engine, "SELECT requested_by FROM approval_requests WHERE id = :i", i=request_id
        )
        == ANA
    )
    before = (balance(fresh_engine, org), ledger_rows(fresh_engine, org))
    at = decide(page_as(ANA, org), request_id, "approve")
    assert any("a second person must decide" in t for t in plain_texts(at, "error"))
    assert not [b for b in at.button if b.label.startswith("Confirm approval")]
    assert (balance(fresh_engine, org), ledger_rows(fresh_engine, org)) == before


def test_an_identity_with_an_invisible_character_cannot_use_the_page(
    org: int, fresh_engine: Engine
) -> None:
    at = page_as(ANA + "\u200b", org)
    assert any("U+200B" in t for t in plain_texts(at, "error")), at.error
    assert pending(fresh_engine, org) == 0


def test_repeated_grants_under_the_threshold_become_a_request_after_100000(
    org: int, fresh_engine: Engine
) -> None:
    at = confirm(review(page_as(BEN, org), amount=60_000, reason="Plan top-up"))
    assert not at.exception
    before = (balance(fresh_engine, org), ledger_rows(fresh_engine, org))
    at = review(page_as(BEN, org), amount=50_000, reason="Plan top-up")
    assert any(
        "You moved 60,000 credits for" in t and "a second person must approve it" in t
        for t in plain_texts(at, "info")
    )
    confirm(at)
    assert (balance(fresh_engine, org), ledger_rows(fresh_engine, org)) == before
    assert pending(fresh_engine, org) == 1


def test_a_second_person_rejects_with_a_reason(org: int, fresh_engine: Engine) -> None:
    request_as_ana(fresh_engine, org, amount=300_000)
    request_id = int(scalar(fresh_engine, "SELECT max(id) FROM approval_requests"))
    before = balance(fresh_engine, org)
    at = decide(page_as(BEN, org), request_id, "reject")
    assert any("Choose a reason for the rejection" in t for t in plain_texts(at, "error"))
    at = confirm(decide(at, request_id, "reject", reason="Amount is wrong"))
    assert any(f"Rejected request {request_id}" in t for t in plain_texts(at, "success"))
    assert balance(fresh_engine, org) == before
    assert (
        scalar(
            fresh_engine,
            "SELECT status || ':' || decided_by || ':' || decision_reason "
            "FROM approval_requests WHERE id = :i",
            i=request_id,
        )
        == f"rejected:{BEN}:Amount is wrong"
    )


def test_roles_from_dashboard_roles_a_finance_request_and_an_admin_approval(
    org: int, fresh_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHBOARD_ROLES", f"{ANA}=finance,{BEN}=admin")

    def named(email: str) -> AppTest:  # the role comes from DASHBOARD_ROLES only
        return open_page(make_app(role=None, email=email, query={"org": str(org)}), "credits")

    before = balance(fresh_engine, org)
    confirm(review(named(ANA), amount=150_000, reason="Plan top-up"))
    request_id = int(scalar(fresh_engine, "SELECT max(id) FROM approval_requests"))
    at = confirm(decide(named(BEN), request_id, "approve"))
    assert any(f"Approved request {request_id}" in t for t in plain_texts(at, "success"))
    assert balance(fresh_engine, org) == before + 150_000


def test_two_approvers_at_once_move_the_credits_once(org: int, fresh_engine: Engine) -> None:
    request_as_ana(fresh_engine, org)
    request_id = int(scalar(fresh_engine, "SELECT max(id) FROM approval_requests"))
    before = (balance(fresh_engine, org), ledger_rows(fresh_engine, org))
    ben = decide(page_as(BEN, org), request_id, "approve")
    cal = decide(page_as("cal@example.com", org), request_id, "approve")
    confirm(ben)
    cal = confirm(cal)
    # Emails are shown with a word joiner after the @ (no mailto link): read past it.
    errors = [t.replace("\u2060", "") for t in plain_texts(cal, "error")]
    assert any(f"already approved by {BEN}" in t for t in errors), errors
    assert (balance(fresh_engine, org), ledger_rows(fresh_engine, org)) == (
        before[0] + 250_000,
        before[1] + 1,
    )


def test_a_role_that_cannot_adjust_sees_no_queue(org: int, fresh_engine: Engine) -> None:
    request_as_ana(fresh_engine, org)
    at = open_page(make_app(role="manager", query={"org": str(org)}), "credits")
    assert not at.exception
    assert not [s for s in at.subheader if s.value == "Pending approvals"]
    assert not [b for b in at.button if b.label == "Review decision"]


def test_the_queue_shows_each_request_in_its_organizations_zone(
    org: int, fresh_engine: Engine
) -> None:
    # UTC+5:45: a time shown in UTC would be off by a quarter-hour's multiple, not whole hours.
    set_timezone(
        fresh_engine, organization_id=org, timezone="Asia/Kathmandu", actor=BEN, reason="Moved"
    )
    at = request_as_ana(fresh_engine, org)
    assert not at.exception
    queue = table_with(at, "Requested by")
    requested = scalar(
        fresh_engine,
        "SELECT to_char(created_at AT TIME ZONE 'Asia/Kathmandu', 'YYYY-MM-DD HH24:MI')"
        " FROM approval_requests WHERE organization_id = :o",
        o=org,
    )
    assert list(queue["Requested"]) == [requested]
    assert list(queue["Zone"]) == ["Asia/Kathmandu"]
    # Time left, the same in every zone: a new request has the whole week.
    assert list(queue["Expires"]) == ["in 6 d 23 h"]
    assert "Requested (UTC)" not in queue.columns
