"""The app runs behind a transaction-mode pooler (Neon, PgBouncer); migrations go direct."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from psycopg.errors import LockNotAvailable, QueryCanceled
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from queries.db import (
    create_direct_engine,
    create_read_engine,
    create_runtime_engine,
    create_write_engine,
)
from queries.errors import InsufficientCredits
from queries.generations import record_generation
from tests.conftest import PgServer, _recreate
from tests.faults import table_locked
from tests.pgbouncer import PGBOUNCER, pgbouncer
from tests.queries.rollups import mismatches
from tests.queries.writes import invariant_holds, new_org
from tooling import schema

DATABASE = "dashboard_test_pooled"
BOUNDED = "dashboard_test_pooled_reads"


@pytest.fixture(scope="module")
def pooled_engine(test_server: PgServer) -> Iterator[Engine]:
    from pathlib import Path

    if not Path(PGBOUNCER).exists():
        pytest.fail(
            "pgbouncer is not installed: .ci/run installs it (apt-get install -y pgbouncer)"
        )
    _recreate(test_server, DATABASE)
    # Migrations on the direct URL, as DIRECT_URL does in production.
    schema.upgrade(url=test_server.url(DATABASE))
    with pgbouncer(
        host=test_server.libpq_host,
        port=test_server.libpq_port,
        database=DATABASE,
        user=test_server.user,
        password=test_server.password,
        pool_size=2,
    ) as url:
        engine = create_runtime_engine(url, pool_size=6, max_overflow=0)
        yield engine
        engine.dispose()


def test_reads_and_writes_work_through_a_transaction_pooler(pooled_engine: Engine) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(15):
                # The same statements again and again, on 6 client connections sharing
                # 2 server connections: a prepared statement would break here.
                with pooled_engine.begin() as conn:
                    org = conn.execute(
                        text("INSERT INTO organizations (name, slug) VALUES (:n, :s) RETURNING id"),
                        {"n": f"Pooled {n}-{i}", "s": f"pooled-{n}-{i}"},
                    ).scalar_one()
                    conn.execute(
                        text(
                            "INSERT INTO credit_balances (organization_id, balance) VALUES (:o, 5)"
                        ),
                        {"o": org},
                    )
                with pooled_engine.connect() as conn:
                    total = conn.execute(
                        text("SELECT sum(balance) FROM credit_balances WHERE organization_id = :o"),
                        {"o": org},
                    ).scalar_one()
                    assert total == 5
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with pooled_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM organizations")).scalar_one() == 90
        # Proof that we went through PgBouncer: it answers SHOW on its admin console
        # only, so instead check that the server saw our connections from it.
        assert conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar_one() == 0


def test_generations_are_recorded_through_a_transaction_pooler(pooled_engine: Engine) -> None:
    # record_generation pipelines its lock and the call of record_generation_work
    # (migration 0016), whose plans each server connection caches: 6 client connections
    # on 2 server connections, each running the function many times, keyed or not.
    org, users = new_org(pooled_engine, balance=10_000, users=6)
    errors: list[BaseException] = []
    recorded: list[int] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                key = f"pooled-{n}-{i}" if i % 2 else None
                made = record_generation(
                    pooled_engine,
                    organization_id=org,
                    user_id=users[n],
                    type="chat",
                    idempotency_key=key,
                )
                recorded.append(made.id)
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(recorded)) == 60
    # A refusal through the pooler is the same sentence as direct.
    with pytest.raises(InsufficientCredits):
        record_generation(
            pooled_engine, organization_id=org, user_id=users[0], type="chat", credits=1_000_000
        )
    assert invariant_holds(pooled_engine, org)
    with pooled_engine.connect() as conn:
        assert set(mismatches(conn, organization_id=org).values()) == {0}


def test_reads_are_bounded_behind_the_pooler_and_their_timeouts_reach_no_other_transaction(
    test_server: PgServer,
) -> None:
    # One server connection behind PgBouncer: a read, then a write's transaction, run on
    # the same server session. The read's timeouts must be its own.
    _recreate(test_server, BOUNDED)
    schema.upgrade(url=test_server.url(BOUNDED))
    holder = create_direct_engine(test_server.url(BOUNDED))
    with holder.connect() as conn:
        defaults = conn.execute(
            text("SELECT current_setting('statement_timeout'), current_setting('lock_timeout')")
        ).one()
    with pgbouncer(
        host=test_server.libpq_host,
        port=test_server.libpq_port,
        database=BOUNDED,
        user=test_server.user,
        password=test_server.password,
        pool_size=1,
    ) as url:
        reads = create_read_engine(url, timeout=1.0)
        writes = create_write_engine(url)
        try:
            with reads.connect() as conn:
                assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "1s"
                backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with writes.begin() as conn:
                assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() == backend
                assert conn.execute(
                    text(
                        "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')"
                    )
                ).one() == tuple(defaults)
            # Behind a lock another connection holds, the pooled read gives up in time.
            with table_locked(holder, "organizations"):
                began = time.monotonic()
                with pytest.raises(OperationalError) as caught, reads.connect() as conn:
                    conn.execute(text("SELECT count(*) FROM organizations"))
                assert time.monotonic() - began < 3
            assert isinstance(caught.value.orig, QueryCanceled | LockNotAvailable)
        finally:
            reads.dispose()
            writes.dispose()
            holder.dispose()
