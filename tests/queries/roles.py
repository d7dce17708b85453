"""Login roles for the tests, each a member of one group role (migrations 0003, 0014) only.

Roles belong to the whole server, so the names carry the tests' ``dashboard_test``
prefix, and making one is idempotent (a second run, or a second database, finds it).
On a server that checks passwords (``TEST_DATABASE_URL`` with one), the login's
password is derived from the admin's, so it is stable from run to run and two test
sessions on one server do not change it under each other.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Engine

from queries.db import create_runtime_engine
from tests.conftest import PgServer
from tooling.embedded import ensure_login_role

APP_LOGIN = "dashboard_test_app_login"
READER_LOGIN = "dashboard_test_reader_login"
AUDITOR_LOGIN = "dashboard_test_auditor_login"
GROUP_OF = {
    APP_LOGIN: "dashboard_app",
    READER_LOGIN: "dashboard_reader",
    AUDITOR_LOGIN: "dashboard_auditor",
}


def password_for(server: PgServer, login: str) -> str | None:
    """None where the admin has no password (the embedded server trusts its socket)."""
    if server.password is None:
        return None
    return hashlib.sha256(f"{server.password}/{login}".encode()).hexdigest()


def login_url(server: PgServer, database: str, login: str) -> str:
    """The URL of ``database`` for ``login``, made a member of its group role only."""
    return ensure_login_role(
        server.url(database),
        login=login,
        member_of=GROUP_OF[login],
        password=password_for(server, login),
    )


def login_engine(server: PgServer, database: str, login: str, **options: object) -> Engine:
    """A runtime engine (as the app makes it) on ``database`` that logs in as ``login``."""
    return create_runtime_engine(login_url(server, database, login), **options)
