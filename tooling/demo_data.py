"""Deterministic, realistic demo data, bulk-loaded with binary COPY.

The shape of the data is what the dashboard's users will see in production: one
large tenant with a big share of the traffic and a long tail of small ones, several
time zones and plans, a weekday/weekend rhythm and growth over the period, some
organizations at or over their daily limit today, and a ledger of grants and
deductions made by named finance staff.

Consistency is by construction:

- ``usage_limits.used``/``credits_used`` are counted from the drawn generations per
  (organization, type, local date in the organization's zone);
- the rollups (``user_daily_usage``, ``quarter_hour_usage``, ``organization_daily_usage``
  with its running totals, ``organization_monthly_usage``) are counted from the
  drawn arrays, chunk by chunk, with the rules of their recounts (``queries.recounts``, the
  expressions ``record_generation`` upserts); a rollup without a numpy path is
  loaded by its recount in SQL. The recount tests hold both to a recount;
- every ledger entry's ``balance_after`` and the final ``credit_balances.balance``
  follow from the ledger and the generations before it, and grants are sized ahead
  of consumption so the balance never dips below zero.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import threading
import time
import zoneinfo
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from queue import Empty, Queue
from typing import TypeVar, cast

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from sqlalchemy import (
    Connection,
    Engine,
    ForeignKeyConstraint,
    PrimaryKeyConstraint,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.schema import AddConstraint, CreateIndex, DropConstraint, DropIndex

from queries import recounts
from queries.models import PLAN_LIMIT_FACTOR, Base
from tooling import staging

T = TypeVar("T")

GENERATION_TYPES: tuple[tuple[str, str, int, int], ...] = (
    # type, label, default credits, default daily limit (pro plan)
    ("chat", "Chat completion", 1, 5000),
    ("image", "Image", 4, 800),
    ("image_hd", "Image (HD)", 10, 200),
    ("voice", "Voice clip", 3, 400),
    ("video", "Video clip", 40, 40),
)
# Each type's share of the traffic before each organization's own mix is drawn.
_TYPE_MIX = np.array([0.55, 0.22, 0.08, 0.1, 0.05])

TIMEZONES = (
    "UTC",
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Australia/Sydney",
)
FINANCE_STAFF = (
    "maria.keller@finance.example.com",
    "tom.okafor@finance.example.com",
    "lena.park@finance.example.com",
)
SUPPORT_STAFF = ("sam.rivera@support.example.com", "noor.haddad@support.example.com")

# fmt: off
_ADJECTIVES = (
    "Northwind", "Acme", "Blue", "Bright", "Cedar", "Copper", "Delta", "Ember", "Falcon",
    "Granite", "Harbor", "Indigo", "Juniper", "Kestrel", "Lumen", "Maple", "Nimbus", "Orbit",
    "Pioneer", "Quartz", "Raven", "Summit", "Tidal", "Umber", "Vertex", "Willow", "Zephyr",
    "Atlas", "Beacon", "Cobalt",
)
# fmt: on
# fmt: off
_NOUNS = (
    "Media", "Labs", "Studio", "Analytics", "Health", "Robotics", "Logistics", "Games",
    "Legal", "Bank", "Retail", "Travel", "Foods", "Energy", "Design", "Learning", "Insurance",
    "Motors", "Records", "Capital",
)
# fmt: on
# fmt: off
_FIRST = (
    "Ana", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Iris", "Jonas", "Kira",
    "Liam", "Mia", "Noah", "Olga", "Paul", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera",
    "Wei", "Yara", "Zoe",
)
# fmt: on
# fmt: off
_LAST = (
    "Adams", "Brown", "Chen", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ito",
    "Jensen", "Kowalski", "Lopez", "Muller", "Nakamura", "Okafor", "Petrov", "Rossi", "Silva",
    "Tanaka", "Novak", "Weber", "Young",
)
# fmt: on

# Postgres epoch for binary timestamptz, in microseconds since the Unix epoch.
_PG_EPOCH_US = 946_684_800_000_000
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
# Generations drawn, summed and sent per chunk: a few hundred MB of arrays at most.
_CHUNK_ROWS = 2_000_000


# The append-only guard of migration 0003: one trigger per table, created ENABLE ALWAYS
# (it fires even under session_replication_role = replica).
_GUARD_OFF = (
    "ALTER TABLE credit_ledger DISABLE TRIGGER credit_ledger_append_only",
    "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
    "ALTER TABLE generations DISABLE TRIGGER generations_append_only",
)
_GUARD_ON = (
    "ALTER TABLE credit_ledger ENABLE ALWAYS TRIGGER credit_ledger_append_only",
    "ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_append_only",
    "ALTER TABLE generations ENABLE ALWAYS TRIGGER generations_append_only",
)
# The book's triggers of migration 0013 (plain ENABLE): inserting a ledger entry or a
# generation moves the balance. The loader COPYs a book it computed whole (every
# balance_after and final balance), so they are off with the guard.
# So is the trigger of migration 0017 that keeps a day's usual day at its first use:
# the loader keeps those of the load's last day itself (recounts.KEEP_USUAL_DAYS).
_BOOK_OFF = (
    "ALTER TABLE credit_ledger DISABLE TRIGGER credit_ledger_moves_balance",
    "ALTER TABLE generations DISABLE TRIGGER generations_move_balance",
    "ALTER TABLE usage_limits DISABLE TRIGGER usage_limits_keep_usual_day",
)
_BOOK_ON = (
    "ALTER TABLE credit_ledger ENABLE TRIGGER credit_ledger_moves_balance",
    "ALTER TABLE generations ENABLE TRIGGER generations_move_balance",
    "ALTER TABLE usage_limits ENABLE TRIGGER usage_limits_keep_usual_day",
)


@contextlib.contextmanager
def append_only_guard_lifted(connection: Connection) -> Iterator[None]:
    """The one way around the append-only guard, for demo data only: inside the
    caller's open transaction, as the tables' owner, the guard is off for the block and
    on again at its end, before anything commits, so no other session ever sees it off
    (ALTER TABLE also locks out their writes meanwhile). If the block raises, the
    caller's rollback restores the guard with everything else. The triggers that move
    balances are off in the block too: what it inserts must keep balances equal to the
    ledger minus consumption itself, as the demo loader's COPY does.
    """
    for statement in (*_GUARD_OFF, *_BOOK_OFF):
        connection.exec_driver_sql(statement)
    yield
    for statement in (*_GUARD_ON, *_BOOK_ON):
        connection.exec_driver_sql(statement)


class DemoDataError(RuntimeError):
    """The demo data cannot be loaded as asked (the reason is in the message)."""


@dataclass(frozen=True, slots=True)
class SeedReport:
    """What a demo load wrote and how fast."""

    organizations: int
    users: int
    generations: int
    usage_rows: int
    ledger_entries: int
    seconds: float
    stages: tuple[tuple[str, float], ...] = ()

    @property
    def generations_per_second(self) -> float:
        """End to end: drawing the data, COPY, index builds, rollups, ledger."""
        return self.generations / self.seconds if self.seconds else 0.0


@dataclass(slots=True)
class _Org:
    id: int
    name: str
    slug: str
    timezone: str
    plan: str
    created_at: dt.datetime
    weight: float


def database_is_empty(engine: Engine) -> bool:
    """True when the schema exists and holds no organization yet."""
    with engine.connect() as conn:
        return bool(
            conn.execute(text("SELECT NOT EXISTS (SELECT 1 FROM organizations)")).scalar_one()
        )


def _check_options(organizations: int, generations: int, days: int) -> None:
    if organizations < 1:
        raise DemoDataError("--orgs must be at least 1")
    if generations < 0:
        raise DemoDataError("--generations cannot be negative")
    if days < 1:
        raise DemoDataError("--days must be at least 1")


_NOT_EMPTY = "the database already has data; run `dashboard seed --reset` to replace it"


class _Stages:
    """The time of each stage of a load, in order (``dashboard seed -v``)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.stages: list[tuple[str, float]] = []
        self.accounted = 0.0

    def lap(self, name: str) -> None:
        elapsed = time.perf_counter() - self.started - self.accounted
        self.accounted += elapsed
        self.stages.append((name, elapsed))

    def add(self, name: str, seconds: float) -> None:
        """A stage measured elsewhere (a job of a parallel session); not part of the sum."""
        self.stages.append((name, seconds))


