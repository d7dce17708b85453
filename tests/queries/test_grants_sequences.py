"""Random sequences of credit movements against a model of grants (hypothesis).

A plan's allowance for the month, grants with expiries and priorities (made alone or
approved by a second person),
deductions, generations, reversals and the clock
moving, for an organization in UTC, +5:45 or a DST zone. After every step the database
must agree with a model that draws in the documented order (priority, soonest expiry,
age) and never from an expired grant: each grant's remaining amount, the balance as
the sum of the live remaining amounts, and the book's invariant; at the end, once the
job has written off what is due, the monthly statements close and chain up to the live
balance, each expiry a line of what the grant held, and the reconciliation finds no
drift.

A second test runs the same steps over months: the allowance of the organization's
local month, large uses approved by a second person, the month ending, and
``grant_allowances`` for the next month issuing its allowance and the rollover of what
the last one left unused, capped; the model predicts both, and their expiry at the end
of the local month.

The clock moves without the wall clock: moving every unexpired grant's expiry back by
an interval, as the owner, is what time passing does to it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import uuid
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from queries.allowances import grant_allowances, plan_allowances, set_plan_allowance
from queries.approvals import approve, request_adjustment
from queries.credits import (
    InsufficientCredits,
    NothingToReverse,
    adjust_credits,
    credit_grants,
    reverse_adjustment,
)
from queries.generations import record_generation
from queries.grants import DEFAULT_GRANT_PRIORITY, expire_credits
from queries.reconciliation import check_books
from queries.statements import monthly_statement, next_month
from tests.queries.writes import invariant_holds, new_org, snapshot

ZONES = ("UTC", "Asia/Kathmandu", "America/New_York")
HOUR = dt.timedelta(hours=1)


@dataclass
class Grant:
    entry: int
    remaining: int
    priority: int
    hours_left: float | None  # until expiry, as the model's clock sees it
    reversible: bool = True
    key: str | None = None  # an allowance's or a rollover's, ``allowance:YYYY-MM``

    def live(self) -> bool:
        return self.remaining > 0 and (self.hours_left is None or self.hours_left > 0)


@dataclass
class Model:
    grants: list[Grant]

    def balance(self) -> int:
        return sum(g.remaining for g in self.grants if g.live())

    def draw(self, amount: int) -> None:
        order = sorted(
            (g for g in self.grants if g.live()),
            key=lambda g: (
                g.priority,
                g.hours_left is None,
                g.hours_left or 0.0,
                self.grants.index(g),
            ),
        )
        for g in order:
            part = min(g.remaining, amount)
            g.remaining -= part
            amount -= part
        assert amount == 0


grant_step = st.tuples(
    st.sampled_from(["grant", "approved grant"]),
    st.integers(1, 500),
    st.one_of(st.none(), st.integers(1, 72)),  # hours until it expires
    st.one_of(st.none(), st.integers(0, 20)),  # priority
)
deduct_step = st.tuples(st.just("deduct"), st.integers(1, 400))
generation_step = st.tuples(st.just("generation"), st.integers(1, 150))
reverse_step = st.tuples(st.just("reverse"), st.integers(0, 30))
clock_step = st.tuples(st.just("clock"), st.integers(1, 48))
steps = st.lists(
    st.one_of(grant_step, deduct_step, generation_step, reverse_step, clock_step),
    min_size=1,
    max_size=14,
)
# Over months: a large share of the live balance used at once (all of it, or a
# percentage), so what a month leaves unused ranges from nothing to more than the cap;
# and grant_allowances run again during the month (or in a month the clock steps
# entered).
use_step = st.tuples(st.just("use"), st.one_of(st.just(100), st.integers(1, 99)))
allowances_step = st.tuples(st.just("allowances"))
month_steps = st.lists(
    st.one_of(
        grant_step,
        deduct_step,
        generation_step,
        reverse_step,
        clock_step,
        use_step,
        allowances_step,
    ),
    max_size=7,
)
# Each later month: how many hours into it the clock stops, then its steps.
later_months = st.lists(st.tuples(st.integers(0, 36), month_steps), min_size=1, max_size=2)


@dataclass
class Run:
    """One organization's sequence: the database, the model, the reversible entries and
    the clock.

    ``passed`` is the time the clock steps moved into the grants' expiries: the
    database's clock plus ``passed`` is the sequence's time. ``clock`` (over months only)
    is the model's reading of it, kept at half past a local hour so that no expiry at a
    local midnight is ever within a wall-clock tick of it.
    """

    engine: Engine
    org: int
    users: list[int]
    zone: str
    model: Model = field(default_factory=lambda: Model(grants=[]))
    entries: list[tuple[int, str]] = field(default_factory=list)  # (entry id, kind)
    passed: dt.timedelta = dt.timedelta(0)
    clock: dt.datetime | None = None
    prices: tuple[int, int] | None = None  # the plan's monthly allowance and rollover cap
    months: set[str] = field(default_factory=set)  # the months grant_allowances ran for


def _db_now(engine: Engine) -> dt.datetime:
    with engine.connect() as conn:
        now: dt.datetime = conn.execute(text("SELECT now()")).scalar_one()
    return now


def _pass_hours(engine: Engine, org: int, hours: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE credit_grants SET expires_at = expires_at - CAST(:h AS interval) "
                "WHERE organization_id = :o AND expires_at IS NOT NULL "
                "AND written_off_at IS NULL"
            ),
            {"o": org, "h": f"{hours} hours"},
        )


def _pass(run: Run, hours: int) -> None:
    """Time passes, for the database's grants and for the model."""
    _pass_hours(run.engine, run.org, hours)
    for g in run.model.grants:
        if g.hours_left is not None and g.hours_left > 0:
            g.hours_left -= hours
    run.passed += hours * HOUR
    if run.clock is not None:
        run.clock += hours * HOUR


