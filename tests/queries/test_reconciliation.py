"""Reconciliation: the demo data closes; a balance, a ledger ``balance_after`` or a
rollup row corrupted in SQL is reported with its organization and where it first
appears; an incremental run checks only what changed and never hides a drift; random
histories written by the real write functions, in several zones, never drift."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text

from cli.main import main
from queries import reconciliation, recounts
from queries.approvals import approve, request_adjustment
from queries.credits import adjust_credits, reverse_adjustment
from queries.db import create_direct_engine
from queries.embedded_server import owns_url
from queries.errors import DashboardError
from queries.generations import record_generation
from queries.grants import expire_credits
from queries.orgs import set_timezone
from queries.reconciliation import Drift, Reconciliation, check_books, last_run, reconcile
from queries.schema_version import alembic_config
from tests.conftest import PgServer, _recreate
from tests.factories import add_generations, add_ledger, ensure_types, make_org, make_user
from tests.queries.read_functions import CHECK_MODULES, CHECKS, public_read_functions
from tests.queries.roles import APP_LOGIN, AUDITOR_LOGIN, login_engine, login_url
from tests.queries.writes import add_due_grant
from tooling import embedded, schema
from tooling.demo_data import append_only_guard_lifted

DATABASE = "dashboard_test_reconcile"
DAY1 = dt.date(2026, 10, 5)
DAY2 = dt.date(2026, 10, 6)
# "Now" for the checks: the day after DAY2 (a checkpoint after it is in the future).
NOW = dt.datetime(2026, 10, 7, 12, tzinfo=dt.UTC)
_keys = itertools.count(1)


def _at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)


@dataclass(frozen=True)
class Org:
    id: int
    slug: str
    user: int


def _books(conn: Connection, *, timezone: str = "UTC") -> Org:
    """An organization with a grant, generations on two days (10 and 20 credits on the
    first, 4 on the second), then a deduction: every invariant holds."""
    ensure_types(conn)
    org = make_org(conn, timezone=timezone)
    user = make_user(conn, org)
    add_ledger(conn, org, [(10_000, "grant", "Top-up", _at(DAY1, 1))])
    add_generations(
        conn,
        org,
        [(user, "chat", 10, _at(DAY1, 9)), (user, "image", 20, _at(DAY1, 10))],
    )
    add_ledger(conn, org, [(-100, "deduct", "Correction", _at(DAY1, 11))])
    add_generations(conn, org, [(user, "image", 4, _at(DAY2, 8))])
    add_ledger(conn, org, [(50, "grant", "Goodwill", _at(DAY2, 12))])
    slug = conn.execute(text("SELECT slug FROM organizations WHERE id = :o"), {"o": org})
    return Org(org, str(slug.scalar_one()), user)


def _drifts(conn: Connection, org: int, *, full: bool = True) -> list[Drift]:
    return [d for d in check_books(conn, full=full).drifts if d.organization_id == org]


def _entries(conn: Connection, org: int) -> list[tuple[int, int]]:
    rows = conn.execute(
        text("SELECT id, balance_after FROM credit_ledger WHERE organization_id = :o ORDER BY id"),
        {"o": org},
    )
    return [(int(i), int(b)) for i, b in rows]


# ------------------------------------------------------------------ demo data, corruption


def test_every_reconciliation_read_is_registered() -> None:
    registered = {key.split("[")[0] for key in CHECKS}
    assert public_read_functions(CHECK_MODULES) - registered == set()


def test_demo_data_reconciles_clean_in_full_and_incrementally(demo_engine: Engine) -> None:
    with demo_engine.connect() as conn:
        full = check_books(conn, full=True)
        assert full.drifts == ()
        assert full.organizations_checked >= 30
        # No checkpoints yet: the incremental run checks everything too.
        incremental = check_books(conn)
        assert incremental.drifts == ()
        assert incremental.organizations_checked == full.organizations_checked
        assert incremental.days_checked


def test_a_clean_organization_has_no_drift(connection: Connection) -> None:
    org = _books(connection, timezone="Asia/Kathmandu")
    assert _drifts(connection, org.id) == []
    assert _drifts(connection, org.id, full=False) == []


def test_a_balance_corrupted_in_sql_is_reported_with_its_organization(
    connection: Connection,
) -> None:
    org = _books(connection)
    connection.execute(
        text("UPDATE credit_balances SET balance = balance + 7 WHERE organization_id = :o"),
        {"o": org.id},
    )
    expected = 10_000 - 100 + 50 - 34
    for full in (True, False):
        drift, grants = _drifts(connection, org.id, full=full)
        assert (drift.slug, drift.check, drift.what) == (org.slug, "balance", "balance")
        assert (drift.expected, drift.found) == (expected, expected + 7)
        # The grants still hold what the history left: the balance is off them too.
        assert (grants.check, grants.expected, grants.found) == (
            "grants.balance",
            expected,
            expected + 7,
        )


def test_a_ledger_balance_after_that_no_history_explains_is_reported_at_its_entry(
    connection: Connection,
) -> None:
    org = _books(connection)
    (_, _), (deduction, balance_after), _ = _entries(connection, org.id)
    assert balance_after == 10_000 - 30 - 100
    # 5 credits less than the history gives: no run of the generations (10, 20, 4)
    # consumed 35 before it.
    with append_only_guard_lifted(connection):
        connection.execute(
            text("UPDATE credit_ledger SET balance_after = balance_after - 5 WHERE id = :id"),
            {"id": deduction},
        )
    [drift] = _drifts(connection, org.id)
    assert (drift.slug, drift.check, drift.what) == (org.slug, "ledger", "balance_after")
    assert drift.first_entry == deduction
    assert drift.found == balance_after - 5
    # The nearest balance_after a history gives: here, all three generations first.
    assert drift.expected == 10_000 - 100 - 34


def test_a_ledger_balance_after_above_what_was_granted_is_reported(
    connection: Connection,
) -> None:
    org = _books(connection)
    first, _, _ = _entries(connection, org.id)
    with append_only_guard_lifted(connection):
        connection.execute(
            text("UPDATE credit_ledger SET balance_after = balance_after + 1 WHERE id = :id"),
            {"id": first[0]},
        )
    [drift] = _drifts(connection, org.id)
    assert (drift.check, drift.first_entry, drift.found) == ("ledger", first[0], 10_001)


@pytest.mark.parametrize(
    ("statement", "check", "day"),
    [
        (
            "UPDATE usage_limits SET used = used + 1 WHERE organization_id = :o AND date = :d",
            "usage_limits",
            DAY2,
        ),
        (
            "UPDATE user_daily_usage SET credits = credits + 3 "
            "WHERE organization_id = :o AND date = :d",
            "user_daily_usage",
            DAY2,
        ),
        (
            "DELETE FROM quarter_hour_usage WHERE organization_id = :o "
            "AND bucket >= CAST(:d AS date)::timestamptz AND type = 'image'",
            "quarter_hour_usage",
            DAY1,
        ),
        (
            "UPDATE organization_daily_usage SET credits_through = credits_through + 1 "
            "WHERE organization_id = :o AND date = :d",
            "organization_daily_usage.through",
            DAY1,
        ),
        (
            "UPDATE organization_daily_usage SET generations = generations + 1 "
            "WHERE organization_id = :o AND date = :d",
            "organization_daily_usage",
            DAY2,
        ),
        (
            "UPDATE organization_monthly_usage SET credits = credits - 1 "
            "WHERE organization_id = :o AND month = date_trunc('month', CAST(:d AS date))",
            "organization_monthly_usage",
            DAY1.replace(day=1),
        ),
    ],
)
def test_a_corrupted_rollup_row_is_reported_with_its_first_day(
    connection: Connection, statement: str, check: str, day: dt.date
) -> None:
    org = _books(connection)
    connection.execute(text(statement), {"o": org.id, "d": day})
    drifts = _drifts(connection, org.id)
    assert [(d.slug, d.check, d.first_date) for d in drifts] == [(org.slug, check, day)]
    assert drifts[0].expected != drifts[0].found


def _expired_grant(conn: Connection, org: int) -> tuple[int, int]:
    """A promotion of 70 credits booked on DAY1 that expired on DAY2, written off by
    the organization's lock as every write does first: (its grant, its expiry entry)."""
    entry = conn.execute(
        text(
            "INSERT INTO credit_ledger (organization_id, amount, kind, reason, actor, "
            "idempotency_key, created_at, grant_expires_at) VALUES (:o, 70, 'grant', "
            "'Promotion', 'finance@example.com', :key, :at, :expires) RETURNING id"
        ),
        {"o": org, "key": f"promo-{next(_keys)}", "at": _at(DAY1, 2), "expires": _at(DAY2, 0)},
    ).scalar_one()
    grant_id = conn.execute(
        text("SELECT id FROM credit_grants WHERE organization_id = :o AND ledger_entry_id = :e"),
        {"o": org, "e": entry},
    ).scalar_one()
    conn.execute(text("SELECT lock_organization(:o)"), {"o": org})
    expiry = conn.execute(
        text("SELECT id FROM credit_ledger WHERE organization_id = :o AND grant_id = :g"),
        {"o": org, "g": grant_id},
    ).scalar_one()
    return int(grant_id), int(expiry)