@dataclass(frozen=True, slots=True)
class _Plan:
    """One load: its options, organizations and users, drawn before any connection."""

    rng: np.random.Generator
    orgs: list[_Org]
    users: dict[str, np.ndarray]
    generations: int
    days: int
    now: dt.datetime


def _plan(
    organizations: int, generations: int, days: int, seed: int, now: dt.datetime | None
) -> _Plan:
    _check_options(organizations, generations, days)
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    rng = np.random.default_rng(seed)
    orgs = _make_organizations(rng, organizations, days, now)
    users = _make_users(rng, orgs, generations)
    return _Plan(rng, orgs, users, generations, days, now)


def _load(
    conn: psycopg.Connection,
    plan: _Plan,
    lap: Callable[[str], None],
    rollups: Callable[[dict[str, bytes]], None] | None = None,
) -> tuple[int, int, int]:
    """COPY every table of the demo on ``conn`` (its ``search_path`` says where), into
    tables without indexes or keys; the numpy rollups on ``conn`` too, or handed to
    ``rollups``. Returns generations, usage rows, ledger entries."""
    _load_lookup_and_tenants(conn, plan.orgs, plan.users)
    lap("tenants")
    loaded, totals = _load_generations(
        conn,
        plan.rng,
        plan.orgs,
        plan.users,
        (plan.generations, plan.days, plan.now),
        lap,
        rollups,
    )
    usage_rows, lowered = _load_usage(conn, plan.rng, plan.orgs, totals, plan.now)
    lap("usage_limits")
    ledger_entries = _load_ledger(conn, plan.rng, plan.orgs, totals, plan.now)
    _load_audit(conn, lowered, plan.now)
    _sync_identities(conn)
    lap("ledger and audit")
    return loaded, usage_rows, ledger_entries


def seed_demo_data(
    connection: Connection,
    *,
    organizations: int = 40,
    generations: int = 250_000,
    days: int = 120,
    seed: int = 42,
    now: dt.datetime | None = None,
    reset: bool = False,
) -> SeedReport:
    """Load demo data on ``connection`` (a direct one: this runs COPY and DDL).

    Everything happens in one transaction (a savepoint when the caller already has
    one open), which the caller commits. Refuses to touch a database that already
    has organizations unless ``reset``. The same ``seed`` and ``now`` always produce
    the same rows (and the same rows as :func:`seed_demo_data_staged`).

    It truncates and reloads the append-only ``credit_ledger``, ``audit_log`` and
    ``generations`` with the guard lifted (:func:`append_only_guard_lifted`), so the
    connection must be the tables' owner (or a superuser). Indexes are built one after
    the other in this session: the small loads (tests, first start) are quick this way;
    large ones go through :func:`seed_demo_data_staged`.
    """
    stages = _Stages()
    plan = _plan(organizations, generations, days, seed, now)
    stages.lap("draw tenants")

    conn = connection.connection.driver_connection
    assert isinstance(conn, psycopg.Connection)
    # A savepoint inside the caller's transaction (SQLAlchemy begins one if needed):
    # a failure undoes the whole load, and nothing is final until the caller commits.
    with connection.begin_nested():
        empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM organizations)").fetchone()
        if not (empty and empty[0]) and not reset:
            raise DemoDataError(_NOT_EMPTY)
        tables = schema_tables()
        with append_only_guard_lifted(connection):
            # Truncating even empty tables is deliberate: a table truncated in the same
            # transaction lets COPY and the index builds skip the WAL (wal_level=minimal).
            conn.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                )
            )
            # The PostgreSQL manual's advice for a bulk load: drop indexes and foreign
            # keys, COPY, then build each once (a sorted build, one validating join)
            # instead of maintaining every b-tree and key for each row.
            keys = [table_keys(t) for t in tables]
            for k in keys:
                for statement in k.drops[: len(k.foreign_keys)]:
                    conn.execute(statement)
            for k in keys:
                for statement in k.drops[len(k.foreign_keys) :]:
                    conn.execute(statement)
            loaded, usage_rows, ledger_entries = _load(conn, plan, stages.lap)
            _build_keys_serially(conn, stages.lap)
            _keep_usual_days(conn, plan.now)

    return SeedReport(
        organizations=len(plan.orgs),
        users=len(plan.users["org"]),
        generations=loaded,
        usage_rows=usage_rows,
        ledger_entries=ledger_entries,
        seconds=time.perf_counter() - stages.started,
        stages=tuple(stages.stages),
    )


# The advisory lock key of a staged load ("demo" in ASCII).
STAGED_LOAD_LOCK = 0x64656D6F


def seed_demo_data_staged(
    engine: Engine,
    *,
    organizations: int = 40,
    generations: int = 250_000,
    days: int = 120,
    seed: int = 42,
    now: dt.datetime | None = None,
    reset: bool = False,
    sessions: int = 2,
    maintenance_work_mem_mb: int = 1024,
) -> SeedReport:
    """Load demo data through staging tables (:mod:`tooling.staging`), and commit it.

    The same rows as :func:`seed_demo_data`, for loads too large for one session:
    COPY into staged copies of the tables, build their indexes and keys in
    ``sessions`` sessions at once (each with ``maintenance_work_mem_mb``), then swap
    them in, in one short transaction. All or nothing: a failure before the swap
    leaves the live tables as they were and drops the staged ones. ``engine`` must
    reach the database directly (not through PgBouncer) as the tables' owner.
    """
    stages = _Stages()
    plan = _plan(organizations, generations, days, seed, now)
    stages.lap("draw tenants")
    tables = schema_tables()
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def connect() -> psycopg.Connection:
        return psycopg.connect(url)

    with connect() as conn:
        # One staged load per database at a time: a second one would drop the first's
        # staging schema. Held by this session until it closes.
        locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (STAGED_LOAD_LOCK,)).fetchone()
        conn.commit()
        if not (locked and locked[0]):
            raise DemoDataError(
                "another `dashboard seed` is loading this database; try again later"
            )
        try:
            empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM organizations)").fetchone()
            if not (empty and empty[0]) and not reset:
                raise DemoDataError(_NOT_EMPTY)
            staging.create_tables(conn, tables)
            rollups = _RollupSession(connect)
            try:
                staging.begin_loading(conn, [t for t in tables if t not in _ROLLUP_COPIES])
                loaded, usage_rows, ledger_entries = _load(conn, plan, stages.lap, rollups.put)
            except BaseException:
                with contextlib.suppress(BaseException):  # the first failure is the one
                    rollups.finish()
                raise
            rollups.finish()
            conn.commit()
            stages.lap("commit the staged rows")
            order = staging.sizes(conn, tables)
            conn.commit()  # holds no lock on the staged tables while they are built
            keys = sorted((table_keys(t) for t in tables), key=lambda k: -order[k.table])
            phases = (
                [staging.Job(statement_label(s), (s,)) for k in keys for s in k.indexes],
                [
                    staging.Job(
                        "attach primary and unique keys", tuple(a for k in keys for a in k.attach)
                    )
                ],
                [
                    staging.Job(
                        "foreign keys, NOT VALID",
                        tuple(f for k in keys for f in k.foreign_keys_not_valid),
                    )
                ],
                [
                    staging.Job(
                        f"validate foreign keys and ANALYZE {k.table}",
                        (*k.validations, sql.SQL("ANALYZE {}").format(sql.Identifier(k.table))),
                    )
                    for k in keys
                ],
            )
            jobs = staging.run_in_sessions(
                connect,
                phases,
                sessions=sessions,
                maintenance_work_mem_mb=maintenance_work_mem_mb,
            )
            stages.lap(f"indexes, keys and ANALYZE in {sessions} sessions")
            for label, seconds in jobs:
                stages.add(f"  | {label}", seconds)
            try:
                staging.swap_in(conn, tables, require_empty=not reset)
            except LookupError:
                raise DemoDataError(_NOT_EMPTY) from None
            _keep_usual_days(conn, plan.now)
            conn.commit()
            stages.lap("swap in")
        except BaseException:
            conn.rollback()
            staging.drop_schema(conn)
            conn.commit()
            raise

    return SeedReport(
        organizations=len(plan.orgs),
        users=len(plan.users["org"]),
        generations=loaded,
        usage_rows=usage_rows,
        ledger_entries=ledger_entries,
        seconds=time.perf_counter() - stages.started,
        stages=tuple(stages.stages),
    )


