"""``from_driver``: each kind of driver error, produced for real against the server,
read as the one typed error the write path and the dashboard's reads both use."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import InvalidRequestError

from queries.db import create_runtime_engine
from queries.errors import (
    Busy,
    Cancelled,
    ConnectionLost,
    DatabaseRefused,
    DatabaseUnavailable,
    PermissionDenied,
    TimedOut,
    from_driver,
)

PROBE = "test_errors_probe"


def _raised(action: Callable[[], object]) -> BaseException:
    try:
        action()
    except Exception as exc:
        return exc
    raise AssertionError("nothing was raised")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


def _backend_pid(conn: Connection) -> int:
    return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


@pytest.fixture
def probe(engine: Engine) -> Iterator[None]:
    """A one-row table of this test's own, committed, dropped afterwards."""
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {PROBE}"))
        conn.execute(text(f"CREATE TABLE {PROBE} (id int PRIMARY KEY, n int NOT NULL)"))
        conn.execute(text(f"INSERT INTO {PROBE} VALUES (1, 0)"))
    yield
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {PROBE}"))


def test_a_statement_past_its_timeout_is_timed_out(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SET LOCAL statement_timeout = '50ms'"))
        error = from_driver(_raised(lambda: conn.execute(text("SELECT pg_sleep(5)"))))
    assert isinstance(error, TimedOut) and isinstance(error, Busy)


def test_a_lock_wait_past_the_lock_timeout_is_timed_out(engine: Engine) -> None:
    with engine.connect() as holder, engine.connect() as waiter:
        holder.execute(text("SELECT pg_advisory_xact_lock(4242)"))
        waiter.execute(text("SET LOCAL lock_timeout = '50ms'"))
        exc = _raised(lambda: waiter.execute(text("SELECT pg_advisory_xact_lock(4242)")))
    assert isinstance(exc.orig, psycopg.errors.LockNotAvailable)  # type: ignore[attr-defined]
    assert isinstance(from_driver(exc), TimedOut)


def test_a_statement_an_administrator_cancels_is_cancelled_not_timed_out(engine: Engine) -> None:
    with engine.connect() as victim, engine.connect() as admin:
        pid = _backend_pid(victim)

        def cancel_when_running() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                running = admin.execute(
                    text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid AND state = 'active'"),
                    {"pid": pid},
                ).first()
                # pg_stat_activity is read once per transaction: a poll in the same one
                # would see the victim idle for ever if the first came before its sleep.
                admin.rollback()
                if running:
                    admin.execute(text("SELECT pg_cancel_backend(:pid)"), {"pid": pid})
                    return
                time.sleep(0.02)

        canceller = threading.Thread(target=cancel_when_running)
        canceller.start()
        exc = _raised(lambda: victim.execute(text("SELECT pg_sleep(10)")))
        canceller.join()
    error = from_driver(exc)
    assert isinstance(error, Cancelled) and not isinstance(error, TimedOut)


def test_a_serialization_failure_is_busy(engine: Engine, probe: None) -> None:
    with engine.connect() as first:
        first.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        first.execute(text(f"SELECT n FROM {PROBE}"))  # its snapshot is taken here
        with engine.begin() as second:
            second.execute(text(f"UPDATE {PROBE} SET n = n + 1 WHERE id = 1"))
        exc = _raised(lambda: first.execute(text(f"UPDATE {PROBE} SET n = n + 1 WHERE id = 1")))
    assert isinstance(exc.orig, psycopg.errors.SerializationFailure)  # type: ignore[attr-defined]
    error = from_driver(exc)
    assert isinstance(error, Busy) and not isinstance(error, TimedOut)


@pytest.mark.parametrize(
    ("sqlstate", "kind"),
    [("40P01", Busy), ("53300", DatabaseUnavailable), ("57P01", ConnectionLost)],
)
def test_what_the_server_answers_with_a_sqlstate_is_read_by_its_class(
    engine: Engine, sqlstate: str, kind: type[Exception]
) -> None:
    """A deadlock, too many connections, an administrator's shutdown: the server's own
    error of that SQLSTATE (raised on purpose, as the real event is slow or disruptive)."""
    statement = text(f"DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '{sqlstate}'; END $$")
    with engine.connect() as conn:
        error = from_driver(_raised(lambda: conn.execute(statement)))
    assert type(error) is kind


def test_an_unreachable_server_is_a_lost_connection_through_sqlalchemy_or_psycopg() -> None:
    port = _closed_port()
    nowhere = create_runtime_engine(f"postgresql+psycopg://nobody@127.0.0.1:{port}/nowhere")
    try:
        assert isinstance(from_driver(_raised(nowhere.connect)), ConnectionLost)
    finally:
        nowhere.dispose()
    raw = _raised(lambda: psycopg.connect(f"host=127.0.0.1 port={port} connect_timeout=2"))
    assert isinstance(from_driver(raw), ConnectionLost)


def test_a_session_the_server_ended_is_a_lost_connection(engine: Engine) -> None:
    with engine.connect() as victim, engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": _backend_pid(victim)})
        admin.commit()
        exc = _raised(lambda: victim.execute(text("SELECT 1")))
    assert isinstance(from_driver(exc), ConnectionLost)


def test_no_connection_free_in_the_pool_is_a_lost_connection(test_database_url: str) -> None:
    small = create_runtime_engine(test_database_url, pool_size=1, max_overflow=0, pool_timeout=0.1)
    try:
        with small.connect():
            assert isinstance(from_driver(_raised(small.connect)), ConnectionLost)
    finally:
        small.dispose()


def test_permission_denied_is_its_own_refusal(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SET LOCAL ROLE dashboard_app"))
        exc = _raised(lambda: conn.execute(text("SELECT pg_read_file('postgresql.conf')")))
    error = from_driver(exc)
    assert isinstance(error, PermissionDenied) and error.kind == "InsufficientPrivilege"


def test_a_statement_no_retry_fixes_is_refused_and_named(engine: Engine) -> None:
    with engine.connect() as conn:
        error = from_driver(_raised(lambda: conn.execute(text("SELECT 1 / 0"))))
    assert type(error) is DatabaseRefused and error.kind == "DivisionByZero"
    assert "(DivisionByZero)" in str(error)


def test_what_is_no_driver_error_is_none(engine: Engine) -> None:
    assert from_driver(ValueError("no")) is None
    with engine.connect() as conn:
        result = conn.execute(text("SELECT 1"))
        result.close()
        assert from_driver(_raised(result.one)) is None  # a misuse, not the database
    assert from_driver(InvalidRequestError("misuse")) is None
