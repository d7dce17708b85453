"""The pages' only way to the database: the cached engines and cached reads.

- :func:`engine` is the process's runtime engine (``DATABASE_URL``): every write, and
  the reads that guard a write. :func:`read_engine` is the replica's
  (``DATABASE_READ_URL``) when one is configured, else the same engine.
- Every read is a thin wrapper around a ``queries`` function, cached with
  ``st.cache_data`` (via :func:`_cached`) keyed on plain values (ids, dates, strings,
  tuples; never a connection), with a ``ttl`` that fits how fast the data moves and a
  ``max_entries`` bound. Cached reads come from :func:`read_engine`.
- Read-your-writes: for :data:`READ_YOUR_WRITES` after a session's own write
  (:func:`mark_write`), that session's reads go to the primary and skip the shared
  cache, so the page shows the change even while the replica has not replayed it yet.
  If the primary cannot be reached, the session goes back to the replica.
- Each cached result carries the time it was read and, from a replica, how far behind
  its primary it was; :func:`as_of` is the oldest time a page used in this run and
  :func:`replica_lag` the largest lag ("data as of HH:MM UTC (replica 2 s behind)").
- :func:`clear` empties every cache: after each write and on "Refresh".
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final, Generic, ParamSpec, TypeVar

import pandas as pd
import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from queries import audit, credits, generations, orgs, quotas, timelines, usage
from queries.db import get_engine, get_read_engine, get_write_engine, replication_lag

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

# Set while a read runs on the primary for read-your-writes (see _cached).
_ON_PRIMARY: contextvars.ContextVar[bool] = contextvars.ContextVar("on_primary", default=False)
# A primary that cannot be reached: no connection, or none free in the pool in time.
_UNREACHABLE: Final = (OperationalError, PoolTimeout)


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


def _read(fn: Callable[..., T], /, **kwargs: object) -> Fetched[T]:
    source = engine() if _ON_PRIMARY.get() else read_engine()
    with source.connect() as conn:
        value = fn(conn, **kwargs)
        # One more statement, on a replica only: how old this answer may be.
        lag = replication_lag(conn) if source is not engine() else None
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


def _cached(
    *, ttl: dt.timedelta, max_entries: int
) -> Callable[[Callable[P, Fetched[T]]], Callable[P, Fetched[T]]]:
    """``st.cache_data`` for a read, plus read-your-writes.

    The shared cache only ever holds answers from :func:`read_engine`. In the
    read-your-writes window a session reads the primary and skips the cache entirely
    (neither reading nor filling it), so replica and primary answers never mix under one
    key and the window's extra load is the writer's own page runs for 30 s.
    """

    def decorate(fn: Callable[P, Fetched[T]]) -> Callable[P, Fetched[T]]:
        shared = st.cache_data(ttl=ttl, max_entries=max_entries, show_spinner=False)(fn)

        @functools.wraps(fn)
        def read(*args: P.args, **kwargs: P.kwargs) -> Fetched[T]:
            if _reading_own_writes():
                try:
                    with _on_primary():
                        return fn(*args, **kwargs)
                except _UNREACHABLE:
                    # The primary is down: show the replica's numbers rather than an
                    # error, and stop trying the primary for this session's next reads.
                    st.session_state.pop(_WROTE_AT, None)
            return shared(*args, **kwargs)

        return read

    return decorate


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
    """Start a page run: forget the previous run's "as of" and lag."""
    st.session_state[_AS_OF] = None
    st.session_state[_LAG] = None


def as_of() -> dt.datetime | None:
    """When the oldest data shown in this run was read (UTC), or None if none was."""
    value = st.session_state.get(_AS_OF)
    return value if isinstance(value, dt.datetime) else None


def replica_lag() -> dt.timedelta | None:
    """How far behind its primary the replica was, at most, for the data shown in this
    run; None if nothing shown came from a replica."""
    value = st.session_state.get(_LAG)
    return value if isinstance(value, dt.timedelta) else None


def mark_write() -> None:
    """Note that this session just changed data: its next reads (for
    :data:`READ_YOUR_WRITES`) go to the primary, so the page shows the change."""
    st.session_state[_WROTE_AT] = dt.datetime.now(dt.UTC)


def clear() -> None:
    """Forget every cached read (after a write, or when the user asks to refresh)."""
    st.cache_data.clear()


# ------------------------------------------------------------------ organizations


@_cached(ttl=REFERENCE_TTL, max_entries=4)
def _organizations() -> Fetched[pd.DataFrame]:
    return _read(orgs.list_organizations)


def organizations() -> pd.DataFrame:
    """Columns: id, name, slug, plan, timezone."""
    return _seen(_organizations())