# --------------------------------------------------------------------------- shapes


def _make_organizations(
    rng: np.random.Generator, count: int, days: int, now: dt.datetime
) -> list[_Org]:
    # Zipf-like sizes: the first tenant carries roughly a third of the traffic.
    ranks = np.arange(1, count + 1)
    weights = 1.0 / ranks**1.1
    weights[0] *= 1.6
    weights /= weights.sum()
    orgs: list[_Org] = []
    used: set[str] = set()
    for i in range(count):
        adjective = _ADJECTIVES[i % len(_ADJECTIVES)]
        noun = _NOUNS[(i * 7 + i // len(_ADJECTIVES)) % len(_NOUNS)]
        name = f"{adjective} {noun}"
        slug = name.lower().replace(" ", "-")
        if slug in used:
            name, slug = f"{name} {i}", f"{slug}-{i}"
        used.add(slug)
        share = weights[i]
        plan = (
            "enterprise"
            if share > 0.08
            else "pro"
            if share > 0.02
            else str(rng.choice(["starter", "free"], p=[0.7, 0.3]))
        )
        tz = TIMEZONES[i % len(TIMEZONES)] if i else "America/New_York"
        created = now - dt.timedelta(days=days + int(rng.integers(1, 60)))
        orgs.append(_Org(i + 1, name, slug, tz, plan, created, float(share)))
    return orgs


def _make_users(
    rng: np.random.Generator, orgs: list[_Org], generations: int
) -> dict[str, np.ndarray]:
    org_ids: list[int] = []
    names: list[str] = []
    emails: list[str] = []
    for org in orgs:
        n = int(np.clip(round(org.weight * 600), 2, 400))
        for j in range(n):
            first = _FIRST[int(rng.integers(len(_FIRST)))]
            last = _LAST[int(rng.integers(len(_LAST)))]
            org_ids.append(org.id)
            names.append(f"{first} {last}")
            emails.append(f"{first.lower()}.{last.lower()}.{j + 1}@{org.slug}.example.com")
    return {
        "org": np.array(org_ids, dtype=np.int64),
        "id": np.arange(1, len(org_ids) + 1, dtype=np.int64),
        "name": np.array(names, dtype=object),
        "email": np.array(emails, dtype=object),
    }


@functools.lru_cache(maxsize=64)
def _zone(tz: str) -> zoneinfo.ZoneInfo:
    """The zone, held: ZoneInfo's own cache keeps 8 strongly, and the demo has 9 zones,
    so without this every organization re-read its tzdata file."""
    return zoneinfo.ZoneInfo(tz)


@functools.lru_cache(maxsize=256)
def _utc_offsets(tz: str, first_day: dt.date, days: int) -> np.ndarray:
    """UTC offset in seconds at local noon of each day (DST-aware).

    Cached: ten thousand organizations share nine zones and one period, and this
    Python loop over the days was most of the draw for small tenants. Read-only.
    """
    zone = zoneinfo.ZoneInfo(tz)
    offsets = np.empty(days, dtype=np.int64)
    for d in range(days):
        day = first_day + dt.timedelta(days=d)
        local_noon = dt.datetime(day.year, day.month, day.day, 12, tzinfo=zone)
        offset = local_noon.utcoffset()
        offsets[d] = int(offset.total_seconds()) if offset else 0
    offsets.flags.writeable = False
    return offsets


@functools.lru_cache(maxsize=256)
def _weekdays(first_day: dt.date, days: int) -> np.ndarray:
    """Weekday (Monday 0) of each day of the period; cached like the offsets."""
    weekdays = np.array([(first_day + dt.timedelta(days=d)).weekday() for d in range(days)])
    weekdays.flags.writeable = False
    return weekdays


# Share of a day's activity by local hour: quiet nights, busy working hours.
_HOURLY = np.array(
    [
        1,
        0.6,
        0.4,
        0.3,
        0.3,
        0.5,
        1.2,
        2.5,
        4.5,
        6.5,
        7,
        7,
        6,
        6.5,
        7,
        7,
        6.5,
        5.5,
        4,
        3.2,
        3,
        2.6,
        2,
        1.5,
    ]
)
_HOURLY = _HOURLY / _HOURLY.sum()


def _generation_chunks(
    rng: np.random.Generator,
    orgs: list[_Org],
    users: dict[str, np.ndarray],
    total: int,
    days: int,
    now: dt.datetime,
    *,
    chunk_rows: int = _CHUNK_ROWS,
) -> Iterator[dict[str, np.ndarray]]:
    """The generations, whole organizations at a time, in chunks of about ``chunk_rows``.

    Sorted by organization, then time; ids count on across chunks. The draws are the
    same, in the same order, whatever the chunk size: the same seed gives the same rows,
    and 100M rows never sit in memory at once (one organization at most, plus a chunk).
    """
    costs = np.array([t[2] for t in GENERATION_TYPES], dtype=np.int32)
    per_org = rng.multinomial(total, np.array([o.weight for o in orgs]))
    user_org = users["org"]
    keys = ("org", "user", "type", "credits", "ts")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    buffered = 0
    next_id = 1

    def flush() -> dict[str, np.ndarray]:
        nonlocal buffered, next_id
        out = {k: np.concatenate(v) for k, v in parts.items()}
        out["id"] = np.arange(next_id, next_id + len(out["org"]), dtype=np.int64)
        next_id += len(out["org"])
        buffered = 0
        for v in parts.values():
            v.clear()
        return out

    for org, n in zip(orgs, per_org, strict=True):
        if n == 0:
            continue
        zone = _zone(org.timezone)
        local_now = now.astimezone(zone)
        first_day = local_now.date() - dt.timedelta(days=days - 1)
        offsets = _utc_offsets(org.timezone, first_day, days)
        weekdays = _weekdays(first_day, days)
        weekend = 0.3 if org.plan in ("pro", "enterprise") else 0.55
        growth = np.linspace(0.6, 1.4, days) * rng.uniform(0.85, 1.15, days)
        day_weight = growth * np.where(weekdays >= 5, weekend, 1.0)
        elapsed_today = (
            local_now - local_now.replace(hour=0, minute=0, second=0, microsecond=0)
        ).total_seconds()
        hours_done = int(elapsed_today // 3600)
        day_weight[-1] *= (
            _HOURLY[:hours_done].sum() + _HOURLY[hours_done] * (elapsed_today % 3600) / 3600
        )
        day = rng.choice(days, size=n, p=day_weight / day_weight.sum())
        seconds = (rng.choice(24, size=n, p=_HOURLY) * 3600 + rng.uniform(0, 3600, n)).astype(
            np.int64
        )
        today = day == days - 1
        seconds[today] = rng.uniform(0, max(elapsed_today, 1.0), int(today.sum())).astype(np.int64)
        micros = rng.integers(0, 1_000_000, n)
        local_midnight_utc = int(
            dt.datetime(first_day.year, first_day.month, first_day.day, tzinfo=dt.UTC).timestamp()
        )
        ts = (local_midnight_utc + day * 86_400 + seconds - offsets[day]) * 1_000_000 + micros
        ts = np.minimum(ts, int(now.timestamp() * 1_000_000) - 1)

        org_users = np.flatnonzero(user_org == org.id)
        activity = rng.pareto(1.2, len(org_users)) + 0.05  # a few heavy users
        user = users["id"][org_users][
            rng.choice(len(org_users), size=n, p=activity / activity.sum())
        ]
        mix = rng.dirichlet(_TYPE_MIX * 40)
        kind = rng.choice(len(GENERATION_TYPES), size=n, p=mix).astype(np.int8)
        credits = costs[kind].copy()
        video = kind == 4
        credits[video] *= rng.choice([1, 2, 3], size=int(video.sum()), p=[0.6, 0.3, 0.1]).astype(
            np.int32
        )
        order = np.argsort(ts, kind="stable")
        parts["org"].append(np.full(n, org.id, dtype=np.int64))
        parts["user"].append(user[order])
        parts["type"].append(kind[order])
        parts["credits"].append(credits[order])
        parts["ts"].append(ts[order])
        buffered += n
        if buffered >= chunk_rows:
            yield flush()
    if buffered:
        yield flush()


# --------------------------------------------------------------------------- loading


def _copy_rows(conn: psycopg.Connection, statement: str, rows: list[tuple[object, ...]]) -> None:
    with conn.cursor().copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _load_lookup_and_tenants(
    conn: psycopg.Connection, orgs: list[_Org], users: dict[str, np.ndarray]
) -> None:
    _copy_rows(
        conn,
        "COPY generation_types (type, label, default_credits, default_daily_limit) FROM STDIN",
        list(GENERATION_TYPES),
    )
    _copy_rows(
        conn,
        "COPY organizations (id, name, slug, timezone, plan, created_at) FROM STDIN",
        [(o.id, o.name, o.slug, o.timezone, o.plan, o.created_at) for o in orgs],
    )
    _copy_rows(
        conn,
        "COPY users (organization_id, id, email, name, created_at) FROM STDIN",
        [
            (int(org), int(uid), email, name, orgs[int(org) - 1].created_at)
            for org, uid, email, name in zip(
                users["org"], users["id"], users["email"], users["name"], strict=True
            )
        ],
    )


_TYPE_WIDTH = max(len(t[0]) for t in GENERATION_TYPES)
_TYPE_KEYS = np.array([t[0].encode() for t in GENERATION_TYPES], dtype=f"S{_TYPE_WIDTH}")
_TYPE_LENGTHS = np.array([len(t[0]) for t in GENERATION_TYPES], dtype=np.int32)
_TEXT = "type"  # the one text column of the binary COPYs: a generation type key


@functools.lru_cache(maxsize=8)
def _layout(columns: tuple[str, ...]) -> tuple[np.dtype, np.ndarray]:
    """A fixed-width COPY BINARY record for ``columns`` (big-endian numpy types, or
    ``_TEXT``), and per type code which of its bytes are real: the type text is shorter
    than its slot, and COPY BINARY wants exactly its length."""
    fields: list[tuple[str, str]] = [("ncols", ">i2")]
    for i, column in enumerate(columns):
        fields += [(f"l{i}", ">i4"), (f"v{i}", f"S{_TYPE_WIDTH}" if column == _TEXT else column)]
    record = np.dtype(fields)
    keep = np.ones((len(GENERATION_TYPES), record.itemsize), dtype=bool)
    if _TEXT in columns:
        start: int = record.fields[f"v{columns.index(_TEXT)}"][1]  # type: ignore[index]
        for code, length in enumerate(_TYPE_LENGTHS):
            keep[code, start + length : start + _TYPE_WIDTH] = False
    return record, keep


def _binary_rows(columns: tuple[tuple[str, np.ndarray], ...], kind: np.ndarray) -> bytes:
    """COPY BINARY tuples (no header) of ``columns``, built without a Python loop.

    ``columns`` are (big-endian numpy type or ``_TEXT``, values) in the table's order;
    ``kind`` is each row's type code, whose key fills the ``_TEXT`` column. Each row is
    laid out in a fixed-width record with room for the longest type, then the unused
    type bytes are dropped with one boolean mask.
    """
    record, keep = _layout(tuple(c for c, _ in columns))
    n = len(kind)
    rec = np.empty(n, dtype=record)
    rec["ncols"] = len(columns)
    for i, (column, values) in enumerate(columns):
        if column == _TEXT:
            rec[f"l{i}"] = _TYPE_LENGTHS[kind]
            rec[f"v{i}"] = _TYPE_KEYS[kind]
        else:
            rec[f"l{i}"] = np.dtype(column).itemsize
            rec[f"v{i}"] = values
    raw = rec.view(np.uint8).reshape(n, record.itemsize)
    return bytes(raw[keep[kind]].tobytes())


def _binary_generation_rows(gens: dict[str, np.ndarray]) -> bytes:
    """COPY BINARY tuples for ``gens``, in their order (see ``_COPY_GENERATIONS``)."""
    return _binary_rows(
        (
            (">i8", gens["org"]),
            (">i8", gens["id"]),
            (">i8", gens["user"]),
            (_TEXT, gens["type"]),
            (">i4", gens["credits"]),
            (">i8", gens["ts"] - _PG_EPOCH_US),
        ),
        gens["type"],
    )


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True, slots=True)
class TableKeys:
    """A table's indexes and keys as separate steps, taken from the models.

    Taken from the metadata so a bulk load can never recreate a schema that differs
    from the migrations (``alembic check`` keeps those two equal). Primary keys and
    unique constraints are built as plain unique indexes first and attached with
    ``USING INDEX`` afterwards: ``ADD PRIMARY KEY`` would lock the table against the
    other index builds, a ``CREATE INDEX`` only against writes, so two sessions can
    build two indexes of one table at once. Unqualified names: the session's
    ``search_path`` says which schema (``public``, or the staging one).
    """

    table: str
    drops: tuple[Statement, ...]
    indexes: tuple[Statement, ...]
    attach: tuple[Statement, ...]
    foreign_keys: tuple[Statement, ...]
    # The same keys in two steps: added NOT VALID (a moment's lock on both tables),
    # then validated, which locks only this table against writes and schema changes,
    # so the big scans of different tables can run at once (a plain ADD FOREIGN KEY
    # also locks the referenced table, and every key references organizations).
    foreign_keys_not_valid: tuple[Statement, ...]
    validations: tuple[Statement, ...]


Statement = staging.Statement


def table_keys(table_name: str) -> TableKeys:
    """The steps that drop and rebuild ``table_name``'s indexes and keys."""
    from sqlalchemy.dialects import postgresql

    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    table = Base.metadata.tables[table_name]
    own = [c for c in table.constraints if isinstance(c, PrimaryKeyConstraint | UniqueConstraint)]
    foreign = [c for c in table.constraints if isinstance(c, ForeignKeyConstraint)]
    name = sql.Identifier(table_name)
    indexes: list[Statement] = []
    attach: list[Statement] = []
    for constraint in own:
        index = sql.Identifier(str(constraint.name))
        columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in constraint.columns)
        kind = "PRIMARY KEY" if isinstance(constraint, PrimaryKeyConstraint) else "UNIQUE"
        # A key's covering columns (postgresql_include) belong to its index too.
        include = constraint.dialect_options["postgresql"]["include"] or []
        covering = (
            sql.SQL(" INCLUDE ({})").format(
                sql.SQL(", ").join(sql.Identifier(str(getattr(c, "name", c))) for c in include)
            )
            if include
            else sql.SQL("")
        )
        indexes.append(
            sql.SQL("CREATE UNIQUE INDEX {} ON {} ({}){}").format(index, name, columns, covering)
        )
        attach.append(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}").format(
                name, index, sql.SQL(kind), index
            )
        )
    indexes += [str(CreateIndex(i).compile(dialect=dialect)) for i in table.indexes]
    drops: list[Statement] = [str(DropConstraint(c).compile(dialect=dialect)) for c in foreign]
    drops += [str(DropIndex(i).compile(dialect=dialect)) for i in table.indexes]
    drops += [str(DropConstraint(c).compile(dialect=dialect)) for c in own]
    return TableKeys(
        table=table_name,
        drops=tuple(drops),
        indexes=tuple(indexes),
        attach=tuple(attach),
        # Foreign keys last: their validating joins use the indexes just built.
        foreign_keys=tuple(str(AddConstraint(c).compile(dialect=dialect)) for c in foreign),
        foreign_keys_not_valid=tuple(
            sql.SQL("{} NOT VALID").format(sql.SQL(str(AddConstraint(c).compile(dialect=dialect))))
            for c in foreign
        ),
        validations=tuple(
            sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                name, sql.Identifier(str(c.name))
            )
            for c in foreign
        ),
    )