def _check(engine: Engine, org: int, model: Model) -> None:
    with engine.connect() as conn:
        found = {
            g.ledger_entry_id: g.remaining
            for g in credit_grants(conn, organization_id=org)
            if g.source != "opening"
        }
        live_balance = conn.execute(
            text(
                "SELECT b.balance - coalesce(d.due, 0) FROM credit_balances b "
                "LEFT JOIN due_credits(now()) d ON d.organization_id = b.organization_id "
                "WHERE b.organization_id = :o"
            ),
            {"o": org},
        ).scalar_one()
    expected = {g.entry: (g.remaining if g.live() else 0) for g in model.grants}
    assert found == expected
    assert live_balance == model.balance()
    assert invariant_holds(engine, org)


def _step(run: Run, n: int, step: tuple[object, ...]) -> None:
    """One step of a sequence, then the database against the model."""
    write_engine, org, users, model, entries = (
        run.engine,
        run.org,
        run.users,
        run.model,
        run.entries,
    )
    kind = step[0]
    if kind in ("grant", "approved grant"):
        _, amount, hours, priority = step
        assert isinstance(amount, int)
        expires = (
            None if hours is None else _db_now(write_engine) + dt.timedelta(hours=int(hours))  # type: ignore[call-overload]
        )
        terms = {"expires_at": expires, "priority": priority}
        if kind == "grant":
            entry = adjust_credits(
                write_engine,
                organization_id=org,
                amount=amount,
                reason="Promotion",
                actor="finance@example.com",
                idempotency_key=f"g{n}",
                **terms,  # type: ignore[arg-type]
            )
        else:  # requested by one person, approved by another: the same terms
            request = request_adjustment(
                write_engine,
                organization_id=org,
                amount=amount,
                reason="Renewal",
                actor="finance@example.com",
                idempotency_key=f"r{n}",
                **terms,  # type: ignore[arg-type]
            )
            entry = approve(write_engine, request_id=request.id, approver="cfo@example.com")
            assert (entry.grant_expires_at, entry.grant_priority) == (expires, priority)
        model.grants.append(
            Grant(
                entry.id,
                amount,
                10 if priority is None else int(priority),  # type: ignore[call-overload]
                None if hours is None else float(hours),  # type: ignore[arg-type]
            )
        )
        entries.append((entry.id, "grant"))
    elif kind in ("deduct", "generation"):
        amount = int(step[1])  # type: ignore[call-overload]
        try:
            if kind == "deduct":
                entry = adjust_credits(
                    write_engine,
                    organization_id=org,
                    amount=-amount,
                    reason="Correction",
                    actor="finance@example.com",
                    idempotency_key=f"d{n}",
                )
                entries.append((entry.id, "deduct"))
            else:
                record_generation(
                    write_engine,
                    organization_id=org,
                    user_id=users[0],
                    type="chat",
                    credits=amount,
                )
        except InsufficientCredits:
            # Refused in full: nothing drawn (an expired grant is never drawn).
            assert model.balance() < amount
            _check(write_engine, org, model)
            return
        assert model.balance() >= amount
        model.draw(amount)
    elif kind == "use":
        # A share of the live balance (rounded up), past what one person may move alone:
        # requested and approved. Not offered for reversal either (one person alone
        # would give it back).
        amount = -(-model.balance() * int(step[1]) // 100)  # type: ignore[call-overload]
        if amount == 0:
            return
        request = request_adjustment(
            write_engine,
            organization_id=org,
            amount=-amount,
            reason="Usage",
            actor="finance@example.com",
            idempotency_key=f"u{n}",
        )
        approve(write_engine, request_id=request.id, approver="cfo@example.com")
        model.draw(amount)
    elif kind == "reverse":
        if not entries:
            return
        entry_id, what = entries.pop(int(step[1]) % len(entries))  # type: ignore[call-overload]
        try:
            reversal = reverse_adjustment(
                write_engine, entry_id=entry_id, actor="finance@example.com", reason="Undo"
            )
        except NothingToReverse:
            g = next(g for g in model.grants if g.entry == entry_id)
            assert not g.live()
            return
        except InsufficientCredits:
            return
        if what == "grant":
            g = next(g for g in model.grants if g.entry == entry_id)
            assert g.live() and reversal.amount == -g.remaining
            g.remaining = 0
        else:  # a reversed deduction comes back as a grant that never expires
            model.grants.append(Grant(reversal.id, reversal.amount, 10, None))
    elif kind == "allowances":
        _grant_allowances(run)
    else:
        _pass(run, int(step[1]))  # type: ignore[call-overload]
    _check(write_engine, org, model)


def _statements_close_and_chain(run: Run) -> None:
    """The monthly statements, from the first month anything happened in (an expiry the
    clock moved back may be before the organization) to the current one: the first
    opens at zero, each closes (opening + granted - deducted - consumed - expired), each
    opens at the last one's closing, the current one closes at the live balance, and
    their expiry lines are what each expired grant still held, nothing drawn after."""
    zone = ZoneInfo(run.zone)
    with run.engine.connect() as conn:
        grants = credit_grants(conn, organization_id=run.org)
        created: dt.datetime = conn.execute(
            text("SELECT created_at FROM organizations WHERE id = :o"), {"o": run.org}
        ).scalar_one()
        began = [created, *(g.expires_at for g in grants if g.expires_at is not None)]
        month = min(at.astimezone(zone).date() for at in began).replace(day=1)
        statements = [monthly_statement(conn, organization_id=run.org, month=month)]
        while not statements[-1].to_date:
            month = next_month(month)
            statements.append(monthly_statement(conn, organization_id=run.org, month=month))
    assert statements[0].opening_balance == 0
    for s in statements:
        assert s.closing_balance == (
            s.opening_balance + s.granted - s.deducted - s.consumed - s.expired
        )
    for before, after in itertools.pairwise(statements):
        assert after.opening_balance == before.closing_balance
    assert statements[-1].closing_balance == run.model.balance()
    entry_of = {g.id: g.ledger_entry_id for g in grants}
    expiries = {entry_of[x.grant_id]: x.credits for s in statements for x in s.expiries}
    assert expiries == {
        g.entry: g.remaining
        for g in run.model.grants
        if g.remaining > 0 and g.hours_left is not None and g.hours_left <= 0
    }


def _finish(run: Run) -> None:
    """Idle from here: the job writes off what is due, and nothing else changes; the
    book, the statements and the reconciliation agree."""
    write_engine, org, model = run.engine, run.org, run.model
    expire_credits(write_engine, organization_ids=[org])
    _check(write_engine, org, model)
    with write_engine.connect() as conn:
        book = conn.execute(
            text(
                "SELECT coalesce(sum(-l.amount), 0) AS expired_entries, "
                "(SELECT coalesce(sum(expired), 0) FROM credit_grants WHERE organization_id = :o) "
                "AS expired_grants FROM credit_ledger l "
                "WHERE l.organization_id = :o AND l.kind = 'expired'"
            ),
            {"o": org},
        ).one()
    assert book.expired_entries == book.expired_grants
    _statements_close_and_chain(run)
    # And the reconciliation, which recounts the grants from the ledger, finds no drift.
    with write_engine.connect() as conn:
        drifts = [d for d in check_books(conn, full=True).drifts if d.organization_id == org]
    assert drifts == []


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    zone=st.sampled_from(ZONES),
    tier=st.sampled_from(["free", "starter", "enterprise"]),
    allowance=st.booleans(),
    plan=steps,
)
def test_random_sequences_keep_the_grants_and_the_book(
    write_engine: Engine, zone: str, tier: str, allowance: bool, plan: list[tuple[object, ...]]
) -> None:
    org, users = new_org(write_engine, timezone=zone, plan=tier)
    run = Run(write_engine, org, users, zone)
    if allowance:
        # The plan's allowance for the organization's local month, expiring at its end.
        grant_allowances(write_engine, organization_ids=[org])
        assert grant_allowances(write_engine, organization_ids=[org]).allowances == 0
        with write_engine.connect() as conn:
            granted = [
                a for a in credit_grants(conn, organization_id=org) if a.source == "allowance"
            ]
        at = _db_now(write_engine)
        for a in granted:
            assert a.expires_at is not None and a.ledger_entry_id is not None
            # Not offered for reversal: an enterprise allowance is past what one person
            # may move alone.
            run.model.grants.append(
                Grant(a.ledger_entry_id, a.amount, a.priority, (a.expires_at - at) / HOUR)
            )
    for n, step in enumerate(plan):
        _step(run, n, step)
    _finish(run)