@_cached(ttl=REFERENCE_TTL, max_entries=4)
def _any_organizations() -> Fetched[bool]:
    return _read(orgs.any_organizations)


def any_organizations() -> bool:
    """Whether there is at least one organization (the app's start needs no list)."""
    return _seen(_any_organizations())


@_cached(ttl=REFERENCE_TTL, max_entries=512)
def _organization_search(query: str, limit: int) -> Fetched[orgs.OrganizationPage]:
    return _read(orgs.search_organizations, query=query or None, limit=limit)


def organization_search(query: str, *, limit: int = 50) -> orgs.OrganizationPage:
    """The first page of organizations whose name or slug contains ``query``, with the
    exact id or slug match (``queries.orgs.search_organizations``)."""
    return _seen(_organization_search(query.strip(), limit))


@_cached(ttl=LIVE_TTL, max_entries=256)
def _organization(organization_id: int) -> Fetched[orgs.OrganizationInfo | None]:
    return _read(orgs.get_organization, organization_id=organization_id)


def organization(organization_id: int) -> orgs.OrganizationInfo | None:
    return _seen(_organization(organization_id))


@_cached(ttl=REFERENCE_TTL, max_entries=256)
def _users(organization_id: int) -> Fetched[pd.DataFrame]:
    return _read(orgs.list_users, organization_id=organization_id)


def users(organization_id: int) -> pd.DataFrame:
    """Columns: id, name, email, created_at."""
    return _seen(_users(organization_id))


@_cached(ttl=REFERENCE_TTL, max_entries=4)
def _generation_types() -> Fetched[pd.DataFrame]:
    return _read(orgs.list_generation_types)


def generation_types() -> pd.DataFrame:
    """Columns: type, label, default_credits, default_daily_limit."""
    return _seen(_generation_types())


# ---------------------------------------------------------------------- timelines


@_cached(ttl=HISTORY_TTL, max_entries=256)
def _period_kpis(
    organization_id: int, start: dt.date, end: dt.date, utc: bool
) -> Fetched[timelines.PeriodKpis]:
    return _read(
        timelines.period_kpis, organization_id=organization_id, start=start, end=end, utc=utc
    )


def period_kpis(
    organization_id: int, start: dt.date, end: dt.date, *, utc: bool
) -> timelines.PeriodKpis:
    return _seen(_period_kpis(organization_id, start, end, utc))


@_cached(ttl=HISTORY_TTL, max_entries=256)
def _timeline(
    organization_id: int,
    user_id: int | None,
    start: dt.date,
    end: dt.date,
    granularity: str,
    utc: bool,
) -> Fetched[pd.DataFrame]:
    if user_id is None:
        return _read(
            timelines.generation_timeline,
            organization_id=organization_id,
            start=start,
            end=end,
            granularity=granularity,
            utc=utc,
            by_type=True,
        )
    return _read(
        timelines.user_timeline,
        organization_id=organization_id,
        user_id=user_id,
        start=start,
        end=end,
        granularity=granularity,
        utc=utc,
        by_type=True,
    )


def timeline_by_type(
    organization_id: int,
    start: dt.date,
    end: dt.date,
    *,
    granularity: str,
    utc: bool,
    user_id: int | None = None,
) -> pd.DataFrame:
    """Columns: bucket, type, generations, credits (every bucket and type present)."""
    return _seen(_timeline(organization_id, user_id, start, end, granularity, utc))


@_cached(ttl=HISTORY_TTL, max_entries=256)
def _top_users(
    organization_id: int, start: dt.date, end: dt.date, limit: int, utc: bool
) -> Fetched[pd.DataFrame]:
    return _read(
        timelines.top_users,
        organization_id=organization_id,
        start=start,
        end=end,
        limit=limit,
        utc=utc,
    )


def top_users(
    organization_id: int, start: dt.date, end: dt.date, *, limit: int, utc: bool
) -> pd.DataFrame:
    """Columns: user_id, name, email, generations, credits, credit_share."""
    return _seen(_top_users(organization_id, start, end, limit, utc))


@_cached(ttl=LIVE_TTL, max_entries=512)
def _recent_generations(
    organization_id: int,
    user_id: int | None,
    limit: int,
    before: tuple[dt.datetime, int] | None,
) -> Fetched[generations.GenerationPage]:
    cursor = generations.GenerationCursor(*before) if before else None
    return _read(
        generations.recent_generations,
        organization_id=organization_id,
        user_id=user_id,
        limit=limit,
        before=cursor,
    )


def recent_generations(
    organization_id: int,
    *,
    user_id: int | None,
    limit: int,
    before: tuple[dt.datetime, int] | None,
) -> generations.GenerationPage:
    """Newest first; ``before`` is the (created_at, id) keyset cursor of an older page."""
    return _seen(_recent_generations(organization_id, user_id, limit, before))