def statement_label(statement: Statement) -> str:
    """A short name for a stage line (``-v``)."""
    text_ = statement if isinstance(statement, str) else statement.as_string(None)
    return " ".join(text_.replace('"', "").split()).split(" (")[0][:70]


def schema_tables() -> tuple[str, ...]:
    """Every table of the models, referenced before referencing: what a load replaces."""
    return tuple(t.name for t in Base.metadata.sorted_tables)


def _build_keys_serially(
    conn: psycopg.Connection, lap: Callable[[str], None], *, analyze: bool = True
) -> None:
    """Every index and key of the schema, one after the other, on ``conn``."""
    keys = [table_keys(t) for t in schema_tables()]
    conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
    for step in ("indexes", "attach", "foreign_keys"):
        for k in keys:
            for statement in getattr(k, step):
                conn.execute(statement)
                lap(statement_label(statement))
    if analyze:
        for table in schema_tables():
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
        lap("analyze")


# --------------------------------------------------------------------------- rollups


@dataclass(frozen=True, slots=True)
class _Chunk:
    """A chunk of generations with what its rollups need: each row's local day."""

    gens: dict[str, np.ndarray]
    local_day: np.ndarray  # the organization's local date, days since 1970-01-01
    user_org: np.ndarray  # organization of each user id - 1
    first_day: int  # first day of the window every row falls in
    span: int  # days in that window