# ------------------------------------------------------------------ over months


def _midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)


def _local_month(at: dt.datetime, zone: ZoneInfo) -> dt.date:
    return at.astimezone(zone).date().replace(day=1)


def _start_clock(run: Run) -> None:
    """The sequence's time starts at the database's clock, moved on to the next half past
    a local hour. The clock steps are whole hours, so local midnights, where allowances
    expire, stay half an hour off it: further than the wall clock moves during a
    sequence, which neither the model nor ``now`` passed to grant_allowances follow."""
    now = _db_now(run.engine)
    local = now.astimezone(ZoneInfo(run.zone))
    half = local.replace(minute=30, second=0, microsecond=0).astimezone(dt.UTC)
    run.clock = half if half > now else half + HOUR
    run.passed = run.clock - now


def _month_ends(run: Run, extra: int) -> None:
    """Time passes to the first midnight of the next local month, and ``extra`` hours
    into it: last month's allowance and rollover expire."""
    assert run.clock is not None
    zone = ZoneInfo(run.zone)
    starts = _midnight(next_month(_local_month(run.clock, zone)), zone)
    _pass(run, math.ceil((starts - run.clock) / HOUR) + extra)
    assert run.clock - starts == dt.timedelta(hours=extra, minutes=30)


def _grant_allowances(run: Run) -> None:
    """``grant_allowances`` at the sequence's time, which the model predicts: in a month
    it did not run for yet, the rollover of last month's unused allowance and rollover
    (what they held when they expired), capped at the plan's cap, then the allowance,
    both expiring at the end of the local month; run again, for the same month, it
    changes nothing."""
    assert run.clock is not None and run.prices is not None
    engine, org, model = run.engine, run.org, run.model
    zone = ZoneInfo(run.zone)
    first = _local_month(run.clock, zone)
    label = f"{first:%Y-%m}"
    previous = f"{first - dt.timedelta(days=1):%Y-%m}"
    ends = _midnight(next_month(first), zone)
    last_month = [
        g for g in model.grants if g.key in (f"allowance:{previous}", f"rollover:{previous}")
    ]
    assert not any(g.live() for g in last_month)
    unused = sum(g.remaining for g in last_month)
    due = label not in run.months
    monthly, cap = run.prices
    rollover = min(unused, cap) if due else 0
    allowance = monthly if due else 0
    if due and last_month:
        event(
            "rollover: "
            + (
                "none, nothing unused"
                if unused == 0
                else "none, no cap"
                if rollover == 0
                else "capped"
                if rollover < unused
                else "all unused"
            )
        )
        if any(g.remaining > 0 for g in last_month if g.key == f"rollover:{previous}"):
            event("rollover: last month's rollover left some unused")

    report = grant_allowances(engine, now=run.clock, organization_ids=[org])
    assert (
        report.allowances,
        report.allowance_credits,
        report.rollovers,
        report.rollover_credits,
        report.waiting,
        report.not_begun,
        report.over,
    ) == (int(allowance > 0), allowance, int(rollover > 0), rollover, 0, 0, 0)
    run.months.add(label)
    expected = [(f"rollover:{label}", rollover)] * (rollover > 0) + [
        (f"allowance:{label}", allowance)
    ] * (allowance > 0)
    with engine.connect() as conn:
        made = conn.execute(
            text(
                "SELECT id, idempotency_key, amount, kind, actor, grant_expires_at "
                "FROM credit_ledger WHERE organization_id = :o "
                "AND idempotency_key IN (:rollover, :allowance) "
                "AND NOT id = ANY(CAST(:known AS bigint[])) "
                "ORDER BY id"
            ),
            {
                "o": org,
                "rollover": f"rollover:{label}",
                "allowance": f"allowance:{label}",
                "known": [g.entry for g in model.grants],
            },
        ).all()
    assert [(r.idempotency_key, r.amount, r.kind, r.actor, r.grant_expires_at) for r in made] == [
        (key, amount, "grant", "system", ends) for key, amount in expected
    ]
    # The run dated them by the sequence's time; in the database's, which is `passed`
    # behind, they expire that much earlier, as the clock steps moved the others.
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE credit_grants SET expires_at = expires_at - CAST(:passed AS interval) "
                "WHERE organization_id = :o AND ledger_entry_id = ANY(CAST(:made AS bigint[]))"
            ),
            {"o": org, "passed": run.passed, "made": [r.id for r in made]},
        )
    left = ends - run.clock
    assert left % HOUR == HOUR / 2  # never within a tick of the model's clock
    for r in made:
        model.grants.append(
            Grant(
                r.id,
                r.amount,
                DEFAULT_GRANT_PRIORITY,
                left / HOUR,
                reversible=False,
                key=r.idempotency_key,
            )
        )
    with engine.connect() as conn:
        terms = {
            g.ledger_entry_id: (g.source, g.priority, g.expires_at)
            for g in credit_grants(conn, organization_id=org)
        }
    assert [terms[r.id] for r in made] == [
        (str(r.idempotency_key).split(":")[0], DEFAULT_GRANT_PRIORITY, ends - run.passed)
        for r in made
    ]
    _check(engine, org, model)

    # Again, for the month named this time: nothing more, nothing changed.
    with engine.connect() as conn:
        grants = credit_grants(conn, organization_id=org)
    before = snapshot(engine, org)
    again = grant_allowances(engine, month=label, now=run.clock, organization_ids=[org])
    assert (again.month, again.allowances, again.rollovers, again.waiting, again.already) == (
        label,
        0,
        0,
        0,
        1,
    )
    assert snapshot(engine, org) == before
    with engine.connect() as conn:
        assert credit_grants(conn, organization_id=org) == grants


