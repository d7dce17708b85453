"""Writes under faults, against real servers: killed backends, a COMMIT whose answer is
lost, a restarted PgBouncer, a lock held too long, a server that is not there.

After each: callers saw only the project's typed errors; every retry with the same
idempotency key applied once; balance = ledger - consumption; usage equals generations.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, Engine, event, text

from queries import transactions
from queries.credits import adjust_credits
from queries.db import create_runtime_engine, create_write_engine
from queries.errors import (
    Busy,
    DashboardError,
    DatabaseRefused,
    DatabaseUnavailable,
    InsufficientCredits,
    OutcomeUnknown,
    QuotaExceeded,
)
from queries.generations import record_generation
from queries.quotas import set_daily_limit
from queries.transactions import run_in_transaction
from tests.conftest import PgServer, _recreate
from tests.faults import (
    BackendKiller,
    CommitCutProxy,
    Disconnects,
    admin_connect,
    books_problems,
    row_locked,
    rows_per_key,
    table_locked,
)
from tests.pgbouncer import PgBouncer
from tests.queries.writes import new_org, snapshot
from tooling import schema

DATABASE = "dashboard_test_faults"
T = TypeVar("T")


@pytest.fixture(scope="module")
def faults_url(test_server: PgServer) -> str:
    _recreate(test_server, DATABASE)
    url = test_server.url(DATABASE)
    schema.upgrade(url=url)
    return url


@pytest.fixture(scope="module")
def direct(faults_url: str) -> Iterator[Engine]:
    engine = create_runtime_engine(faults_url, pool_size=8, max_overflow=4)
    yield engine
    engine.dispose()


@pytest.fixture
def short_budget(monkeypatch: pytest.MonkeyPatch) -> float:
    """A 1.5 s budget, for tests that wait for it to run out."""
    monkeypatch.setattr(transactions, "BUDGET_SECONDS", 1.5)
    return 1.5


# --- what the callers saw ------------------------------------------------------------


@dataclass
class Seen:
    """What the writing threads were told."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    # key -> (table, id of the row the call returned)
    applied: dict[str, tuple[str, int]] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    unresolved: dict[str, Callable[[], tuple[str, int]]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    untyped: list[BaseException] = field(default_factory=list)


def _attempt(seen: Seen, key: str, call: Callable[[], tuple[str, int]], tries: int) -> None:
    """Call until it answers, retrying with the same key after a typed "try again"."""
    for _ in range(tries):
        try:
            result = call()
        except (InsufficientCredits, QuotaExceeded):
            with seen.lock:
                seen.refused.add(key)
            return
        except DashboardError as exc:
            with seen.lock:
                seen.errors[type(exc).__name__] += 1
            continue
        except BaseException as exc:  # a raw exception escaped: the test fails on it
            with seen.lock:
                seen.untyped.append(exc)
            return
        with seen.lock:
            seen.applied[key] = result
        return
    with seen.lock:
        seen.unresolved[key] = call


def _writer(
    engine: Engine,
    seen: Seen,
    orgs: dict[int, list[int]],
    *,
    seed: int,
    operations: int,
    tries: int = 4,
    stop: threading.Event | None = None,
) -> None:
    rng = random.Random(seed)
    for n in range(operations):
        if stop is not None and stop.is_set():
            return
        org = rng.choice(list(orgs))
        roll = rng.random()
        key = f"{seed}-{n}-{org}"
        call: Callable[[], tuple[str, int]]
        if roll < 0.4:
            amount = rng.choice([-1, 1]) * rng.randint(1, 30)

            def call(
                org: int = org, amount: int = amount, key: str = f"adj-{key}"
            ) -> tuple[str, int]:
                entry = adjust_credits(
                    engine,
                    organization_id=org,
                    amount=amount,
                    reason="Fault test",
                    actor=f"t{seed}@x.com",
                    idempotency_key=key,
                )
                return "ledger", entry.id

            _attempt(seen, f"adj-{key}", call, tries)
        elif roll < 0.9:
            user = rng.choice(orgs[org])
            kind = rng.choice(["chat", "image"])

            def call(
                org: int = org, user: int = user, kind: str = kind, key: str = f"gen-{key}"
            ) -> tuple[str, int]:
                made = record_generation(
                    engine, organization_id=org, user_id=user, type=kind, idempotency_key=key
                )
                return "generations", made.id

            _attempt(seen, f"gen-{key}", call, tries)
        else:
            limit = rng.randint(500, 900)

            def call(
                org: int = org, limit: int = limit, key: str = f"lim-{key}"
            ) -> tuple[str, int]:
                change = set_daily_limit(
                    engine,
                    organization_id=org,
                    type="image",
                    daily_limit=limit,
                    actor=f"t{seed}@x.com",
                    reason="Fault test",
                    idempotency_key=key,
                )
                return "audit", change.audit_id

            _attempt(seen, f"lim-{key}", call, tries)


def _organizations(engine: Engine, count: int = 3) -> dict[int, list[int]]:
    orgs = {}
    for zone in ("UTC", "Asia/Tokyo", "America/Los_Angeles")[:count]:
        org, users = new_org(engine, balance=5_000, timezone=zone, users=3)
        orgs[org] = users
    return orgs


def _assert_truthful(engine: Engine, seen: Seen, orgs: dict[int, list[int]]) -> None:
    """Callers saw only typed errors; each key applied once, and it is the row the caller
    was given; the books balance."""
    assert seen.untyped == [], f"raw exceptions reached a caller: {seen.untyped[:3]}"
    assert "DatabaseRefused" not in seen.errors, "a lost connection was reported as a refusal"
    # A retry once the faults are over answers every question that was left open.
    for key, call in seen.unresolved.items():
        seen.applied[key] = call()
    counts = rows_per_key(engine, list(orgs))
    for key, (table, _) in seen.applied.items():
        assert counts.get((table, key)) == 1, f"{key} applied {counts.get((table, key), 0)} times"
    for key in seen.refused:
        assert not any(k == key for _, k in counts), f"{key} was refused but has a row"
    ours = {k for _, k in counts if k != "open"}
    assert ours == set(seen.applied), "a row no caller was told about, or the reverse"
    with engine.connect() as conn:
        for key, (table, row_id) in seen.applied.items():
            found = conn.execute(
                {
                    "ledger": text("SELECT id FROM credit_ledger WHERE idempotency_key = :k"),
                    "generations": text("SELECT id FROM generations WHERE idempotency_key = :k"),
                    "audit": text("SELECT id FROM audit_log WHERE idempotency_key = :k"),
                }[table],
                {"k": key},
            ).scalar_one()
            assert found == row_id, f"{key}: the caller was told row {row_id}, it is {found}"
    assert books_problems(engine, list(orgs)) == []


# --- killed backends -----------------------------------------------------------------


def test_killed_backends_during_concurrent_writes_leave_the_books_exact(
    direct: Engine, test_server: PgServer
) -> None:
    orgs = _organizations(direct)
    seen = Seen()
    disconnects = Disconnects(direct)
    # The writers go on until enough of them were killed (or a time cap): on a loaded
    # machine fewer transactions are open at each of the killer's looks, so a fixed
    # number of operations would test fewer kills.
    enough = threading.Event()
    threads = [
        threading.Thread(
            target=_writer,
            args=(direct, seen, orgs),
            kwargs={"seed": s, "operations": 400, "stop": enough},
        )
        for s in range(6)
    ]
    with BackendKiller(test_server, DATABASE, interval=0.05) as killer:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 45
        # Both counts: a pooled connection killed while idle is dropped with the pool
        # (after another disconnect) rather than noticed on its own, so kills and
        # noticed disconnects do not arrive one for one.
        while (
            (killer.killed < 20 or disconnects.count < 20)
            and time.monotonic() < deadline
            and any(t.is_alive() for t in threads)
        ):
            time.sleep(0.1)
        enough.set()
        for t in threads:
            t.join(timeout=60)
    assert killer.error is None
    assert killer.killed >= 20, f"only {killer.killed} writes were interrupted"
    assert disconnects.count >= 20, "the writes never noticed the kills"
    _assert_truthful(direct, seen, orgs)


# --- a COMMIT whose answer is lost ---------------------------------------------------


@pytest.fixture
def proxy(test_server: PgServer, faults_url: str) -> Iterator[CommitCutProxy]:
    with CommitCutProxy.for_server(test_server, DATABASE) as proxy:
        yield proxy


@pytest.fixture
def proxied(proxy: CommitCutProxy) -> Iterator[Engine]:
    engine = create_runtime_engine(proxy.url, pool_size=2, max_overflow=2)
    yield engine
    engine.dispose()


def _ledger_rows(engine: Engine, key: str) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT id FROM credit_ledger WHERE idempotency_key = :k"), {"k": key}
            ).scalars()
        )


