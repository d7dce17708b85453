"""The pages' only way to the database: the cached engines and cached reads.

- :func:`engine` is the process's runtime engine (``DATABASE_URL``): every write, and
  the reads that guard a write. :func:`read_engine` is the replica's
  (``DATABASE_READ_URL``) when one is configured, else the same engine.
- Every read is a ``queries`` function made by one factory, :func:`_cached_read`: it
  takes the function's own keyword arguments (without the connection), is cached with
  ``st.cache_data`` keyed on those plain values (ids, dates, strings, tuples, cursors;
  never a connection), with a ``ttl`` that fits how fast the data moves and a
  ``max_entries`` bound, and reads from :func:`read_engine`.
- Read-your-writes: for :data:`READ_YOUR_WRITES` after a session's own write
  (:func:`wrote`), that session's reads go to the primary and skip the shared
  cache, so the page shows the change even while the replica has not replayed it yet.
  If the primary cannot be reached, the session goes back to the replica.
- Each cached result carries the time it was read and, from a replica, how far behind
  its primary it was; :func:`as_of` is the oldest time a page used in this run and
  :func:`replica_lag` the largest lag ("data as of HH:MM UTC (replica 2 s behind)").
- Invalidation is by scope, not global: each read depends on one organization's data,
  on the views across organizations, or on the directory (organizations, types). Each
  scope has a process-wide generation counter that is part of the read's cache key.
  :func:`wrote` (after a write) bumps the organization's counter and the
  cross-organization one, so every session reads those again while other
  organizations' reads stay cached; :func:`refresh` ("Refresh") bumps the scopes the
  session's page read in its last run, not every user's cache.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Concatenate, Final, Generic, Literal, ParamSpec, TypeVar

import pandas as pd
import psycopg
import streamlit as st
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from dashboard import bare
from queries import (
    allowances,
    approvals,
    audit,
    credits,
    forecast,
    generations,
    grants,
    ledger,
    limit_approvals,
    orgs,
    quotas,
    reconciliation,
    statements,
    timelines,
    usage,
)
from queries.db import get_engine, get_read_engine, get_write_engine, replication_lag
from queries.errors import DatabaseUnavailable, from_driver

T = TypeVar("T")
P = ParamSpec("P")

# How long a read may be served from the cache, by how fast it changes.
REFERENCE_TTL: Final = dt.timedelta(minutes=10)  # organizations, users, types
HISTORY_TTL: Final = dt.timedelta(minutes=5)  # timelines and rankings over days
LIVE_TTL: Final = dt.timedelta(minutes=1)  # today's quotas, balances, ledgers, recent rows
# How long after its own write a session reads from the primary. A healthy replica
# replays within a second; 30 s covers a slow one without the session watching its
# lag (which would cost a round trip per read).
READ_YOUR_WRITES: Final = dt.timedelta(seconds=30)
_AS_OF: Final = "data._as_of"
_LAG: Final = "data._lag"
_WROTE_AT: Final = "data._wrote_at"
_SCOPES: Final = "data._scopes"  # the scopes this session's last run read

# What a cached read depends on, so that a change invalidates only what it touched.
Scope = Literal["organization", "all", "directory"]
ORGANIZATION: Final = "organization"  # one organization's reads (its organization_id)
ALL: Final = "all"  # views across organizations: ranking, trend, quota lists, audit trail
DIRECTORY: Final = "directory"  # which organizations and generation types exist
ScopeKey = tuple[Scope, object]  # (ORGANIZATION, 12), (ALL, None), (DIRECTORY, None)

# Set while a read runs on the primary for read-your-writes (see _cached_read).
_ON_PRIMARY: contextvars.ContextVar[bool] = contextvars.ContextVar("on_primary", default=False)


@dataclass(frozen=True, slots=True)
class Fetched(Generic[T]):
    """A result, when it was read, and how far behind its primary the replica it came
    from was (None: read from the primary)."""

    value: T
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    lag: dt.timedelta | None = None


@st.cache_resource(show_spinner=False)
def engine() -> Engine:
    """The process-wide runtime engine (pooled, safe behind PgBouncer): the primary's
    reads (read-your-writes, or no replica)."""
    return get_engine()


@st.cache_resource(show_spinner=False)
def write_engine() -> Engine:
    """The primary's engine for writes: no pre-ping round trip, since the write itself
    retries on a dead connection (``queries.db.create_write_engine``)."""
    return get_write_engine()


@st.cache_resource(show_spinner=False)
def read_engine() -> Engine:
    """The engine for reads: the replica's, or :func:`engine` without one."""
    return get_read_engine()