def _keep_usual_days(conn: psycopg.Connection, now: dt.datetime) -> None:
    """The usual day of each organization's local day at ``now``, the forecast's."""
    statement = recounts.KEEP_USUAL_DAYS.bindparams(organization_ids=None).compile(dialect=_PSYCOPG)
    conn.execute(str(statement), {**statement.params, "at": now})


# The rollups record_generation keeps besides usage_limits, each loaded by the numpy path
# of _ROLLUP_COPIES when it has one (counted from the drawn arrays, chunk by chunk, no
# GROUP BY over the whole table), else by its recount for every organization
# (queries/recounts.py) after generations are loaded. The recount tests hold both paths
# to that definition.
_ROLLUPS = recounts.ROLLUPS
# The loader's sessions are plain psycopg: the recounts are rendered for its driver.
_PSYCOPG = psycopg_dialect.dialect()  # type: ignore[no-untyped-call]

_N_TYPES = len(GENERATION_TYPES)
_PG_EPOCH_DAY = 10_957  # 2000-01-01 in days since 1970-01-01
_QUARTER_US = 900_000_000  # 2000-01-01 00:00 UTC is a whole number of quarter-hours


def _group(key: np.ndarray, credits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct keys (sorted), the rows and the credits of each."""
    keys, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    spent = np.bincount(inverse, weights=credits, minlength=len(keys)).astype(np.int64)
    return keys, counts, spent


def _user_daily_rows(chunk: _Chunk) -> bytes:
    """user_daily_usage rows of the chunk: (organization, user, local date, type)."""
    g = chunk.gens
    day = chunk.local_day - chunk.first_day
    key = ((g["user"] - 1) * chunk.span + day) * _N_TYPES + g["type"]
    keys, counts, spent = _group(key, g["credits"])
    kind = keys % _N_TYPES
    user = keys // _N_TYPES // chunk.span + 1
    date = keys // _N_TYPES % chunk.span + chunk.first_day - _PG_EPOCH_DAY
    return _binary_rows(
        (
            (">i8", chunk.user_org[user - 1]),
            (">i8", user),
            (">i4", date),
            (_TEXT, kind),
            (">i4", counts),
            (">i8", spent),
        ),
        kind,
    )


def _quarter_hour_rows(chunk: _Chunk) -> bytes:
    """quarter_hour_usage rows of the chunk: (organization, UTC quarter-hour, type)."""
    g = chunk.gens
    quarters = chunk.span * 96
    first = chunk.first_day * 96
    key = (g["org"] * quarters + g["ts"] // _QUARTER_US - first) * _N_TYPES + g["type"]
    keys, counts, spent = _group(key, g["credits"])
    kind = keys % _N_TYPES
    org = keys // _N_TYPES // quarters
    bucket = (keys // _N_TYPES % quarters + first) * _QUARTER_US - _PG_EPOCH_US
    return _binary_rows(
        ((">i8", org), (">i8", bucket), (_TEXT, kind), (">i4", counts), (">i8", spent)),
        kind,
    )


def _organization_daily_rows(chunk: _Chunk) -> bytes:
    """organization_daily_usage rows of the chunk: (organization, local date), with the
    running totals through each day (a chunk holds whole organizations)."""
    g = chunk.gens
    key = g["org"] * chunk.span + (chunk.local_day - chunk.first_day)
    keys, counts, spent = _group(key, g["credits"])
    org = keys // chunk.span
    date = keys % chunk.span + chunk.first_day - _PG_EPOCH_DAY
    # keys are sorted by (organization, day): a cumulative sum restarted at each
    # organization's first row is its running total.
    first = np.r_[True, org[1:] != org[:-1]]
    group = np.cumsum(first) - 1
    generations_through = np.cumsum(counts)
    credits_through = np.cumsum(spent)
    generations_through -= (generations_through - counts)[first][group]
    credits_through -= (credits_through - spent)[first][group]
    return _binary_rows(
        (
            (">i8", org),
            (">i4", date),
            (">i8", counts),
            (">i8", spent),
            (">i8", generations_through),
            (">i8", credits_through),
        ),
        np.zeros(len(keys), dtype=np.intp),
    )


def _organization_monthly_rows(chunk: _Chunk) -> bytes:
    """organization_monthly_usage rows of the chunk: (organization, local month)."""
    g = chunk.gens
    month = chunk.local_day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    first_month = int(month.min()) if len(month) else 0
    months = (int(month.max()) - first_month + 1) if len(month) else 1
    key = g["org"] * months + (month - first_month)
    keys, counts, spent = _group(key, g["credits"])
    month_start = (
        (keys % months + first_month).astype("datetime64[M]").astype("datetime64[D]")
    ).astype(np.int64) - _PG_EPOCH_DAY
    return _binary_rows(
        (
            (">i4", month_start),
            (">i8", keys // months),
            (">i8", counts),
            (">i8", spent),
        ),
        np.zeros(len(keys), dtype=np.intp),
    )


# Rollups with a numpy path: table -> (its COPY, its rows of one chunk). Optional: an
# entry of _ROLLUPS without one is loaded by its statement (see there).
_ROLLUP_COPIES: dict[str, tuple[str, Callable[[_Chunk], bytes]]] = {
    "user_daily_usage": (
        "COPY user_daily_usage (organization_id, user_id, date, type, generations, credits) "
        "FROM STDIN (FORMAT BINARY)",
        _user_daily_rows,
    ),
    "quarter_hour_usage": (
        "COPY quarter_hour_usage (organization_id, bucket, type, generations, credits) "
        "FROM STDIN (FORMAT BINARY)",
        _quarter_hour_rows,
    ),
    "organization_daily_usage": (
        "COPY organization_daily_usage (organization_id, date, generations, credits, "
        "generations_through, credits_through) FROM STDIN (FORMAT BINARY)",
        _organization_daily_rows,
    ),
    "organization_monthly_usage": (
        "COPY organization_monthly_usage (month, organization_id, generations, credits) "
        "FROM STDIN (FORMAT BINARY)",
        _organization_monthly_rows,
    ),
}


# --------------------------------------------------------------------------- generations

_COPY_GENERATIONS = (
    "COPY generations (organization_id, id, user_id, type, credits, created_at) "
    "FROM STDIN (FORMAT BINARY)"
)


@dataclass(slots=True)
class _OrgTotals:
    """What the later stages need of one organization's generations (kept per chunk).

    ``cells`` are its nonzero (type, local day) usage cells in type, then day order;
    ``ts`` and ``cum`` answer the ledger's "credits consumed before t".
    """

    kind: np.ndarray
    day: np.ndarray
    used: np.ndarray
    spent: np.ndarray
    last: np.ndarray
    peak: np.ndarray  # busiest day's count, per type
    ts: np.ndarray
    cum: np.ndarray  # credits consumed before each row, then in all (len(ts) + 1)


def _summarize(
    orgs: list[_Org], gens: dict[str, np.ndarray], window: tuple[int, int]
) -> tuple[dict[int, _OrgTotals], np.ndarray]:
    """Per organization of the chunk its totals, and each row's local day."""
    local_day = np.empty(len(gens["org"]), dtype=np.int64)
    present = np.unique(gens["org"])
    bounds = np.searchsorted(gens["org"], np.append(present, present[-1] + 1))
    totals: dict[int, _OrgTotals] = {}
    for k, org_id in enumerate(present.tolist()):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        org = orgs[org_id - 1]
        ts, kind, credits = gens["ts"][lo:hi], gens["type"][lo:hi], gens["credits"][lo:hi]
        day = _local_days(org.timezone, ts, window)
        local_day[lo:hi] = day
        first_day = int(day.min())
        span = int(day.max()) - first_day + 1
        key = kind.astype(np.int64) * span + (day - first_day)
        used = np.bincount(key, minlength=_N_TYPES * span).reshape(_N_TYPES, span)
        spent = np.bincount(key, weights=credits, minlength=_N_TYPES * span).reshape(_N_TYPES, span)
        # ts is sorted, so the last row of each key is its latest generation.
        last_flat = np.zeros(_N_TYPES * span, dtype=np.int64)
        last_flat[key] = ts
        last = last_flat.reshape(_N_TYPES, span)
        t_idx, d_idx = np.nonzero(used)
        totals[org_id] = _OrgTotals(
            kind=t_idx,
            day=d_idx + first_day,
            used=used[t_idx, d_idx],
            spent=spent[t_idx, d_idx].astype(np.int64),
            last=last[t_idx, d_idx],
            peak=used.max(axis=1),
            ts=ts.copy(),
            cum=np.concatenate([[0], np.cumsum(credits, dtype=np.int64)]),
        )
    return totals, local_day


@dataclass(slots=True)
class _Prepared:
    """One chunk, drawn and encoded by the drawing thread, ready to COPY."""

    rows: int
    generations: list[bytes]  # COPY tuples in slices of at most _CHUNK_ROWS rows
    rollups: dict[str, bytes]
    totals: dict[int, _OrgTotals]


def _prepare_chunks(
    rng: np.random.Generator,
    orgs: list[_Org],
    users: dict[str, np.ndarray],
    total: int,
    days: int,
    now: dt.datetime,
) -> Iterator[_Prepared]:
    """Each chunk summed and encoded for COPY, while the next one is drawn in a thread."""
    now_day = int(now.timestamp()) // 86_400
    window = (now_day - days - 2, now_day + 2)
    drawn = _generation_chunks(rng, orgs, users, total, days, now, chunk_rows=_CHUNK_ROWS)
    for gens in _in_background(drawn, name="demo-draw"):
        totals, local_day = _summarize(orgs, gens, window)
        chunk = _Chunk(gens, local_day, users["org"], window[0], window[1] - window[0])
        yield _Prepared(
            rows=len(gens["org"]),
            # In slices: the largest tenant is one chunk (a third of 100M rows), and
            # its fixed-width records and mask would be several GB at once.
            generations=[
                _binary_generation_rows({k: v[i : i + _CHUNK_ROWS] for k, v in gens.items()})
                for i in range(0, len(gens["org"]), _CHUNK_ROWS)
            ],
            rollups={table: rows(chunk) for table, (_, rows) in _ROLLUP_COPIES.items()},
            totals=totals,
        )


def _in_background(items: Iterator[T], *, name: str, ahead: int = 1) -> Iterator[T]:
    """``items`` produced by a thread while the caller consumes them.

    Three stages then overlap: drawing (numpy, in one thread, in order, so the rows do
    not depend on timing), encoding (numpy, another thread) and COPY (the server's
    parsing, in this one); numpy and the socket let go of the GIL meanwhile.
    """
    done = object()
    queue: Queue[object] = Queue(maxsize=ahead)
    failure: list[BaseException] = []
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                queue.put(item)
        except BaseException as error:  # handed to the consumer below
            failure.append(error)
        finally:
            if isinstance(items, Generator):
                items.close()  # an inner stage stops its own thread
            queue.put(done)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not done:
            yield cast(T, item)
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(Empty):
                queue.get(timeout=0.05)
        thread.join()
    if failure:
        raise failure[0]


class _RollupSession:
    """COPYs the numpy rollups on a session of its own (staged loads only), so the
    server parses them on one core while the loader's session parses the generations
    on the other. Its transaction commits at :meth:`finish`; a failure on either side
    stops both (the staged tables are dropped by the caller)."""

    def __init__(self, connect: Callable[[], psycopg.Connection]) -> None:
        self._queue: Queue[dict[str, bytes] | None] = Queue(maxsize=2)
        self._failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(connect,), name="demo-rollups", daemon=True
        )
        self._thread.start()

    def _run(self, connect: Callable[[], psycopg.Connection]) -> None:
        try:
            with connect() as conn:
                staging.begin_loading(conn, tuple(_ROLLUP_COPIES))
                while (item := self._queue.get()) is not None:
                    for table, tuples in item.items():
                        _copy_bytes(conn, _ROLLUP_COPIES[table][0], tuples)
                conn.commit()
        except BaseException as error:  # raised in the loader's thread
            self._failure.append(error)
            while self._queue.get() is not None:  # let the loader finish its puts
                pass

    def put(self, rollups: dict[str, bytes]) -> None:
        """Queue one chunk's rollup tuples (waits while two are queued)."""
        if self._failure:
            raise self._failure[0]
        self._queue.put(rollups)

    def finish(self) -> None:
        """Wait for the last COPY and the commit; raise what failed there."""
        self._queue.put(None)
        self._thread.join()
        if self._failure:
            raise self._failure[0]