def _set_prices(engine: Engine, plan: str, monthly: int, cap: int) -> None:
    set_plan_allowance(
        engine,
        plan=plan,
        monthly_allowance=monthly,
        rollover_cap=cap,
        actor="ada@admin.example",
        reason="Property test",
        idempotency_key=f"prices-{uuid.uuid4()}",
    )


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    zone=st.sampled_from(ZONES),
    tier=st.sampled_from(["free", "starter", "enterprise"]),
    # The plan as it is, or a small allowance and a cap below, at or above it (so what
    # last month's rollover left unused counts too).
    prices=st.one_of(st.none(), st.tuples(st.integers(0, 1500), st.integers(0, 3000))),
    first_month=month_steps,
    months=later_months,
)
def test_random_months_roll_the_unused_allowance_over(
    write_engine: Engine,
    zone: str,
    tier: str,
    prices: tuple[int, int] | None,
    first_month: list[tuple[object, ...]],
    months: list[tuple[int, list[tuple[object, ...]]]],
) -> None:
    """The allowance of the local month, steps during it, the month ending, and the next
    one's allowance with the rollover; once or twice more."""
    with write_engine.connect() as conn:
        # Read, not assumed: other tests set the plans' values too.
        [plan] = [p for p in plan_allowances(conn) if p.plan == tier]
    if prices is not None:
        _set_prices(write_engine, tier, *prices)
    try:
        org, users = new_org(write_engine, timezone=zone, plan=tier)
        run = Run(write_engine, org, users, zone)
        run.prices = prices or (plan.monthly_allowance, plan.rollover_cap)
        _start_clock(run)
        _grant_allowances(run)
        n = itertools.count()
        for step in first_month:
            _step(run, next(n), step)
        for extra, steps_in_month in months:
            _month_ends(run, extra)
            _grant_allowances(run)
            for step in steps_in_month:
                _step(run, next(n), step)
        _finish(run)
    finally:
        if prices is not None:  # as it was, for the tests after this one
            _set_prices(write_engine, tier, plan.monthly_allowance, plan.rollover_cap)
