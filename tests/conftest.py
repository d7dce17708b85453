"""One real PostgreSQL per test session, migrated once with the project's migrations.

- ``TEST_DATABASE_URL`` set: that server is used (its role needs CREATEDB for the
  second, seeded database); otherwise the project's embedded server.
- ``engine``: the empty, migrated test database. ``connection`` wraps each test in a
  transaction that is rolled back, so tests never see each other's rows.
- ``demo_engine``: a second database loaded once with demo data, read-only for tests.
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url

from queries.db import (
    create_direct_engine,
    create_runtime_engine,
    create_write_engine,
    normalize_url,
)
from tooling import embedded, schema
from tooling.demo_data import seed_demo_data

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

TEST_DATABASE = "dashboard_test"
DEMO_DATABASE = "dashboard_test_demo"
# Fixed so the demo database is the same rows on every run.
DEMO_NOW = dt.datetime(2026, 11, 20, 15, 30, tzinfo=dt.UTC)
DEMO_GENERATIONS = 200_000


@dataclass(frozen=True)
class PgServer:
    """How the tests reach their PostgreSQL server."""

    base_url: str  # SQLAlchemy URL of the test database
    libpq_host: str  # host or socket directory (for pgbouncer, pgbench)
    libpq_port: int
    user: str
    password: str | None

    def url(self, database: str) -> str:
        return make_url(self.base_url).set(database=database).render_as_string(hide_password=False)

    def admin_conninfo(self) -> str:
        return (
            make_url(self.url("postgres"))
            .render_as_string(hide_password=False)
            .replace("postgresql+psycopg://", "postgresql://", 1)
        )


def _recreate(server: PgServer, database: str) -> None:
    with psycopg.connect(server.admin_conninfo(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def seeded_database(server: PgServer, database: str, **options: object) -> str:
    """Recreate ``database``, migrate it, load demo data (``seed_demo_data`` options)
    and commit; returns its URL."""
    _recreate(server, database)
    url = server.url(database)
    schema.upgrade(url=url)
    direct = create_direct_engine(url)
    try:
        with direct.connect() as conn:
            seed_demo_data(conn, **options)  # type: ignore[arg-type]
            conn.commit()
    finally:
        direct.dispose()
    return url


@pytest.fixture(scope="session")
def test_server() -> PgServer:
    configured = os.environ.get("TEST_DATABASE_URL", "").strip()
    if configured:
        url = make_url(normalize_url(configured))
        return PgServer(
            base_url=url.render_as_string(hide_password=False),
            libpq_host=url.host or "localhost",
            libpq_port=url.port or 5432,
            user=url.username or "postgres",
            password=url.password,
        )
    server = embedded.ensure_running()
    return PgServer(
        base_url=server.url(TEST_DATABASE),
        libpq_host=str(server.socket_dir),
        libpq_port=server.port,
        user=embedded.SUPERUSER,
        password=None,
    )


@pytest.fixture(scope="session")
def test_database_url(test_server: PgServer) -> str:
    """The migrated, empty test database."""
    _recreate(test_server, TEST_DATABASE)
    url = test_server.url(TEST_DATABASE)
    schema.upgrade(url=url)
    return url


@pytest.fixture(scope="session")
def engine(test_database_url: str) -> Iterator[Engine]:
    engine = create_runtime_engine(test_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that is rolled back after the test."""
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            yield conn
        finally:
            trans.rollback()


@pytest.fixture(scope="session")
def demo_engine(test_server: PgServer) -> Iterator[Engine]:
    """A database with demo data (200,000 generations), loaded once per session."""
    url = seeded_database(
        test_server,
        DEMO_DATABASE,
        organizations=30,
        generations=DEMO_GENERATIONS,
        days=90,
        seed=7,
        now=DEMO_NOW,
    )
    engine = create_runtime_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def write_engine(test_server: PgServer) -> Iterator[Engine]:
    """A migrated database for tests of writes that commit (each owns its transaction).

    Tests create their own organizations in it, so they never see each other's rows.
    """
    _recreate(test_server, WRITE_DATABASE)
    url = test_server.url(WRITE_DATABASE)
    schema.upgrade(url=url)
    # The write path's own engine (no pre-ping), as the dashboard's writes use.
    engine = create_write_engine(url, pool_size=10, max_overflow=10)
    yield engine
    engine.dispose()


WRITE_DATABASE = "dashboard_test_writes"
