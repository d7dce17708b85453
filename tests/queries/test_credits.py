"""Credit adjustments and reversals: once per key, never negative, always audited."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, text

from queries.credits import (
    AlreadyReversed,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAdjustment,
    LedgerEntry,
    adjust_credits,
    check_adjustment_amount,
    recent_duplicate,
    reverse_adjustment,
)
from queries.errors import InvalidInput, NothingToReverse
from tests.queries.writes import invariant_holds, new_org, snapshot


def test_grant_then_deduct_moves_the_balance_and_records_who_and_why(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=100)
    granted = adjust_credits(
        write_engine,
        organization_id=org,
        amount=250,
        reason="Annual plan",
        actor="ana@finance.example",
        idempotency_key="k-1",
        note="PO 4711",
    )
    assert (granted.kind, granted.amount, granted.balance_after) == ("grant", 250, 350)
    deducted = adjust_credits(
        write_engine,
        organization_id=org,
        amount=-50,
        reason="Chargeback",
        actor="ben@finance.example",
        idempotency_key="k-2",
    )
    assert (deducted.kind, deducted.amount, deducted.balance_after) == ("deduct", -50, 300)
    assert snapshot(write_engine, org)["balance"] == 300
    with write_engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT actor, reason, note FROM credit_ledger WHERE organization_id = :o AND idempotency_key LIKE 'k-%' ORDER BY id"
            ),
            {"o": org},
        ).all()
    assert [tuple(r) for r in rows] == [
        ("ana@finance.example", "Annual plan", "PO 4711"),
        ("ben@finance.example", "Chargeback", None),
    ]
    assert invariant_holds(write_engine, org)


def test_the_same_key_again_returns_the_original_and_changes_nothing(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    first = adjust_credits(
        write_engine,
        organization_id=org,
        amount=40,
        reason="Promo",
        actor="a@x.com",
        idempotency_key="form-1",
    )
    before = snapshot(write_engine, org)
    again = adjust_credits(
        write_engine,
        organization_id=org,
        amount=40,
        reason="Promo",
        actor="a@x.com",
        idempotency_key="form-1",
    )
    assert again == first
    assert snapshot(write_engine, org) == before


def test_the_same_key_with_another_payload_is_a_conflict(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    adjust_credits(
        write_engine,
        organization_id=org,
        amount=40,
        reason="Promo",
        actor="a@x.com",
        idempotency_key="form-2",
    )
    before = snapshot(write_engine, org)
    with pytest.raises(IdempotencyConflict, match="already submitted with different details"):
        adjust_credits(
            write_engine,
            organization_id=org,
            amount=41,
            reason="Promo",
            actor="a@x.com",
            idempotency_key="form-2",
        )
    assert snapshot(write_engine, org) == before


def test_a_deduction_larger_than_the_balance_is_refused(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=30)
    before = snapshot(write_engine, org)
    with pytest.raises(InsufficientCredits) as refused:
        adjust_credits(
            write_engine,
            organization_id=org,
            amount=-31,
            reason="Too much",
            actor="a@x.com",
            idempotency_key="d-1",
        )
    assert "balance is 30 credits" in str(refused.value) and "Nothing was changed" in str(
        refused.value
    )
    assert snapshot(write_engine, org) == before
    # The whole balance may go.
    assert (
        adjust_credits(
            write_engine,
            organization_id=org,
            amount=-30,
            reason="All",
            actor="a@x.com",
            idempotency_key="d-2",
        ).balance_after
        == 0
    )


def test_reversal_undoes_an_entry_once(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=10)
    grant = adjust_credits(
        write_engine,
        organization_id=org,
        amount=500,
        reason="Wrong org",
        actor="a@x.com",
        idempotency_key="r-1",
    )
    reversal = reverse_adjustment(
        write_engine, entry_id=grant.id, actor="b@x.com", reason="Granted to the wrong organization"
    )
    assert (reversal.kind, reversal.amount, reversal.reverses_id, reversal.balance_after) == (
        "reversal",
        -500,
        grant.id,
        10,
    )
    # A retry of the same request returns the same reversal...
    assert (
        reverse_adjustment(
            write_engine,
            entry_id=grant.id,
            actor="b@x.com",
            reason="Granted to the wrong organization",
        )
        == reversal
    )
    before = snapshot(write_engine, org)
    # ...another one is refused.
    with pytest.raises(AlreadyReversed, match="already reversed"):
        reverse_adjustment(write_engine, entry_id=grant.id, actor="c@x.com", reason="Again")
    with pytest.raises(InvalidAdjustment, match="cannot itself be reversed"):
        reverse_adjustment(
            write_engine, entry_id=reversal.id, actor="c@x.com", reason="Undo the undo"
        )
    assert snapshot(write_engine, org) == before
    assert invariant_holds(write_engine, org)


def test_reversing_a_partly_spent_grant_reverses_what_remains_and_says_so(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine)
    grant = adjust_credits(
        write_engine,
        organization_id=org,
        amount=100,
        reason="Promo",
        actor="a@x.com",
        idempotency_key="s-1",
    )
    adjust_credits(
        write_engine,
        organization_id=org,
        amount=-60,
        reason="Spent",
        actor="a@x.com",
        idempotency_key="s-2",
    )
    reversal = reverse_adjustment(write_engine, entry_id=grant.id, actor="a@x.com", reason="Undo")
    assert reversal.amount == -40 and reversal.balance_after == 0
    assert reversal.note == "60 of the 100 credits were already used; reversed the remaining 40."
    assert invariant_holds(write_engine, org)
    # A retry returns the same reversal.
    again = reverse_adjustment(write_engine, entry_id=grant.id, actor="a@x.com", reason="Undo")
    assert again == reversal


def test_reversing_a_grant_that_was_all_spent_is_refused(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    grant = adjust_credits(
        write_engine,
        organization_id=org,
        amount=100,
        reason="Promo",
        actor="a@x.com",
        idempotency_key="s-1",
    )
    adjust_credits(
        write_engine,
        organization_id=org,
        amount=-100,
        reason="Spent",
        actor="a@x.com",
        idempotency_key="s-2",
    )
    before = snapshot(write_engine, org)
    with pytest.raises(NothingToReverse, match=r"Nothing remains of entry .* 100 credits"):
        reverse_adjustment(write_engine, entry_id=grant.id, actor="a@x.com", reason="Undo")
    assert snapshot(write_engine, org) == before


def test_reversal_checks_the_organization_when_given(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    other, _ = new_org(write_engine)
    grant = adjust_credits(
        write_engine,
        organization_id=org,
        amount=5,
        reason="x",
        actor="a@x.com",
        idempotency_key="o-1",
    )
    with pytest.raises(InvalidAdjustment, match="no ledger entry"):
        reverse_adjustment(
            write_engine, entry_id=grant.id, actor="a@x.com", reason="x", organization_id=other
        )


@pytest.mark.parametrize(
    "text_value",
    [
        "Robert'); DROP TABLE credit_ledger;--",
        'He said "refund" \\ and left',
        "Rückerstattung für Überbuchung — 返金 🎉",
        "%_ wildcard-looking",
    ],
)
def test_reason_and_note_are_stored_verbatim(write_engine: Engine, text_value: str) -> None:
    org, _ = new_org(write_engine)
    entry = adjust_credits(
        write_engine,
        organization_id=org,
        amount=1,
        reason=text_value,
        note=text_value,
        actor="o'brien@finance.example",
        idempotency_key=text_value,
    )
    with write_engine.connect() as conn:
        stored = conn.execute(
            text("SELECT reason, note, actor, idempotency_key FROM credit_ledger WHERE id = :id"),
            {"id": entry.id},
        ).one()
    assert tuple(stored) == (text_value, text_value, "o'brien@finance.example", text_value)


def test_a_note_keeps_its_line_breaks(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    entry = adjust_credits(
        write_engine,
        organization_id=org,
        amount=1,
        reason="Promo",
        note="PO 4711\nApproved by Dana",
        actor="a@x.com",
        idempotency_key="multiline-note",
    )
    assert entry.note == "PO 4711\nApproved by Dana"


BAD_ADJUSTMENTS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("zero", {"amount": 0}, InvalidAdjustment, "cannot be zero"),
    ("float", {"amount": 10.5}, InvalidAdjustment, "whole number"),
    ("integral float", {"amount": 10.0}, InvalidAdjustment, "whole number"),
    ("string", {"amount": "10"}, InvalidAdjustment, "whole number"),
    ("bool", {"amount": True}, InvalidAdjustment, "whole number"),
    ("none", {"amount": None}, InvalidAdjustment, "whole number"),
    ("too large", {"amount": 10_000_001}, InvalidAdjustment, "at most 10,000,000"),
    ("too negative", {"amount": -10_000_001}, InvalidAdjustment, "at most 10,000,000"),
    ("blank reason", {"reason": "   "}, InvalidAdjustment, "reason cannot be empty"),
    ("missing reason", {"reason": None}, InvalidAdjustment, "reason must be text"),
    ("long reason", {"reason": "x" * 321}, InvalidAdjustment, "reason is too long"),
    ("NUL in reason", {"reason": "a\x00b"}, InvalidAdjustment, "reason contains a NUL"),
    ("line break in reason", {"reason": "a\nb"}, InvalidAdjustment, "control character"),
    ("tab in note", {"note": "a\tb"}, InvalidAdjustment, "note contains a control character"),
    ("bidi override in actor", {"actor": "a\u202e@x.com"}, InvalidAdjustment, "actor contains"),
    ("NUL in key", {"idempotency_key": "k\x00"}, InvalidAdjustment, "key contains a NUL"),
    ("long key", {"idempotency_key": "k" * 201}, InvalidAdjustment, "key is too long"),
    ("long actor", {"actor": "a" * 321}, InvalidAdjustment, "actor is too long"),
    ("blank actor", {"actor": ""}, InvalidAdjustment, "actor cannot be empty"),
    ("blank key", {"idempotency_key": " "}, InvalidAdjustment, "idempotency key cannot be empty"),
    ("long note", {"note": "n" * 2001}, InvalidAdjustment, "note is too long"),
    ("NUL in note", {"note": "a\x00b"}, InvalidAdjustment, "NUL"),
    (
        "unknown org",
        {"organization_id": 999_999_999},
        InvalidAdjustment,
        "no organization with id 999999999",
    ),
    ("org id zero", {"organization_id": 0}, InvalidAdjustment, "positive whole number"),
    ("org id text", {"organization_id": "1"}, InvalidAdjustment, "positive whole number"),
    ("org id bool", {"organization_id": True}, InvalidAdjustment, "positive whole number"),
    ("overdraft", {"amount": -101}, InsufficientCredits, "balance is 100 credits"),
]


@pytest.mark.parametrize(
    ("case", "change", "error", "message"), BAD_ADJUSTMENTS, ids=[c[0] for c in BAD_ADJUSTMENTS]
)
def test_bad_adjustments_are_refused_with_a_sentence_and_write_nothing(
    write_engine: Engine, case: str, change: dict[str, Any], error: type[Exception], message: str
) -> None:
    org, _ = new_org(write_engine, balance=100)
    arguments: dict[str, Any] = {
        "organization_id": org,
        "amount": 10,
        "reason": "Promo",
        "actor": "a@x.com",
        "idempotency_key": f"bad-{case}",
        "note": None,
    }
    arguments.update(change)
    before = snapshot(write_engine, org)
    with pytest.raises(error, match=message):
        adjust_credits(write_engine, **arguments)
    assert snapshot(write_engine, org) == before


BAD_REVERSALS: list[tuple[str, Callable[[int], dict[str, Any]], str]] = [
    ("no such entry", lambda e: {"entry_id": 987_654_321}, "no ledger entry"),
    ("entry id text", lambda e: {"entry_id": str(e)}, "entry_id must be a positive whole number"),
    ("NUL in reason", lambda e: {"entry_id": e, "reason": "a\x00"}, "reason contains a NUL"),
    ("blank reason", lambda e: {"entry_id": e, "reason": ""}, "reason cannot be empty"),
    ("blank actor", lambda e: {"entry_id": e, "actor": "  "}, "actor cannot be empty"),
]


@pytest.mark.parametrize(
    ("case", "change", "message"), BAD_REVERSALS, ids=[c[0] for c in BAD_REVERSALS]
)
def test_bad_reversals_are_refused_and_write_nothing(
    write_engine: Engine, case: str, change: Callable[[int], dict[str, Any]], message: str
) -> None:
    org, _ = new_org(write_engine)
    entry = adjust_credits(
        write_engine,
        organization_id=org,
        amount=10,
        reason="x",
        actor="a@x.com",
        idempotency_key="rev",
    )
    before = snapshot(write_engine, org)
    arguments = {"actor": "a@x.com", "reason": "Undo", **change(entry.id)}
    with pytest.raises(InvalidAdjustment, match=message):
        reverse_adjustment(write_engine, **arguments)
    assert snapshot(write_engine, org) == before


def test_recent_duplicate_names_the_same_movement_by_the_same_person(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=1000)
    other, _ = new_org(write_engine, balance=1000)

    def adjust(organization_id: int, amount: int, actor: str, key: str) -> LedgerEntry:
        return adjust_credits(
            write_engine,
            organization_id=organization_id,
            amount=amount,
            reason="Promo",
            actor=actor,
            idempotency_key=key,
        )

    older = adjust(org, 500, "ana@finance.example", "dup-1")
    latest = adjust(org, 500, "ana@finance.example", "dup-2")
    adjust(org, 500, "ben@finance.example", "dup-3")  # someone else
    adjust(org, 499, "ana@finance.example", "dup-4")  # another amount
    adjust(other, 500, "ana@finance.example", "dup-5")  # another organization
    with write_engine.connect() as conn:

        def found(**change: Any) -> LedgerEntry | None:
            arguments: dict[str, Any] = {
                "organization_id": org,
                "actor": "ana@finance.example",
                "amount": 500,
                **change,
            }
            return recent_duplicate(conn, **arguments)

        assert found() == latest
        assert found(now=latest.created_at + dt.timedelta(minutes=9)) == latest
        assert found(now=latest.created_at + dt.timedelta(minutes=11)) is None
        # Entries made after "now" are not in the window before it.
        assert found(now=older.created_at) == older
        assert found(now=older.created_at - dt.timedelta(seconds=1)) is None
        assert (
            found(within=dt.timedelta(hours=1), now=latest.created_at + dt.timedelta(minutes=30))
            == latest
        )
        assert found(amount=-500) is None
        assert found(actor="carl@finance.example") is None
        with pytest.raises(InvalidAdjustment, match="within"):
            found(within=dt.timedelta(days=2))
        with pytest.raises(InvalidInput, match="actor contains an invisible or control character"):
            found(actor="ana\x00")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1, None),
        (-10_000_000, None),
        (0, "cannot be zero"),
        (10_000_001, "at most 10,000,000 credits"),
        (1.5, "whole number"),
        (1e3, "whole number"),
        ("1000", "whole number"),
        (False, "whole number"),
    ],
)
def test_check_adjustment_amount_is_the_one_rule_for_amounts(
    value: object, message: str | None
) -> None:
    if message is None:
        assert check_adjustment_amount(value) == value
    else:
        with pytest.raises(InvalidAdjustment, match=message):
            check_adjustment_amount(value)


def test_the_adjustment_cap_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITS_MAX_ADJUSTMENT", "500")
    assert check_adjustment_amount(-500) == -500
    with pytest.raises(InvalidAdjustment, match="at most 500 credits; 501 is too many"):
        check_adjustment_amount(501)