def _has_replica() -> bool:
    return read_engine() is not engine()


class _Generations:
    """A counter per scope, shared by every session of the process (as the cache it keys
    is). It is part of each cached read's key: bumping a scope makes every session's
    next read of it miss and read again, while other scopes' entries stay. Entries of
    an old generation are never read again and age out by ``ttl`` and ``max_entries``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[ScopeKey, int] = {}

    def of(self, scope: ScopeKey) -> int:
        with self._lock:
            return self._counts.get(scope, 0)

    def bump(self, scopes: Iterable[ScopeKey]) -> None:
        with self._lock:
            for scope in scopes:
                self._counts[scope] = self._counts.get(scope, 0) + 1


_GENERATIONS: Final = _Generations()


def _read(
    query: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
) -> Fetched[T]:
    """``query`` on the engine this read goes to; a driver's error comes out as the
    typed error it means (``queries.errors.from_driver``: timed out, unreachable ...)."""
    source = engine() if _ON_PRIMARY.get() else read_engine()
    try:
        with source.connect() as conn:
            value = query(conn, *args, **kwargs)
            # One more statement, on a replica only: how old this answer may be.
            lag = replication_lag(conn) if source is not engine() else None
    except (SQLAlchemyError, psycopg.Error) as exc:
        error = from_driver(exc)
        if error is None:
            raise
        raise error from exc
    return Fetched(value, lag=lag)


def _reading_own_writes() -> bool:
    """Whether this session wrote recently enough that the replica may not show it."""
    wrote_at = st.session_state.get(_WROTE_AT)
    if not isinstance(wrote_at, dt.datetime) or not _has_replica():
        return False
    return dt.datetime.now(dt.UTC) - wrote_at < READ_YOUR_WRITES


@contextlib.contextmanager
def _on_primary() -> Iterator[None]:
    token = _ON_PRIMARY.set(True)
    try:
        yield
    finally:
        _ON_PRIMARY.reset(token)


def _seen(fetched: Fetched[T]) -> T:
    """Note when ``fetched`` was read and how far behind its replica was (the page
    shows the oldest time and the largest lag) and return its value."""
    oldest = st.session_state.get(_AS_OF)
    if not isinstance(oldest, dt.datetime) or fetched.at < oldest:
        st.session_state[_AS_OF] = fetched.at
    if fetched.lag is not None:
        lag = st.session_state.get(_LAG)
        if not isinstance(lag, dt.timedelta) or fetched.lag > lag:
            st.session_state[_LAG] = fetched.lag
    return fetched.value


def begin_run() -> None:
    """Start a page run: forget the previous run's "as of", lag and scopes read."""
    st.session_state[_AS_OF] = None
    st.session_state[_LAG] = None
    st.session_state[_SCOPES] = set()


def as_of() -> dt.datetime | None:
    """When the oldest data shown in this run was read (UTC), or None if none was."""
    value = st.session_state.get(_AS_OF)
    return value if isinstance(value, dt.datetime) else None


def replica_lag() -> dt.timedelta | None:
    """How far behind its primary the replica was, at most, for the data shown in this
    run; None if nothing shown came from a replica."""
    value = st.session_state.get(_LAG)
    return value if isinstance(value, dt.timedelta) else None


def _mark_write() -> None:
    """Note that this session just changed data: its next reads (for
    :data:`READ_YOUR_WRITES`) go to the primary, so the page shows the change."""
    st.session_state[_WROTE_AT] = dt.datetime.now(dt.UTC)