# -------------------------------------------------------------------------- usage


@_cached(ttl=HISTORY_TTL, max_entries=64)
def _all_orgs_usage(start: dt.date, end: dt.date) -> Fetched[pd.DataFrame]:
    return _read(usage.all_orgs_usage, start=start, end=end)


def all_orgs_usage(start: dt.date, end: dt.date) -> pd.DataFrame:
    """Columns: rank, organization_id, name, slug, plan, generations, credits_consumed,
    credits_granted, credits_deducted, balance, share."""
    return _seen(_all_orgs_usage(start, end))


@_cached(ttl=HISTORY_TTL, max_entries=256)
def _usage_page(
    start: dt.date,
    end: dt.date,
    plans: tuple[str, ...],
    search: str,
    limit: int,
    after: tuple[int, str, int] | None,
) -> Fetched[usage.UsagePage]:
    return _read(
        usage.all_orgs_usage_page,
        start=start,
        end=end,
        plans=plans,
        search=search or None,
        limit=limit,
        after=usage.UsageCursor(*after) if after else None,
    )


def usage_page(
    start: dt.date,
    end: dt.date,
    *,
    plans: tuple[str, ...] = (),
    search: str = "",
    limit: int = 50,
    after: usage.UsageCursor | None = None,
) -> usage.UsagePage:
    """A page of the ranking, filtered and paged in SQL (``all_orgs_usage_page``)."""
    cursor = (after.credits_consumed, after.name, after.organization_id) if after else None
    return _seen(_usage_page(start, end, tuple(sorted(plans)), search.strip(), limit, cursor))


@_cached(ttl=HISTORY_TTL, max_entries=64)
def _monthly_credits(start: dt.date, end: dt.date) -> Fetched[pd.DataFrame]:
    return _read(usage.all_orgs_monthly_credits, start=start, end=end)


def monthly_credits(start: dt.date, end: dt.date) -> pd.DataFrame:
    """Columns: month, generations, credits_consumed, credits_granted, active_organizations."""
    return _seen(_monthly_credits(start, end))


@_cached(ttl=HISTORY_TTL, max_entries=256)
def _granted_vs_consumed(
    organization_id: int, start: dt.date, end: dt.date, granularity: str
) -> Fetched[pd.DataFrame]:
    return _read(
        usage.credits_granted_vs_consumed,
        organization_id=organization_id,
        start=start,
        end=end,
        granularity=granularity,
    )


def granted_vs_consumed(
    organization_id: int, start: dt.date, end: dt.date, *, granularity: str
) -> pd.DataFrame:
    """Columns: bucket, credits_granted, credits_deducted, credits_consumed."""
    return _seen(_granted_vs_consumed(organization_id, start, end, granularity))


@_cached(ttl=LIVE_TTL, max_entries=256)
def _runway(organization_id: int) -> Fetched[usage.Runway | None]:
    return _read(usage.balance_and_runway, organization_id=organization_id)


def runway(organization_id: int) -> usage.Runway | None:
    """Balance, 30-day burn rate and runway; None if the organization is gone."""
    return _seen(_runway(organization_id))


@_cached(ttl=LIVE_TTL, max_entries=512)
def _ledger_page(
    organization_id: int,
    kinds: tuple[str, ...],
    actor: str,
    start: dt.date | None,
    end: dt.date | None,
    limit: int,
    after: tuple[dt.datetime, int] | None,
) -> Fetched[usage.LedgerPage]:
    return _read(
        usage.ledger_page,
        organization_id=organization_id,
        kinds=list(kinds) or None,
        actor=actor or None,
        start=start,
        end=end,
        limit=limit,
        after=usage.LedgerCursor(*after) if after else None,
    )


def ledger_page(
    organization_id: int,
    *,
    kinds: tuple[str, ...],
    actor: str,
    start: dt.date | None,
    end: dt.date | None,
    limit: int,
    after: tuple[dt.datetime, int] | None = None,
) -> usage.LedgerPage:
    """Newest first; ``after`` is the (created_at, id) keyset cursor of the next page."""
    return _seen(_ledger_page(organization_id, kinds, actor, start, end, limit, after))


def ledger_all(
    organization_id: int,
    *,
    kinds: tuple[str, ...],
    actor: str,
    start: dt.date | None,
    end: dt.date | None,
    max_rows: int = 20_000,
) -> pd.DataFrame:
    """Every entry matching the filters (for a download), up to ``max_rows``, newest
    first: the keyset pages of :func:`ledger_page` one after the other, uncached."""
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
            )
            pages.append(page.entries)
            rows += len(page.entries)
            cursor = page.next_cursor
            if cursor is None:
                break
    return pd.concat(pages, ignore_index=True) if pages else pd.DataFrame()


