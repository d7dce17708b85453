"""Which database the project talks to, and how its engines behave."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time

import pytest
from psycopg.errors import LockNotAvailable, QueryCanceled
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from queries import db
from queries.db import ConfigurationError, configured_urls, normalize_url
from queries.transactions import BUDGET_SECONDS
from tests.faults import table_locked


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@host/db", "postgresql+psycopg://u:p@host/db"),
        (
            "postgresql://u:p@host:6543/db?sslmode=require",
            "postgresql+psycopg://u:p@host:6543/db?sslmode=require",
        ),
        ("postgresql+psycopg2://u@host/db", "postgresql+psycopg://u@host/db"),
        ("postgresql+psycopg://u@host/db", "postgresql+psycopg://u@host/db"),
        ("  POSTGRES://u@host/db\n", "postgresql+psycopg://u@host/db"),
    ],
)
def test_normalize_url_turns_every_postgres_scheme_into_psycopg3(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


@pytest.mark.parametrize("bad", ["mysql://u@host/db", "host=localhost dbname=x", "", "postgres://"])
def test_normalize_url_refuses_what_is_not_a_postgres_url(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        normalize_url(bad)


def test_database_url_is_runtime_and_direct_url_is_for_migrations() -> None:
    urls = configured_urls(
        {
            "DATABASE_URL": "postgres://app@pooler.example:6543/main",
            "DIRECT_URL": "postgres://app@direct.example:5432/main",
        }
    )
    assert urls.runtime == "postgresql+psycopg://app@pooler.example:6543/main"
    assert urls.direct == "postgresql+psycopg://app@direct.example:5432/main"


def test_direct_url_falls_back_to_database_url() -> None:
    urls = configured_urls({"DATABASE_URL": "postgresql://app@db.example/main"})
    assert urls.direct == urls.runtime == "postgresql+psycopg://app@db.example/main"


def test_direct_url_alone_serves_both() -> None:
    urls = configured_urls({"DIRECT_URL": "postgresql://app@db.example/main"})
    assert urls.runtime == urls.direct == "postgresql+psycopg://app@db.example/main"


def test_without_urls_the_data_layer_refuses_rather_than_starting_a_server() -> None:
    with pytest.raises(ConfigurationError, match="No database is configured"):
        configured_urls({})


def test_runtime_engine_is_safe_behind_a_transaction_pooler(engine: Engine) -> None:
    assert engine.pool._pre_ping
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        # No server-side prepared statements, however often a query runs.
        assert raw.prepare_threshold is None  # type: ignore[union-attr]
        for _ in range(10):
            conn.execute(text("SELECT 1"))
        prepared = conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar_one()
        assert prepared == 0


def test_runtime_engine_waits_for_a_connection_within_the_write_budget(engine: Engine) -> None:
    # A write has BUDGET_SECONDS end to end; neither wait may eat it in one go.
    assert engine.pool.timeout() <= BUDGET_SECONDS / 3  # type: ignore[attr-defined]
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        parameters = raw.info.get_parameters()  # type: ignore[union-attr]
    assert 2 <= int(parameters["connect_timeout"]) <= BUDGET_SECONDS / 3


def test_importing_the_data_layer_connects_to_nothing() -> None:
    # A fresh interpreter: importing every queries module must not create the engine
    # or start a server (no work at import time).
    code = (
        "import importlib, pkgutil, queries, queries.db as db\n"
        "for m in pkgutil.iter_modules(queries.__path__): importlib.import_module('queries.' + m.name)\n"
        "assert db._engine is None and db._read_engine is None and db._write_engine is None\n"
        "import sys; assert 'streamlit' not in sys.modules, 'queries imported streamlit'\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env={"DATABASE_URL": "postgresql://nowhere.invalid/x"},
    )


def test_get_engine_is_one_engine_per_process(
    monkeypatch: pytest.MonkeyPatch, test_database_url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", test_database_url)
    db.dispose_engine()
    try:
        first = db.get_engine()
        assert db.get_engine() is first
        with first.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        db.dispose_engine()


def test_database_read_url_is_optional_and_normalized_like_the_others() -> None:
    assert configured_urls({"DATABASE_URL": "postgres://app@db.example/main"}).read is None
    urls = configured_urls(
        {
            "DATABASE_URL": "postgres://app@pooler.example:6543/main",
            "DATABASE_READ_URL": " postgres://app@replica.example:6543/main?sslmode=require ",
        }
    )
    assert urls.read == "postgresql+psycopg://app@replica.example:6543/main?sslmode=require"
    # A replica takes neither writes nor migrations: it never stands in for the others.
    with pytest.raises(ConfigurationError, match="No database is configured"):
        configured_urls({"DATABASE_READ_URL": "postgres://app@replica.example/main"})
    with pytest.raises(ConfigurationError):
        configured_urls({"DATABASE_URL": "postgres://a@b/c", "DATABASE_READ_URL": "mysql://x@y/z"})


def test_read_engine_is_the_runtime_engine_without_a_replica(
    monkeypatch: pytest.MonkeyPatch, test_database_url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", test_database_url)
    monkeypatch.delenv("DATABASE_READ_URL", raising=False)
    db.dispose_engine()
    try:
        assert db.get_read_engine() is db.get_engine()
    finally:
        db.dispose_engine()


def test_read_engine_is_its_own_pooler_safe_engine_with_a_replica(
    monkeypatch: pytest.MonkeyPatch, test_database_url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", test_database_url)
    monkeypatch.setenv("DATABASE_READ_URL", test_database_url)
    db.dispose_engine()
    try:
        read = db.get_read_engine()
        assert read is db.get_read_engine()
        assert read is not db.get_engine()
        assert read.pool._pre_ping
        with read.connect() as conn:
            assert conn.connection.driver_connection.prepare_threshold is None  # type: ignore[union-attr]
    finally:
        db.dispose_engine()


def test_the_write_engine_is_one_pooler_safe_engine_without_a_pre_ping(
    monkeypatch: pytest.MonkeyPatch, test_database_url: str
) -> None:
    # Writes retry on a dead pooled connection themselves (run_in_transaction), so a
    # ping before each would only cost a round trip.
    monkeypatch.setenv("DATABASE_URL", test_database_url)
    db.dispose_engine()
    try:
        write = db.get_write_engine()
        assert write is db.get_write_engine()
        assert write is not db.get_engine()
        assert not write.pool._pre_ping
        assert write.url == db.get_engine().url
        assert write.pool.timeout() <= BUDGET_SECONDS / 3  # type: ignore[attr-defined]
        with write.connect() as conn:
            assert conn.connection.driver_connection.prepare_threshold is None  # type: ignore[union-attr]
    finally:
        db.dispose_engine()


# ------------------------------------------------------------------ bounded reads


@pytest.mark.parametrize(
    ("env", "seconds"),
    [
        ({}, 15.0),
        ({"DASHBOARD_READ_TIMEOUT": " 2.5 "}, 2.5),
        ({"DASHBOARD_READ_TIMEOUT": ""}, 15.0),
    ],
)
def test_the_read_timeout_is_15_s_unless_configured(env: dict[str, str], seconds: float) -> None:
    assert db.read_timeout_seconds(env) == seconds


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "nan", "inf", "601", "1e9"])
def test_a_read_timeout_that_is_not_a_bound_is_refused(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="DASHBOARD_READ_TIMEOUT must be a number"):
        db.read_timeout_seconds({"DASHBOARD_READ_TIMEOUT": raw})


def test_a_read_behind_a_lock_gives_up_within_the_read_timeout_and_says_so(
    test_database_url: str,
) -> None:
    reads = db.create_read_engine(test_database_url, timeout=1.0)
    holder = db.create_direct_engine(test_database_url)
    try:
        with table_locked(holder, "organizations"):
            began = time.monotonic()
            with pytest.raises(OperationalError) as caught, reads.connect() as conn:
                conn.execute(text("SELECT count(*) FROM organizations")).scalar_one()
            waited = time.monotonic() - began
        assert 0.9 <= waited < 3, waited
        assert isinstance(caught.value.orig, QueryCanceled | LockNotAvailable)
        # Once the lock is gone, the same engine reads again.
        with reads.connect() as conn:
            assert conn.execute(text("SELECT count(*) >= 0 FROM organizations")).scalar_one()
    finally:
        reads.dispose()
        holder.dispose()


def test_read_timeouts_are_the_transactions_own(test_database_url: str) -> None:
    reads = db.create_read_engine(test_database_url, timeout=1.5)
    try:
        with reads.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "1500ms"
            assert conn.execute(text("SHOW lock_timeout")).scalar_one() == "1500ms"
            conn.rollback()
            # The next transaction on the same connection sets them again: still bounded.
            assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "1500ms"
            raw = conn.connection.driver_connection
            conn.rollback()
            # Outside a transaction the session's own settings were never changed.
            assert raw is not None
            raw.autocommit = True
            try:
                session = raw.execute("SHOW statement_timeout").fetchone()
            finally:
                raw.autocommit = False
        plain = db.create_direct_engine(test_database_url)
        try:
            with plain.connect() as conn:
                assert session == (conn.execute(text("SHOW statement_timeout")).scalar_one(),)
        finally:
            plain.dispose()
    finally:
        reads.dispose()


def test_a_connection_lost_before_a_read_is_an_sqlalchemy_error_the_pages_can_describe(
    test_database_url: str,
) -> None:
    # No pre-ping, so the dead pooled connection reaches the read timeouts' BEGIN.
    reads = db.create_read_engine(test_database_url, timeout=5, pool_pre_ping=False)
    killer = db.create_direct_engine(test_database_url)
    try:
        with reads.connect() as conn:
            backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with killer.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        with pytest.raises(OperationalError) as caught, reads.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert caught.value.connection_invalidated
        with reads.connect() as conn:  # and the next read gets a new connection
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        reads.dispose()
        killer.dispose()


def test_the_database_and_the_app_read_the_same_clock(engine: Engine) -> None:
    """Reads default to the database's now() and pages to the app's: they must agree. Under
    scripts/test_at.sh this is what shows the server runs under the run's fake clock (one
    started at the real time would be weeks apart) and that its timeouts can fire."""
    with engine.connect() as conn:
        before = dt.datetime.now(dt.UTC)
        database = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        after = dt.datetime.now(dt.UTC)
        assert before - dt.timedelta(seconds=5) <= database <= after + dt.timedelta(seconds=5)
        conn.execute(text("SET LOCAL statement_timeout = '200ms'"))  # this transaction only
        started = time.monotonic()
        with pytest.raises(OperationalError, match="statement timeout"):
            conn.execute(text("SELECT pg_sleep(5)"))
        assert time.monotonic() - started < 3
