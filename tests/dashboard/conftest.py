"""Fixtures for the dashboard's AppTest tests.

Databases (all on the session's test server):

- ``demo_engine`` (tests/conftest.py): 30 organizations, 200,000 generations ending at
  DEMO_NOW (2026-11-20 15:30 UTC), read-only. Tests pass a custom date range around it.
- ``dashboard_test_ui_tpl``: a small demo load ending *now* (so "today" has quota use),
  made once per session and only ever used as a template.
- ``today_url``: a read-only copy of the template, for pages about today.
- ``fresh_url``: a new copy of the template for each test that writes; those tests
  assert on rows with SQL.

The app reads ``DATABASE_URL``; :func:`use_database` points it at a database and resets
the engine and Streamlit's caches, so no test sees another test's data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine

from queries.db import create_direct_engine
from tests.conftest import PgServer, _recreate, seeded_database
from tests.dashboard.apptest import reset_app_state
from tooling import schema

TEMPLATE = "dashboard_test_ui_tpl"
TODAY = "dashboard_test_ui_today"
FRESH = "dashboard_test_ui_fresh"
EMPTY = "dashboard_test_ui_empty"
IDENTITY_ENV = (
    "DASHBOARD_USER",
    "DASHBOARD_ROLE",
    "DASHBOARD_ROLES",
    "DIRECT_URL",
    "DATABASE_READ_URL",
)


def _copy(server: PgServer, template: str, database: str) -> str:
    with psycopg.connect(server.admin_conninfo(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(database), sql.Identifier(template)
            )
        )
    return server.url(database)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No identity or database from the developer's shell leaks into a test."""
    for name in IDENTITY_ENV:
        monkeypatch.delenv(name, raising=False)
    reset_app_state()
    yield
    reset_app_state()


@pytest.fixture
def use_database(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    def use(url: str) -> None:
        monkeypatch.setenv("DATABASE_URL", url)
        reset_app_state()

    return use


@pytest.fixture(scope="session")
def template_database(test_server: PgServer) -> str:
    """A small demo load ending now: 8 organizations, 5,000 generations over 30 days."""
    seeded_database(test_server, TEMPLATE, organizations=8, generations=5000, days=30, seed=1)
    return TEMPLATE


@pytest.fixture(scope="session")
def today_url(test_server: PgServer, template_database: str) -> str:
    """Read-only: the small load ending now."""
    return _copy(test_server, template_database, TODAY)


@pytest.fixture
def fresh_url(test_server: PgServer, template_database: str) -> str:
    """A copy of the small load for one test that writes."""
    return _copy(test_server, template_database, FRESH)


@pytest.fixture
def fresh_engine(fresh_url: str) -> Iterator[Engine]:
    """The test's own connection to ``fresh_url``, for asserting on rows."""
    engine = create_direct_engine(fresh_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def empty_url(test_server: PgServer) -> str:
    """Migrated, no organizations."""
    _recreate(test_server, EMPTY)
    url = test_server.url(EMPTY)
    schema.upgrade(url=url)
    return url


@pytest.fixture
def demo_url(demo_engine: Engine) -> str:
    return demo_engine.url.render_as_string(hide_password=False)
