"""The two-person rule cannot be split or self-approved.

One person's movements for one organization count together over a trailing 24 hours
(database time); an identity is one person under any spelling. A reversal is held to the
rule as an adjustment is (by the credits it books), and no request carries one. Entries
are back-dated by the owner (the append-only guard off inside that transaction), never
by waiting for the clock.
"""

from __future__ import annotations

import contextlib
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from queries.approvals import approve, reject, request_adjustment
from queries.bulk import apply_bulk, plan_bulk
from queries.credits import LedgerEntry, adjust_credits, reverse_adjustment
from queries.errors import (
    AlreadyReversed,
    ApprovalRequired,
    InsufficientCredits,
    InvalidAdjustment,
    NothingToReverse,
    ReversalApprovalRequired,
    SelfApproval,
)
from tests.queries.writes import invariant_holds, new_org, snapshot

ANA = "ana@finance.example"
BEN = "ben@finance.example"
CARA = "cara@finance.example"
THRESHOLD = 100_000


@pytest.fixture(autouse=True)
def _threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITS_APPROVAL_THRESHOLD", str(THRESHOLD))


def _grant(engine: Engine, org: int, amount: int, actor: str = ANA) -> LedgerEntry:
    return adjust_credits(
        engine,
        organization_id=org,
        amount=amount,
        reason="Goodwill",
        actor=actor,
        idempotency_key=f"t-{uuid.uuid4()}",
    )


def _age(engine: Engine, org: int, hours: float) -> None:
    """Move every ledger entry of ``org`` ``hours`` into the past (the owner, with the
    append-only trigger off for this transaction only)."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE credit_ledger DISABLE TRIGGER credit_ledger_append_only"))
        conn.execute(
            text(
                "UPDATE credit_ledger SET created_at = created_at - make_interval(secs => :s) "
                "WHERE organization_id = :org"
            ),
            {"org": org, "s": hours * 3600},
        )
        conn.execute(
            text("ALTER TABLE credit_ledger ENABLE ALWAYS TRIGGER credit_ledger_append_only")
        )


def _approved(engine: Engine, org: int, amount: int) -> LedgerEntry:
    """An adjustment ben requested and cara approved: its entry (the approver's)."""
    request = request_adjustment(
        engine,
        organization_id=org,
        amount=amount,
        reason="Enterprise renewal",
        actor=BEN,
        idempotency_key=f"r-{uuid.uuid4()}",
    )
    return approve(engine, request_id=request.id, approver=CARA)


def _reverse(engine: Engine, entry: LedgerEntry, actor: str = ANA) -> LedgerEntry:
    return reverse_adjustment(engine, entry_id=entry.id, actor=actor, reason="Entered in error")


def _slug(engine: Engine, org: int) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(text("SELECT slug FROM organizations WHERE id = :o"), {"o": org}).scalar()
        )