def test_a_lost_commit_answer_is_learned_by_retrying_with_the_key(
    proxy: CommitCutProxy, proxied: Engine, direct: Engine
) -> None:
    org, _ = new_org(direct, balance=100)
    grant: dict[str, Any] = {
        "organization_id": org,
        "amount": 250,
        "reason": "Annual plan",
        "actor": "ana@finance.example",
        "idempotency_key": "lost-answer-1",
    }
    proxy.arm_cut_after_commit()
    entry = adjust_credits(proxied, **grant)
    assert proxy.cuts == 1, "the proxy never cut the answer to the COMMIT"
    # The call's own retry found the committed entry by its key: the caller was told
    # what happened, and it happened once.
    assert _ledger_rows(direct, "lost-answer-1") == [entry.id]
    assert entry.balance_after == 350
    assert adjust_credits(proxied, **grant) == entry
    assert snapshot(direct, org)["balance"] == 350
    assert books_problems(direct, [org]) == []


def test_a_lost_limit_change_answer_is_learned_by_retrying_with_the_key(
    proxy: CommitCutProxy, proxied: Engine, direct: Engine
) -> None:
    org, _ = new_org(direct)
    change: dict[str, Any] = {
        "organization_id": org,
        "type": "image",
        "daily_limit": 30,
        "actor": "sam@support.example",
        "reason": "Launch",
        "idempotency_key": "lost-limit-1",
    }
    proxy.arm_cut_after_commit()
    made = set_daily_limit(proxied, **change)
    assert proxy.cuts == 1
    assert set_daily_limit(proxied, **change) == made
    assert rows_per_key(direct, [org])[("audit", "lost-limit-1")] == 1


