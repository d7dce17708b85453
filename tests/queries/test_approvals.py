"""Two-person approval: above the threshold no one person moves credits."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
from sqlalchemy import Engine, text

from queries.approvals import (
    ApprovalCursor,
    approve,
    expiry_days,
    pending_requests_page,
    reject,
    request_adjustment,
)
from queries.audit import all_orgs_audit_page, all_orgs_audit_trail
from queries.credits import LedgerEntry, adjust_credits, approval_threshold
from queries.errors import (
    ApprovalRefused,
    ApprovalRequired,
    DashboardError,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAdjustment,
    RequestClosed,
    SelfApproval,
)
from queries.grants import credit_grants
from tests.queries.writes import invariant_holds, new_org, snapshot

ANA = "ana@finance.example"
BEN = "ben@finance.example"
CAL = "cal@finance.example"


def _request(engine: Engine, org: int, amount: int = 250_000, **extra: object) -> int:
    values: dict[str, object] = {
        "organization_id": org,
        "amount": amount,
        "reason": "Enterprise renewal",
        "actor": ANA,
        "idempotency_key": f"req-{uuid.uuid4()}",
        **extra,
    }
    return request_adjustment(engine, **values).id  # type: ignore[arg-type]


def _audit_actions(engine: Engine, org: int) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT action, actor FROM audit_log WHERE organization_id = :org ORDER BY id"),
            {"org": org},
        )
        return [(row.action, row.actor) for row in rows]


def test_the_threshold_is_100000_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDITS_APPROVAL_THRESHOLD", raising=False)
    assert approval_threshold() == 100_000
    monkeypatch.setenv("CREDITS_APPROVAL_THRESHOLD", "5000")
    assert approval_threshold() == 5000
    monkeypatch.delenv("CREDITS_APPROVAL_EXPIRY_DAYS", raising=False)
    assert expiry_days() == 7
    monkeypatch.setenv("CREDITS_APPROVAL_EXPIRY_DAYS", "2")
    assert expiry_days() == 2


@pytest.mark.parametrize("amount", [100_001, -100_001, 5_000_000])
def test_adjust_credits_above_the_threshold_is_refused_and_writes_nothing(
    write_engine: Engine, amount: int
) -> None:
    org, _ = new_org(write_engine, balance=200_000)
    before = snapshot(write_engine, org)
    with pytest.raises(ApprovalRequired) as refused:
        adjust_credits(
            write_engine,
            organization_id=org,
            amount=amount,
            reason="Enterprise renewal",
            actor=ANA,
            idempotency_key="big",
        )
    assert (refused.value.amount, refused.value.threshold) == (amount, 100_000)
    assert "Nothing was changed" in str(refused.value)
    assert snapshot(write_engine, org) == before


def test_adjust_credits_at_the_threshold_is_applied(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    entry = adjust_credits(
        write_engine,
        organization_id=org,
        amount=100_000,
        reason="Plan top-up",
        actor=ANA,
        idempotency_key="at",
    )
    assert entry.balance_after == 100_000


def test_a_request_moves_nothing_and_is_audited_once_per_key(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=10)
    before = snapshot(write_engine, org)
    first = request_adjustment(
        write_engine,
        organization_id=org,
        amount=250_000,
        reason="Enterprise renewal",
        actor=ANA,
        idempotency_key="r-1",
        note="PO 4711",
    )
    again = request_adjustment(
        write_engine,
        organization_id=org,
        amount=250_000,
        reason="Enterprise renewal",
        actor=ANA,
        idempotency_key="r-1",
        note="PO 4711",
    )
    assert again == first
    assert (first.status, first.requested_by, first.note) == ("pending", ANA, "PO 4711")
    after = snapshot(write_engine, org)
    assert (after["balance"], after["ledger"]) == (before["balance"], before["ledger"])
    assert _audit_actions(write_engine, org) == [("request_adjustment", ANA)]
    with pytest.raises(IdempotencyConflict):
        request_adjustment(
            write_engine,
            organization_id=org,
            amount=300_000,
            reason="Enterprise renewal",
            actor=ANA,
            idempotency_key="r-1",
        )


def test_approval_applies_once_and_the_entry_names_both_people(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=10)
    request_id = _request(write_engine, org, note="PO 4711")
    entry = approve(write_engine, request_id=request_id, approver=BEN)
    assert (entry.kind, entry.amount, entry.balance_after, entry.actor) == (
        "grant",
        250_000,
        250_010,
        BEN,
    )
    assert entry.note is not None
    assert entry.note.startswith(f"Requested by {ANA}, approved by {BEN}")
    assert entry.note.endswith("PO 4711")
    # The same approver again (a retry, a second click): the same entry, nothing new.
    assert approve(write_engine, request_id=request_id, approver=BEN) == entry
    with pytest.raises(RequestClosed, match="already approved by"):
        approve(write_engine, request_id=request_id, approver=CAL)
    with pytest.raises(RequestClosed):
        reject(write_engine, request_id=request_id, approver=CAL, reason="Too late")
    assert snapshot(write_engine, org)["balance"] == 250_010
    assert snapshot(write_engine, org)["ledger"] == 2
    assert _audit_actions(write_engine, org) == [
        ("request_adjustment", ANA),
        ("approve_adjustment", BEN),
    ]
    with write_engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT status, decided_by, ledger_entry_id FROM approval_requests "
                "WHERE organization_id = :org AND id = :id"
            ),
            {"org": org, "id": request_id},
        ).one()
    assert tuple(row) == ("approved", BEN, entry.id)
    assert invariant_holds(write_engine, org)


def test_self_approval_is_refused_and_writes_nothing(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=10)
    request_id = _request(write_engine, org)
    before = snapshot(write_engine, org)
    with pytest.raises(SelfApproval):
        approve(write_engine, request_id=request_id, approver=ANA)
    with pytest.raises(SelfApproval):
        reject(write_engine, request_id=request_id, approver=ANA, reason="Changed my mind")
    assert snapshot(write_engine, org) == before
    # Still pending: a second person can approve it.
    assert approve(write_engine, request_id=request_id, approver=BEN).amount == 250_000


@pytest.mark.parametrize(
    "spelling", ["ANA@Finance.Example", "  ana@finance.example ", "ａｎａ@finance.example"]
)
def test_the_requester_under_another_spelling_cannot_decide(
    write_engine: Engine, spelling: str
) -> None:
    org, _ = new_org(write_engine, balance=10)
    request_id = _request(write_engine, org)
    before = snapshot(write_engine, org)
    with pytest.raises(SelfApproval):
        approve(write_engine, request_id=request_id, approver=spelling)
    with pytest.raises(SelfApproval):
        reject(write_engine, request_id=request_id, approver=spelling, reason="Mine")
    assert snapshot(write_engine, org) == before


def test_a_retry_by_the_same_approver_under_another_spelling_gets_the_same_entry(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine, balance=10)
    request_id = _request(write_engine, org)
    entry = approve(write_engine, request_id=request_id, approver=BEN)
    assert approve(write_engine, request_id=request_id, approver=" BEN@Finance.Example") == entry
    assert snapshot(write_engine, org)["ledger"] == 2
    assert [a for a, _ in _audit_actions(write_engine, org)] == [
        "request_adjustment",
        "approve_adjustment",
    ]
    assert invariant_holds(write_engine, org)


def test_an_approver_with_an_invisible_character_is_refused(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=10)
    request_id = _request(write_engine, org)
    before = snapshot(write_engine, org)
    with pytest.raises(InvalidAdjustment):
        approve(write_engine, request_id=request_id, approver=BEN + "\u200b")
    assert snapshot(write_engine, org) == before


def test_the_database_refuses_a_self_decision_whatever_the_caller(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    request_id = _request(write_engine, org)
    with pytest.raises(Exception, match="two_people"), write_engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE approval_requests SET status = 'rejected', decided_by = requested_by, "
                "decided_at = now(), decision_reason = 'x' WHERE id = :id"
            ),
            {"id": request_id},
        )


def test_rejection_applies_nothing_and_closes_the_request(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=10)
    request_id = _request(write_engine, org, amount=-5)
    rejected = reject(write_engine, request_id=request_id, approver=BEN, reason="No ticket")
    assert (rejected.status, rejected.decided_by, rejected.decision_reason) == (
        "rejected",
        BEN,
        "No ticket",
    )
    assert reject(write_engine, request_id=request_id, approver=BEN, reason="No ticket") == rejected
    with pytest.raises(RequestClosed, match="rejected by"):
        approve(write_engine, request_id=request_id, approver=CAL)
    assert snapshot(write_engine, org)["balance"] == 10
    assert snapshot(write_engine, org)["ledger"] == 1
    assert [a for a, _ in _audit_actions(write_engine, org)] == [
        "request_adjustment",
        "reject_adjustment",
    ]


def test_an_expired_request_cannot_be_approved_and_leaves_the_queue(
    write_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITS_APPROVAL_EXPIRY_DAYS", "3")
    org, _ = new_org(write_engine, balance=10)
    request_id = _request(write_engine, org)
    with write_engine.connect() as conn:
        days = conn.execute(
            text("SELECT expires_at - created_at FROM approval_requests WHERE id = :id"),
            {"id": request_id},
        ).scalar_one()
    assert days.days == 3
    with write_engine.begin() as conn:  # three days pass
        conn.execute(
            text(
                "UPDATE approval_requests SET created_at = created_at - interval '3 days', "
                "expires_at = expires_at - interval '3 days' WHERE id = :id"
            ),
            {"id": request_id},
        )
    before = snapshot(write_engine, org)
    with pytest.raises(RequestClosed, match="expired"):
        approve(write_engine, request_id=request_id, approver=BEN)
    assert snapshot(write_engine, org) == before
    with write_engine.connect() as conn:
        page = pending_requests_page(conn, organization_id=org)
    assert page.rows == ()


def test_an_approval_the_balance_cannot_cover_is_refused_and_stays_pending(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine, balance=10)
    request_id = _request(write_engine, org, amount=-200_000)
    before = snapshot(write_engine, org)
    with pytest.raises(InsufficientCredits):
        approve(write_engine, request_id=request_id, approver=BEN)
    assert snapshot(write_engine, org) == before
    with write_engine.connect() as conn:
        assert [r.id for r in pending_requests_page(conn, organization_id=org).rows] == [request_id]


def test_an_unknown_request_is_refused(write_engine: Engine) -> None:
    with pytest.raises(ApprovalRefused, match="no approval request"):
        approve(write_engine, request_id=2**62, approver=BEN)


@pytest.mark.parametrize("same_approver", [True, False], ids=["same-approver", "many-approvers"])
def test_concurrent_approvals_give_exactly_one_ledger_entry(
    write_engine: Engine, same_approver: bool
) -> None:
    org, _ = new_org(write_engine, balance=10)
    request_id = _request(write_engine, org)
    approvers = [BEN if same_approver else f"approver{i}@finance.example" for i in range(8)]
    start = threading.Barrier(len(approvers))
    outcomes: list[LedgerEntry | DashboardError] = []
    lock = threading.Lock()

    def attempt(approver: str) -> None:
        start.wait()
        try:
            result: LedgerEntry | DashboardError = approve(
                write_engine, request_id=request_id, approver=approver
            )
        except DashboardError as exc:
            result = exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=(a,)) for a in approvers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = {o for o in outcomes if isinstance(o, LedgerEntry)}
    errors = [o for o in outcomes if not isinstance(o, LedgerEntry)]
    assert len(entries) == 1
    assert all(isinstance(e, RequestClosed) for e in errors), errors
    if same_approver:
        assert not errors  # each got the one entry
    after = snapshot(write_engine, org)
    assert (after["balance"], after["ledger"]) == (250_010, 2)
    assert [a for a, _ in _audit_actions(write_engine, org)].count("approve_adjustment") == 1
    assert invariant_holds(write_engine, org)


def test_the_queue_pages_pending_requests_oldest_first_across_organizations(
    write_engine: Engine,
) -> None:
    first, _ = new_org(write_engine, balance=10)
    second, _ = new_org(write_engine, balance=20)
    ids = [_request(write_engine, org) for org in (first, second, first)]
    decided = _request(write_engine, second)
    reject(write_engine, request_id=decided, approver=BEN, reason="No")
    seen: list[int] = []
    cursor: ApprovalCursor | None = None
    with write_engine.connect() as conn:
        while True:
            page = pending_requests_page(conn, limit=1, after=cursor)
            seen += [row.id for row in page.rows]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        mine = pending_requests_page(conn, organization_id=second).rows
    assert [i for i in seen if i in (*ids, decided)] == ids
    assert [(r.id, r.organization_id, r.balance, r.requested_by) for r in mine] == [
        (ids[1], second, 20, ANA)
    ]


def test_every_step_shows_in_the_audit_trail(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=10)
    approved = _request(write_engine, org)
    entry = approve(write_engine, request_id=approved, approver=BEN)
    rejected = _request(write_engine, org, amount=-7)
    reject(write_engine, request_id=rejected, approver=CAL, reason="No ticket")
    # The UTC days of the steps, from their own times (the clock may pass midnight meanwhile).
    approved_on = entry.created_at.astimezone(dt.UTC).date()
    with write_engine.connect() as conn:
        today = conn.execute(text("SELECT (now() AT TIME ZONE 'UTC')::date")).scalar_one()
        trail = all_orgs_audit_page(
            conn, start=approved_on - dt.timedelta(days=1), end=today, organization_id=org
        ).rows
        only = all_orgs_audit_trail(
            conn,
            start=approved_on,
            end=approved_on,
            organization_id=org,
            action="approve_adjustment",
        )
    steps = list(zip(trail["action"], trail["actor"], trail["amount"], strict=True))
    # The approval and its ledger entry share their transaction's time; the trail puts
    # the ledger first among equal times.
    assert steps[:5] == [
        ("reject_adjustment", CAL, -7),
        ("request_adjustment", ANA, -7),
        ("grant", BEN, 250_000),
        ("approve_adjustment", BEN, 250_000),
        ("request_adjustment", ANA, 250_000),
    ]
    assert list(only["details"]) == [f"request {approved} · requested by {ANA} · entry {entry.id}"]
    # The entry the approval booked, as the database recorded it: a link to it.
    assert list(only["ledger_entry_id"]) == [entry.id]


# Fixed instants, so no test depends on the wall clock: one far ahead, one long past.
FAR_EXPIRY = dt.datetime(2099, 1, 6, tzinfo=dt.UTC)
PAST_EXPIRY = dt.datetime(2001, 1, 6, tzinfo=dt.UTC)


def test_an_approved_grant_keeps_the_requested_expiry_and_priority(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=10)
    kathmandu = dt.timezone(dt.timedelta(hours=5, minutes=45))
    asked = FAR_EXPIRY.astimezone(kathmandu)
    request = request_adjustment(
        write_engine,
        organization_id=org,
        amount=250_000,
        reason="Promotion",
        actor=ANA,
        idempotency_key="promo-expiring",
        expires_at=asked,
        priority=5,
    )
    assert (request.grant_expires_at, request.grant_priority) == (FAR_EXPIRY, 5)
    with write_engine.connect() as conn:
        (pending,) = pending_requests_page(conn, organization_id=org).rows
    assert (pending.grant_expires_at, pending.grant_priority) == (FAR_EXPIRY, 5)

    entry = approve(write_engine, request_id=request.id, approver=BEN)
    assert (entry.grant_expires_at, entry.grant_priority) == (FAR_EXPIRY, 5)
    with write_engine.connect() as conn:
        (grant,) = [
            g for g in credit_grants(conn, organization_id=org) if g.ledger_entry_id == entry.id
        ]
    assert (grant.amount, grant.expires_at, grant.priority, grant.source) == (
        250_000,
        FAR_EXPIRY,
        5,
        "approval",
    )
    assert invariant_holds(write_engine, org)


def test_a_retried_request_with_other_grant_terms_is_a_conflict(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=10)
    values: dict[str, object] = {
        "organization_id": org,
        "amount": 250_000,
        "reason": "Promotion",
        "actor": ANA,
        "idempotency_key": "promo-terms",
        "expires_at": FAR_EXPIRY,
        "priority": 5,
    }
    first = request_adjustment(write_engine, **values)  # type: ignore[arg-type]
    assert request_adjustment(write_engine, **values) == first  # type: ignore[arg-type]
    for changed in ({"priority": 6}, {"expires_at": None}, {"priority": None}):
        with pytest.raises(IdempotencyConflict):
            request_adjustment(write_engine, **(values | changed))  # type: ignore[arg-type]
    assert snapshot(write_engine, org)["audit"] == 1


@pytest.mark.parametrize(
    ("amount", "terms", "sentence"),
    [
        (250_000, {"expires_at": PAST_EXPIRY}, "must be in the future"),
        (250_000, {"expires_at": dt.datetime(2099, 1, 6)}, "time zone"),
        (250_000, {"priority": 256}, "between 0 and 255"),
        (-250_000, {"priority": 5}, "Only a grant"),
    ],
)
def test_bad_grant_terms_on_a_request_are_refused_and_write_nothing(
    write_engine: Engine, amount: int, terms: dict[str, object], sentence: str
) -> None:
    org, _ = new_org(write_engine, balance=300_000)
    before = snapshot(write_engine, org)
    with pytest.raises(InvalidAdjustment, match=sentence):
        _request(write_engine, org, amount, **terms)
    assert snapshot(write_engine, org) == before


def test_approving_a_grant_whose_expiry_passed_meanwhile_is_refused(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=10)
    request_id = _request(write_engine, org, expires_at=FAR_EXPIRY)
    # Time passes (as the owner may back-date): the grant's expiry is now behind us.
    with write_engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE approval_requests SET grant_expires_at = now() - interval '1 hour' "
                "WHERE id = :id"
            ),
            {"id": request_id},
        )
    before = snapshot(write_engine, org)
    with pytest.raises(InvalidAdjustment, match="request the grant again with a later expiry"):
        approve(write_engine, request_id=request_id, approver=BEN)
    assert snapshot(write_engine, org) == before
