"""A daily limit above LIMIT_APPROVAL_FACTOR times the plan's needs a second person:
set_daily_limit refuses it and writes nothing; a request approved by someone else makes
the change once, exactly as set_daily_limit would; a rejection closes it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from queries.db import ConfigurationError, limit_approval_factor
from queries.errors import LimitApprovalRequired, RequestClosed, SelfApproval
from queries.limit_approvals import (
    approve_limit_request,
    pending_limit_requests,
    reject_limit_request,
    request_limit_change,
)
from queries.quotas import set_daily_limit
from tests.queries.writes import new_org, snapshot

D = dt.date(2032, 3, 8)
PRO_CHAT = 1000  # tests.factories' chat default on the pro plan
MOST = 10 * PRO_CHAT  # the default factor, 10


def _set(engine: Engine, org: int, limit: int, **kw: Any) -> Any:
    return set_daily_limit(
        engine,
        organization_id=org,
        type="chat",
        daily_limit=limit,
        actor="cs@x.com",
        reason="r",
        **kw,
    )


def _request(engine: Engine, org: int, limit: int, key: str = "k1", **kw: Any) -> Any:
    return request_limit_change(
        engine,
        organization_id=org,
        type="chat",
        daily_limit=limit,
        actor="cs@x.com",
        reason="Launch",
        idempotency_key=key,
        **kw,
    )


def _chat(engine: Engine, org: int, day: dt.date) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT daily_limit FROM limit_in_force(:o, 'chat', :d)"), {"o": org, "d": day}
            ).scalar_one()
        )


def test_exactly_factor_times_the_plan_limit_is_set_alone(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    assert _set(write_engine, org, MOST, effective=D).new_limit == MOST
    assert _chat(write_engine, org, D) == MOST


def test_one_above_needs_a_second_person_and_writes_nothing(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    before = snapshot(write_engine, org)
    with pytest.raises(LimitApprovalRequired, match="second person") as refused:
        _set(write_engine, org, MOST + 1, effective=D)
    assert f"{MOST:,}" in str(refused.value)
    assert snapshot(write_engine, org) == before


def test_the_factor_comes_from_limit_approval_factor(
    write_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIMIT_APPROVAL_FACTOR", "2.5")
    org, _ = new_org(write_engine)
    assert _set(write_engine, org, 2500, effective=D).new_limit == 2500
    with pytest.raises(LimitApprovalRequired):
        _set(write_engine, org, 2501, effective=D)


@pytest.mark.parametrize("raw", ["0", "0.5", "ten", "-3", "1e3", "nan", "Infinity", "1001", "10x"])
def test_a_bad_factor_is_refused_with_a_sentence(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="LIMIT_APPROVAL_FACTOR must be a number"):
        limit_approval_factor({"LIMIT_APPROVAL_FACTOR": raw})


def test_a_bad_factor_refuses_the_change_and_writes_nothing(
    write_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, _ = new_org(write_engine)
    before = snapshot(write_engine, org)
    monkeypatch.setenv("LIMIT_APPROVAL_FACTOR", "lots")
    with pytest.raises(ConfigurationError):
        _set(write_engine, org, 5, effective=D)
    assert snapshot(write_engine, org) == before


def test_the_factor_defaults_to_ten() -> None:
    assert limit_approval_factor({}) == Decimal(10)
    assert limit_approval_factor({"LIMIT_APPROVAL_FACTOR": " 20 "}) == Decimal(20)


def test_the_requester_may_not_approve_or_reject(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    request = _request(write_engine, org, MOST + 1, effective=D)
    with pytest.raises(SelfApproval):
        approve_limit_request(write_engine, request_id=request.id, approver="CS@x.com")
    with pytest.raises(SelfApproval):
        reject_limit_request(write_engine, request_id=request.id, approver="cs@x.com", reason="no")
    assert _chat(write_engine, org, D) == PRO_CHAT


def test_an_approval_applies_the_change_once_with_both_names_and_until(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine)
    _set(write_engine, org, 500, effective=D)
    request = _request(write_engine, org, 50_000, effective=D, until=D + dt.timedelta(days=2))
    assert request.status == "pending"
    assert _chat(write_engine, org, D) == 500
    with write_engine.connect() as conn:
        assert [p.id for p in pending_limit_requests(conn, organization_id=org)] == [request.id]
        assert pending_limit_requests(conn, organization_id=org)[0].current_limit == 500
    change = approve_limit_request(write_engine, request_id=request.id, approver="lead@x.com")
    assert (change.old_limit, change.new_limit, change.until) == (
        500,
        50_000,
        D + dt.timedelta(days=2),
    )
    assert (change.actor, change.requested_by) == ("lead@x.com", "cs@x.com")
    # A double click or a retry: the same change, nothing written again.
    after = snapshot(write_engine, org)
    again = approve_limit_request(write_engine, request_id=request.id, approver="lead@x.com")
    assert again == change
    assert snapshot(write_engine, org) == after
    assert [_chat(write_engine, org, D + dt.timedelta(days=n)) for n in range(4)] == [
        50_000,
        50_000,
        50_000,
        500,
    ]
    with write_engine.connect() as conn:
        audit = conn.execute(
            text(
                "SELECT actor, details FROM audit_log "
                "WHERE organization_id = :o AND action = 'set_daily_limit' ORDER BY id"
            ),
            {"o": org},
        ).all()
        assert pending_limit_requests(conn, organization_id=org) == []
    assert audit[-1].actor == "lead@x.com"
    assert audit[-1].details["requested_by"] == "cs@x.com"
    assert audit[-1].details["until"] == str(D + dt.timedelta(days=2))
    assert audit[-1].details["request_id"] == request.id
    with pytest.raises(RequestClosed, match=r"already approved by lead@x\.com"):
        approve_limit_request(write_engine, request_id=request.id, approver="other@x.com")
    with pytest.raises(RequestClosed):
        reject_limit_request(
            write_engine, request_id=request.id, approver="other@x.com", reason="no"
        )


def test_a_rejection_closes_the_request_and_changes_nothing(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    request = _request(write_engine, org, MOST + 1, effective=D)
    before = _chat(write_engine, org, D)
    rejected = reject_limit_request(
        write_engine, request_id=request.id, approver="lead@x.com", reason="No ticket"
    )
    assert (rejected.status, rejected.decided_by, rejected.decision_reason) == (
        "rejected",
        "lead@x.com",
        "No ticket",
    )
    assert _chat(write_engine, org, D) == before
    with pytest.raises(RequestClosed, match="already rejected"):
        approve_limit_request(write_engine, request_id=request.id, approver="lead@x.com")


def test_a_request_is_made_once_per_key(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    first = _request(write_engine, org, MOST + 1, effective=D)
    assert _request(write_engine, org, MOST + 1, effective=D) == first
    with write_engine.connect() as conn:
        assert len(pending_limit_requests(conn, organization_id=org)) == 1


def test_the_database_keeps_the_two_person_rule(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    request = _request(write_engine, org, MOST + 1, effective=D)
    with pytest.raises(IntegrityError, match="two_people"), write_engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE limit_requests SET status = 'rejected', decided_by = 'cs@x.com', "
                "decision_reason = 'x' WHERE id = :id"
            ),
            {"id": request.id},
        )
