"""The one place credits move: a key answers once, the two-person test is one rule.

``replay`` is checked on its own and inside a real keyed write (lock, replay, insert in
one transaction), ``needs_approval`` at its edges and against the data layer's callers
(a single adjustment, a bulk file), and the lock and the insert against the database
that keeps the book. The form's use of the rule is in tests/dashboard/test_actions.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text

from queries import ledger
from queries.bulk import plan_bulk
from queries.errors import (
    AlreadyReversed,
    ApprovalRequired,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAdjustment,
)
from queries.ledger import LedgerEntry, needs_approval, replay
from queries.transactions import run_in_transaction
from tests.queries.writes import invariant_holds, new_org, snapshot

THRESHOLD = 100_000


@dataclass(frozen=True)
class Answer:
    id: int
    amount: int
    reason: str


def _amounts(answer: Answer) -> tuple[object, ...]:
    return (answer.amount, answer.reason)


def _conflict(answer: Answer) -> str:
    return ledger.submitted_differently(
        what="request", first=f"entry {answer.id}: {answer.amount:+,} credits", start="one"
    )


# ------------------------------------------------------------------------------ replay


def test_a_new_key_has_nothing_to_replay() -> None:
    def never(answer: Answer) -> tuple[object, ...]:
        raise AssertionError("nothing recorded: nothing to compare")

    assert replay(first=None, asked=(5, "Promo"), recorded=never, conflict=_conflict) is None


def test_the_same_request_again_gets_the_first_answer() -> None:
    first = Answer(7, 40, "Promo")
    assert replay(first=first, asked=(40, "Promo"), recorded=_amounts, conflict=_conflict) is first


def test_the_same_key_for_another_request_is_refused_with_the_sentence() -> None:
    first = Answer(7, 40, "Promo")
    with pytest.raises(IdempotencyConflict) as refused:
        replay(first=first, asked=(41, "Promo"), recorded=_amounts, conflict=_conflict)
    assert str(refused.value) == (
        "This request was already submitted with different details (entry 7: +40 credits). "
        "Nothing was changed; start a new one."
    )


def test_a_write_may_refuse_a_replay_with_its_own_error() -> None:
    with pytest.raises(AlreadyReversed, match="already reversed"):
        replay(
            first=Answer(7, 40, "Promo"),
            asked=(40, "Other"),
            recorded=_amounts,
            conflict=lambda a: f"Entry {a.id} was already reversed.",
            error=AlreadyReversed,
        )


@given(
    recorded=st.tuples(st.integers(), st.text(max_size=5)),
    asked=st.tuples(st.integers(), st.text(max_size=5)),
)
def test_replay_answers_exactly_when_the_request_is_the_same(
    recorded: tuple[int, str], asked: tuple[int, str]
) -> None:
    first = Answer(1, *recorded)
    if asked == recorded:
        assert replay(first=first, asked=asked, recorded=_amounts, conflict=_conflict) is first
    else:
        with pytest.raises(IdempotencyConflict):
            replay(first=first, asked=asked, recorded=_amounts, conflict=_conflict)


def _keyed_grant(engine: Engine, *, org: int, amount: int, reason: str, key: str) -> LedgerEntry:
    """A keyed write built from the ledger's parts, as every credit write is."""

    def body(conn: Connection) -> LedgerEntry:
        ledger.lock_organization(conn, organization_id=org)
        first = replay(
            first=ledger.entry_by_key(conn, organization_id=org, idempotency_key=key),
            asked=(amount, reason),
            recorded=lambda e: (e.amount, e.reason),
            conflict=lambda e: ledger.submitted_differently(
                what="grant", first=f"entry {e.id}", start="grant"
            ),
        )
        return first or ledger.insert_movement(
            conn,
            organization_id=org,
            amount=amount,
            kind="grant",
            reason=reason,
            note=None,
            actor="ana@finance.example",
            idempotency_key=key,
        )

    return run_in_transaction(engine, body, idempotent=True)


def test_a_keyed_write_answers_once_and_refuses_the_key_for_another_request(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine, balance=10)
    first = _keyed_grant(write_engine, org=org, amount=40, reason="Promo", key="k")
    assert first.balance_after == 50
    after_first = snapshot(write_engine, org)

    assert _keyed_grant(write_engine, org=org, amount=40, reason="Promo", key="k") == first
    with pytest.raises(IdempotencyConflict, match=rf"\(entry {first.id}\)\. Nothing was changed"):
        _keyed_grant(write_engine, org=org, amount=40, reason="Launch", key="k")
    assert snapshot(write_engine, org) == after_first
    assert invariant_holds(write_engine, org)


# ------------------------------------------------------------------- the database's book