def wrote(*, organization_id: int, directory: bool = False) -> None:
    """After this session changed ``organization_id``'s data: every session reads that
    organization and the cross-organization views again (other organizations' reads
    stay cached), and this session reads from the primary for a while. ``directory``:
    the change shows in the organization picker too (a name or a time zone)."""
    scopes: list[ScopeKey] = [(ORGANIZATION, organization_id), (ALL, None)]
    if directory:
        scopes.append((DIRECTORY, None))
    _GENERATIONS.bump(scopes)
    _mark_write()


def wrote_plans() -> None:
    """After this session changed a plan's allowance (global, like the directory):
    every session reads the plans and their changes again; no organization's reads
    change."""
    _GENERATIONS.bump([(DIRECTORY, None)])
    _mark_write()


def refresh() -> None:
    """ "Refresh": read again what this session's page showed in its last run (its
    organization, the cross-organization views, the directory: whichever it read), for
    every session; other organizations' and views' cached reads stay."""
    seen = st.session_state.get(_SCOPES)
    _GENERATIONS.bump(seen if isinstance(seen, set) else ())


def _scope_key(scope: Scope, kwargs: dict[str, object]) -> ScopeKey:
    if scope == ORGANIZATION:
        # Every per-organization query names it organization_id (keyword-only).
        return (ORGANIZATION, kwargs["organization_id"])
    return (scope, None)


def _note_scope(key: ScopeKey) -> None:
    seen = st.session_state.get(_SCOPES)
    if not isinstance(seen, set):
        seen = st.session_state[_SCOPES] = set()
    seen.add(key)


def _cached_read(
    query: Callable[Concatenate[Connection, P], T],
    *,
    scope: Scope,
    ttl: dt.timedelta,
    max_entries: int,
) -> Callable[P, T]:
    """``query`` as a cached read with ``query``'s keyword arguments (no connection).

    The shared ``st.cache_data`` cache only ever holds answers from
    :func:`read_engine`, keyed on the arguments and the generation of the read's scope
    (:class:`_Generations`). In the read-your-writes window a session reads the primary
    and skips the cache entirely (neither reading nor filling it), so replica and
    primary answers never mix under one key and the window's extra load is the writer's
    own page runs for 30 s. Every answer is noted for "data as of" (:func:`_seen`) and
    its scope for :func:`refresh`.
    """

    def fetch(generation: int, /, *args: P.args, **kwargs: P.kwargs) -> Fetched[T]:
        # ``generation`` is only part of the cache key.
        return _read(query, *args, **kwargs)

    # st.cache_data names a cache by the function's module, qualified name and source:
    # every fetch made here has the same source, so each gets its query's name.
    fetch.__name__ = query.__name__
    fetch.__qualname__ = f"_cached_read.{query.__module__}.{query.__qualname__}"
    with bare.making_caches():  # without a server: no "No runtime found" per cache
        shared = st.cache_data(ttl=ttl, max_entries=max_entries, show_spinner=False)(fetch)

    def read(*args: P.args, **kwargs: P.kwargs) -> T:
        key = _scope_key(scope, kwargs)
        _note_scope(key)
        if _reading_own_writes():
            try:
                with _on_primary():
                    return _seen(fetch(0, *args, **kwargs))
            except DatabaseUnavailable:  # no connection, or none free in the pool in time
                # The primary is down: show the replica's numbers rather than an
                # error, and stop trying the primary for this session's next reads.
                st.session_state.pop(_WROTE_AT, None)
        return _seen(shared(_GENERATIONS.of(key), *args, **kwargs))

    read.__name__ = query.__name__
    read.__qualname__ = query.__qualname__
    read.__doc__ = query.__doc__
    return read


# Every cached read: a queries function, what it depends on, how long it may be served
# from the cache and how many answers are kept. Called with the function's own keyword
# arguments; see its docstring for what comes back.

