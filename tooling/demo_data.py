"""Deterministic, realistic demo data, bulk-loaded with binary COPY.

The shape of the data is what the dashboard's users will see in production: one
large tenant with a big share of the traffic and a long tail of small ones, several
time zones and plans, a weekday/weekend rhythm and growth over the period, some
organizations at or over their daily limit today, and a ledger of grants and
deductions made by named finance staff.

Consistency is by construction:

- ``usage_limits.used``/``credits_used`` are computed *in SQL* from the loaded
  generations, per (organization, type, local date in the organization's zone);
- the rollups (``user_daily_usage``, ``quarter_hour_usage``, ``organization_daily_usage``,
  ``organization_monthly_usage``) are recounted in SQL
  from the loaded generations, with the expressions ``record_generation`` upserts;
- every ledger entry's ``balance_after`` and the final ``credit_balances.balance``
  follow from the ledger and the generations before it, and grants are sized ahead
  of consumption so the balance never dips below zero.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import time
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql
from sqlalchemy import (
    Connection,
    Engine,
    ForeignKeyConstraint,
    PrimaryKeyConstraint,
    UniqueConstraint,
    text,
)
from sqlalchemy.schema import AddConstraint, CreateIndex, DropConstraint, DropIndex

from queries.models import PLAN_LIMIT_FACTOR, Base

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


@contextlib.contextmanager
def append_only_guard_lifted(connection: Connection) -> Iterator[None]:
    """The one way around the append-only guard, for demo data only: inside the
    caller's open transaction, as the tables' owner, the guard is off for the block and
    on again at its end, before anything commits, so no other session ever sees it off
    (ALTER TABLE also locks out their writes meanwhile). If the block raises, the
    caller's rollback restores the guard with everything else.
    """
    for statement in _GUARD_OFF:
        connection.exec_driver_sql(statement)
    yield
    for statement in _GUARD_ON:
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
    the same rows.

    It truncates and reloads the append-only ``credit_ledger``, ``audit_log`` and
    ``generations`` with the guard lifted (:func:`append_only_guard_lifted`), so the
    connection must be the tables' owner (or a superuser).
    """
    if organizations < 1:
        raise DemoDataError("--orgs must be at least 1")
    if generations < 0:
        raise DemoDataError("--generations cannot be negative")
    if days < 1:
        raise DemoDataError("--days must be at least 1")
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    stages: list[tuple[str, float]] = []

    def lap(name: str) -> None:
        stages.append((name, time.perf_counter() - started - sum(s for _, s in stages)))

    orgs = _make_organizations(rng, organizations, days, now)
    users = _make_users(rng, orgs, generations)
    gens = _make_generations(rng, orgs, users, generations, days, now)
    usage = _usage_rows(rng, orgs, gens, now)
    lap("draw")

    conn = connection.connection.driver_connection
    assert isinstance(conn, psycopg.Connection)
    # A savepoint inside the caller's transaction (SQLAlchemy begins one if needed):
    # a failure undoes the whole load, and nothing is final until the caller commits.
    with connection.begin_nested():
        empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM organizations)").fetchone()
        if not (empty and empty[0]) and not reset:
            raise DemoDataError(
                "the database already has data; run `dashboard seed --reset` to replace it"
            )
        with append_only_guard_lifted(connection):
            # Truncating even empty tables is deliberate: a table truncated in the same
            # transaction lets COPY and the index builds skip the WAL (wal_level=minimal).
            conn.execute(
                "TRUNCATE audit_log, user_daily_usage, quarter_hour_usage, "
                "organization_daily_usage, organization_monthly_usage, generations, "
                "usage_limits, credit_ledger, credit_balances, users, organizations, "
                "generation_types RESTART IDENTITY"
            )
            _load_lookup_and_tenants(conn, orgs, users)
            lap("tenants")
            _load_generations(conn, gens, lap)
            _load_rollups(conn, lap)
            usage_rows = _load_usage(conn, usage, lap)
            ledger_entries = _load_ledger(conn, rng, orgs, gens, now)
            _load_audit(conn, now)
            _sync_identities(conn)
            lap("ledger")
        # The planner needs statistics for the fresh tables right away.
        for table in (
            "generations",
            "usage_limits",
            "user_daily_usage",
            "quarter_hour_usage",
            "organization_daily_usage",
            "organization_monthly_usage",
            "credit_ledger",
            "users",
        ):
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
        lap("analyze")

    return SeedReport(
        organizations=len(orgs),
        users=len(users["org"]),
        generations=len(gens["org"]),
        usage_rows=usage_rows,
        ledger_entries=ledger_entries,
        seconds=time.perf_counter() - started,
        stages=tuple(stages),
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


def _utc_offsets(tz: str, first_day: dt.date, days: int) -> np.ndarray:
    """UTC offset in seconds at local noon of each day (DST-aware)."""
    zone = zoneinfo.ZoneInfo(tz)
    offsets = np.empty(days, dtype=np.int64)
    for d in range(days):
        day = first_day + dt.timedelta(days=d)
        local_noon = dt.datetime(day.year, day.month, day.day, 12, tzinfo=zone)
        offset = local_noon.utcoffset()
        offsets[d] = int(offset.total_seconds()) if offset else 0
    return offsets


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


def _make_generations(
    rng: np.random.Generator,
    orgs: list[_Org],
    users: dict[str, np.ndarray],
    total: int,
    days: int,
    now: dt.datetime,
) -> dict[str, np.ndarray]:
    costs = np.array([t[2] for t in GENERATION_TYPES], dtype=np.int32)
    per_org = rng.multinomial(total, np.array([o.weight for o in orgs]))
    user_org = users["org"]
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("org", "user", "type", "credits", "ts")}
    for org, n in zip(orgs, per_org, strict=True):
        if n == 0:
            continue
        zone = zoneinfo.ZoneInfo(org.timezone)
        local_now = now.astimezone(zone)
        first_day = local_now.date() - dt.timedelta(days=days - 1)
        offsets = _utc_offsets(org.timezone, first_day, days)
        day_index = np.arange(days)
        weekdays = np.array([(first_day + dt.timedelta(days=int(d))).weekday() for d in day_index])
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
    if not parts["org"]:
        return {k: np.array([], dtype=np.int64) for k in parts} | {
            "id": np.array([], dtype=np.int64)
        }
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["id"] = np.arange(1, len(out["org"]) + 1, dtype=np.int64)
    return out


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
_RECORD = np.dtype(
    [
        ("ncols", ">i2"),
        ("l_org", ">i4"), ("org", ">i8"),
        ("l_id", ">i4"), ("id", ">i8"),
        ("l_user", ">i4"), ("user", ">i8"),
        ("l_type", ">i4"), ("type", f"S{_TYPE_WIDTH}"),
        ("l_credits", ">i4"), ("credits", ">i4"),
        ("l_ts", ">i4"), ("ts", ">i8"),
    ]
)  # fmt: skip
# Which bytes of a padded record are real, per type: the type text is shorter than
# its slot, and COPY BINARY wants exactly its length.
_TYPE_START: int = _RECORD.fields["type"][1]  # type: ignore[index]
_KEEP = np.ones((len(GENERATION_TYPES), _RECORD.itemsize), dtype=bool)
for _code, (_key, *_rest) in enumerate(GENERATION_TYPES):
    _KEEP[_code, _TYPE_START + len(_key) : _TYPE_START + _TYPE_WIDTH] = False


