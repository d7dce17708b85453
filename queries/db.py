"""Connections: which URL to use, and the one engine per process.

- ``DATABASE_URL``: runtime queries. It may be a pooled URL (PgBouncer or Neon's pooler
  in transaction mode), so engines never rely on session state: no server-side prepared
  statements, no session-level ``SET``. Reads use ``pool_pre_ping`` to drop dead
  connections; writes have an engine of their own without it (``get_write_engine``):
  ``run_in_transaction`` retries a write whose pooled connection turns out dead, so
  the ping would only add a round trip to every write.
- ``DIRECT_URL``: migrations and bulk loads (COPY); falls back to ``DATABASE_URL``.
- ``DATABASE_READ_URL``, optional: a read replica (a Neon read replica or any PostgreSQL
  hot standby) for the dashboard's reads; without it, reads use ``DATABASE_URL``.
  Writes always go to ``DATABASE_URL``.
- ``RECONCILE_URL``, optional: the login of ``dashboard reconcile``, a member of
  ``dashboard_auditor`` (reads everything, writes only the reconciliation checkpoints);
  falls back to ``DIRECT_URL``. On the embedded database the command makes such a login.
- Neither set: a ``ConfigurationError`` that says so. The data layer never starts or
  invents a database; the command line (``cli.main``) starts the embedded one for
  development and hands its URLs to the app in these variables.

Reads are bounded in time as writes are (``queries.transactions``): every transaction on
the dashboard's read engines (``get_engine``, ``get_read_engine``) sets
``statement_timeout`` and ``lock_timeout`` to ``DASHBOARD_READ_TIMEOUT`` (15 s) for
itself only, so a read behind a lock is given up and the page says so, instead of
waiting in silence. ``set_config(..., true)`` lasts until the transaction ends: safe
behind a transaction pooler, where a session ``SET`` (or libpq's ``options``, which
PgBouncer refuses or drops) would reach another client's transaction.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from queries.checks import check_timezone
from queries.errors import InvalidInput

_SCHEMES = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgresql+psycopg2": "postgresql+psycopg",
}


class ConfigurationError(ValueError):
    """A database URL that cannot be used, with the reason in words."""


def normalize_url(url: str) -> str:
    """Return ``url`` with its scheme turned into SQLAlchemy's psycopg 3 dialect.

    ``postgres://`` (Heroku, Neon's console) and ``postgresql://`` both become
    ``postgresql+psycopg://``; the rest of the URL (credentials, host, query such as
    ``sslmode=require``) is kept as written.
    """
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep or not rest:
        raise ConfigurationError(f"not a database URL: {url!r} (expected postgresql://...)")
    target = _SCHEMES.get(scheme.lower())
    if target is None:
        raise ConfigurationError(
            f"unsupported database URL scheme {scheme!r}: use postgresql:// or postgres://"
        )
    normalized = f"{target}://{rest}"
    make_url(normalized)  # raises on a malformed URL now rather than at connect time
    return normalized


NOT_CONFIGURED = (
    "No database is configured: set DATABASE_URL (and DIRECT_URL, the owner, for "
    "migrations), or start the dashboard with `uv run dashboard`, which runs a local "
    "demo database."
)


@dataclass(frozen=True, slots=True)
class DatabaseUrls:
    """The URLs a process uses: ``runtime`` for queries and writes, ``direct`` for
    migrations, ``read`` (a replica, or None) for the dashboard's reads."""

    runtime: str
    direct: str
    read: str | None = None


def configured_urls(env: Mapping[str, str] | None = None) -> DatabaseUrls:
    """The runtime and direct URLs from ``env`` (default ``os.environ``).

    With ``DATABASE_URL`` set, it is the runtime URL and ``DIRECT_URL`` (or, failing
    that, ``DATABASE_URL``) the direct one. With only ``DIRECT_URL`` set, it serves both.
    With neither, ``ConfigurationError``: nothing is started or made up.
    ``DATABASE_READ_URL`` is optional and never stands in for the others: a replica
    cannot take writes or migrations.
    """
    env = os.environ if env is None else env
    runtime = env.get("DATABASE_URL", "").strip()
    direct = env.get("DIRECT_URL", "").strip()
    read = env.get("DATABASE_READ_URL", "").strip()
    if not (runtime or direct):
        raise ConfigurationError(NOT_CONFIGURED)
    runtime_url = normalize_url(runtime or direct)
    direct_url = normalize_url(direct) if direct else runtime_url
    return DatabaseUrls(runtime_url, direct_url, normalize_url(read) if read else None)


