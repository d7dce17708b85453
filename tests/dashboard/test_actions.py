"""Checking what a form asks for before anything is written (no database needed)."""

from __future__ import annotations

import datetime as dt

import pytest

from dashboard import actions
from queries.errors import InvalidAdjustment, InvalidLimitChange, ReversalApprovalRequired


def adjustment(**changes: object) -> actions.AdjustmentRequest:
    values: dict[str, object] = {
        "organization_id": 1,
        "organization_name": "Acme",
        "direction": "grant",
        "amount": "100",
        "reason": "Goodwill gesture",
        "note": "",
        "balance": 50,
        "idempotency_key": "k",
    } | changes
    return actions.check_adjustment(**values)  # type: ignore[arg-type]


def test_a_grant_and_a_deduction_become_signed_amounts_with_the_balance_after() -> None:
    grant = adjustment(amount="100")
    assert (grant.amount, grant.balance_after, grant.direction) == (100, 150, "grant")
    deduct = adjustment(direction="deduct", amount="50", note="  ")
    assert (deduct.amount, deduct.balance_after, deduct.note) == (-50, 0, None)
    assert adjustment(amount="1,500").amount == 1500  # grouped by commas, as people write
    assert adjustment(amount=" 7 ").amount == 7


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (None, "Enter the number of credits"),
        ("", "Enter the number of credits"),
        ("1.5", "whole number such as 1500"),
        ("1e3", "whole number such as 1500"),
        ("0.999", "whole number such as 1500"),
        ("2.5", "whole number such as 1500"),
        ("-3", "whole number such as 1500"),
        ("+3", "whole number such as 1500"),
        ("abc", "whole number such as 1500"),
        ("1,50", "whole number such as 1500"),
        (2.5, "whole number"),
        (7.0, "whole number"),  # a float is never taken for a whole number
        (float("inf"), "whole number"),
        (float("nan"), "whole number"),
        (True, "whole number"),
        ("0", "at least 1"),
        ("10,000,001", "at most 10,000,000 credits"),
    ],
)
def test_amounts_that_are_not_a_positive_whole_number_are_refused_never_rounded(
    amount: object, message: str
) -> None:
    with pytest.raises(InvalidAdjustment, match=message):
        adjustment(amount=amount)


def test_the_largest_adjustment_follows_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITS_MAX_ADJUSTMENT", "1000")
    with pytest.raises(InvalidAdjustment, match="at most 1,000 credits"):
        adjustment(amount="1001")
    assert adjustment(amount="1,000").amount == 1000


def test_reasons_notes_and_balances_are_checked() -> None:
    with pytest.raises(InvalidAdjustment, match="Choose a reason"):
        adjustment(reason=None)
    with pytest.raises(InvalidAdjustment, match="explain the reason"):
        adjustment(reason=actions.OTHER)
    assert adjustment(reason=actions.OTHER, note="migration").reason == "Other"
    with pytest.raises(InvalidAdjustment, match="note is too long"):
        adjustment(note="n" * 2001)
    with pytest.raises(InvalidAdjustment, match="NUL"):
        adjustment(note="ticket\x00 42")
    assert adjustment(note="line one\nline two").note == "line one\nline two"
    with pytest.raises(InvalidAdjustment, match="Insufficient credits"):
        adjustment(direction="deduct", amount="51")
    with pytest.raises(InvalidAdjustment, match="grant or deduct"):
        adjustment(direction="refund")


def reversal(**changes: object) -> actions.ReversalRequest:
    values: dict[str, object] = {
        "organization_id": 1,
        "organization_name": "Acme",
        "entry_id": 9,
        "entry_amount": 40,
        "entry_kind": "grant",
        "reason": "Entered in error",
        "note": "",
        "balance": 100,
    } | changes
    return actions.check_reversal(**values)  # type: ignore[arg-type]