# ---------------------------------------------------------------- the directory
any_organizations = _cached_read(
    orgs.any_organizations, scope=DIRECTORY, ttl=REFERENCE_TTL, max_entries=4
)
organization_search = _cached_read(
    orgs.search_organizations, scope=DIRECTORY, ttl=REFERENCE_TTL, max_entries=512
)
generation_types = _cached_read(
    orgs.list_generation_types, scope=DIRECTORY, ttl=REFERENCE_TTL, max_entries=4
)
plan_allowances = _cached_read(
    allowances.plan_allowances, scope=DIRECTORY, ttl=REFERENCE_TTL, max_entries=4
)
# The plans' history of changes moves with the plans (``wrote_plans``), not with any
# organization: read and invalidated with them, as live as the audit trail beside it.
plan_allowance_changes = _cached_read(
    audit.plan_allowance_changes_page, scope=DIRECTORY, ttl=LIVE_TTL, max_entries=64
)

# ------------------------------------------------------------- one organization
organization = _cached_read(
    orgs.get_organization, scope=ORGANIZATION, ttl=LIVE_TTL, max_entries=256
)
users = _cached_read(orgs.list_users, scope=ORGANIZATION, ttl=REFERENCE_TTL, max_entries=256)
period_kpis = _cached_read(
    timelines.period_kpis, scope=ORGANIZATION, ttl=HISTORY_TTL, max_entries=256
)
_organization_timeline = _cached_read(
    timelines.generation_timeline, scope=ORGANIZATION, ttl=HISTORY_TTL, max_entries=256
)
_user_timeline = _cached_read(
    timelines.user_timeline, scope=ORGANIZATION, ttl=HISTORY_TTL, max_entries=256
)
top_users = _cached_read(timelines.top_users, scope=ORGANIZATION, ttl=HISTORY_TTL, max_entries=256)
recent_generations = _cached_read(
    generations.recent_generations, scope=ORGANIZATION, ttl=LIVE_TTL, max_entries=512
)
granted_vs_consumed = _cached_read(
    usage.credits_granted_vs_consumed, scope=ORGANIZATION, ttl=HISTORY_TTL, max_entries=256
)
runway = _cached_read(usage.balance_and_runway, scope=ORGANIZATION, ttl=LIVE_TTL, max_entries=256)
ledger_page = _cached_read(usage.ledger_page, scope=ORGANIZATION, ttl=LIVE_TTL, max_entries=512)
ledger_entry = _cached_read(usage.ledger_entry, scope=ORGANIZATION, ttl=LIVE_TTL, max_entries=256)
# A past month can still change (a back-dated generation), so live, not history.
statement = _cached_read(
    statements.monthly_statement, scope=ORGANIZATION, ttl=LIVE_TTL, max_entries=256
)
quota_history = _cached_read(
    quotas.quota_history, scope=ORGANIZATION, ttl=LIVE_TTL, max_entries=256
)
limits_in_force = _cached_read(
    quotas.limits_in_force, scope=ORGANIZATION, ttl=LIVE_TTL, max_entries=256
)
credit_grants = _cached_read(
    grants.credit_grants, scope=ORGANIZATION, ttl=LIVE_TTL, max_entries=256
)