def _with_grants(conn: Connection) -> tuple[Org, int, int]:
    """The books of ``_books`` (each of its grants made by its entry, the organization
    being newer than the grants) and a promotion that expired unused: (organization,
    the promotion's grant, its expiry entry)."""
    org = _books(conn)
    grant, expiry = _expired_grant(conn, org.id)
    return org, grant, expiry


def test_grants_that_add_up_with_their_expiries_have_no_drift(connection: Connection) -> None:
    org, grant, expiry = _with_grants(connection)
    expired = connection.execute(
        text(
            "SELECT g.expired, l.amount, l.effective_at FROM credit_grants g "
            "JOIN credit_ledger l ON l.organization_id = g.organization_id AND l.id = :e "
            "WHERE g.organization_id = :o AND g.id = :g"
        ),
        {"o": org.id, "g": grant, "e": expiry},
    ).one()
    assert tuple(expired) == (70, -70, _at(DAY2, 0)), "the promotion expired unused"
    assert _drifts(connection, org.id) == []
    assert _drifts(connection, org.id, full=False) == []


_DROP_ADDS_UP = "ALTER TABLE credit_grants DROP CONSTRAINT ck_credit_grants_remaining_adds_up"


@pytest.mark.parametrize(
    ("statements", "found"),
    [
        pytest.param(
            [
                _DROP_ADDS_UP,
                "UPDATE credit_grants SET remaining = remaining + 5 "
                "WHERE organization_id = :o AND source = 'opening'",
            ],
            {("grants", "remaining"), ("grants.balance", "balance")},
            id="remaining-does-not-add-up",
        ),
        pytest.param(
            [
                "UPDATE credit_grants SET amount = amount + 5, remaining = remaining + 5 "
                "WHERE organization_id = :o AND id = :g",
            ],
            {("grants.balance", "balance"), ("grants.ledger", "amount")},
            id="grant-not-its-entry",
        ),
        pytest.param(
            [
                "UPDATE credit_grants SET expired = expired - 1, remaining = remaining + 1 "
                "WHERE organization_id = :o AND id = :g",
            ],
            {("grants.balance", "balance"), ("grants.expiry", "expired")},
            id="expired-not-its-entry",
        ),
        pytest.param(
            [
                "UPDATE credit_ledger SET effective_at = effective_at + interval '1 hour' "
                "WHERE organization_id = :o AND id = :e",
            ],
            {("grants.expiry", "effective_at")},
            id="expiry-at-another-time",
        ),
        pytest.param(
            [
                "UPDATE credit_ledger SET grant_id = 999999999, "
                "idempotency_key = 'expiry:999999999' WHERE organization_id = :o AND id = :e",
            ],
            {("grants.expiry", "expired")},
            id="expiry-of-no-grant",
        ),
        pytest.param(
            [
                "DELETE FROM credit_grants WHERE organization_id = :o AND id = :g",
            ],
            {("grants.ledger", "grants"), ("grants.expiry", "expired")},
            id="entry-without-its-grant",
        ),
        pytest.param(
            ["UPDATE credit_balances SET next_expiry = '2001-01-01' WHERE organization_id = :o"],
            {("grants.marks", "next_expiry")},
            id="next-expiry-not-the-grants",
        ),
        pytest.param(
            [
                "UPDATE credit_balances SET head_grant_id = ("
                "  SELECT id FROM credit_grants WHERE organization_id = :o AND remaining > 0"
                "  AND written_off_at IS NULL"
                "  ORDER BY priority DESC, expires_at DESC NULLS FIRST, id DESC LIMIT 1) "
                "WHERE organization_id = :o",
            ],
            {("grants.marks", "head_grant_id")},
            id="head-not-first-in-line",
        ),
    ],
)
def test_grants_tampered_with_are_reported_in_full_and_incrementally(
    connection: Connection, statements: list[str], found: set[tuple[str, str]]
) -> None:
    org, grant, expiry = _with_grants(connection)
    with append_only_guard_lifted(connection):
        for statement in statements:
            connection.execute(text(statement), {"o": org.id, "g": grant, "e": expiry})
    for full in (True, False):
        drifts = _drifts(connection, org.id, full=full)
        assert {(d.check, d.what) for d in drifts} == found, drifts
        assert all(d.slug == org.slug and d.expected != d.found for d in drifts)
        assert all(d.where and ("grant" in d.where or "balance" in d.where) for d in drifts)