def _binary_generation_rows(gens: dict[str, np.ndarray]) -> bytes:
    """COPY BINARY tuples for ``gens``, in their order, built without a Python loop.

    Each row is laid out in a fixed-width record with room for the longest type,
    then the unused type bytes are dropped with one boolean mask.
    """
    n = len(gens["org"])
    rec = np.empty(n, dtype=_RECORD)
    rec["ncols"] = 6
    rec["l_org"], rec["l_id"], rec["l_user"], rec["l_credits"], rec["l_ts"] = 8, 8, 8, 4, 8
    lengths = np.array([len(t[0]) for t in GENERATION_TYPES], dtype=np.int32)
    keys = np.array([t[0].encode() for t in GENERATION_TYPES], dtype=f"S{_TYPE_WIDTH}")
    rec["l_type"] = lengths[gens["type"]]
    rec["type"] = keys[gens["type"]]
    rec["org"], rec["id"], rec["user"] = gens["org"], gens["id"], gens["user"]
    rec["credits"] = gens["credits"]
    rec["ts"] = gens["ts"] - _PG_EPOCH_US
    raw = rec.view(np.uint8).reshape(n, _RECORD.itemsize)
    return bytes(raw[_KEEP[gens["type"]]].tobytes())


def _bulk_load_ddl(table_name: str) -> tuple[list[str], list[str]]:
    """DDL to drop, then recreate, a table's indexes and keys, taken from the models.

    Taken from the metadata so a bulk load can never recreate a schema that differs
    from the migrations (``alembic check`` keeps those two equal).
    """
    from sqlalchemy.dialects import postgresql

    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    table = Base.metadata.tables[table_name]
    keys = [
        c
        for c in table.constraints
        if isinstance(c, PrimaryKeyConstraint | ForeignKeyConstraint | UniqueConstraint)
    ]
    foreign = [c for c in keys if isinstance(c, ForeignKeyConstraint)]
    own = [c for c in keys if not isinstance(c, ForeignKeyConstraint)]
    drop = [str(DropConstraint(c).compile(dialect=dialect)) for c in foreign]
    drop += [str(DropIndex(i).compile(dialect=dialect)) for i in table.indexes]
    drop += [str(DropConstraint(c).compile(dialect=dialect)) for c in own]
    # Foreign keys last: their validating joins use the indexes just built.
    create = [str(AddConstraint(c).compile(dialect=dialect)) for c in own]
    create += [str(CreateIndex(i).compile(dialect=dialect)) for i in table.indexes]
    create += [str(AddConstraint(c).compile(dialect=dialect)) for c in foreign]
    return drop, create