def test_a_lost_commit_answer_without_a_key_is_reported_as_unknown(
    proxy: CommitCutProxy, proxied: Engine, direct: Engine
) -> None:
    org, (user,) = new_org(direct, balance=100)
    proxy.arm_cut_after_commit()
    with pytest.raises(OutcomeUnknown) as unknown:
        record_generation(proxied, organization_id=org, user_id=user, type="chat")
    assert proxy.cuts == 1
    # It was committed, and the caller was not told "nothing was changed", nor that
    # repeating it is safe.
    assert snapshot(direct, org)["generations"] == 1
    assert "Nothing was changed" not in str(unknown.value)
    assert "no idempotency key" in str(unknown.value)
    assert books_problems(direct, [org]) == []


def test_when_the_answer_cannot_be_learned_in_time_it_is_unknown_and_a_retry_applies_once(
    proxy: CommitCutProxy, proxied: Engine, direct: Engine, short_budget: float
) -> None:
    org, _ = new_org(direct, balance=100)
    grant: dict[str, Any] = {
        "organization_id": org,
        "amount": -40,
        "reason": "Chargeback",
        "actor": "ben@finance.example",
        "idempotency_key": "lost-answer-2",
    }
    proxy.arm_cut_after_commit(times=1_000)  # every answer lost until disarmed
    started = time.monotonic()
    with pytest.raises(OutcomeUnknown, match="Confirming again is safe"):
        adjust_credits(proxied, **grant)
    assert time.monotonic() - started < short_budget + 3
    assert proxy.cuts >= 2
    proxy.disarm()
    entry = adjust_credits(proxied, **grant)
    assert _ledger_rows(direct, "lost-answer-2") == [entry.id]
    assert entry.balance_after == 60


def test_commit_cuts_during_concurrent_writes_apply_each_key_once(
    proxy: CommitCutProxy, test_server: PgServer, direct: Engine
) -> None:
    engine = create_runtime_engine(proxy.url, pool_size=6, max_overflow=2)
    try:
        orgs = _organizations(direct, count=2)
        seen = Seen()
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=_writer,
                args=(engine, seen, orgs),
                kwargs={"seed": 100 + s, "operations": 400, "stop": stop},
            )
            for s in range(4)
        ]
        for t in threads:
            t.start()
        # One lost answer at a time, until 15 were lost (or a time cap).
        deadline = time.monotonic() + 45
        while proxy.cuts < 15 and time.monotonic() < deadline:
            proxy.arm_cut_after_commit()
            proxy.wait_for_cuts(proxy.cuts + 1, timeout=0.5)
        proxy.disarm()
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert proxy.cuts >= 6
    finally:
        engine.dispose()
    _assert_truthful(direct, seen, orgs)


# --- a restarted PgBouncer -----------------------------------------------------------