def test_an_expiry_of_no_grant_says_so_on_both_sides(connection: Connection) -> None:
    org, grant, expiry = _with_grants(connection)
    with append_only_guard_lifted(connection):
        connection.execute(
            text(
                "UPDATE credit_ledger SET grant_id = 999999999, "
                "idempotency_key = 'expiry:999999999' WHERE organization_id = :o AND id = :e"
            ),
            {"o": org.id, "e": expiry},
        )
    [drift] = _drifts(connection, org.id)
    assert drift.rows == 2
    assert (
        drift.where
        == f"grant {grant} expired 70 credits, but the ledger has no expiry entry for it"
    )


# The usual day of a week after DAY1: DAY1's hours 9 and 10 in its prefix sums.
_USUAL = dt.date(2026, 10, 12)
_KEEP_USUAL_DAY = text(
    """
    INSERT INTO usual_days (organization_id, date, timezone, generations_before, usual_before)
    SELECT :o, :d, f.timezone, f.generations_before, f.usual_before FROM usual_day(:o, :d) f
    """
)


def test_a_corrupted_usual_day_is_reported_and_a_stale_one_is_not(
    connection: Connection,
) -> None:
    org = _books(connection)
    connection.execute(_KEEP_USUAL_DAY, {"o": org.id, "d": _USUAL})
    assert _drifts(connection, org.id) == []
    corrupt = (
        "UPDATE usual_days SET usual_before[12] = usual_before[12] + 1"
        " WHERE organization_id = :o AND date = :d"
    )
    connection.execute(text(corrupt), {"o": org.id, "d": _USUAL})
    [drift] = _drifts(connection, org.id)
    assert (drift.check, drift.first_date, drift.expected, drift.found) == (
        "usual_days",
        _USUAL,
        2,
        3,
    )
    assert drift.where == "2026-10-12, the usual generations before hour 11"
    # Stamped with another count of the generations before it: never read, not a drift.
    connection.execute(
        text(
            "UPDATE usual_days SET generations_before = 0 WHERE organization_id = :o AND date = :d"
        ),
        {"o": org.id, "d": _USUAL},
    )
    assert _drifts(connection, org.id) == []


def test_a_tampered_usage_edge_is_reported(connection: Connection) -> None:
    org = _books(connection)
    edges = {
        "first": dt.datetime(2026, 10, 6, tzinfo=dt.UTC),
        "second": dt.datetime(2026, 10, 7, tzinfo=dt.UTC),
    }
    connection.execute(
        text("INSERT INTO kept_usage_edges (edge) VALUES (:first), (:second)"), edges
    )
    connection.execute(recounts.insert_usage_edges_recount())
    assert _drifts(connection, org.id) == []
    assert _drifts(connection, org.id, full=False) == []
    tamper = "UPDATE usage_edges SET credits = credits + 1 WHERE organization_id = :o AND edge = :e"
    connection.execute(text(tamper), {"o": org.id, "e": edges["second"]})
    [drift] = _drifts(connection, org.id)
    assert (drift.check, drift.what, drift.first_date, drift.expected, drift.found) == (
        "usage_edges",
        "credits",
        dt.date(2026, 10, 7),
        34,
        35,
    )
    assert drift.where == "the use before 2026-10-07 00:00 UTC"
    # A row gone reads as no use before the edge: found 0, and the first edge now.
    connection.execute(
        text("DELETE FROM usage_edges WHERE organization_id = :o AND edge = :e"),
        {"o": org.id, "e": edges["first"]},
    )
    [drift] = _drifts(connection, org.id, full=False)
    assert (drift.what, drift.first_date, drift.expected, drift.found, drift.rows) == (
        "generations",
        dt.date(2026, 10, 6),
        2,
        0,
        2,
    )


