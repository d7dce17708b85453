"""Credit grants (issue 18, migration 0021): drawn in order, expiring exactly, written
off once, kept equal to the balance; what a caller can get wrong is refused.

Time passes without the wall clock: a grant that is due was made by the owner with a
back-dated entry (``add_due_grant``), or its expiry is moved back as the owner, which is
what the clock moving forward does to it.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import Engine, text

from queries.credits import (
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAdjustment,
    adjust_credits,
    credit_grants,
    reverse_adjustment,
)
from queries.errors import QuotaExceeded
from queries.generations import record_generation
from queries.grants import ExpiryReport, expire_credits, expiring_grants
from tests.queries.writes import add_due_grant, invariant_holds, new_org, snapshot


def _db_now(engine: Engine) -> dt.datetime:
    with engine.connect() as conn:
        now: dt.datetime = conn.execute(text("SELECT now()")).scalar_one()
    return now


def _grant(engine: Engine, org: int, amount: int, key: str, **terms: object) -> int:
    return adjust_credits(
        engine,
        organization_id=org,
        amount=amount,
        reason="Promotion",
        actor="finance@example.com",
        idempotency_key=key,
        **terms,  # type: ignore[arg-type]
    ).id


def _remaining(engine: Engine, org: int) -> dict[int, int]:
    """ledger entry id -> what remains of the grant it made."""
    with engine.connect() as conn:
        return {
            g.ledger_entry_id: g.remaining
            for g in credit_grants(conn, organization_id=org)
            if g.ledger_entry_id is not None and g.source != "opening"
        }


def test_use_draws_by_priority_then_soonest_expiry_then_age(write_engine: Engine) -> None:
    org, users = new_org(write_engine)
    now = _db_now(write_engine)
    never = _grant(write_engine, org, 100, "never")
    later = _grant(write_engine, org, 50, "later", expires_at=now + dt.timedelta(days=60))
    sooner = _grant(write_engine, org, 30, "sooner", expires_at=now + dt.timedelta(days=30))
    first = _grant(
        write_engine, org, 20, "first", priority=5, expires_at=now + dt.timedelta(days=90)
    )
    also_never = _grant(write_engine, org, 10, "also-never")

    # A deduction of 35: all of the priority-5 grant, then the soonest expiry.
    adjust_credits(
        write_engine,
        organization_id=org,
        amount=-35,
        reason="Correction",
        actor="finance@example.com",
        idempotency_key="d1",
    )
    assert _remaining(write_engine, org) == {
        first: 0,
        sooner: 15,
        later: 50,
        never: 100,
        also_never: 10,
    }
    # Generations draw the same way, across a grant's end: 15 + 5 of the next.
    record_generation(write_engine, organization_id=org, user_id=users[0], type="chat", credits=20)
    assert _remaining(write_engine, org) == {
        first: 0,
        sooner: 0,
        later: 45,
        never: 100,
        also_never: 10,
    }
    # Never-expiring grants last, the older one first.
    record_generation(write_engine, organization_id=org, user_id=users[0], type="chat", credits=60)
    assert _remaining(write_engine, org) == {
        first: 0,
        sooner: 0,
        later: 0,
        never: 85,
        also_never: 10,
    }
    with write_engine.connect() as conn:
        grants = credit_grants(conn, organization_id=org)
    assert [g.status for g in grants] == ["live", "live", "used", "used", "used"]
    assert [g.ledger_entry_id for g in grants[:2]] == [never, also_never]
    assert invariant_holds(write_engine, org)


def test_a_due_grant_is_gone_for_reads_and_written_off_by_the_next_write(
    write_engine: Engine,
) -> None:
    org, users = new_org(write_engine, balance=10)
    entry = add_due_grant(write_engine, org, 500, priority=0)
    with write_engine.connect() as conn:
        due = next(
            g for g in credit_grants(conn, organization_id=org) if g.ledger_entry_id == entry
        )
        assert (due.status, due.remaining, due.expired) == ("expired", 0, 500)
        # Not written off yet: the stored balance still holds it; due_credits says so.
        assert (
            conn.execute(
                text("SELECT due FROM due_credits(now()) WHERE organization_id = :o"), {"o": org}
            ).scalar_one()
            == 500
        )

    # The next write writes it off first, then cannot draw from it: 10 live credits.
    with pytest.raises(InsufficientCredits):
        record_generation(
            write_engine, organization_id=org, user_id=users[0], type="chat", credits=11
        )
    made = record_generation(
        write_engine, organization_id=org, user_id=users[0], type="chat", credits=10
    )
    assert made.balance_after == 0
    with write_engine.connect() as conn:
        expiry = conn.execute(
            text(
                "SELECT l.amount, l.kind, l.actor, l.idempotency_key, l.effective_at, l.created_at,"
                " g.expires_at, g.expired, g.written_off_at"
                " FROM credit_ledger l JOIN credit_grants g"
                "   ON g.organization_id = l.organization_id AND g.id = l.grant_id"
                " WHERE l.organization_id = :o AND l.kind = 'expired'"
            ),
            {"o": org},
        ).one()
    assert (expiry.amount, expiry.kind, expiry.actor, expiry.expired) == (
        -500,
        "expired",
        "system",
        500,
    )
    # It takes effect at the expiry, and was recorded later, when written off.
    assert expiry.effective_at == expiry.expires_at < expiry.created_at
    assert expiry.written_off_at == expiry.created_at
    assert invariant_holds(write_engine, org)


def _marks(engine: Engine, org: int) -> tuple[int | None, dt.datetime | None]:
    """The balance row's marks (migration 0023): the head's ledger entry, next expiry."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT g.ledger_entry_id, b.next_expiry FROM credit_balances b "
                "LEFT JOIN credit_grants g "
                "  ON g.organization_id = b.organization_id AND g.id = b.head_grant_id "
                "WHERE b.organization_id = :o"
            ),
            {"o": org},
        ).one()
    return row[0], row[1]