def test_a_second_100000_grant_by_one_person_needs_a_second_person(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    _grant(write_engine, org, 80_000)
    before = snapshot(write_engine, org)
    with pytest.raises(ApprovalRequired) as refused:
        _grant(write_engine, org, 30_000)
    slug = _slug(write_engine, org)
    assert str(refused.value) == (
        f"You moved 80,000 credits for {slug} in the last 24 hours; with this 30,000 it "
        "passes 100,000: a second person must approve it. Request it instead. "
        "Nothing was changed."
    )
    assert snapshot(write_engine, org) == before
    _grant(write_engine, org, 20_000)  # up to the threshold, alone, is allowed
    with pytest.raises(ApprovalRequired):
        _grant(write_engine, org, 1)
    assert invariant_holds(write_engine, org)


def test_deductions_and_other_spellings_count_as_the_same_person(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=500_000)
    _grant(write_engine, org, -60_000, actor="ANA@Finance.example")
    with pytest.raises(ApprovalRequired, match="moved 60,000 credits"):
        _grant(write_engine, org, 50_000, actor=" ａｎａ@finance.example")


def test_another_person_or_organization_is_not_affected(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    other, _ = new_org(write_engine)
    _grant(write_engine, org, 100_000)
    _grant(write_engine, org, 100_000, actor=BEN)
    _grant(write_engine, other, 100_000)


def test_entries_older_than_24_hours_do_not_count(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    _grant(write_engine, org, 100_000)
    _age(write_engine, org, 23.9)
    with pytest.raises(ApprovalRequired):
        _grant(write_engine, org, 1)
    _age(write_engine, org, 0.2)  # now 24.1 hours old
    _grant(write_engine, org, 100_000)


def test_approved_entries_do_not_count_and_reversals_do(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=1_000)
    request = request_adjustment(
        write_engine,
        organization_id=org,
        amount=250_000,
        reason="Enterprise renewal",
        actor=BEN,
        idempotency_key=f"r-{uuid.uuid4()}",
    )
    approve(write_engine, request_id=request.id, approver=ANA)  # a second person was there
    entry = _grant(write_engine, org, 40_000)
    reverse_adjustment(write_engine, entry_id=entry.id, actor=ANA, reason="Wrong org")
    with pytest.raises(ApprovalRequired, match="moved 80,000 credits"):
        _grant(write_engine, org, 30_000)


def test_a_request_cannot_be_approved_or_rejected_by_its_requester_in_another_case(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine)
    request = request_adjustment(
        write_engine,
        organization_id=org,
        amount=250_000,
        reason="Enterprise renewal",
        actor="ANA@Example.com",
        idempotency_key=f"r-{uuid.uuid4()}",
    )
    assert request.requested_by == "ana@example.com"
    before = snapshot(write_engine, org)
    with pytest.raises(SelfApproval):
        approve(write_engine, request_id=request.id, approver="ana@example.com")
    with pytest.raises(SelfApproval):
        reject(write_engine, request_id=request.id, approver=" Ana@EXAMPLE.com", reason="No")
    assert snapshot(write_engine, org) == before


def test_an_identity_with_an_invisible_character_is_refused_at_request_time(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine)
    before = snapshot(write_engine, org)
    with pytest.raises(InvalidAdjustment, match="U\\+200B"):
        request_adjustment(
            write_engine,
            organization_id=org,
            amount=250_000,
            reason="Enterprise renewal",
            actor="ana@example.com\u200b",
            idempotency_key=f"r-{uuid.uuid4()}",
        )
    assert snapshot(write_engine, org) == before


def _file(slug: str, rows: int, amount: int = 100_000) -> bytes:
    tag = uuid.uuid4().hex[:8]
    body = "".join(f"{slug},{amount},Split {tag} {i}\n" for i in range(rows))
    return f"organization,amount,reason\n{body}".encode()


def test_twenty_bulk_rows_of_100000_apply_one_and_request_the_rest(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    data = _file(_slug(write_engine, org), 20)
    with write_engine.connect() as conn:
        dry = plan_bulk(conn, data=data, actor=ANA)
        without_actor = plan_bulk(conn, data=data)
    assert [r.status for r in dry.rows] == ["apply"] + ["request"] * 19
    assert [r.status for r in without_actor.rows] == ["apply"] + ["request"] * 19
    done = apply_bulk(write_engine, data=data, actor=ANA)
    assert [r.status for r in done.rows] == ["applied"] + ["requested"] * 19
    assert snapshot(write_engine, org)["balance"] == 100_000
    # A second file in a row: everything in it needs a second person, also in the dry run.
    second = _file(_slug(write_engine, org), 3, amount=10)
    with write_engine.connect() as conn:
        assert [r.status for r in plan_bulk(conn, data=second, actor=ANA).rows] == ["request"] * 3
    assert [r.status for r in apply_bulk(write_engine, data=second, actor=ANA).rows] == [
        "requested"
    ] * 3
    with pytest.raises(ApprovalRequired):
        _grant(write_engine, org, 1)
    assert invariant_holds(write_engine, org)


def test_bulk_rows_count_with_earlier_movements(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    _grant(write_engine, org, 70_000)
    data = _file(_slug(write_engine, org), 3, amount=20_000)
    done = apply_bulk(write_engine, data=data, actor=ANA)
    assert [r.status for r in done.rows] == ["applied", "requested", "requested"]
    # Another person's file is not affected by ana's movements.
    other = _file(_slug(write_engine, org), 3, amount=20_000)
    assert {r.status for r in apply_bulk(write_engine, data=other, actor=BEN).rows} == {"applied"}


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(min_value=-120_000, max_value=120_000).filter(bool),
            st.sampled_from([0.0, 1.0, 6.0, 23.0, 25.0]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_what_one_person_applies_alone_never_passes_the_threshold_in_any_24_hours(
    write_engine: Engine, steps: list[tuple[int, float]]
) -> None:
    org, _ = new_org(write_engine, balance=2_000_000)
    for amount, hours_later in steps:
        with contextlib.suppress(ApprovalRequired):
            _grant(write_engine, org, amount)
        _age(write_engine, org, hours_later)
    assert _worst_window(write_engine, org) <= THRESHOLD
    assert invariant_holds(write_engine, org)


def _worst_window(engine: Engine, org: int) -> int:
    """The most ana moved alone for ``org`` in any 24 hours ending at one of her entries."""
    with engine.connect() as conn:
        worst = conn.execute(
            text(
                """
                SELECT coalesce(max(w.moved), 0) FROM credit_ledger e
                CROSS JOIN LATERAL (
                    SELECT sum(abs(l.amount)) AS moved FROM credit_ledger l
                    WHERE l.organization_id = e.organization_id AND l.actor = :actor
                      AND l.approval_request_id IS NULL
                      AND l.created_at > e.created_at - interval '24 hours'
                      AND l.created_at <= e.created_at) w
                WHERE e.organization_id = :org AND e.actor = :actor
                """
            ),
            {"org": org, "actor": ANA},
        ).scalar_one()
    return int(worst)


# ------------------------------------------------------------ reversals (no request carries one)


def test_one_person_cannot_reverse_an_approved_deduction_or_grant_above_the_threshold(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine, balance=1_000_000)
    deduction = _approved(write_engine, org, -500_000)
    grant = _approved(write_engine, org, 250_000)
    before = snapshot(write_engine, org)
    # Someone else, the requester, the approver: none of them alone.
    for person in (ANA, BEN, CARA):
        with pytest.raises(ReversalApprovalRequired) as refused:
            _reverse(write_engine, deduction, actor=person)
        assert snapshot(write_engine, org) == before
    assert isinstance(refused.value, ApprovalRequired)
    assert str(refused.value) == (
        f"Reversing entry {deduction.id} moves 500,000 credits, more than the approval "
        "threshold of 100,000, so one person cannot apply it, and a reversal cannot be "
        f"requested for approval. Request an adjustment of +500,000 credits instead, naming "
        f"entry {deduction.id} in its note: a second person approves it. Nothing was changed."
    )
    with pytest.raises(ReversalApprovalRequired, match="adjustment of -250,000 credits"):
        _reverse(write_engine, grant)
    assert snapshot(write_engine, org) == before
    assert invariant_holds(write_engine, org)


def test_a_reversal_up_to_the_threshold_is_still_applied_alone(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    entry = _grant(write_engine, org, 100_000, actor=BEN)
    reversal = _reverse(write_engine, entry)
    assert (reversal.amount, reversal.kind, reversal.reverses_id) == (
        -100_000,
        "reversal",
        entry.id,
    )
    assert (reversal.actor, reversal.balance_after) == (ANA, 0)
    assert invariant_holds(write_engine, org)


def test_a_used_grant_counts_only_what_its_reversal_gives_back(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    grant = _approved(write_engine, org, 150_000)
    _grant(write_engine, org, -60_000, actor=BEN)  # drawn from that grant, the only one
    reversal = _reverse(write_engine, grant)  # 90,000 remain: one person may
    assert reversal.amount == -90_000
    assert snapshot(write_engine, org)["balance"] == 0


def test_reversals_cannot_be_split_nor_added_to_adjustments(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=500_000)
    first, second = (_grant(write_engine, org, -40_000, actor=BEN) for _ in range(2))
    third = _grant(write_engine, org, 40_000, actor=CARA)
    _reverse(write_engine, first)
    _reverse(write_engine, second)  # 80,000 alone so far
    before = snapshot(write_engine, org)
    with pytest.raises(ReversalApprovalRequired) as refused:
        _reverse(write_engine, third)
    assert str(refused.value) == (
        f"You moved 80,000 credits for {_slug(write_engine, org)} in the last 24 hours; with "
        f"this reversal of 40,000 (entry {third.id}) it passes the approval threshold of "
        "100,000, so you cannot apply it alone: a second person with approval rights must "
        "reverse it. Nothing was changed."
    )
    with pytest.raises(ApprovalRequired, match="moved 80,000 credits"):
        _grant(write_engine, org, 30_000)  # nor split between reversals and adjustments
    assert snapshot(write_engine, org) == before
    # A second person may, within their own 24 hours (ben's two 40,000 leave him 20,000).
    _reverse(write_engine, third, actor=CARA)
    assert invariant_holds(write_engine, org)


def test_an_adjustment_counts_with_a_later_reversal(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    entry = _grant(write_engine, org, 50_000, actor=BEN)
    _grant(write_engine, org, 70_000)
    before = snapshot(write_engine, org)
    with pytest.raises(ReversalApprovalRequired, match="You moved 70,000 credits"):
        _reverse(write_engine, entry)
    assert snapshot(write_engine, org) == before
    _age(write_engine, org, 24.1)  # the grant has left ana's 24 hours
    assert _reverse(write_engine, entry).amount == -50_000


def test_a_retried_reversal_gets_its_entry_back_after_the_window_filled(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine)
    entry = _grant(write_engine, org, 60_000, actor=BEN)
    first = _reverse(write_engine, entry)
    _grant(write_engine, org, 40_000)  # ana's 24 hours are full now
    assert _reverse(write_engine, entry) == first  # the same request: its answer, nothing new
    assert snapshot(write_engine, org)["balance"] == 40_000


def test_the_way_out_of_a_refused_reversal_is_a_request_its_requester_cannot_approve(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine, balance=600_000)
    deduction = _approved(write_engine, org, -500_000)
    with pytest.raises(ReversalApprovalRequired):
        _reverse(write_engine, deduction)
    request = request_adjustment(
        write_engine,
        organization_id=org,
        amount=500_000,
        reason="Entered in error",
        note=f"Reverses entry {deduction.id}",
        actor=ANA,
        idempotency_key=f"r-{uuid.uuid4()}",
    )
    before = snapshot(write_engine, org)
    with pytest.raises(SelfApproval):
        approve(write_engine, request_id=request.id, approver=" Ana@Finance.example")
    assert snapshot(write_engine, org) == before
    entry = approve(write_engine, request_id=request.id, approver=BEN)
    assert (entry.amount, entry.balance_after) == (500_000, 600_000)
    assert invariant_holds(write_engine, org)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    approved=st.lists(
        st.integers(min_value=-300_000, max_value=300_000).filter(bool), min_size=1, max_size=3
    ),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["adjust", "reverse"]),
            st.integers(min_value=-120_000, max_value=120_000).filter(bool),
            st.sampled_from([0.0, 1.0, 6.0, 23.0, 25.0]),
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_what_one_person_reverses_and_adjusts_alone_never_passes_the_threshold(
    write_engine: Engine, approved: list[int], steps: list[tuple[str, int, float]]
) -> None:
    """Reversals of approved entries and of ana's own, among her adjustments: in no 24
    hours does what she moved alone pass the threshold."""
    org, _ = new_org(write_engine, balance=2_000_000)
    entries = [_approved(write_engine, org, amount) for amount in approved]
    for what, value, hours_later in steps:
        with contextlib.suppress(
            ApprovalRequired, AlreadyReversed, NothingToReverse, InsufficientCredits
        ):
            if what == "adjust":
                entries.append(_grant(write_engine, org, value))
            else:
                _reverse(write_engine, entries[value % len(entries)])
        _age(write_engine, org, hours_later)
    assert _worst_window(write_engine, org) <= THRESHOLD
    assert invariant_holds(write_engine, org)