def test_an_incremental_run_with_too_many_changed_days_checks_everything(
    connection: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = _books(connection)
    monkeypatch.setattr(reconciliation, "FULL_ABOVE_DAYS", 1)
    result = check_books(connection)
    assert (result.full, result.days_checked, result.days) == (True, None, ())
    connection.execute(
        text("UPDATE user_daily_usage SET credits = 0 WHERE organization_id = :o"), {"o": org.id}
    )
    assert [d.check for d in _drifts(connection, org.id, full=False)] == ["user_daily_usage"]


def test_the_recount_is_in_the_organizations_local_day(connection: Connection) -> None:
    # 23:30 UTC on DAY1 is DAY2 in Kathmandu (UTC+5:45): a rollup keyed on the UTC day
    # would be a drift.
    ensure_types(connection)
    org = make_org(connection, timezone="Asia/Kathmandu")
    user = make_user(connection, org)
    add_ledger(connection, org, [(100, "grant", "Top-up", _at(DAY1, 1))])
    add_generations(
        connection, org, [(user, "chat", 1, dt.datetime(2026, 10, 5, 23, 30, tzinfo=dt.UTC))]
    )
    assert _drifts(connection, org) == []
    day = connection.execute(
        text("SELECT date FROM organization_daily_usage WHERE organization_id = :o"), {"o": org}
    ).scalar_one()
    assert day == DAY2


# ------------------------------------------------------------------ committed: checkpoints


@pytest.fixture(scope="module")
def database(test_server: PgServer) -> Iterator[tuple[str, Engine, Engine, Engine]]:
    """A migrated database of its own (checkpoints are global): its URL, the owner's
    engine (to build and corrupt), a dashboard_app login's (what the app runs) and a
    dashboard_auditor login's (what `dashboard reconcile` runs)."""
    _recreate(test_server, DATABASE)
    url = test_server.url(DATABASE)
    schema.upgrade(url=url)
    owner = create_direct_engine(url)
    app = login_engine(test_server, DATABASE, APP_LOGIN)
    auditor = login_engine(test_server, DATABASE, AUDITOR_LOGIN)
    yield url, owner, app, auditor
    auditor.dispose()
    app.dispose()
    owner.dispose()


def _committed_books(owner: Engine, *, timezone: str = "UTC") -> Org:
    with owner.begin() as conn:
        return _books(conn, timezone=timezone)


def _checkpoints(owner: Engine, org: int) -> list[dt.date]:
    with owner.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT date FROM reconciliation_checkpoints WHERE organization_id = :o "
                "ORDER BY date"
            ),
            {"o": org},
        )
        return [r.date for r in rows]


def test_an_incremental_run_after_a_generation_checks_only_that_organization_and_day(
    database: tuple[str, Engine, Engine, Engine],
) -> None:
    _, owner, app, auditor = database
    a = _committed_books(owner)
    b = _committed_books(owner, timezone="America/St_Johns")
    first = reconcile(auditor, full=True, now=NOW)
    assert first.ok, first.drifts
    assert _checkpoints(owner, a.id) == [DAY1, DAY2]
    assert _checkpoints(owner, b.id) == [DAY1, DAY2]

    def checked(result: Reconciliation) -> tuple[set[int], list[tuple[int, dt.date]]]:
        ours = {a.id, b.id}
        orgs = {v.organization_id for v in result.verified} & ours
        days = [
            (org, day)
            for org, day in zip(result.day_organizations, result.days, strict=True)
            if org in ours
        ]
        return orgs, days

    # Every run re-verifies the newest day of every rollup of every organization (here
    # DAY2 for both), and checks the ledger chain of none that did not change.
    newest = [(a.id, DAY2), (b.id, DAY2)]
    assert checked(reconcile(auditor, now=NOW)) == (set(), newest)
    recorded = record_generation(
        app, organization_id=a.id, user_id=a.user, type="chat", at=_at(DAY2, 20)
    )
    assert recorded.local_date == DAY2
    again = reconcile(auditor, now=NOW)
    assert again.ok, again.drifts
    assert checked(again) == ({a.id}, newest)
    assert checked(reconcile(auditor, now=NOW)) == (set(), newest)
    # A ledger entry alone makes the organization's chain checked again, no other day.
    adjust_credits(
        app,
        organization_id=b.id,
        amount=5,
        reason="Goodwill",
        actor="a@example.com",
        idempotency_key=f"incremental-{b.id}",
    )
    assert checked(reconcile(auditor, now=NOW)) == ({b.id}, newest)
    assert checked(reconcile(auditor, now=NOW)) == (set(), newest)


