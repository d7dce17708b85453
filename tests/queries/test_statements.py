"""Monthly statements close, chain month to month and end at the balance, in any zone."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, text

from queries.errors import InvalidInput
from queries.grants import credit_grants
from queries.statements import InvalidStatement, MonthlyStatement, monthly_statement, next_month
from tests.factories import add_generations, add_ledger, ensure_types, make_org, make_user

UTC = dt.UTC
# UTC, a zone a quarter-hour off the hour (+5:45) and a zone with daylight saving time.
ZONES = ("UTC", "Asia/Kathmandu", "America/New_York", "Europe/Berlin")
OPENING_GRANT = 10_000_000

# Where an operation happens: some time in the last 120 days, or a few hours either side
# of a UTC month boundary (where the zones' local month boundaries are).
_anywhere = st.tuples(st.just("ago"), st.integers(60, 120 * 86_400))
_edge = st.tuples(st.just("edge"), st.integers(0, 3), st.integers(-20 * 60, 20 * 60))
_when = st.one_of(_anywhere, _edge)
_operation = st.one_of(
    st.tuples(st.just("grant"), st.integers(1, 5000), _when),
    st.tuples(st.just("refund"), st.integers(1, 5000), _when),
    st.tuples(st.just("deduct"), st.integers(-1000, -1), _when),
    st.tuples(st.just("reversal"), st.integers(0, 1000), _when),  # which earlier entry
    st.tuples(st.just("generation"), st.integers(0, 50), _when),
    # A grant booked a day before it expires at `_when` (month edges included).
    st.tuples(st.just("expiring"), st.integers(1, 5000), _when),
)


def _instant(now: dt.datetime, where: tuple[object, ...]) -> dt.datetime | None:
    if where[0] == "ago":
        return now - dt.timedelta(seconds=int(str(where[1])))
    first = now.date().replace(day=1)
    for _ in range(int(str(where[1]))):
        first = (first - dt.timedelta(days=1)).replace(day=1)
    at = dt.datetime.combine(first, dt.time(), UTC) + dt.timedelta(minutes=int(str(where[2])))
    return at if at < now - dt.timedelta(seconds=60) else None


def _add_entry(
    conn: Connection, org: int, *, amount: int, kind: str, at: dt.datetime, reverses: int | None
) -> int:
    """A ledger row at ``at`` (the API stamps now(); statements need the past). The
    database books it: the balance and ``balance_after`` (migration 0013)."""
    return int(
        conn.execute(
            text(
                "INSERT INTO credit_ledger (organization_id, amount, kind, reason, "
                "actor, idempotency_key, reverses_id, created_at) "
                "VALUES (:org, :amount, :kind, 'test', 'finance@example.com', "
                "coalesce('reversal:' || CAST(:reverses AS bigint), gen_random_uuid()::text), "
                ":reverses, :at) RETURNING id"
            ),
            {
                "org": org,
                "amount": amount,
                "kind": kind,
                "reverses": reverses,
                "at": at,
            },
        ).scalar_one()
    )


def _month_of(at: dt.datetime, zone: str) -> dt.date:
    return at.astimezone(zoneinfo.ZoneInfo(zone)).date().replace(day=1)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    zone=st.sampled_from(ZONES),
    operations=st.lists(_operation, max_size=30),
    written_off=st.booleans(),
)
def test_every_statement_closes_chains_and_ends_at_the_balance(
    connection: Connection,
    zone: str,
    operations: list[tuple[str, int, tuple[object, ...]]],
    written_off: bool,
) -> None:
    """Expiries included: each in the month it took effect in, whether its write-off is
    recorded (now, by the organization's lock) or not yet."""
    ensure_types(connection)
    savepoint = connection.begin_nested()
    try:
        now = connection.execute(text("SELECT now()")).scalar_one()
        org = make_org(connection, timezone=zone)
        user = make_user(connection, org)
        start = now - dt.timedelta(days=125)
        # A grant before everything keeps the balance above zero whatever the order.
        entries = [
            (
                _add_entry(
                    connection, org, amount=OPENING_GRANT, kind="grant", at=start, reverses=None
                ),
                OPENING_GRANT,
            )
        ]
        expected: dict[dt.date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        expected[_month_of(start, zone)]["granted"] += OPENING_GRANT
        generations = []
        reversed_ids: set[int] = set()
        for kind, amount, where in operations:
            at = _instant(now, where)
            if at is None:
                continue
            month = _month_of(at, zone)
            if kind == "generation":
                generations.append((user, "chat", amount, at))
                expected[month]["consumed"] += amount
                continue
            if kind == "expiring":
                # Expired before now, so never drawn: it all expires. Not reversed
                # either (a reversal of it would take what remains, not the amount).
                booked = at - dt.timedelta(days=1)
                connection.execute(
                    text(
                        "INSERT INTO credit_ledger (organization_id, amount, kind, reason, "
                        "actor, idempotency_key, created_at, grant_expires_at) "
                        "VALUES (:org, :amount, 'grant', 'Promotion', 'finance@example.com', "
                        "gen_random_uuid()::text, :booked, :at)"
                    ),
                    {"org": org, "amount": amount, "booked": booked, "at": at},
                )
                expected[_month_of(booked, zone)]["granted"] += amount
                expected[month]["expired"] += amount
                continue
            reverses = None
            if kind == "reversal":
                # Never the opening grant (the balance would go below zero), never a
                # reversal (the app refuses to reverse one), each entry once.
                candidates = [(i, a) for i, a in entries[1:] if i not in reversed_ids]
                if not candidates:
                    continue
                reverses, original = candidates[amount % len(candidates)]
                reversed_ids.add(reverses)
                amount = -original
            entry = _add_entry(connection, org, amount=amount, kind=kind, at=at, reverses=reverses)
            if reverses is None:
                entries.append((entry, amount))
            expected[month]["granted" if amount > 0 else "deducted"] += abs(amount)
        if generations:
            add_generations(connection, org, generations)
        if written_off:
            connection.execute(text("SELECT lock_organization(:org)"), {"org": org})
        # What the live grants hold: the balance less what is due and not written off.
        balance = connection.execute(
            text(
                "SELECT b.balance - coalesce(d.due, 0) FROM credit_balances b "
                "LEFT JOIN due_credits(now()) d ON d.organization_id = b.organization_id "
                "WHERE b.organization_id = :org"
            ),
            {"org": org},
        ).scalar_one()

        month = _month_of(start, zone)
        opening = 0
        while True:
            s = monthly_statement(connection, organization_id=org, month=month)
            assert s.month == month
            assert s.opening_balance == opening, f"{month}: does not open at last month's close"
            assert s.closing_balance == (
                s.opening_balance + s.granted - s.deducted - s.consumed - s.expired
            )
            assert (s.granted, s.deducted, s.consumed, s.expired) == (
                expected[month]["granted"],
                expected[month]["deducted"],
                expected[month]["consumed"],
                expected[month]["expired"],
            ), f"{month} in {zone}"
            assert sum(line.credits for line in s.consumption) == s.consumed
            assert sum(x.credits for x in s.expiries) == s.expired
            assert all(_month_of(x.effective_at, zone) == month for x in s.expiries)
            assert all((x.ledger_entry_id is not None) is written_off for x in s.expiries)
            assert sum(e.amount for e in s.entries) == s.granted - s.deducted
            assert all(_month_of(e.created_at, zone) == month for e in s.entries)
            opening = s.closing_balance
            if s.to_date:
                break
            month = next_month(month)
        assert month == _month_of(now, zone)
        assert s.closing_balance == balance, "the current month does not end at the live grants"
    finally:
        savepoint.rollback()


def test_a_month_holds_the_local_days_of_its_zone(connection: Connection) -> None:
    """A grant at 2026-10-31 20:00 UTC is November's in Kathmandu (+5:45: 01:45 on the 1st)
    and October's in New York; a generation likewise."""
    ensure_types(connection)
    at = dt.datetime(2026, 10, 31, 20, tzinfo=UTC)
    for zone, month in (("Asia/Kathmandu", 11), ("America/New_York", 10)):
        org = make_org(connection, timezone=zone, name="Acme <b>*Ltd*</b>")
        add_ledger(connection, org, [(500, "grant", "Welcome", at)])
        add_generations(connection, org, [(make_user(connection, org), "image", 4, at)])
        s = monthly_statement(connection, organization_id=org, month=dt.date(2026, month, 17))
        assert (s.opening_balance, s.granted, s.consumed, s.closing_balance) == (0, 500, 4, 496)
        assert [line.date.month for line in s.consumption] == [month]
        assert s.organization_name == "Acme <b>*Ltd*</b>"
        assert s.period_start == dt.datetime(2026, month, 1, tzinfo=zoneinfo.ZoneInfo(zone))


def test_the_current_month_is_the_one_of_now_in_the_organizations_zone(
    connection: Connection,
) -> None:
    """At 2027-02-28 18:25 UTC it is already 1 March 00:10 in Kathmandu (+5:45): March is
    running there, February closed; in New York February is still running."""
    ensure_types(connection)
    now = dt.datetime(2027, 2, 28, 18, 25, tzinfo=UTC)
    for zone, running in (("Asia/Kathmandu", 3), ("America/New_York", 2)):
        org = make_org(connection, timezone=zone)
        february = monthly_statement(
            connection, organization_id=org, month=dt.date(2027, 2, 1), now=now
        )
        assert february.to_date is (running == 2), zone
        if running == 2:
            with pytest.raises(InvalidStatement, match="no statement for March 2027 yet"):
                monthly_statement(
                    connection, organization_id=org, month=dt.date(2027, 3, 1), now=now
                )
        else:
            march = monthly_statement(
                connection, organization_id=org, month=dt.date(2027, 3, 1), now=now
            )
            assert march.to_date


def test_a_naive_now_is_refused(connection: Connection) -> None:
    org = make_org(connection)
    with pytest.raises(InvalidStatement, match="time zone"):
        monthly_statement(
            connection,
            organization_id=org,
            month=dt.date(2026, 11, 1),
            now=dt.datetime(2026, 11, 20, 12),
        )


@pytest.mark.parametrize(
    ("month", "says"),
    [
        ("2026-11-01", "must be a date"),
        (dt.datetime(2026, 11, 1, tzinfo=UTC), "must be a date"),
        (dt.date(1999, 12, 31), "outside the years"),
        (dt.date(2100, 12, 31), "no statement for December 2100 yet"),
        (None, "must be a date"),
    ],
)
def test_a_bad_month_is_refused_with_a_sentence(
    connection: Connection, month: object, says: str
) -> None:
    org = make_org(connection)
    with pytest.raises(InvalidStatement, match=says):
        monthly_statement(connection, organization_id=org, month=month)  # type: ignore[arg-type]


@pytest.mark.parametrize("organization_id", [0, -1, True, "7", 2**63])
def test_a_bad_organization_id_is_refused(connection: Connection, organization_id: object) -> None:
    with pytest.raises(InvalidStatement, match="positive whole number"):
        monthly_statement(
            connection,
            organization_id=organization_id,  # type: ignore[arg-type]
            month=dt.date(2026, 11, 1),
        )


def test_an_unknown_organization_is_refused(connection: Connection) -> None:
    missing = connection.execute(
        text("SELECT coalesce(max(id), 0) + 1000 FROM organizations")
    ).scalar_one()
    with pytest.raises(InvalidInput, match=f"no organization with id {missing}"):
        monthly_statement(connection, organization_id=missing, month=dt.date(2026, 11, 1))


def test_a_month_before_the_organization_was_created_is_not_a_statement(
    connection: Connection,
) -> None:
    """Created on 3 November, local time (2 November in UTC): October is before it;
    November, the month it was created in, is a statement, and so is a month before the
    creation that holds credits (a ledger imported from before the record)."""
    ensure_types(connection)
    zone = "Asia/Kathmandu"
    created = dt.datetime(2026, 11, 2, 20, tzinfo=UTC)  # 3 Nov 01:45 in Kathmandu
    now = dt.datetime(2026, 12, 7, 12, tzinfo=UTC)
    org = make_org(connection, timezone=zone, created_at=created)
    october = monthly_statement(
        connection, organization_id=org, month=dt.date(2026, 10, 1), now=now
    )
    assert october.created_on == dt.date(2026, 11, 3)
    assert october.before_organization
    november = monthly_statement(
        connection, organization_id=org, month=dt.date(2026, 11, 1), now=now
    )
    assert not november.before_organization
    imported = make_org(connection, timezone=zone, created_at=created)
    add_ledger(
        connection,
        imported,
        [(50, "grant", "Imported history", dt.datetime(2026, 10, 5, tzinfo=UTC))],
    )
    kept = monthly_statement(
        connection, organization_id=imported, month=dt.date(2026, 10, 1), now=now
    )
    assert kept.entries and not kept.before_organization


def _grant_expiring(
    conn: Connection, org: int, amount: int, *, at: dt.datetime, expires_at: dt.datetime
) -> int:
    """A grant booked at ``at`` (back-dated, as the owner may) that expires at
    ``expires_at``; the id of the grant the database made of it."""
    return int(
        conn.execute(
            text(
                "WITH e AS (INSERT INTO credit_ledger (organization_id, amount, kind, reason, "
                "actor, idempotency_key, created_at, grant_expires_at) "
                "VALUES (:org, :amount, 'grant', 'Promotion', 'finance@example.com', "
                "gen_random_uuid()::text, :at, :expires_at) RETURNING id) "
                "SELECT e.id FROM e"
            ),
            {"org": org, "amount": amount, "at": at, "expires_at": expires_at},
        ).scalar_one()
        and conn.execute(
            text(
                "SELECT id FROM credit_grants WHERE organization_id = :org ORDER BY id DESC LIMIT 1"
            ),
            {"org": org},
        ).scalar_one()
    )


def _totals(s: MonthlyStatement) -> tuple[int, ...]:
    return (s.opening_balance, s.granted, s.deducted, s.consumed, s.expired, s.closing_balance)


def test_an_expiry_is_a_line_of_the_month_it_took_effect_in_written_off_or_not(
    connection: Connection,
) -> None:
    """A promotion that expires at 23:00 on the last day of a month in Berlin is that
    month's expiry, whether it is still due or was written off on the 1st of the next:
    the statements read the same, close, chain, and the current one ends at the live
    grants' remaining amounts (the stored balance still holds the due grant)."""
    ensure_types(connection)
    zone = "Europe/Berlin"
    berlin = zoneinfo.ZoneInfo(zone)
    now = connection.execute(text("SELECT now()")).scalar_one()
    this_month = _month_of(now, zone)
    month = (this_month - dt.timedelta(days=40)).replace(day=1)  # two months back
    following = next_month(month)
    expires = dt.datetime.combine(following - dt.timedelta(days=1), dt.time(23), berlin)
    org = make_org(connection, timezone=zone)
    add_ledger(
        connection,
        org,
        [(1_000, "grant", "Welcome", dt.datetime.combine(month, dt.time(9), berlin))],
    )
    grant = _grant_expiring(
        connection,
        org,
        300,
        at=dt.datetime.combine(month.replace(day=10), dt.time(9), berlin),
        expires_at=expires,
    )

    def statements() -> list[MonthlyStatement]:
        found, m = [], month
        while True:
            found.append(monthly_statement(connection, organization_id=org, month=m, now=now))
            if found[-1].to_date:
                return found
            m = next_month(m)

    def live() -> int:
        return sum(
            g.remaining
            for g in credit_grants(connection, organization_id=org, at=now)
            if g.status == "live"
        )

    due = statements()
    first = due[0]
    assert _totals(first) == (0, 1_300, 0, 0, 300, 1_000)
    assert [(x.grant_id, x.credits, x.effective_at, x.ledger_entry_id) for x in first.expiries] == [
        (grant, 300, expires, None)
    ]
    assert [e.amount for e in first.entries] == [1_000, 300]
    for before, after in itertools.pairwise(due):
        assert after.opening_balance == before.closing_balance
    assert due[-1].closing_balance == live() == 1_000
    assert (
        connection.execute(
            text("SELECT balance FROM credit_balances WHERE organization_id = :org"), {"org": org}
        ).scalar_one()
        == 1_300
    ), "the grant is due but not yet written off"

    # Written off on the 1st of the next month: recorded then, in effect the day before.
    recorded = dt.datetime.combine(following, dt.time(9), berlin)
    entry = connection.execute(
        text(
            "INSERT INTO credit_ledger (organization_id, amount, kind, reason, actor, "
            "idempotency_key, grant_id, created_at) VALUES (:org, -300, 'expired', "
            "'Grant expired', 'system', 'expiry:' || CAST(:grant AS bigint), :grant, :at) "
            "RETURNING id"
        ),
        {"org": org, "grant": grant, "at": recorded},
    ).scalar_one()
    written_off = statements()
    assert [_totals(s) for s in written_off] == [_totals(s) for s in due]
    assert [(x.credits, x.ledger_entry_id, x.recorded_at) for x in written_off[0].expiries] == [
        (300, entry, recorded)
    ]
    assert all(e.kind != "expired" for s in written_off for e in s.entries)
    assert not written_off[1].expiries, "the month it was written off in does not count it"
    assert written_off[-1].closing_balance == live() == 1_000