def test_the_lock_returns_the_balance_and_refuses_an_unknown_organization(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine, balance=25)
    other, _ = new_org(write_engine, balance=7)
    with write_engine.begin() as conn:
        assert ledger.lock_organization(conn, organization_id=org) == 25
        assert ledger.lock_organizations(conn, organization_ids=[other, org]) == {
            org: 25,
            other: 7,
        }
        with pytest.raises(InvalidAdjustment, match="There is no organization with id 0"):
            ledger.lock_organization(conn, organization_id=0)


def test_the_database_books_a_movement_and_refuses_to_go_below_zero(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine, balance=30)

    def move(amount: int) -> LedgerEntry:
        def body(conn: Connection) -> LedgerEntry:
            ledger.lock_organization(conn, organization_id=org)
            return ledger.insert_movement(
                conn,
                organization_id=org,
                amount=amount,
                kind="deduct",
                reason="Test",
                note=None,
                actor="ana@finance.example",
                idempotency_key=f"m-{uuid.uuid4()}",
            )

        return run_in_transaction(write_engine, body)

    taken = move(-20)
    assert taken.balance_after == 10
    before = snapshot(write_engine, org)
    with pytest.raises(InsufficientCredits) as refused:
        move(-11)
    assert (refused.value.balance, refused.value.requested) == (10, 11)
    assert snapshot(write_engine, org) == before
    assert invariant_holds(write_engine, org)


# ---------------------------------------------------------------- the two-person rule


@pytest.mark.parametrize(
    ("amount", "moved", "needed"),
    [
        (THRESHOLD, 0, False),
        (-THRESHOLD, 0, False),
        (THRESHOLD + 1, 0, True),
        (-THRESHOLD - 1, 0, True),
        (40, THRESHOLD - 40, False),
        (-41, THRESHOLD - 40, True),
        (1, THRESHOLD, True),
    ],
)
def test_approval_is_needed_only_past_the_threshold(amount: int, moved: int, needed: bool) -> None:
    assert needs_approval(amount=amount, moved=moved, threshold=THRESHOLD) is needed


def test_the_threshold_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITS_APPROVAL_THRESHOLD", "500")
    assert needs_approval(amount=500) is False
    assert needs_approval(amount=-501) is True
    assert needs_approval(amount=250, moved=251) is True
    monkeypatch.delenv("CREDITS_APPROVAL_THRESHOLD")
    assert ledger.approval_threshold() == ledger.DEFAULT_APPROVAL_THRESHOLD


@given(
    amount=st.integers(-(10**9), 10**9),
    moved=st.integers(0, 10**9),
    threshold=st.integers(0, 10**9),
)
def test_approval_is_needed_past_the_threshold_either_way_and_never_before(
    amount: int, moved: int, threshold: int
) -> None:
    needed = needs_approval(amount=amount, moved=moved, threshold=threshold)
    # Either direction counts the same, and more moved before never needs less.
    assert needs_approval(amount=-amount, moved=moved, threshold=threshold) is needed
    if needed:
        assert needs_approval(amount=amount, moved=moved + 1, threshold=threshold)
    # The edge: up to the threshold in all is allowed, one credit more is not.
    spare = threshold - moved
    if spare >= 0:
        assert not needs_approval(amount=-spare, moved=moved, threshold=threshold)
        assert needs_approval(amount=spare + 1, moved=moved, threshold=threshold)
    else:
        assert needs_approval(amount=0, moved=moved, threshold=threshold)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CREDITS_APPROVAL_THRESHOLD", str(threshold))
        alone = needs_approval(amount=amount)
        try:
            ledger.check_below_threshold(amount=amount)
        except ApprovalRequired:
            assert alone
        else:
            assert not alone


def test_a_single_write_and_a_bulk_file_draw_the_line_at_the_same_credit(
    write_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITS_APPROVAL_THRESHOLD", "100")
    org, _ = new_org(write_engine, balance=1_000)
    actor = "ana@finance.example"
    _keyed_grant(write_engine, org=org, amount=60, reason="Promo", key="first")
    with write_engine.connect() as conn:
        slug = conn.execute(
            text("SELECT slug FROM organizations WHERE id = :org"), {"org": org}
        ).scalar_one()
        assert ledger.moved_alone(conn, organization_ids=[org], actor=actor) == {org: 60}
        ledger.check_alone(conn, organization_id=org, actor=actor, amount=-40)
        with pytest.raises(ApprovalRequired):
            ledger.check_alone(conn, organization_id=org, actor=actor, amount=41)
        file = f"organization,amount,reason\n{slug},40,Promo\n{slug},1,Promo\n".encode()
        plan = plan_bulk(conn, data=file, actor=actor)
    assert [row.status for row in plan.rows] == ["apply", "request"]