def test_an_incremental_run_checks_the_edges_after_a_changed_day_and_trusts_the_older(
    database: tuple[str, Engine, Engine, Engine],
) -> None:
    _, owner, app, auditor = database
    org = _committed_books(owner)
    # Edges before, at and after the start of DAY2, the newest day every run re-verifies.
    edges = [_at(DAY1, 12), _at(DAY2, 0), dt.datetime.combine(NOW.date(), dt.time(), dt.UTC)]
    tamper = text(
        "UPDATE usage_edges SET credits = credits + :by WHERE organization_id = :o AND edge = :e"
    )

    def edge_drifts(*, full: bool = False) -> list[tuple[str, dt.date | None]]:
        result = reconcile(auditor, full=full, now=NOW, checkpoint=False)
        return [(d.check, d.first_date) for d in result.drifts if d.organization_id == org.id]

    with owner.begin() as conn:
        conn.execute(text("INSERT INTO kept_usage_edges (edge) SELECT unnest(:e)"), {"e": edges})
        conn.execute(recounts.insert_usage_edges_recount())
    try:
        assert reconcile(auditor, now=NOW).ok
        assert _checkpoints(owner, org.id) == [DAY1, DAY2]
        # A new generation on DAY2 moves the edge after it; the rollups' answer agrees.
        record_generation(
            app, organization_id=org.id, user_id=org.user, type="chat", at=_at(DAY2, 20)
        )
        assert edge_drifts() == []
        # An edge after the changed day, edited, is found by the incremental run ...
        with owner.begin() as conn:
            conn.execute(tamper, {"by": 1, "o": org.id, "e": edges[2]})
        assert edge_drifts() == [("usage_edges", NOW.date())]
        with owner.begin() as conn:
            conn.execute(tamper, {"by": -1, "o": org.id, "e": edges[2]})
        # ... an edge before every changed day is trusted, as the checkpointed days
        # under it are, and the full run finds it.
        with owner.begin() as conn:
            conn.execute(tamper, {"by": 1, "o": org.id, "e": edges[0]})
        assert edge_drifts() == []
        assert edge_drifts(full=True) == [("usage_edges", DAY1)]
    finally:
        with owner.begin() as conn:
            conn.execute(text("DELETE FROM usage_edges WHERE edge = ANY(:e)"), {"e": edges})
            conn.execute(text("DELETE FROM kept_usage_edges WHERE edge = ANY(:e)"), {"e": edges})


def test_a_drift_is_never_hidden_by_a_checkpoint(
    database: tuple[str, Engine, Engine, Engine],
) -> None:
    _, owner, _, auditor = database
    org = _committed_books(owner)
    assert reconcile(auditor, now=NOW).ok
    assert _checkpoints(owner, org.id) == [DAY1, DAY2]
    with owner.begin() as conn:
        conn.execute(
            text(
                "UPDATE user_daily_usage SET generations = generations + 1 "
                "WHERE organization_id = :o AND date = :d"
            ),
            {"o": org.id, "d": DAY1},
        )
    # An incremental run trusts a verified day that no new generation touched ...
    assert [d for d in reconcile(auditor, now=NOW).drifts if d.organization_id == org.id] == []
    # ... the full run finds the edit and drops the organization's checkpoints, so
    # every later run checks it again until it is mended.
    full = reconcile(auditor, full=True, now=NOW)
    assert [(d.check, d.first_date) for d in full.drifts if d.organization_id == org.id] == [
        ("user_daily_usage", DAY1)
    ]
    assert _checkpoints(owner, org.id) == []
    for _ in range(2):
        later = reconcile(auditor, now=NOW)
        assert [d.check for d in later.drifts if d.organization_id == org.id] == [
            "user_daily_usage"
        ]
        assert _checkpoints(owner, org.id) == []
    with owner.begin() as conn:
        conn.execute(
            text(
                "UPDATE user_daily_usage SET generations = generations - 1 "
                "WHERE organization_id = :o AND date = :d"
            ),
            {"o": org.id, "d": DAY1},
        )
    assert not [d for d in reconcile(auditor, now=NOW).drifts if d.organization_id == org.id]
    assert _checkpoints(owner, org.id) == [DAY1, DAY2]


def test_a_grant_tampered_with_after_its_checkpoints_is_found_by_the_next_incremental_run(
    database: tuple[str, Engine, Engine, Engine],
) -> None:
    """Nothing new in the ledger or the generations, yet every grant is checked."""
    _, owner, _, auditor = database
    with owner.begin() as conn:
        org, grant, _ = _with_grants(conn)
    assert reconcile(auditor, full=True, now=NOW).ok
    assert _checkpoints(owner, org.id) == [DAY1, DAY2]
    with owner.begin() as conn:
        conn.execute(
            text(
                "UPDATE credit_grants SET amount = amount + 5, expired = expired + 5 "
                "WHERE organization_id = :o AND id = :g"
            ),
            {"o": org.id, "g": grant},
        )
    result = reconcile(auditor, now=NOW)
    assert not result.full
    assert [(d.check, d.what) for d in result.drifts if d.organization_id == org.id] == [
        ("grants.expiry", "expired"),
        ("grants.ledger", "amount"),
    ]
    assert _checkpoints(owner, org.id) == []
    with owner.begin() as conn:
        conn.execute(
            text(
                "UPDATE credit_grants SET amount = amount - 5, expired = expired - 5 "
                "WHERE organization_id = :o AND id = :g"
            ),
            {"o": org.id, "g": grant},
        )
    assert reconcile(auditor, now=NOW).ok
    assert _checkpoints(owner, org.id) == [DAY1, DAY2]


def test_a_zone_change_makes_the_organization_checked_again(
    database: tuple[str, Engine, Engine, Engine],
) -> None:
    _, owner, app, auditor = database
    org = _committed_books(owner)
    assert reconcile(auditor, now=NOW).ok
    set_timezone(
        app, organization_id=org.id, timezone="Pacific/Chatham", actor="a@example.com", reason="x"
    )
    after = reconcile(auditor, now=NOW)
    assert after.ok, after.drifts
    assert org.id in after.day_organizations
    assert _checkpoints(owner, org.id)