def test_a_grant_that_comes_first_is_drawn_first_after_the_head_was_marked(
    write_engine: Engine,
) -> None:
    org, users = new_org(write_engine)
    now = _db_now(write_engine)
    never = _grant(write_engine, org, 100, "never")
    record_generation(write_engine, organization_id=org, user_id=users[0], type="chat", credits=10)
    assert _marks(write_engine, org) == (never, None), "the draw marked the first in line"
    # Each of these comes before the marked head: priority, then any expiry.
    soon = now + dt.timedelta(days=30)
    expiring = _grant(write_engine, org, 40, "expiring", expires_at=soon)
    assert _marks(write_engine, org) == (None, soon), "a new grant clears the head"
    record_generation(write_engine, organization_id=org, user_id=users[0], type="chat", credits=10)
    assert _remaining(write_engine, org) == {never: 90, expiring: 30}
    assert _marks(write_engine, org) == (expiring, soon)
    urgent = _grant(write_engine, org, 5, "urgent", priority=1)
    record_generation(write_engine, organization_id=org, user_id=users[0], type="chat", credits=10)
    assert _remaining(write_engine, org) == {never: 90, expiring: 25, urgent: 0}
    # A head that cannot cover a draw sends it the long way, which marks the next.
    record_generation(write_engine, organization_id=org, user_id=users[0], type="chat", credits=30)
    assert _remaining(write_engine, org) == {never: 85, expiring: 0, urgent: 0}
    assert _marks(write_engine, org) == (never, soon), "the spent grant still expires"
    # The owner moving an expiry (the clock passing it) moves the mark, and the next
    # write writes the grant off, whatever the head mark says.
    _move_expiry(write_engine, org, expiring, "now() - interval '1 second'")
    assert _marks(write_engine, org)[0] is None
    record_generation(write_engine, organization_id=org, user_id=users[0], type="chat", credits=5)
    assert _marks(write_engine, org) == (never, None)
    assert _remaining(write_engine, org) == {never: 80, expiring: 0, urgent: 0}
    assert invariant_holds(write_engine, org)


def _move_expiry(engine: Engine, org: int, entry: int, when: str) -> None:
    """Move a grant's expiry as the owner: the clock passing it, or not yet."""
    with engine.begin() as conn:
        conn.execute(
            text(
                f"UPDATE credit_grants SET expires_at = {when} "
                "WHERE organization_id = :o AND ledger_entry_id = :e"
            ),
            {"o": org, "e": entry},
        )