@contextlib.contextmanager
def _bulk_loading(
    conn: psycopg.Connection, table_name: str, lap: Callable[[str], None]
) -> Iterator[None]:
    """Load ``table_name`` without its indexes and keys, then build them once.

    The PostgreSQL manual's advice for a bulk load: one sorted build per index and
    one validating join per foreign key, instead of maintaining every b-tree and
    firing two referential-integrity triggers for each row.
    """
    drop, create = _bulk_load_ddl(table_name)
    for statement in drop:
        conn.execute(statement)
    yield
    lap(f"copy {table_name}")
    conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
    for statement in create:
        conn.execute(statement)
        lap(statement.split(" (")[0][:70])


def _load_generations(
    conn: psycopg.Connection, gens: dict[str, np.ndarray], lap: Callable[[str], None]
) -> None:
    # The PostgreSQL manual's advice for a bulk load: drop indexes and foreign keys,
    # COPY, then rebuild them once (sorted index builds, one validating join per key)
    # instead of maintaining five b-trees and two triggers per row.
    statement = (
        "COPY generations (organization_id, id, user_id, type, credits, created_at) "
        "FROM STDIN (FORMAT BINARY)"
    )
    chunk = 1_000_000
    with _bulk_loading(conn, "generations", lap), conn.cursor().copy(statement) as copy:
        copy.write(_COPY_HEADER)
        for start in range(0, len(gens["org"]), chunk):
            copy.write(
                _binary_generation_rows({k: v[start : start + chunk] for k, v in gens.items()})
            )
        copy.write(_COPY_TRAILER)


# The rollups record_generation keeps, recounted from the loaded generations in SQL
# (the same expressions as its upserts), so they are exact by construction.
_ROLLUPS = {
    "user_daily_usage": """
        INSERT INTO user_daily_usage (organization_id, user_id, date, type, generations, credits)
        SELECT g.organization_id, g.user_id, (g.created_at AT TIME ZONE o.timezone)::date,
               g.type, count(*), sum(g.credits)
        FROM generations g JOIN organizations o ON o.id = g.organization_id
        GROUP BY 1, 2, 3, 4
        """,
    "quarter_hour_usage": """
        INSERT INTO quarter_hour_usage (organization_id, bucket, type, generations, credits)
        SELECT g.organization_id,
               date_bin('15 minutes', g.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
               g.type, count(*), sum(g.credits)
        FROM generations g
        GROUP BY 1, 2, 3
        """,
    "organization_daily_usage": """
        INSERT INTO organization_daily_usage
            (organization_id, date, generations, credits, generations_through, credits_through)
        SELECT d.organization_id, d.date, d.generations, d.credits,
               sum(d.generations) OVER w, sum(d.credits) OVER w
        FROM (
            SELECT g.organization_id, (g.created_at AT TIME ZONE o.timezone)::date AS date,
                   count(*) AS generations, sum(g.credits) AS credits
            FROM generations g JOIN organizations o ON o.id = g.organization_id
            GROUP BY 1, 2
        ) d
        WINDOW w AS (PARTITION BY d.organization_id ORDER BY d.date)
        """,
    "organization_monthly_usage": """
        INSERT INTO organization_monthly_usage (month, organization_id, generations, credits)
        SELECT date_trunc('month', (g.created_at AT TIME ZONE o.timezone)::date)::date,
               g.organization_id, count(*), sum(g.credits)
        FROM generations g JOIN organizations o ON o.id = g.organization_id
        GROUP BY 1, 2
        """,
}