def reconcile_url(env: Mapping[str, str] | None = None) -> str | None:
    """``RECONCILE_URL`` from ``env`` (default ``os.environ``), normalized; None when it
    is not set (the caller falls back to the direct URL)."""
    env = os.environ if env is None else env
    url = env.get("RECONCILE_URL", "").strip()
    return normalize_url(url) if url else None


# Seconds to open a connection (libpq's minimum is 2) and to wait for a pooled one.
CONNECT_TIMEOUT_SECONDS = 3
POOL_TIMEOUT_SECONDS = 3


def create_runtime_engine(url: str, **kwargs: object) -> Engine:
    """An engine that is safe behind a transaction-mode pooler."""
    options: dict[str, object] = {
        "pool_pre_ping": True,
        "pool_size": 5,
        "max_overflow": 10,
        "pool_recycle": 300,
        # A write has about 10 s end to end (queries.transactions.BUDGET_SECONDS): a
        # wait for a free pooled connection or a new one must leave room for a retry.
        "pool_timeout": POOL_TIMEOUT_SECONDS,
        "connect_args": {
            # psycopg prepares a statement after 5 executions by default; a transaction
            # pooler hands the next transaction to another server connection, where that
            # prepared statement does not exist.
            "prepare_threshold": None,
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            # A peer that vanishes without closing the socket (a lost NAT entry, a
            # failed-over host) is noticed in about 10 s instead of the kernel's two
            # hours. libpq ignores these on Unix sockets.
            "keepalives": 1,
            "keepalives_idle": 4,
            "keepalives_interval": 2,
            "keepalives_count": 3,
        },
    }
    options.update(kwargs)
    return create_engine(normalize_url(url), **options)


def create_write_engine(url: str, **kwargs: object) -> Engine:
    """A runtime engine for writes through ``queries.transactions.run_in_transaction``:
    no pre-ping round trip before each transaction. A connection that died in the pool
    fails its first statement, before anything could change, and run_in_transaction
    runs the transaction again on a new one. Reads, which have no such retry, keep the
    pinging engine."""
    return create_runtime_engine(url, **{"pool_pre_ping": False, **kwargs})


# A read gives up after this many seconds (a lock held by a long change, a slow
# statement), and the page says so; DASHBOARD_READ_TIMEOUT sets another.
READ_TIMEOUT_SECONDS = 15.0
READ_TIMEOUT_RANGE = (0.1, 600.0)


def read_timeout_seconds(env: Mapping[str, str] | None = None) -> float:
    """How long a dashboard read may take: ``DASHBOARD_READ_TIMEOUT`` (seconds) from
    ``env`` (default ``os.environ``), else 15. Anything but a number in 0.1–600 is a
    ``ConfigurationError``: reads are never unbounded by a typo."""
    env = os.environ if env is None else env
    raw = env.get("DASHBOARD_READ_TIMEOUT", "").strip()
    if not raw:
        return READ_TIMEOUT_SECONDS
    low, high = READ_TIMEOUT_RANGE
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not low <= seconds <= high:  # (NaN fails too)
        raise ConfigurationError(
            f"DASHBOARD_READ_TIMEOUT must be a number of seconds from {low:g} to {high:g}, "
            f"not {raw!r}"
        )
    return seconds


# A daily limit above this many times the organization's plan limit for the type needs
# a second person (queries.quotas); LIMIT_APPROVAL_FACTOR sets another.
LIMIT_APPROVAL_FACTOR = Decimal(10)
LIMIT_APPROVAL_FACTOR_RANGE = (Decimal(1), Decimal(1000))