_POISON = text(
    "INSERT INTO reconciliation_checkpoints "
    "(organization_id, date, generation_id, ledger_id, timezone) "
    "SELECT :o, :d, coalesce(:gen, (SELECT max(id) FROM generations WHERE organization_id = :o)), "
    "coalesce(:led, (SELECT max(id) FROM credit_ledger WHERE organization_id = :o)), 'UTC'"
)


@pytest.mark.parametrize(
    ("date", "ids", "what", "sentence"),
    [
        # Dated 2100 with the organization's own newest ids.
        (dt.date(2100, 1, 1), (None, None), "days after today", "is in the future"),
        # On a real day, but claiming rows no one has written yet.
        (DAY2, (2**62, None), "generation_id", "past the newest"),
        (DAY2, (None, 2**62), "ledger_id", "past the newest"),
    ],
    ids=["dated-2100", "past-the-newest-generation", "past-the-newest-ledger-entry"],
)
def test_a_poisoned_checkpoint_is_a_drift_and_hides_nothing(
    database: tuple[str, Engine, Engine, Engine],
    date: dt.date,
    ids: tuple[int | None, int | None],
    what: str,
    sentence: str,
) -> None:
    _, owner, app, auditor = database
    org = _committed_books(owner)
    assert reconcile(auditor, now=NOW).ok
    # A new ledger entry, whose balance_after is then made wrong: the next incremental
    # run checks the organization's chain, unless a checkpoint claims the entry verified.
    entry = adjust_credits(
        app,
        organization_id=org.id,
        amount=5,
        reason="Goodwill",
        actor="a@example.com",
        idempotency_key=f"poisoned-{org.id}",
    )
    with owner.begin() as conn, append_only_guard_lifted(conn):
        conn.execute(
            text("UPDATE credit_ledger SET balance_after = balance_after + 500 WHERE id = :id"),
            {"id": entry.id},
        )
    with owner.begin() as conn:  # what the app could do before migration 0014
        conn.execute(
            text("DELETE FROM reconciliation_checkpoints WHERE organization_id = :o"),
            {"o": org.id},
        )
        conn.execute(_POISON, {"o": org.id, "d": date, "gen": ids[0], "led": ids[1]})
    result = reconcile(auditor, now=NOW)
    ours = [d for d in result.drifts if d.organization_id == org.id]
    assert [d.check for d in ours] == ["checkpoint", "ledger"]
    poisoned, ledger = ours
    assert (poisoned.what, poisoned.first_date) == (what, date)
    assert poisoned.where.startswith(f"the checkpoint of {date:%Y-%m-%d} ")
    assert sentence in poisoned.where and poisoned.where.endswith("no run verified it")
    assert ledger.first_entry == entry.id
    # The run deleted the poisoned checkpoint with the rest: checked in full until mended.
    assert _checkpoints(owner, org.id) == []
    with owner.begin() as conn, append_only_guard_lifted(conn):
        conn.execute(
            text("UPDATE credit_ledger SET balance_after = balance_after - 500 WHERE id = :id"),
            {"id": entry.id},
        )
    assert not [d for d in reconcile(auditor, now=NOW).drifts if d.organization_id == org.id]
    assert _checkpoints(owner, org.id) == [DAY1, DAY2]


def test_a_checkpoint_of_today_is_no_drift(database: tuple[str, Engine, Engine, Engine]) -> None:
    # The local day at "now" may be checkpointed (a run at 23:59 verifies it).
    _, owner, _, auditor = database
    org = _committed_books(owner)
    assert reconcile(auditor, now=dt.datetime(2026, 10, 6, 23, 59, tzinfo=dt.UTC)).ok
    assert _checkpoints(owner, org.id) == [DAY1, DAY2]
    early = reconcile(auditor, now=dt.datetime(2026, 10, 5, 23, 59, tzinfo=dt.UTC))
    assert [(d.check, d.first_date) for d in early.drifts if d.organization_id == org.id] == [
        ("checkpoint", DAY2)
    ]
    assert reconcile(auditor, now=NOW).ok


@pytest.mark.parametrize(
    ("edit", "undo", "check"),
    [
        # 4 credits of balance hidden: the balance raised, the latest running total
        # lowered by as much, so the balance still equals ledger - credits_through.
        (
            "UPDATE organization_daily_usage SET credits_through = credits_through - 4 "
            "WHERE organization_id = :o AND date = :d; "
            "UPDATE credit_balances SET balance = balance + 4 WHERE organization_id = :o",
            "UPDATE organization_daily_usage SET credits_through = credits_through + 4 "
            "WHERE organization_id = :o AND date = :d; "
            "UPDATE credit_balances SET balance = balance - 4 WHERE organization_id = :o",
            "organization_daily_usage.through",
        ),
        (
            "UPDATE usage_limits SET used = 0, credits_used = 0 "
            "WHERE organization_id = :o AND date = :d",
            "UPDATE usage_limits SET used = 1, credits_used = 4 "
            "WHERE organization_id = :o AND date = :d",
            "usage_limits",
        ),
    ],
    ids=["lowered-credits-through", "zeroed-usage-limits"],
)
def test_an_edit_of_the_newest_day_is_found_by_an_incremental_run(
    database: tuple[str, Engine, Engine, Engine], edit: str, undo: str, check: str
) -> None:
    _, owner, _, auditor = database
    org = _committed_books(owner)
    assert reconcile(auditor, now=NOW).ok
    assert _checkpoints(owner, org.id) == [DAY1, DAY2]

    def run(statements: str) -> None:
        with owner.begin() as conn:
            for statement in statements.split("; "):
                conn.execute(text(statement), {"o": org.id, "d": DAY2})

    run(edit)
    # No generation or ledger entry since the checkpoints, yet the newest day is checked.
    result = reconcile(auditor, now=NOW)
    assert not result.full
    found = [(d.check, d.first_date) for d in result.drifts if d.organization_id == org.id]
    # A balance moved by hand no longer equals its grants either, whatever else hides it.
    assert found == [*(("grants.balance", None) for _ in range("balance" in edit)), (check, DAY2)]
    assert _checkpoints(owner, org.id) == []
    run(undo)
    assert not [d for d in reconcile(auditor, now=NOW).drifts if d.organization_id == org.id]