def _load_rollups(conn: psycopg.Connection, lap: Callable[[str], None]) -> None:
    for table, statement in _ROLLUPS.items():
        with _bulk_loading(conn, table, lap):
            conn.execute(statement)


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


def _usage_rows(
    rng: np.random.Generator,
    orgs: list[_Org],
    gens: dict[str, np.ndarray],
    now: dt.datetime,
) -> list[tuple[object, ...]]:
    """usage_limits rows: exact counts and credit sums per (organization, type, local day).

    Limits: each organization has headroom over its busiest day, except a few that
    customer success will find at or over their limit today.
    """
    headroom = rng.uniform(1.3, 2.5, len(orgs))
    pressure = np.ones(len(orgs))
    if len(orgs) > 1:
        # Among the busier tenants (not the largest), so today's numbers mean something.
        candidates = np.arange(1, min(len(orgs), 16))
        size = min(len(candidates), max(3, len(orgs) // 5))
        picked = rng.choice(candidates, size=size, replace=False)
        for k, idx in enumerate(picked):
            pressure[idx] = rng.uniform(0.82, 0.97) if k % 2 == 0 else rng.uniform(1.02, 1.25)
    defaults = np.array([t[3] for t in GENERATION_TYPES], dtype=np.float64)
    type_keys = [t[0] for t in GENERATION_TYPES]
    n_types = len(GENERATION_TYPES)
    epoch = dt.date(1970, 1, 1)
    bounds = np.searchsorted(gens["org"], np.arange(1, len(orgs) + 2))
    # One offset table per zone for the whole period (cached across organizations).
    span_days = (
        int(gens["ts"].min()) // 86_400_000_000 - 1 if len(gens["ts"]) else 0,
        int(gens["ts"].max()) // 86_400_000_000 + 2 if len(gens["ts"]) else 1,
    )
    rows: list[tuple[object, ...]] = []
    for org in orgs:
        lo, hi = int(bounds[org.id - 1]), int(bounds[org.id])
        if lo == hi:
            continue
        ts, kind, credits = gens["ts"][lo:hi], gens["type"][lo:hi], gens["credits"][lo:hi]
        day = _local_days(org.timezone, ts, span_days)
        first_day = int(day.min())
        span = int(day.max()) - first_day + 1
        key = kind.astype(np.int64) * span + (day - first_day)
        used = np.bincount(key, minlength=n_types * span).reshape(n_types, span)
        spent = np.bincount(key, weights=credits, minlength=n_types * span).reshape(n_types, span)
        # ts is sorted, so the last row of each key is its latest generation.
        last_flat = np.zeros(n_types * span, dtype=np.int64)
        last_flat[key] = ts
        last = last_flat.reshape(n_types, span)
        floor = (defaults * PLAN_LIMIT_FACTOR[org.plan] / 4).astype(np.int64)
        limit = np.maximum(np.ceil(used.max(axis=1) * headroom[org.id - 1] / 10) * 10, floor)
        today = (now.astimezone(zoneinfo.ZoneInfo(org.timezone)).date() - epoch).days
        for t, d in zip(*np.nonzero(used), strict=True):
            n_used = int(used[t, d])
            daily_limit = int(limit[t])
            if first_day + d == today and pressure[org.id - 1] != 1 and n_used >= 2:
                daily_limit = max(1, int(n_used / pressure[org.id - 1]))
            rows.append((
                org.id, type_keys[t], epoch + dt.timedelta(days=int(first_day + d)), n_used,
                int(spent[t, d]), daily_limit, _ts(int(last[t, d])),
            ))  # fmt: skip
    return rows


def _load_usage(
    conn: psycopg.Connection, rows: list[tuple[object, ...]], lap: Callable[[str], None]
) -> int:
    # Text lines are several times faster than write_row for these plain values.
    lines = "".join("\t".join(map(str, row)) + "\n" for row in rows)
    statement = (
        "COPY usage_limits (organization_id, type, date, used, credits_used, daily_limit, "
        "updated_at) FROM STDIN"
    )
    with _bulk_loading(conn, "usage_limits", lap), conn.cursor().copy(statement) as copy:
        copy.write(lines)
    return len(rows)


def _load_ledger(
    conn: psycopg.Connection,
    rng: np.random.Generator,
    orgs: list[_Org],
    gens: dict[str, np.ndarray],
    now: dt.datetime,
) -> int:
    """Grants ahead of consumption, some staff deductions, refunds and one reversal."""
    now_us = int(now.timestamp() * 1_000_000)
    rows: list[tuple[object, ...]] = []
    balances: list[tuple[int, int]] = []
    entry_id = 0
    # gens is sorted by organization, then time: each organization is a slice.
    bounds = np.searchsorted(gens["org"], np.arange(1, len(orgs) + 2))
    for org in orgs:
        lo, hi = int(bounds[org.id - 1]), int(bounds[org.id])
        ts = gens["ts"][lo:hi]
        cum = np.concatenate([[0], np.cumsum(gens["credits"][lo:hi], dtype=np.int64)])

        def consumed_before(t_us: int, ts: np.ndarray = ts, cum: np.ndarray = cum) -> int:
            return int(cum[np.searchsorted(ts, t_us, side="left")])

        zone = zoneinfo.ZoneInfo(org.timezone)
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
        events: list[tuple[int, int, str, str, str | None, int | None]] = []
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
        events.sort(key=lambda e: e[0])
        running = 0
        for k, (t, amount, kind, reason, note, _reverses) in enumerate(events):
            entry_id += 1
            running += amount
            actor = FINANCE_STAFF[int(rng.integers(len(FINANCE_STAFF)))]
            rows.append((
                org.id, entry_id, amount, running - consumed_before(t), kind, reason, note, actor,
                f"seed-{org.id}-{k}", None, _ts(t),
            ))  # fmt: skip
        # One goodwill grant reversed a day later, to show reversals in the ledger.
        if org.id == 1 and rows and now_us - 3 * 86_400_000_000 > grant_times[0]:
            t = now_us - 3 * 86_400_000_000
            for amount, kind, reverses, reason in (
                (250, "grant", None, "Goodwill credit"),
                (-250, "reversal", entry_id + 1, "Granted to the wrong organization"),
            ):
                entry_id += 1
                running += amount
                t += 86_400_000_000 if kind == "reversal" else 0
                rows.append((
                    org.id, entry_id, amount, running - consumed_before(t), kind, reason, None,
                    FINANCE_STAFF[0], f"seed-{org.id}-{kind}", reverses, _ts(t),
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


def _load_audit(conn: psycopg.Connection, now: dt.datetime) -> None:
    """Audit rows for today's lowered limits, as customer success would have left them."""
    conn.execute(
        """
        INSERT INTO audit_log (organization_id, action, actor, reason, details, created_at)
        SELECT u.organization_id, 'set_daily_limit', %s,
               'Plan downgrade: limit lowered pending renewal',
               jsonb_build_object('type', u.type, 'effective', u.date,
                                  'old_limit', p.daily_limit, 'new_limit', u.daily_limit),
               %s::timestamptz - interval '1 hour'
        FROM usage_limits u
        JOIN organizations o ON o.id = u.organization_id
        CROSS JOIN LATERAL (
            SELECT q.daily_limit FROM usage_limits q
            WHERE q.organization_id = u.organization_id AND q.type = u.type AND q.date < u.date
            ORDER BY q.date DESC LIMIT 1
        ) p
        WHERE u.date = (%s::timestamptz AT TIME ZONE o.timezone)::date
          AND u.daily_limit < p.daily_limit
        """,
        (SUPPORT_STAFF[0], now, now),
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
