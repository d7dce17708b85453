"""The benchmark database: where it is, and loading demo data into it (or reusing a load)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from queries.db import create_direct_engine, normalize_url
from tooling import embedded, schema
from tooling.demo_data import seed_demo_data_staged


@dataclass(frozen=True, slots=True)
class Target:
    """The benchmark database: a SQLAlchemy URL and how pgbench reaches it."""

    url: str
    pgbench_connection: tuple[str, ...]
    description: str
    pgbench_password: str | None = None  # passed in the environment, not on the command line
    embedded_database: str | None = None  # its name when on the embedded server


def database_name(prefix: str, generations: int) -> str:
    """One database per size, so a growth run reuses every size's load."""
    return f"{prefix}_{generations}"


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
        server.url(database),
        (*connection, database),
        f"embedded PostgreSQL, database {database}",
        embedded_database=database,
    )


def drop(target: Target) -> bool:
    """Drop the size's database when it is on the embedded server (``--drop``: a growth
    run to 100M needs about 50 GB for that size alone, about 485 MB per million
    generations at 10,000 organizations and 365 days). False for BENCH_DATABASE_URL,
    whose database is not ours to drop."""
    if target.embedded_database is None:
        return False
    embedded.drop_database(embedded.ensure_running(), target.embedded_database)
    return True


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
_LOADED = text(
    "SELECT organizations, generations, days, seed, max_generation_id, loaded_at "
    "FROM benchmark_load"
)
_COUNTS = text("SELECT count(*) AS n, coalesce(max(id), 0) AS max_id FROM generations")
_FORGET_LOAD = text("DELETE FROM benchmark_load")
_REMEMBER_LOAD = text(
    "INSERT INTO benchmark_load "
    "(organizations, generations, days, seed, max_generation_id) "
    "SELECT :orgs, :gens, :days, :seed, coalesce(max(id), 0) FROM generations"
)
# Every table a read reads, the rollups included: they are what the timelines read now.
_VACUUMED = (
    "generations",
    "usage_limits",
    "credit_ledger",
    "credit_balances",
    "users",
    "organizations",
    "audit_log",
    "user_daily_usage",
    "quarter_hour_usage",
    "organization_daily_usage",
    "organization_monthly_usage",
)


def prepare_schema(target: Target) -> None:
    """Migrate the database and make sure it can remember its load."""
    schema.upgrade(url=target.url)
    direct = create_direct_engine(target.url)
    try:
        with direct.connect() as conn:
            conn.execute(_LOAD_TABLE)
            conn.commit()
    finally:
        direct.dispose()


def _load_matches(conn: Connection, wanted: LoadParameters) -> dt.datetime | None:
    """When the database holds exactly the load ``wanted``, its load time; else None."""
    row = conn.execute(_LOADED).one_or_none()
    if row is None:
        return None
    loaded = LoadParameters(row.organizations, row.generations, row.days, row.seed)
    if loaded != wanted:
        return None
    counts = conn.execute(_COUNTS).one()
    if counts.n != wanted.generations or counts.max_id != row.max_generation_id:
        return None
    loaded_at: dt.datetime = row.loaded_at
    return loaded_at


def load_unless_loaded(target: Target, wanted: LoadParameters, *, reload: bool) -> None:
    """Load demo data unless the same load is already there (``reload`` forces it).

    Run after ``prepare_schema`` and after undoing an interrupted write benchmark, so a
    reused load is the load as it was made."""
    direct = create_direct_engine(target.url)
    try:
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
        # `dashboard seed`'s own load (staging tables built in two sessions, swapped in):
        # its time is the load figure the target is about.
        report = seed_demo_data_staged(
            direct,
            organizations=wanted.organizations,
            generations=wanted.generations,
            days=wanted.days,
            seed=wanted.seed,
            reset=True,
        )
        with direct.connect() as conn:
            conn.execute(_LOAD_TABLE)  # the swap replaced the tables, not this one
            conn.execute(_FORGET_LOAD)
            conn.execute(
                _REMEMBER_LOAD,
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
            "generations/s); stages:",
            flush=True,
        )
        for stage, seconds in report.stages:
            print(f"    {seconds:7.1f} s  {stage}")
        print("  VACUUM ANALYZE ...", flush=True)
        vacuum(direct)
        print()
    finally:
        direct.dispose()


def vacuum(engine: Engine) -> None:
    """What autovacuum would do soon after a bulk load: set the visibility map (so
    index-only scans skip the heap) and refresh statistics."""
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in _VACUUMED:
            conn.exec_driver_sql("VACUUM (ANALYZE) " + table)