# ------------------------------------------------------------------ committed: recorded runs


def _forget_runs(owner: Engine) -> None:
    """No run recorded yet (the module's database is shared by its tests)."""
    with owner.begin() as conn:
        conn.execute(text("DELETE FROM reconciliation_runs"))


def test_a_run_records_what_it_found_and_who_ran_it_and_the_last_is_read_back(
    database: tuple[str, Engine, Engine, Engine],
) -> None:
    _, owner, app, auditor = database
    _forget_runs(owner)
    org = _committed_books(owner, timezone="Asia/Kathmandu")
    with app.connect() as conn:
        assert last_run(conn) is None

    first = reconcile(auditor, now=NOW)
    assert not [d for d in first.drifts if d.organization_id == org.id]
    with app.connect() as conn:  # the app reads what the reconciler recorded
        run = last_run(conn)
        assert last_run(conn, full=True) is None
    assert run is not None and run.ran_by == AUDITOR_LOGIN
    # What it found, as found (the checkpoints' part is not kept), at the instant checked.
    assert run.result == dataclasses.replace(first, verified=(), day_organizations=(), days=())
    assert run.result.checked_at == NOW and not run.result.full

    with owner.begin() as conn:
        conn.execute(
            text("UPDATE credit_balances SET balance = balance + 7 WHERE organization_id = :o"),
            {"o": org.id},
        )
    later = NOW + dt.timedelta(hours=1)
    drifted = reconcile(auditor, full=True, now=later)
    ours = [d for d in drifted.drifts if d.organization_id == org.id]
    assert [d.check for d in ours] == ["balance", "grants.balance"]
    with app.connect() as conn:
        newest = last_run(conn)
        full = last_run(conn, full=True)
    assert newest is not None and newest == full and newest.id > run.id
    # Every drift comes back as the run found it (its day, its entry, its numbers).
    assert newest.result.drifts == drifted.drifts
    assert newest.result.full and newest.result.days_checked is None
    assert newest.result.checked_at == later

    # "Last" is by the instant checked: a run of an earlier instant recorded afterwards
    # (a check that started before the full one ended) is not the newest.
    reconcile(auditor, now=NOW)
    with app.connect() as conn:
        assert last_run(conn) == newest
    with owner.begin() as conn:
        conn.execute(
            text("UPDATE credit_balances SET balance = balance - 7 WHERE organization_id = :o"),
            {"o": org.id},
        )


def test_a_check_that_records_no_checkpoints_records_no_run(
    database: tuple[str, Engine, Engine, Engine],
) -> None:
    _, owner, app, _ = database
    _forget_runs(owner)
    _committed_books(owner)
    # What the page does, as the app's login: it checks, and records nothing.
    assert reconcile(app, checkpoint=False, now=NOW).organizations_checked
    with app.connect() as conn:
        assert last_run(conn) is None


def test_last_run_refuses_a_full_that_is_not_a_bool(connection: Connection) -> None:
    with pytest.raises(DashboardError, match="full must be True or False"):
        last_run(connection, full="yes")  # type: ignore[arg-type]


# ------------------------------------------------------------------ random histories

ZONES = (
    "UTC",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Chatham",
    "Europe/Berlin",
    "America/Santiago",  # changes its clocks at local midnight
)
# Six-day windows around DST changes (Berlin, Chile both ways, Chatham).
STARTS = (
    dt.datetime(2026, 3, 26, tzinfo=dt.UTC),
    dt.datetime(2026, 4, 2, tzinfo=dt.UTC),
    dt.datetime(2026, 9, 3, tzinfo=dt.UTC),
    dt.datetime(2026, 9, 24, tzinfo=dt.UTC),
)
_op = st.one_of(
    st.tuples(st.just("grant"), st.integers(1, 500)),
    st.tuples(st.just("deduct"), st.integers(1, 300)),
    st.tuples(st.just("reverse"), st.integers(0, 20)),
    # Requested by one person, approved by another: a ledger entry like any other.
    st.tuples(st.just("approved"), st.integers(-300, 500).filter(bool)),
    # A promotion that expired yesterday, not yet written off (the next write, or
    # expire-credits, writes it off).
    st.tuples(st.just("promotion"), st.integers(1, 500)),
    st.tuples(st.just("expire"), st.just(0)),
    st.tuples(
        st.just("generate"),
        st.sampled_from(["chat", "image", "video"]),
        st.integers(0, 60),
        st.integers(0, 6 * 24 * 4 - 1),  # a quarter-hour of six days
    ),
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    zone=st.sampled_from(ZONES),
    start=st.sampled_from(STARTS),
    ops=st.lists(_op, min_size=1, max_size=25),
)
def test_random_histories_never_drift(
    database: tuple[str, Engine, Engine, Engine],
    zone: str,
    start: dt.datetime,
    ops: list[tuple[object, ...]],
) -> None:
    _, owner, app, _ = database
    with owner.begin() as conn:
        ensure_types(conn)
        org = make_org(conn, timezone=zone)
        user = make_user(conn, org)
    entries: list[int] = []
    for op in ops:
        try:
            if op[0] in ("grant", "deduct"):
                amount = int(str(op[1])) * (1 if op[0] == "grant" else -1)
                entry = adjust_credits(
                    app,
                    organization_id=org,
                    amount=amount,
                    reason="random",
                    actor="prop@example.com",
                    idempotency_key=f"prop-{next(_keys)}",
                )
                entries.append(entry.id)
            elif op[0] == "approved":
                request = request_adjustment(
                    app,
                    organization_id=org,
                    amount=int(str(op[1])),
                    reason="random, approved",
                    actor="asker@example.com",
                    idempotency_key=f"prop-{next(_keys)}",
                )
                entries.append(
                    approve(app, request_id=request.id, approver="second@example.com").id
                )
            elif op[0] == "reverse" and entries:
                reverse_adjustment(
                    app,
                    entry_id=entries[int(str(op[1])) % len(entries)],
                    actor="prop@example.com",
                    reason="undo",
                    organization_id=org,
                )
            elif op[0] == "promotion":
                entries.append(add_due_grant(owner, org, int(str(op[1]))))
            elif op[0] == "expire":
                expire_credits(app, organization_ids=[org])
            elif op[0] == "generate":
                _, type_, credits, quarter = op
                record_generation(
                    app,
                    organization_id=org,
                    user_id=user,
                    type=str(type_),
                    credits=int(str(credits)),
                    at=start + dt.timedelta(minutes=15 * int(str(quarter))),
                )
        except DashboardError:
            pass  # refused (insufficient credits, reversed twice, over quota): no write
    with app.connect() as conn:
        assert _drifts(conn, org) == []
        assert _drifts(conn, org, full=False) == []