def recent_duplicate(
    organization_id: int, *, actor: str, amount: int
) -> credits.LedgerEntry | None:
    """The entry in which ``actor`` moved the same ``amount`` for this organization in
    the last 10 minutes (the newest), or None. Never cached: it guards a write."""
    with engine().connect() as conn:
        return credits.recent_duplicate(
            conn, organization_id=organization_id, actor=actor, amount=amount
        )


# ------------------------------------------------------------------------- quotas


@_cached(ttl=LIVE_TTL, max_entries=8)
def _quota_utilization(threshold: float) -> Fetched[pd.DataFrame]:
    return _read(quotas.all_orgs_quota_utilization, threshold=threshold)


def quota_utilization(*, threshold: float = 0.8) -> pd.DataFrame:
    """Today's (organization, type) rows in each organization's own day, fullest first.
    Columns as ``queries.quotas.all_orgs_quota_utilization``."""
    return _seen(_quota_utilization(threshold))


@_cached(ttl=LIVE_TTL, max_entries=8)
def _quota_alerts(threshold: float) -> Fetched[pd.DataFrame]:
    return _read(quotas.all_orgs_quota_alerts, threshold=threshold)


def quota_alerts(*, threshold: float = 0.8) -> pd.DataFrame:
    """Today's rows at or above ``threshold`` (over, at limit, near), fullest first."""
    return _seen(_quota_alerts(threshold))


@_cached(ttl=LIVE_TTL, max_entries=256)
def _quota_page(
    threshold: float,
    search: str,
    plans: tuple[str, ...],
    types: tuple[str, ...],
    statuses: tuple[str, ...],
    limit: int,
    after: tuple[float, int, str, int, str] | None,
) -> Fetched[quotas.UtilizationPage]:
    return _read(
        quotas.all_orgs_quota_utilization_page,
        threshold=threshold,
        search=search or None,
        plans=plans,
        types=types,
        statuses=statuses,
        limit=limit,
        after=quotas.UtilizationCursor(*after) if after else None,
    )


def quota_page(
    *,
    threshold: float = 0.8,
    search: str = "",
    plans: tuple[str, ...] = (),
    types: tuple[str, ...] = (),
    statuses: tuple[str, ...] = (),
    limit: int = 50,
    after: quotas.UtilizationCursor | None = None,
) -> quotas.UtilizationPage:
    """A page of today's utilization, filtered and paged in SQL."""
    cursor = (
        (after.utilization, after.used, after.name, after.organization_id, after.type)
        if after
        else None
    )
    return _seen(
        _quota_page(
            threshold,
            search.strip(),
            tuple(sorted(plans)),
            tuple(sorted(types)),
            tuple(sorted(statuses)),
            limit,
            cursor,
        )
    )


@_cached(ttl=LIVE_TTL, max_entries=8)
def _quota_heatmap(threshold: float, top: int) -> Fetched[tuple[pd.DataFrame, int]]:
    return _read(quotas.all_orgs_quota_heatmap, threshold=threshold, top=top)


def quota_heatmap(*, threshold: float = 0.8, top: int = 25) -> tuple[pd.DataFrame, int]:
    """Today's rows of the ``top`` fullest organizations, and how many have use today."""
    return _seen(_quota_heatmap(threshold, top))


@_cached(ttl=LIVE_TTL, max_entries=256)
def _quota_history(
    organization_id: int, start: dt.date, end: dt.date, type: str | None
) -> Fetched[pd.DataFrame]:
    return _read(
        quotas.quota_history, organization_id=organization_id, start=start, end=end, type=type
    )


def quota_history(
    organization_id: int, start: dt.date, end: dt.date, *, type: str | None = None
) -> pd.DataFrame:
    """Columns: date, type, used, daily_limit, utilization."""
    return _seen(_quota_history(organization_id, start, end, type))


# -------------------------------------------------------------------------- audit


@_cached(ttl=LIVE_TTL, max_entries=128)
def _audit_trail(
    start: dt.date,
    end: dt.date,
    organization_id: int | None,
    action: str | None,
    actor: str,
    limit: int,
) -> Fetched[pd.DataFrame]:
    return _read(
        audit.all_orgs_audit_trail,
        start=start,
        end=end,
        organization_id=organization_id,
        action=action,
        actor=actor or None,
        limit=limit,
    )


def audit_trail(
    start: dt.date,
    end: dt.date,
    *,
    organization_id: int | None,
    action: str | None,
    actor: str,
    limit: int,
) -> pd.DataFrame:
    """Columns: at, organization_id, organization, action, actor, reason, amount, details."""
    return _seen(_audit_trail(start, end, organization_id, action, actor, limit))
