"""The entry points: a load's options and plan, and its phases in order, in one
transaction (:func:`seed_demo_data`) or staged beside the live tables
(:func:`seed_demo_data_staged`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql
from sqlalchemy import Connection, Engine

from queries.db import company_timezone
from tooling import staging
from tooling.demo_data.generations import load_generations
from tooling.demo_data.ledger import load_ledger
from tooling.demo_data.organizations import (
    Org,
    load_lookup_and_tenants,
    make_organizations,
    make_users,
)
from tooling.demo_data.quotas import load_audit, load_usage
from tooling.demo_data.rollups import (
    ROLLUP_COPIES,
    RollupSession,
    keep_usage_edges,
    keep_usual_days,
)
from tooling.demo_data.tables import (
    append_only_guard_lifted,
    build_keys_serially,
    schema_tables,
    statement_label,
    table_keys,
)
from tooling.errors import DemoDataError


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
    orgs: list[Org]
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
    orgs = make_organizations(rng, organizations, days, now)
    users = make_users(rng, orgs, generations)
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
    load_lookup_and_tenants(conn, plan.orgs, plan.users)
    lap("tenants")
    loaded, totals = load_generations(
        conn,
        plan.rng,
        plan.orgs,
        plan.users,
        (plan.generations, plan.days, plan.now),
        lap,
        rollups,
    )
    usage_rows, limit_changes = load_usage(conn, plan.rng, plan.orgs, totals, plan.now)
    lap("usage_limits")
    ledger_entries = load_ledger(conn, plan.rng, plan.orgs, totals, plan.now)
    load_audit(conn, limit_changes, plan.now)
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
            build_keys_serially(conn, stages.lap)
            keep_usual_days(conn, plan.now)
            keep_usage_edges(conn, plan.now, company_timezone())

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
            rollups = RollupSession(connect)
            try:
                staging.begin_loading(conn, [t for t in tables if t not in ROLLUP_COPIES])
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
            keep_usual_days(conn, plan.now)
            keep_usage_edges(conn, plan.now, company_timezone())
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


def _sync_identities(conn: psycopg.Connection) -> None:
    # Rows were loaded with explicit ids; move each identity past them.
    for table in (
        "organizations",
        "users",
        "credit_ledger",
        "credit_grants",
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