def _copy_bytes(conn: psycopg.Connection, statement: str, rows: bytes) -> None:
    with conn.cursor().copy(statement) as copy:
        copy.write(_COPY_HEADER)
        copy.write(rows)
        copy.write(_COPY_TRAILER)


def _load_generations(
    conn: psycopg.Connection,
    rng: np.random.Generator,
    orgs: list[_Org],
    users: dict[str, np.ndarray],
    options: tuple[int, int, dt.datetime],
    lap: Callable[[str], None],
    rollups: Callable[[dict[str, bytes]], None] | None,
) -> tuple[int, dict[int, _OrgTotals]]:
    """COPY the generations and the numpy rollups chunk by chunk (the rollups handed
    to ``rollups`` when given); the other rollups by their statements. Returns the
    rows loaded and every organization's totals."""
    total, days, now = options
    loaded = 0
    totals: dict[int, _OrgTotals] = {}
    copying = 0.0
    for prepared in _in_background(
        _prepare_chunks(rng, orgs, users, total, days, now), name="demo-encode"
    ):
        started = time.perf_counter()
        if rollups is not None:
            rollups(prepared.rollups)
        for rows in prepared.generations:
            _copy_bytes(conn, _COPY_GENERATIONS, rows)
        if rollups is None:
            for table, tuples in prepared.rollups.items():
                _copy_bytes(conn, _ROLLUP_COPIES[table][0], tuples)
        copying += time.perf_counter() - started
        loaded += prepared.rows
        totals.update(prepared.totals)
    lap(f"draw + COPY generations and rollups (COPY {copying:.1f}s of it)")
    for table in _ROLLUPS:
        if table not in _ROLLUP_COPIES:
            conn.execute(str(recounts.insert_recount(table).compile(dialect=_PSYCOPG)))
            lap(f"recount {table}")
    return loaded, totals