def _wait_for_progress(seen: Seen, *, since: int, timeout: float = 30) -> None:
    """Until the writers applied more than ``since`` writes (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while len(seen.applied) <= since and time.monotonic() < deadline:
        time.sleep(0.05)


def test_writes_through_a_restarted_pgbouncer_apply_each_key_once(
    test_server: PgServer, faults_url: str, direct: Engine
) -> None:
    bouncer = PgBouncer(
        host=test_server.libpq_host,
        port=test_server.libpq_port,
        database=DATABASE,
        user=test_server.user,
        password=test_server.password,
        pool_size=4,
    )
    bouncer.start()
    engine = create_runtime_engine(bouncer.url, pool_size=6, max_overflow=0)
    disconnects = Disconnects(engine)
    try:
        orgs = _organizations(direct, count=2)
        seen = Seen()
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=_writer,
                args=(engine, seen, orgs),
                kwargs={"seed": 200 + s, "operations": 400, "stop": stop},
            )
            for s in range(5)
        ]
        for t in threads:
            t.start()
        applied_before_restarts: list[int] = []
        for _ in range(3):
            # Each restart comes once the writers have applied something since the last
            # one (not after a fixed sleep, which a loaded machine can outlast).
            _wait_for_progress(seen, since=max(applied_before_restarts, default=0))
            applied_before_restarts.append(len(seen.applied))
            bouncer.kill()
            time.sleep(0.3)  # down: connections are refused meanwhile
            bouncer.start()
        _wait_for_progress(seen, since=applied_before_restarts[-1])
        stop.set()
        for t in threads:
            t.join(timeout=60)
    finally:
        engine.dispose()
        bouncer.close()
    assert disconnects.count >= 3, "the restarts never reached a write"
    # The writers kept going across every restart, and after the last one.
    assert applied_before_restarts == sorted(set(applied_before_restarts))
    assert len(seen.applied) > applied_before_restarts[-1] > 0
    _assert_truthful(direct, seen, orgs)


# --- a pool of connections that died while idle, and no pre-ping --------------------


def test_writes_after_every_pooled_backend_was_killed_succeed_without_a_ping(
    test_server: PgServer, faults_url: str, direct: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_write_engine(faults_url, pool_size=4, max_overflow=0)
    pings: list[object] = []
    monkeypatch.setattr(engine.dialect, "do_ping", lambda dbapi_conn: pings.append(dbapi_conn))
    connects: list[object] = []
    event.listen(engine, "connect", lambda dbapi_conn, record: connects.append(dbapi_conn))
    disconnects = Disconnects(engine)
    org, users = new_org(direct, balance=1_000)
    try:
        # Four pooled connections, idle on live backends, then every backend killed.
        held = [engine.connect() for _ in range(4)]
        pids = [int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in held]
        for conn in held:
            conn.close()
        with admin_connect(test_server) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
            for _ in range(100):  # until the server has let them go
                row = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s::int[])", (pids,)
                ).fetchone()
                if row is not None and row[0] == 0:
                    break
                time.sleep(0.05)
        connects.clear()
        started = time.monotonic()
        recorded = [
            record_generation(engine, organization_id=org, user_id=users[0], type="chat")
            for _ in range(4)
        ]
        elapsed = time.monotonic() - started
    finally:
        engine.dispose()
    assert pings == [], "the write engine pinged before a transaction"
    # The first write met a dead connection and ran again at once (no back-off for a
    # pooled connection that died idle); that disconnect dropped every connection
    # pooled before it, so the others were replaced without failing a write.
    assert disconnects.count == 1
    assert len(connects) == 4
    assert elapsed < 5, f"took {elapsed:.1f} s"
    assert len({r.id for r in recorded}) == 4
    assert [r.used_today for r in recorded] == [1, 2, 3, 4]
    assert books_problems(direct, [org]) == []


def test_a_generation_waits_for_a_held_lock_no_longer_than_the_budget(
    direct: Engine, short_budget: float
) -> None:
    # record_generation sets its timeouts in the statement that takes the lock (no
    # separate round trip): the lock wait must still obey them.
    org, users = new_org(direct, balance=100)
    before = snapshot(direct, org)
    with row_locked(direct, org):
        started = time.monotonic()
        with pytest.raises(Busy, match="Nothing was changed"):
            record_generation(direct, organization_id=org, user_id=users[0], type="chat")
        elapsed = time.monotonic() - started
    assert elapsed <= short_budget + 1, f"gave up after {elapsed:.1f} s"
    assert snapshot(direct, org) == before


def test_a_lock_wait_inside_the_work_function_is_busy_within_the_budget(
    direct: Engine, short_budget: float
) -> None:
    # The work runs inside record_generation_work (migration 0016): a lock wait there
    # (a rollup table held by a migration, say) obeys the same timeouts and is told
    # the same way as the lock statement's, and changes nothing.
    org, users = new_org(direct, balance=100)
    before = snapshot(direct, org)
    with table_locked(direct, "organization_monthly_usage"):
        started = time.monotonic()
        with pytest.raises(Busy, match="Nothing was changed"):
            record_generation(direct, organization_id=org, user_id=users[0], type="chat")
        elapsed = time.monotonic() - started
    assert elapsed <= short_budget + 1, f"gave up after {elapsed:.1f} s"
    assert snapshot(direct, org) == before


# --- a lock held too long, a server that is not there, a refusal ---------------------


def test_a_lock_held_longer_than_the_budget_gives_busy_in_about_ten_seconds(
    direct: Engine,
) -> None:
    org, _ = new_org(direct, balance=100)
    before = snapshot(direct, org)
    with row_locked(direct, org):
        started = time.monotonic()
        with pytest.raises(Busy, match="Nothing was changed"):
            adjust_credits(
                direct,
                organization_id=org,
                amount=5,
                reason="Blocked",
                actor="a@x.com",
                idempotency_key="locked-out",
            )
        elapsed = time.monotonic() - started
    assert 9 <= elapsed <= 13, f"gave up after {elapsed:.1f} s"
    assert snapshot(direct, org) == before


def test_an_unreachable_database_gives_database_unavailable_within_the_budget(
    short_budget: float,
) -> None:
    with socket.socket() as s:  # a port that nothing listens on once this is closed
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    engine = create_runtime_engine(f"postgresql://nobody@127.0.0.1:{port}/nothing")
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="Nothing was changed"):
            adjust_credits(
                engine,
                organization_id=1,
                amount=5,
                reason="r",
                actor="a@x.com",
                idempotency_key="k",
            )
        assert time.monotonic() - started < short_budget + 1
    finally:
        engine.dispose()


def test_no_free_pooled_connection_gives_database_unavailable(
    faults_url: str, short_budget: float
) -> None:
    engine = create_runtime_engine(faults_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        with engine.connect(), pytest.raises(DatabaseUnavailable):
            run_in_transaction(engine, lambda conn: conn.execute(text("SELECT 1")))
    finally:
        engine.dispose()


def test_any_other_database_error_is_a_refusal_that_changed_nothing(direct: Engine) -> None:
    org, _ = new_org(direct, balance=100)
    before = snapshot(direct, org)

    def body(conn: Connection) -> None:
        conn.execute(
            text("UPDATE credit_balances SET balance = balance + 1 WHERE organization_id = :o"),
            {"o": org},
        )
        conn.execute(text("SELECT 1 / 0"))

    with pytest.raises(DatabaseRefused, match=r"DivisionByZero\). Nothing was changed"):
        run_in_transaction(direct, body)
    assert snapshot(direct, org) == before


def test_a_conflict_retries_the_whole_transaction(direct: Engine) -> None:
    attempts = []

    def body(conn: Connection) -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise transactions.Retry
        return int(conn.execute(text("SELECT 7")).scalar_one())

    assert run_in_transaction(direct, body) == 7
    assert len(attempts) == 3


def test_the_budget_bounds_lock_and_statement_waits_for_this_transaction_only(
    direct: Engine,
) -> None:
    def body(conn: Connection) -> tuple[Any, ...]:
        return tuple(
            conn.execute(
                text("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")
            ).one()
        )

    lock_timeout, statement_timeout = run_in_transaction(direct, body)
    assert lock_timeout.endswith("ms") or lock_timeout.endswith("s")
    assert lock_timeout == statement_timeout and lock_timeout not in ("0", "0ms")
    with direct.connect() as conn:  # the next transaction on a connection is unbounded again
        settings = conn.execute(
            text("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")
        ).one()
    assert tuple(settings) == ("0", "0")


def test_a_refused_retry_after_a_lost_commit_answer_is_still_unknown(
    proxy: CommitCutProxy, proxied: Engine, direct: Engine
) -> None:
    org, _ = new_org(direct, balance=10)
    attempts = []

    def body(conn: Connection) -> None:
        attempts.append(1)
        if len(attempts) > 1:
            conn.execute(text("SELECT 1 / 0"))  # the retry is refused...
        conn.execute(
            text("UPDATE credit_balances SET balance = balance + 1 WHERE organization_id = :o"),
            {"o": org},
        )

    proxy.arm_cut_after_commit()
    # ...which says nothing about the first attempt, whose COMMIT was applied.
    with pytest.raises(OutcomeUnknown):
        run_in_transaction(proxied, body, idempotent=True)
    assert len(attempts) == 2
    assert snapshot(direct, org)["balance"] == 11