def limit_approval_factor(env: Mapping[str, str] | None = None) -> Decimal:
    """How many times the plan's daily limit one person may set alone:
    ``LIMIT_APPROVAL_FACTOR`` from ``env`` (default ``os.environ``), else 10. Anything but
    a plain number from 1 to 1000 (``2.5`` is one) is a ``ConfigurationError``: the
    two-person rule never falls back to a default because of a typo."""
    env = os.environ if env is None else env
    raw = env.get("LIMIT_APPROVAL_FACTOR", "").strip()
    if not raw:
        return LIMIT_APPROVAL_FACTOR
    low, high = LIMIT_APPROVAL_FACTOR_RANGE
    try:
        # Digits and one point only: no exponent, sign, underscore, NaN or Infinity.
        factor = Decimal(raw) if re.fullmatch(r"[0-9]+(\.[0-9]+)?", raw) else None
    except InvalidOperation:
        factor = None
    if factor is None or not low <= factor <= high:
        raise ConfigurationError(
            f"LIMIT_APPROVAL_FACTOR must be a number from {low} to {high} (times the plan's "
            f"daily limit), not {raw!r}"
        )
    return factor


# Pages and reads that span organizations count days in one zone, the company's, so
# that two people see the same totals for the same period whichever organization they
# selected; DASHBOARD_TIMEZONE names it.
COMPANY_TIMEZONE = "UTC"


def company_timezone(env: Mapping[str, str] | None = None) -> str:
    """The company zone: ``DASHBOARD_TIMEZONE`` (an IANA name) from ``env`` (default
    ``os.environ``), else UTC. A name Python does not know is a ``ConfigurationError``
    that says so: cross-organization totals never fall back to another zone silently."""
    env = os.environ if env is None else env
    raw = env.get("DASHBOARD_TIMEZONE", "").strip()
    if not raw:
        return COMPANY_TIMEZONE
    try:
        return check_timezone(raw)
    except InvalidInput:
        raise ConfigurationError(
            f"DASHBOARD_TIMEZONE must be an IANA time zone such as UTC or Europe/Berlin, "
            f"not {raw!r}"
        ) from None


# Both last until the end of the transaction (is_local true). Sent in one round trip
# with psycopg's own BEGIN (pipeline mode), so a read costs no extra round trip.
_READ_TIMEOUTS = (
    "SELECT set_config('statement_timeout', %(ms)s, true), set_config('lock_timeout', %(ms)s, true)"
)


def bound_reads(engine: Engine, seconds: float) -> None:
    """Give every transaction on ``engine`` a ``statement_timeout`` and ``lock_timeout``
    of ``seconds``, for that transaction only. A write run on it with
    ``queries.transactions.run_in_transaction`` sets its own budget after this, which
    wins; a read that must run longer sets its own (``SET LOCAL``), as reconciliation does."""
    milliseconds = str(max(1, round(seconds * 1000)))

    @event.listens_for(engine, "begin")
    def _bounded(conn: Connection) -> None:
        raw = conn.connection.driver_connection
        if not isinstance(raw, psycopg.Connection):  # pragma: no cover - the only driver
            raise TypeError("bounded reads need a psycopg connection")
        try:
            with raw.pipeline():
                raw.execute(_READ_TIMEOUTS, {"ms": milliseconds})
        except psycopg.Error as exc:
            # As if SQLAlchemy had run it (its one entry point for that, private): the
            # caller gets SQLAlchemy's error, and a dead connection is invalidated.
            conn._handle_dbapi_exception(exc, None, None, None, None)


def create_read_engine(url: str, *, timeout: float | None = None, **kwargs: object) -> Engine:
    """A runtime engine (pooler-safe, pre-ping) whose every transaction gives up after
    ``timeout`` seconds (default :func:`read_timeout_seconds`): the dashboard's reads."""
    seconds = read_timeout_seconds() if timeout is None else timeout
    engine = create_runtime_engine(url, **kwargs)
    bound_reads(engine, seconds)
    return engine


def create_direct_engine(url: str) -> Engine:
    """An engine for migrations and bulk loads: one short-lived connection at a time."""
    return create_engine(normalize_url(url), poolclass=NullPool)