# ------------------------------------------------------------------ `dashboard reconcile`


@pytest.fixture
def cli_database(test_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A database of its own for the command (exit 0 needs every organization clean),
    as DATABASE_URL; yields the owner's engine."""
    name = "dashboard_test_reconcile_cli"
    _recreate(test_server, name)
    url = test_server.url(name)
    schema.upgrade(url=url)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("DIRECT_URL", raising=False)
    monkeypatch.delenv("RECONCILE_URL", raising=False)
    owner = create_direct_engine(url)
    yield owner
    owner.dispose()


def _all_checkpoints(owner: Engine) -> int:
    with owner.connect() as conn:
        return int(
            conn.execute(text("SELECT count(*) FROM reconciliation_checkpoints")).scalar_one()
        )


def test_reconcile_as_a_dashboard_auditor_login_records_checkpoints(
    cli_database: Engine,
    test_server: PgServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _committed_books(cli_database)
    name = str(cli_database.url.database)
    monkeypatch.setenv("RECONCILE_URL", login_url(test_server, name, AUDITOR_LOGIN))
    assert main(["reconcile"]) == 0
    assert "the books close" in capsys.readouterr().out
    assert _all_checkpoints(cli_database) == 2


def test_reconcile_as_an_app_login_is_refused_with_a_sentence(
    cli_database: Engine,
    test_server: PgServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _committed_books(cli_database)
    name = str(cli_database.url.database)
    monkeypatch.setenv("RECONCILE_URL", login_url(test_server, name, APP_LOGIN))
    assert main(["reconcile"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"dashboard: could not check the books of postgresql+psycopg://{APP_LOGIN}"
    )
    assert "InsufficientPrivilege" in err
    assert "RECONCILE_URL must be a login that is a member of dashboard_auditor" in err
    assert len(err.strip().splitlines()) == 1
    assert _all_checkpoints(cli_database) == 0


def test_reconcile_on_the_embedded_database_runs_as_its_reconciler_login(
    cli_database: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not owns_url(cli_database.url.render_as_string(hide_password=False)):
        pytest.skip("TEST_DATABASE_URL is not the embedded server")
    _committed_books(cli_database)
    seen: list[str | None] = []
    real = reconciliation.reconcile

    def spy(engine: Engine, **options: Any) -> Reconciliation:
        seen.append(engine.url.username)
        return real(engine, **options)

    monkeypatch.setattr(reconciliation, "reconcile", spy)
    assert main(["reconcile"]) == 0
    assert seen == [embedded.AUDITOR_LOGIN]
    assert _all_checkpoints(cli_database) == 2


def test_reconcile_exits_0_when_the_books_close_and_1_with_the_slug_when_not(
    cli_database: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = _committed_books(cli_database)
    bad = _committed_books(cli_database, timezone="Asia/Kathmandu")
    assert main(["reconcile"]) == 0
    assert "the books close" in capsys.readouterr().out

    with cli_database.begin() as conn:
        conn.execute(
            text("UPDATE credit_balances SET balance = balance - 3 WHERE organization_id = :o"),
            {"o": bad.id},
        )
    for args in (["reconcile"], ["reconcile", "--full"]):
        assert main(args) == 1
        out = capsys.readouterr().out
        lines = out.splitlines()
        assert lines[0].split() == [
            "organization", "check", "what", "first", "seen", "expected", "found", "rows"
        ]  # fmt: skip
        assert lines[1].split()[:3] == [bad.slug, "balance", "balance"]
        assert lines[2].split()[:3] == [bad.slug, "grants.balance", "balance"]
        assert clean.slug not in out
        assert "2 drifts found" in lines[-1]


def test_reconcile_exits_2_with_a_sentence_when_it_cannot_check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    monkeypatch.delenv("DIRECT_URL", raising=False)
    assert main(["reconcile"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dashboard: could not check the books of ")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_reconcile_exits_2_on_a_schema_without_checkpoints(
    test_server: PgServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "dashboard_test_reconcile_old"
    _recreate(test_server, name)
    url = test_server.url(name)
    command.upgrade(alembic_config(url=url), "0007")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("DIRECT_URL", raising=False)
    for args in (["reconcile"], ["reconcile", "--full"]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("dashboard: ") and "migrate" in err