# ------------------------------------------------------- across organizations
usage_page = _cached_read(usage.all_orgs_usage_page, scope=ALL, ttl=HISTORY_TTL, max_entries=256)
all_organizations_timeline = _cached_read(
    timelines.all_organizations_timeline, scope=ALL, ttl=HISTORY_TTL, max_entries=64
)
monthly_credits = _cached_read(
    usage.all_orgs_monthly_credits, scope=ALL, ttl=HISTORY_TTL, max_entries=64
)
quota_alerts = _cached_read(quotas.all_orgs_quota_alerts, scope=ALL, ttl=LIVE_TTL, max_entries=8)
quota_page = _cached_read(
    quotas.all_orgs_quota_utilization_page, scope=ALL, ttl=LIVE_TTL, max_entries=256
)
quota_heatmap = _cached_read(quotas.all_orgs_quota_heatmap, scope=ALL, ttl=LIVE_TTL, max_entries=8)
pending_approvals = _cached_read(
    approvals.pending_requests_page, scope=ALL, ttl=LIVE_TTL, max_entries=256
)
pending_limit_requests = _cached_read(
    limit_approvals.pending_limit_requests, scope=ALL, ttl=LIVE_TTL, max_entries=64
)
most_alone_limits = _cached_read(
    limit_approvals.most_alone_limits, scope=ORGANIZATION, ttl=LIVE_TTL, max_entries=256
)
audit_page = _cached_read(audit.all_orgs_audit_page, scope=ALL, ttl=LIVE_TTL, max_entries=256)
expiring_grants = _cached_read(grants.expiring_grants, scope=ALL, ttl=LIVE_TTL, max_entries=16)
# Forecasts move with every generation, like today's quotas.
quota_forecast = _cached_read(forecast.quota_forecast, scope=ALL, ttl=LIVE_TTL, max_entries=8)
usage_spikes = _cached_read(forecast.usage_spikes, scope=ALL, ttl=LIVE_TTL, max_entries=8)
low_runway = _cached_read(forecast.low_runway, scope=ALL, ttl=LIVE_TTL, max_entries=64)
# What the last `dashboard reconcile` found: it changes once a night (the page shows its age).
last_reconciliation = _cached_read(reconciliation.last_run, scope=ALL, ttl=LIVE_TTL, max_entries=4)


def timeline_by_type(
    *,
    organization_id: int,
    start: dt.date,
    end: dt.date,
    granularity: str,
    utc: bool,
    user_id: int | None = None,
) -> pd.DataFrame:
    """The organization's (or one user's) timeline by type. Columns: bucket, type,
    generations, credits (every bucket and type present)."""
    if user_id is None:
        return _organization_timeline(
            organization_id=organization_id,
            start=start,
            end=end,
            granularity=granularity,
            utc=utc,
            by_type=True,
        )
    return _user_timeline(
        organization_id=organization_id,
        user_id=user_id,
        start=start,
        end=end,
        granularity=granularity,
        utc=utc,
        by_type=True,
    )


# ------------------------------------------------------- uncached, for downloads and writes


def ledger_all(
    organization_id: int,
    *,
    kinds: tuple[str, ...],
    actor: str,
    start: dt.date | None,
    end: dt.date | None,
    max_rows: int = 20_000,
    sort: usage.LedgerSort = "newest",
) -> pd.DataFrame:
    """Every entry matching the filters (for a download), up to ``max_rows``, in the
    order ``sort``: the keyset pages of :func:`ledger_page` one after the other,
    uncached."""
    pages: list[pd.DataFrame] = []
    cursor: usage.LedgerCursor | None = None
    rows = 0
    # Uncached, so read-your-writes is just the choice of engine.
    source = engine() if _reading_own_writes() else read_engine()
    with source.connect() as conn:
        while rows < max_rows:
            page = usage.ledger_page(
                conn,
                organization_id=organization_id,
                kinds=list(kinds) or None,
                actor=actor or None,
                start=start,
                end=end,
                limit=min(1000, max_rows - rows),
                after=cursor,
                sort=sort,
            )
            pages.append(page.entries)
            rows += len(page.entries)
            cursor = page.next_cursor
            if cursor is None:
                break
    return pd.concat(pages, ignore_index=True) if pages else pd.DataFrame()


def moved_alone(organization_id: int, *, actor: str) -> int:
    """The credits ``actor`` moved alone for this organization in the last 24 hours
    (``queries.ledger.moved_alone``). Never cached: it decides whether a form's
    adjustment needs a second person (the write checks it again under the lock)."""
    with engine().connect() as conn:
        moved = ledger.moved_alone(conn, organization_ids=[organization_id], actor=actor)
    return moved.get(organization_id, 0)


def recent_duplicate(
    organization_id: int, *, actor: str, amount: int
) -> credits.LedgerEntry | None:
    """The entry in which ``actor`` moved the same ``amount`` for this organization in
    the last 10 minutes (the newest), or None. Never cached: it guards a write."""
    with engine().connect() as conn:
        return credits.recent_duplicate(
            conn, organization_id=organization_id, actor=actor, amount=amount
        )