_engine: Engine | None = None
_read_engine: Engine | None = None
_write_engine: Engine | None = None
_engine_lock = threading.Lock()


def get_engine() -> Engine:
    """The process-wide runtime engine, created on first use (never at import): the
    primary's reads, bounded by the read timeout (:func:`create_read_engine`)."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = create_read_engine(configured_urls().runtime)
    return _engine


def get_write_engine() -> Engine:
    """The process-wide engine for writes (``DATABASE_URL``, no pre-ping; see
    ``create_write_engine``), created on first use."""
    global _write_engine
    if _write_engine is None:
        with _engine_lock:
            if _write_engine is None:
                _write_engine = create_write_engine(configured_urls().runtime)
    return _write_engine


def get_read_engine() -> Engine:
    """The process-wide engine for reads: the replica's (``DATABASE_READ_URL``) when one
    is configured, else the runtime engine itself. Created on first use.

    A replica gets the runtime engine's options: Neon serves read replicas through the
    same transaction-mode pooler, so the same rules (no prepared statements, pre-ping,
    the read timeout) apply.
    """
    global _read_engine
    if _read_engine is None:
        read_url = configured_urls().read
        if read_url is None:
            return get_engine()
        with _engine_lock:
            if _read_engine is None:
                _read_engine = create_read_engine(read_url)
    return _read_engine


def dispose_engine() -> None:
    """Close the process-wide engines' connections (used at shutdown and in tests)."""
    global _engine, _read_engine, _write_engine
    with _engine_lock:
        for engine in (_engine, _read_engine, _write_engine):
            if engine is not None:
                engine.dispose()
        _engine = None
        _read_engine = None
        _write_engine = None


# On a hot standby: how far behind the primary its data is. NULL on a primary (nothing
# to be behind). When the standby has replayed all the WAL it received it is as current
# as it can know, so 0: otherwise an idle primary (no commits for an hour) would make an
# up-to-date replica look an hour behind. Else the age of the last replayed commit
# (NULL while it has replayed none since it started: it cannot tell).
_REPLICATION_LAG = text(
    """
    SELECT CASE
        WHEN NOT pg_is_in_recovery() THEN NULL
        WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
        WHEN pg_last_xact_replay_timestamp() IS NULL THEN NULL  -- nothing replayed yet
        ELSE greatest(
            0, extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())
        )
    END AS lag_seconds
    """
)


def replication_lag(conn: Connection) -> dt.timedelta | None:
    """How far the server behind ``conn`` lags its primary: None on a primary (or a
    standby that cannot tell yet), else a non-negative duration."""
    seconds = conn.execute(_REPLICATION_LAG).scalar_one()
    return None if seconds is None else dt.timedelta(seconds=float(seconds))


@dataclass(frozen=True, slots=True)
class LoginPower:
    """Who ``conn`` logs in as, and whether that login is a superuser or the owner of
    the schema's tables (or a member of the role that owns one)."""

    login: str
    superuser: bool
    owner: bool

    @property
    def too_powerful(self) -> bool:
        return self.superuser or self.owner


# One cheap read of the catalogs: pg_roles for the login, pg_class for the public
# schema's tables (a few dozen rows).
_LOGIN_POWER = text(
    """
    SELECT current_user AS login, r.rolsuper AS superuser,
           EXISTS (SELECT FROM pg_class c
                   WHERE c.relnamespace = CAST('public' AS regnamespace)
                     AND c.relkind IN ('r', 'p')
                     AND pg_has_role(current_user, c.relowner, 'MEMBER')) AS owner
    FROM pg_roles r
    WHERE r.rolname = current_user
    """
)


def login_power(conn: Connection) -> LoginPower:
    """Whether the login of ``conn`` is a superuser or owns the schema's tables: the
    app must run as a ``dashboard_app`` login, which is neither."""
    row = conn.execute(_LOGIN_POWER).one()
    return LoginPower(login=str(row.login), superuser=bool(row.superuser), owner=bool(row.owner))