def test_expire_credits_writes_off_each_due_grant_once(write_engine: Engine) -> None:
    a, _ = new_org(write_engine)
    b, _ = new_org(write_engine, balance=40)
    add_due_grant(write_engine, a, 300)
    # One that was used up before it expired: marked, with no entry (nothing remained).
    used_up = add_due_grant(write_engine, b, 40, priority=0)
    _move_expiry(write_engine, b, used_up, "now() + interval '1 day'")
    adjust_credits(
        write_engine,
        organization_id=b,
        amount=-40,
        reason="Used",
        actor="finance@example.com",
        idempotency_key="use",
    )
    _move_expiry(write_engine, b, used_up, "now() - interval '1 hour'")
    add_due_grant(write_engine, b, 25)

    first = expire_credits(write_engine, organization_ids=[a, b])
    assert first == ExpiryReport(organizations=2, grants=3, credits=325)
    after = {org: snapshot(write_engine, org) for org in (a, b)}
    # Run twice: the same result as once.
    assert expire_credits(write_engine, organization_ids=[a, b]) == ExpiryReport(0, 0, 0)
    assert {org: snapshot(write_engine, org) for org in (a, b)} == after
    with write_engine.connect() as conn:
        entries = conn.execute(
            text(
                "SELECT organization_id, amount FROM credit_ledger "
                "WHERE organization_id = ANY(:o) AND kind = 'expired' ORDER BY 1"
            ),
            {"o": [a, b]},
        ).all()
        balances: dict[int, int] = dict(
            conn.execute(
                text(
                    "SELECT organization_id, balance FROM credit_balances "
                    "WHERE organization_id = ANY(:o)"
                ),
                {"o": [a, b]},
            ).all()
        )
    assert [tuple(e) for e in entries] == [(a, -300), (b, -25)]
    assert balances == {a: 0, b: 40}
    assert invariant_holds(write_engine, a) and invariant_holds(write_engine, b)


def test_expiring_grants_lists_live_grants_expiring_in_the_window(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    now = _db_now(write_engine)
    soon = _grant(write_engine, org, 70, "soon", expires_at=now + dt.timedelta(days=3))
    _grant(write_engine, org, 80, "late", expires_at=now + dt.timedelta(days=45))
    _grant(write_engine, org, 90, "never")
    with write_engine.connect() as conn:
        listed = expiring_grants(conn, organization_id=org, now=now)
        assert [(g.remaining, g.source) for g in listed] == [(70, "manual")]
        assert listed[0].expires_at == now + dt.timedelta(days=3)
        # First in line to be drawn, as the soonest to expire.
        assert credit_grants(conn, organization_id=org)[0].ledger_entry_id == soon
        # Seen from after its expiry, it is no longer live.
        assert expiring_grants(conn, organization_id=org, now=now + dt.timedelta(days=4)) == []


@pytest.mark.parametrize(
    ("terms", "message"),
    [
        ({"expires_at": dt.datetime(2030, 1, 1)}, "time zone"),
        ({"expires_at": "2030-01-01"}, "date and time"),
        ({"priority": 256}, "between 0 and 255"),
        ({"priority": -1}, "between 0 and 255"),
        ({"priority": True}, "whole number"),
        ({"priority": "5"}, "whole number"),
        ({"priority": 2.0}, "whole number"),
    ],
)
def test_bad_grant_terms_are_refused_and_write_nothing(
    write_engine: Engine, terms: dict[str, object], message: str
) -> None:
    org, _ = new_org(write_engine)
    before = snapshot(write_engine, org)
    with pytest.raises(InvalidAdjustment, match=message):
        _grant(write_engine, org, 100, "bad", **terms)
    assert snapshot(write_engine, org) == before


def test_an_expiry_in_the_past_or_on_a_deduction_is_refused(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=100)
    before = snapshot(write_engine, org)
    past = _db_now(write_engine) - dt.timedelta(minutes=1)
    with pytest.raises(InvalidAdjustment, match=r"must be in the future.*Nothing was changed"):
        _grant(write_engine, org, 100, "past", expires_at=past)
    with pytest.raises(InvalidAdjustment, match="Only a grant can expire"):
        _grant(write_engine, org, -10, "deduct", expires_at=past + dt.timedelta(days=9))
    with pytest.raises(InvalidAdjustment, match="Only a grant can expire"):
        _grant(write_engine, org, -10, "deduct", priority=1)
    assert snapshot(write_engine, org) == before


def test_the_same_key_with_other_terms_is_a_conflict_and_a_retry_is_a_replay(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine)
    expiry = _db_now(write_engine) + dt.timedelta(days=30)
    first = _grant(write_engine, org, 100, "k", expires_at=expiry, priority=3)
    # The same instant written in another zone is the same request.
    same = expiry.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=45)))
    assert _grant(write_engine, org, 100, "k", expires_at=same, priority=3) == first
    with pytest.raises(IdempotencyConflict):
        _grant(write_engine, org, 100, "k", expires_at=expiry, priority=4)
    with pytest.raises(IdempotencyConflict):
        _grant(write_engine, org, 100, "k", priority=3)
    with write_engine.connect() as conn:
        (grant,) = [
            g for g in credit_grants(conn, organization_id=org) if g.ledger_entry_id == first
        ]
    assert (grant.amount, grant.priority, grant.expires_at, grant.source) == (
        100,
        3,
        expiry,
        "manual",
    )