def test_a_reversal_needs_an_entry_a_reason_and_enough_balance() -> None:
    assert reversal().balance_after == 60
    assert reversal(note="typo").reason == "Entered in error: typo"
    assert reversal(entry_amount=-30).balance_after == 130  # undoing a deduction
    with pytest.raises(InvalidAdjustment, match="Choose the ledger entry"):
        reversal(entry_id=None)
    with pytest.raises(InvalidAdjustment, match="cannot itself be reversed"):
        reversal(entry_kind="reversal")
    with pytest.raises(InvalidAdjustment, match="Choose a reason"):
        reversal(reason=None)
    with pytest.raises(InvalidAdjustment, match="Insufficient credits"):
        reversal(entry_amount=101)
    # The reason's length is queries' one rule (checks.MAX_REASON), reason and note together.
    with pytest.raises(InvalidAdjustment, match="too long"):
        reversal(note="n" * 320)
    with pytest.raises(InvalidAdjustment, match="NUL"):
        reversal(note="n\x00")
    # A grant partly used gives back what remains of it, and only that.
    used = reversal(entry_amount=150, remaining=100, balance=300)
    assert (used.moves, used.balance_after) == (-100, 200)
    with pytest.raises(InvalidAdjustment, match="Nothing remains of entry 9's 150 credits"):
        reversal(entry_amount=150, remaining=0, balance=300)


@pytest.mark.parametrize(
    ("entry_amount", "remaining", "moved", "refused"),
    [
        (-100, None, 0, False),
        (-101, None, 0, True),  # a deduction given back
        (101, None, 0, True),  # a grant taken back
        (150, 100, 0, False),  # what remains of a used grant is what counts
        (40, None, 60, False),
        (41, None, 60, True),  # split: with the last 24 hours
        (-41, None, 60, True),
    ],
)
def test_the_reversal_form_refuses_one_person_exactly_where_the_data_layer_does(
    monkeypatch: pytest.MonkeyPatch,
    entry_amount: int,
    remaining: int | None,
    moved: int,
    refused: bool,
) -> None:
    monkeypatch.setenv("CREDITS_APPROVAL_THRESHOLD", "100")
    values = {
        "entry_amount": entry_amount,
        "remaining": remaining,
        "moved_alone": moved,
        "balance": 1_000,
    }
    if not refused:
        assert reversal(**values).entry_id == 9
        return
    with pytest.raises(ReversalApprovalRequired) as refusal:
        reversal(**values)
    sentence = str(refusal.value)
    assert "Nothing was changed." in sentence
    if moved:
        assert f"You moved {moved} credits for Acme in the last 24 hours" in sentence
        assert "a second person with approval rights must reverse it" in sentence
    else:
        assert f"Reversing entry 9 moves {abs(entry_amount)} credits" in sentence
        assert f"Request an adjustment of {-entry_amount:+} credits instead" in sentence


def test_a_limit_change_is_checked_before_it_is_made() -> None:
    today = dt.date(2026, 11, 25)

    def change(**changes: object) -> actions.LimitRequest:
        values: dict[str, object] = {
            "organization_id": 1,
            "organization_name": "Acme",
            "type": "image",
            "daily_limit": "1000",
            "reason": "Plan upgrade",
            "note": "",
            "effective": today,
            "today": today,
            "idempotency_key": "k",
        } | changes
        return actions.check_limit_change(**values)  # type: ignore[arg-type]

    assert change().daily_limit == 1000
    assert change(daily_limit="0").daily_limit == 0  # a type can be switched off
    assert change(daily_limit="1,500").daily_limit == 1500
    assert change().idempotency_key == "k"
    assert change(reason=actions.OTHER, note="pilot").reason == "Other: pilot"
    cases: list[tuple[dict[str, object], str]] = [
        ({"type": None}, "Choose a generation type"),
        ({"daily_limit": None}, "Enter the new daily limit"),
        ({"daily_limit": ""}, "Enter the new daily limit"),
        ({"daily_limit": "-1"}, "whole number such as 1500"),
        ({"daily_limit": "2.5"}, "whole number such as 1500"),
        ({"daily_limit": "1e3"}, "whole number such as 1500"),
        ({"daily_limit": "0.999"}, "whole number such as 1500"),
        ({"daily_limit": "abc"}, "whole number such as 1500"),
        ({"daily_limit": 1.5}, "whole number"),
        ({"daily_limit": "10,000,001"}, "from 0 to 10,000,000"),
        ({"note": "ticket\x00"}, "NUL"),
        ({"note": "x" * 400}, "too long"),
        ({"effective": dt.date(1999, 12, 31)}, "outside the years"),
        ({"reason": None}, "Choose a reason"),
        ({"reason": actions.OTHER}, "explain the reason"),
        ({"effective": today - dt.timedelta(days=1)}, "in the past"),
    ]
    for bad, message in cases:
        with pytest.raises(InvalidLimitChange, match=message):
            change(**bad)