def _local_days(tz: str, ts_us: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """Local calendar day (days since 1970-01-01) of each UTC timestamp in zone ``tz``.

    Offsets are looked up per UTC hour, which is exact for every zone the demo uses
    (their daylight-saving transitions fall on whole UTC hours).
    """
    if len(ts_us) == 0:
        return np.array([], dtype=np.int64)
    hours = ts_us // 3_600_000_000
    first, offsets = _hourly_offsets(tz, *window)
    days: np.ndarray = (ts_us // 1_000_000 + offsets[hours - first]) // 86_400
    return days


@functools.lru_cache(maxsize=64)
def _hourly_offsets(tz: str, first_day: int, end_day: int) -> tuple[int, np.ndarray]:
    """UTC offset in seconds of every UTC hour from ``first_day`` (days since epoch)."""
    zone = zoneinfo.ZoneInfo(tz)
    first = first_day * 24
    offsets = np.array(
        [
            int(
                (
                    dt.datetime.fromtimestamp(h * 3600, zone).utcoffset() or dt.timedelta()
                ).total_seconds()
            )
            for h in range(first, end_day * 24)
        ],
        dtype=np.int64,
    )
    return first, offsets


_COPY_USAGE = (
    "COPY usage_limits (organization_id, id, type, date, used, credits_used, daily_limit, "
    "updated_at) FROM STDIN (FORMAT BINARY)"
)


@dataclass(frozen=True, slots=True)
class _LoweredLimit:
    """A limit customer success lowered today (the audit trail records it)."""

    organization_id: int
    type: str
    date: dt.date
    old_limit: int
    new_limit: int


def _load_usage(
    conn: psycopg.Connection,
    rng: np.random.Generator,
    orgs: list[_Org],
    totals: dict[int, _OrgTotals],
    now: dt.datetime,
) -> tuple[int, list[_LoweredLimit]]:
    """usage_limits rows: exact counts and credit sums per (organization, type, local day).

    Limits: each organization has headroom over its busiest day, except a few that
    customer success will find at or over their limit today. Returns the rows loaded
    and the limits lowered today.
    """
    headroom = rng.uniform(1.3, 2.5, len(orgs))
    pressure = np.ones(len(orgs))
    epoch = dt.date(1970, 1, 1)

    def busy_today(org: _Org) -> bool:
        cells = totals.get(org.id)
        today = (now.astimezone(_zone(org.timezone)).date() - epoch).days
        return cells is not None and bool(np.any((cells.day == today) & (cells.used >= 2)))

    if len(orgs) > 1:
        # Among the busier tenants (not the largest), so today's numbers mean something,
        # and only those with use today already: early in some zones' day a small tenant
        # may have none yet, and a squeezed limit needs use to squeeze.
        candidates = np.arange(1, min(len(orgs), 16))
        active = np.array([i for i in candidates.tolist() if busy_today(orgs[i])], dtype=np.int64)
        candidates = active if len(active) else candidates
        size = min(len(candidates), max(3, len(orgs) // 5))
        picked = rng.choice(candidates, size=size, replace=False)
        for k, idx in enumerate(picked):
            pressure[idx] = rng.uniform(0.82, 0.97) if k % 2 == 0 else rng.uniform(1.02, 1.25)
    defaults = np.array([t[3] for t in GENERATION_TYPES], dtype=np.float64)
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("org", "kind", "day", "used", "spent", "limit", "last")
    }
    lowered: list[_LoweredLimit] = []
    for org in orgs:
        cells = totals.get(org.id)
        if cells is None:
            continue
        floor = (defaults * PLAN_LIMIT_FACTOR[org.plan] / 4).astype(np.int64)
        limit = np.maximum(np.ceil(cells.peak * headroom[org.id - 1] / 10) * 10, floor)
        limit = limit.astype(np.int64)
        daily_limit = limit[cells.kind]
        squeeze = pressure[org.id - 1]
        today = (now.astimezone(_zone(org.timezone)).date() - epoch).days
        if squeeze != 1:
            for i in np.flatnonzero((cells.day == today) & (cells.used >= 2)).tolist():
                t = int(cells.kind[i])
                daily_limit[i] = max(1, int(int(cells.used[i]) / squeeze))
                earlier = bool(np.any((cells.kind == t) & (cells.day < today)))
                if earlier and daily_limit[i] < limit[t]:
                    lowered.append(
                        _LoweredLimit(
                            org.id,
                            GENERATION_TYPES[t][0],
                            epoch + dt.timedelta(days=today),
                            int(limit[t]),
                            int(daily_limit[i]),
                        )
                    )
        parts["org"].append(np.full(len(cells.kind), org.id, dtype=np.int64))
        parts["kind"].append(cells.kind)
        parts["day"].append(cells.day)
        parts["used"].append(cells.used)
        parts["spent"].append(cells.spent)
        parts["limit"].append(daily_limit)
        parts["last"].append(cells.last)
    if not parts["org"]:
        return 0, lowered
    col = {k: np.concatenate(v) for k, v in parts.items()}
    n = len(col["org"])
    _copy_bytes(
        conn,
        _COPY_USAGE,
        _binary_rows(
            (
                (">i8", col["org"]),
                (">i8", np.arange(1, n + 1, dtype=np.int64)),
                (_TEXT, col["kind"]),
                (">i4", col["day"] - _PG_EPOCH_DAY),
                (">i4", col["used"]),
                (">i8", col["spent"]),
                (">i4", col["limit"]),
                (">i8", col["last"] - _PG_EPOCH_US),
            ),
            col["kind"],
        ),
    )
    return n, lowered


def _load_ledger(
    conn: psycopg.Connection,
    rng: np.random.Generator,
    orgs: list[_Org],
    totals: dict[int, _OrgTotals],
    now: dt.datetime,
) -> int:
    """Grants ahead of consumption, some staff deductions, refunds and one reversal."""
    now_us = int(now.timestamp() * 1_000_000)
    rows: list[tuple[object, ...]] = []
    balances: list[tuple[int, int]] = []
    entry_id = 0
    no_ts, no_cum = np.array([], dtype=np.int64), np.zeros(1, dtype=np.int64)
    for org in orgs:
        own = totals.get(org.id)
        ts, cum = (own.ts, own.cum) if own else (no_ts, no_cum)

        def consumed_before(t_us: int, ts: np.ndarray = ts, cum: np.ndarray = cum) -> int:
            return int(cum[np.searchsorted(ts, t_us, side="left")])

        zone = _zone(org.timezone)
        start = org.created_at.astimezone(zone)
        # Plan grants on the first of each local month at 09:00, the first at signup.
        grant_times = [int(org.created_at.timestamp() * 1_000_000)]
        month = dt.datetime(start.year, start.month, 1, 9, tzinfo=zone)
        while True:
            month = (month + dt.timedelta(days=32)).replace(day=1)
            if month >= now:
                break
            grant_times.append(int(month.timestamp() * 1_000_000))
        ledger_total = 0
        events: list[tuple[int, int, str, str, str | None, str | None]] = []
        for i, t in enumerate(grant_times):
            period_end = (
                grant_times[i + 1] if i + 1 < len(grant_times) else now_us + 30 * 86_400_000_000
            )
            future = consumed_before(period_end) - consumed_before(t)
            balance_now = ledger_total - consumed_before(t)
            need = int(future * rng.uniform(1.1, 1.6)) + 500
            amount = max(need - balance_now, 0)
            if amount == 0:
                continue
            note = "Opening balance" if i == 0 else None
            events.append((t, amount, "grant", "Monthly plan credits", note, None))
            ledger_total += amount
            # Now and then finance claws back part of the surplus, at office hours.
            if i > 0 and rng.random() < 0.35:
                d_time = t + int(rng.uniform(2, 20) * 86_400_000_000)
                if d_time < min(period_end, now_us):
                    surplus = (
                        ledger_total
                        - consumed_before(d_time)
                        - (consumed_before(period_end) - consumed_before(d_time))
                    )
                    take = int(surplus * rng.uniform(0.05, 0.3))
                    if take > 0:
                        reason = str(
                            rng.choice(
                                ["Billing correction", "Chargeback", "Expired promotional credits"]
                            )
                        )
                        events.append((d_time, -take, "deduct", reason, None, None))
                        ledger_total -= take
            if rng.random() < 0.25:
                r_time = t + int(rng.uniform(1, 25) * 86_400_000_000)
                if r_time < min(period_end, now_us):
                    refund = int(rng.integers(5, 200))
                    events.append(
                        (
                            r_time,
                            refund,
                            "refund",
                            "Failed generations refund",
                            "Ticket #" + str(int(rng.integers(1000, 9999))),
                            None,
                        )
                    )
                    ledger_total += refund
        # One goodwill grant reversed a day later, to show reversals in the ledger. It
        # joins the other events before they are numbered: ledger ids follow time, as
        # they follow the order writes take the organization's lock in production
        # (reconciliation's balance_after chain relies on that order).
        goodwill = org.id == 1 and bool(events) and now_us - 3 * 86_400_000_000 > grant_times[0]
        if goodwill:
            t = now_us - 3 * 86_400_000_000
            events.append((t, 250, "grant", "Goodwill credit", None, "goodwill"))
            events.append(
                (
                    t + 86_400_000_000,
                    -250,
                    "reversal",
                    "Granted to the wrong organization",
                    None,
                    "goodwill",
                )
            )
        events.sort(key=lambda e: e[0])
        running = 0
        k = 0
        goodwill_id: int | None = None
        for t, amount, kind, reason, note, marker in events:
            entry_id += 1
            running += amount
            if marker == "goodwill":
                # Drawn without the random generator, so the other rows stay as they were.
                actor = FINANCE_STAFF[0]
                reverses: int | None = goodwill_id if kind == "reversal" else None
                # A reversal's key is the one reverse_adjustment derives (migration 0012).
                key = f"reversal:{reverses}" if reverses is not None else f"seed-{org.id}-{kind}"
                goodwill_id = entry_id if kind == "grant" else goodwill_id
            else:
                actor = FINANCE_STAFF[int(rng.integers(len(FINANCE_STAFF)))]
                key, reverses, k = f"seed-{org.id}-{k}", None, k + 1
            rows.append((
                org.id, entry_id, amount, running - consumed_before(t), kind, reason, note, actor,
                key, reverses, _ts(t),
            ))  # fmt: skip
        balances.append((org.id, running - int(cum[-1])))
    _copy_rows(
        conn,
        "COPY credit_ledger (organization_id, id, amount, balance_after, kind, reason, note, "
        "actor, idempotency_key, reverses_id, created_at) FROM STDIN",
        rows,
    )
    _copy_rows(
        conn,
        "COPY credit_balances (organization_id, balance, updated_at) FROM STDIN",
        [(org_id, bal, now) for org_id, bal in balances],
    )
    return len(rows)


def _ts(micros: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(micros / 1_000_000, dt.UTC)


def _load_audit(conn: psycopg.Connection, lowered: list[_LoweredLimit], now: dt.datetime) -> None:
    """Audit rows for today's lowered limits, as customer success would have left them."""
    _copy_rows(
        conn,
        "COPY audit_log (organization_id, action, actor, reason, details, created_at) FROM STDIN",
        [
            (
                change.organization_id,
                "set_daily_limit",
                SUPPORT_STAFF[0],
                "Plan downgrade: limit lowered pending renewal",
                Jsonb(
                    {
                        "type": change.type,
                        "effective": change.date.isoformat(),
                        "old_limit": change.old_limit,
                        "new_limit": change.new_limit,
                    }
                ),
                now - dt.timedelta(hours=1),
            )
            for change in lowered
        ],
    )


def _sync_identities(conn: psycopg.Connection) -> None:
    # Rows were loaded with explicit ids; move each identity past them.
    for table in (
        "organizations",
        "users",
        "credit_ledger",
        "generations",
        "usage_limits",
        "audit_log",
    ):
        conn.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                "GREATEST((SELECT max(id) FROM {}), 1))"
            ).format(sql.Identifier(table)),
            (table,),
        )