def test_a_reversed_deduction_comes_back_as_a_grant_and_an_expiry_cannot_be_reversed(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine, balance=100)
    deduction = adjust_credits(
        write_engine,
        organization_id=org,
        amount=-30,
        reason="Mistake",
        actor="finance@example.com",
        idempotency_key="d",
    )
    back = reverse_adjustment(
        write_engine, entry_id=deduction.id, actor="finance@example.com", reason="Undo"
    )
    assert back.amount == 30 and back.balance_after == 100
    with write_engine.connect() as conn:
        restored = [g for g in credit_grants(conn, organization_id=org) if g.source == "restored"]
    assert [(g.amount, g.remaining, g.expires_at) for g in restored] == [(30, 30, None)]

    add_due_grant(write_engine, org, 5)
    expire_credits(write_engine, organization_ids=[org])
    with write_engine.connect() as conn:
        expiry_id = conn.execute(
            text("SELECT id FROM credit_ledger WHERE organization_id = :o AND kind = 'expired'"),
            {"o": org},
        ).scalar_one()
    before = snapshot(write_engine, org)
    with pytest.raises(InvalidAdjustment, match="An expiry cannot be reversed"):
        reverse_adjustment(write_engine, entry_id=expiry_id, actor="f@example.com", reason="x")
    assert snapshot(write_engine, org) == before
    assert invariant_holds(write_engine, org)


THREADS = 8


def test_generations_from_eight_threads_while_a_grant_expires(write_engine: Engine) -> None:
    """Eight threads draw from the same grants while the first in line expires: nothing is
    drawn from it after its expiry, what remained is written off once, the book adds up."""
    org, users = new_org(write_engine, balance=50_000, users=THREADS)
    now = _db_now(write_engine)
    # Drawn first (priority 0), expiring a second from now, too big to be used up by then.
    expiring = _grant(
        write_engine,
        org,
        90_000,
        "expiring",
        priority=0,
        expires_at=now + dt.timedelta(seconds=1),
    )
    with write_engine.connect() as conn:
        expires_at = conn.execute(
            text(
                "SELECT expires_at FROM credit_grants WHERE organization_id = :o "
                "AND ledger_entry_id = :e"
            ),
            {"o": org, "e": expiring},
        ).scalar_one()
    errors: list[BaseException] = []
    made: list[int] = []
    lock = threading.Lock()

    def work(user: int) -> None:
        try:
            while True:
                try:
                    g = record_generation(
                        write_engine, organization_id=org, user_id=user, type="chat", credits=3
                    )
                except QuotaExceeded:
                    continue
                with lock:
                    made.append(g.id)
                # Until well past the expiry, by the database's clock.
                if g.created_at > expires_at + dt.timedelta(seconds=0.5):
                    return
        except BaseException as exc:
            with lock:
                errors.append(exc)

    with write_engine.begin() as conn:  # no daily limit in the way
        conn.execute(
            text(
                "INSERT INTO usage_limits (organization_id, type, date, used, credits_used, "
                "daily_limit) SELECT :o, 'chat', d::date, 0, 0, 10000000 "
                "FROM generate_series(now() - interval '2 days', now() + interval '2 days', "
                "interval '1 day') d ON CONFLICT DO NOTHING"
            ),
            {"o": org},
        )
    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

    with write_engine.connect() as conn:
        grant = conn.execute(
            text(
                "SELECT amount, drawn, expired, remaining, written_off_at FROM credit_grants "
                "WHERE organization_id = :o AND ledger_entry_id = :e"
            ),
            {"o": org, "e": expiring},
        ).one()
        before_expiry = conn.execute(
            text(
                "SELECT coalesce(sum(credits), 0) FROM generations "
                "WHERE organization_id = :o AND created_at < :at"
            ),
            {"o": org, "at": expires_at},
        ).scalar_one()
        after_expiry = conn.execute(
            text(
                "SELECT count(*) FROM generations WHERE organization_id = :o AND created_at >= :at"
            ),
            {"o": org, "at": expires_at},
        ).scalar_one()
        expiries = conn.execute(
            text(
                "SELECT count(*) FROM credit_ledger WHERE organization_id = :o AND kind = 'expired'"
            ),
            {"o": org},
        ).scalar_one()
    assert after_expiry > 0 and before_expiry > 0
    # Drawn only by generations made before the expiry; the rest written off, once.
    assert 0 < grant.drawn <= before_expiry
    assert grant.written_off_at is not None and grant.remaining == 0
    assert grant.expired == grant.amount - grant.drawn and expiries == 1
    assert len(made) == len(set(made))
    assert invariant_holds(write_engine, org)