def test_every_form_gets_its_own_idempotency_key() -> None:
    assert actions.new_idempotency_key() != actions.new_idempotency_key()


@pytest.mark.parametrize(
    ("amount", "moved", "needs_approval", "crosses_the_day"),
    [
        ("100", 0, False, False),
        ("101", 0, True, False),
        ("40", 60, False, False),
        ("41", 60, True, True),
        ("101", 5, True, False),
    ],
)
def test_the_form_asks_for_a_second_person_exactly_where_the_data_layer_does(
    monkeypatch: pytest.MonkeyPatch,
    amount: str,
    moved: int,
    needs_approval: bool,
    crosses_the_day: bool,
) -> None:
    monkeypatch.setenv("CREDITS_APPROVAL_THRESHOLD", "100")
    for direction in ("grant", "deduct"):
        request = adjustment(direction=direction, amount=amount, balance=1_000, moved_alone=moved)
        assert (request.needs_approval, request.crosses_the_day) == (
            needs_approval,
            crosses_the_day,
        )


# A grant's terms from the form: the expiry typed on the organization's clock.
NOW = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)


def test_an_expiry_on_the_organizations_clock_is_stored_in_utc_and_stated() -> None:
    request = adjustment(
        expiry_date=dt.date(2027, 1, 6),
        expiry_time=dt.time(0, 0),
        priority=5,
        timezone="Asia/Kathmandu",
        now=dt.datetime(2026, 12, 7, tzinfo=dt.UTC),
    )
    assert request.expires_at == dt.datetime(2027, 1, 5, 18, 15, tzinfo=dt.UTC)
    assert request.priority == 5
    assert request.terms == (
        "expiring 6 Jan 2027 00:00 Asia/Kathmandu (5 Jan 2027 18:15 UTC), priority 5"
    )
    # No expiry and the default priority: a plain grant, nothing to state.
    plain = adjustment(priority=10, now=NOW)
    assert (plain.expires_at, plain.priority, plain.terms) == (None, None, "")


def test_a_wall_clock_time_the_zone_skips_is_refused_and_a_repeated_one_is_the_first() -> None:
    with pytest.raises(InvalidAdjustment, match="does not exist in Europe/Berlin"):
        adjustment(
            expiry_date=dt.date(2027, 3, 28),
            expiry_time=dt.time(2, 30),
            timezone="Europe/Berlin",
            now=NOW,
        )
    twice = adjustment(
        expiry_date=dt.date(2027, 10, 31),
        expiry_time=dt.time(2, 30),
        timezone="Europe/Berlin",
        now=NOW,
    )
    assert twice.expires_at == dt.datetime(2027, 10, 31, 0, 30, tzinfo=dt.UTC)  # CEST, +2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"expiry_date": dt.date(2027, 3, 1)}, "The expiry 1 Mar 2027 00:00 UTC is not in"),
        ({"direction": "deduct", "priority": 3}, "Only a grant can expire or carry a priority"),
        ({"direction": "deduct", "expiry_date": dt.date(2027, 6, 1)}, "Only a grant"),
        ({"priority": 256}, "between 0 and 255"),
        ({"expiry_date": dt.date(2027, 6, 1), "expiry_time": "noon"}, "a time of day"),
    ],
)
def test_bad_grant_terms_are_refused_with_a_sentence(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidAdjustment, match=message):
        adjustment(now=NOW, **changes)
