"""What each part of record_generation's statement costs the server: pgbench running the
write benchmark's plain-SQL transaction (``benchmarks.queries.writes``) with rollup blocks
taken out, prepared or not, beside the seed's minimal transaction (the quota upsert and
the insert, whose trigger debits the balance), in alternating rounds on a write-benchmark
database loaded by ``uv run python -m benchmarks.queries``.

    uv run python scripts/benchmark_rollup_cost.py --database dashboard_bench_1000000

The variants are measurements, not products: without its rollups the statement no
longer keeps the reads exact.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy import Connection, text

from benchmarks.queries import writes
from benchmarks.queries.database import bench_target
from queries import generations
from queries.db import create_direct_engine

_ROLLUPS = ("per_org_month", "per_user", "per_quarter_hour", "per_org_day", "per_org_later_days")

# The seed's minimal transaction in pgbench's terms: BEGIN, the two statements and END,
# each a round trip of its own, as plain psycopg sends them.
MINIMAL = "\n".join(
    [
        "\\set uid random(:first_user, :last_user)",
        "\\set type_index random(0, :types - 1)",
        "BEGIN;",
        "WITH ty AS MATERIALIZED (SELECT type AS gtype, default_credits FROM generation_types "
        "ORDER BY type OFFSET :type_index LIMIT 1) "
        "INSERT INTO usage_limits AS u (organization_id, type, date, used, credits_used, "
        "daily_limit) "
        "SELECT :org, ty.gtype, (now() AT TIME ZONE o.timezone)::date, 1, ty.default_credits, "
        "1000000000 FROM organizations o, ty WHERE o.id = :org "  # writes.BENCH_LIMIT
        "ON CONFLICT (organization_id, type, date) DO UPDATE "
        "SET used = u.used + 1, credits_used = u.credits_used + excluded.credits_used "
        "WHERE u.used < u.daily_limit;",
        "INSERT INTO generations (organization_id, user_id, type, credits) "
        "SELECT :org, :uid, type, default_credits FROM generation_types "
        "ORDER BY type OFFSET :type_index LIMIT 1;",
        "END;",
        "",
    ]
)


def without(transaction: str, *blocks: str) -> str:
    """``transaction`` with the named blocks of the work statement taken out."""
    for block in blocks:
        found = re.search(rf"\n    {block} AS \(\n.*?\n    \),", transaction, flags=re.S)
        if found is None:  # the last block: a comma before it, none after
            found = re.search(
                rf",\n    {block} AS \(\n.*?\n    \)(?=\n    SELECT)", transaction, flags=re.S
            )
        if found is None:
            raise SystemExit(f"record_generation's statement no longer has a block {block}")
        transaction = transaction[: found.start()] + transaction[found.end() :]
    return transaction


# The prototype of the next step: the work statement, verbatim, as a PL/pgSQL function
# (whose plans each server connection keeps), created in the benchmark database for the
# run and dropped after it.
_FUNCTION = "benchmark_record_generation"
_ARGUMENTS = (
    ("CAST(:credits AS integer)", "p_credits"),
    ("CAST(:at AS timestamptz)", "p_at"),
    ("CAST(:key AS text)", "p_key"),
    (":key,", "p_key,"),
    (":org", "p_org"),
    (":user", "p_user"),
    (":type", "p_type"),
)


def create_function(conn: Connection) -> None:
    """``_FUNCTION``: record_generation's work statement in PL/pgSQL, its result columns
    typed as one run of the statement (rolled back) returns them."""
    body = generations._RECORD.text
    for old, new in _ARGUMENTS:
        if old not in body:
            raise SystemExit(f"record_generation's statement no longer has {old!r}")
        body = body.replace(old, new)
    probe = conn.execute(text("SELECT organization_id AS org, id AS user FROM users LIMIT 1")).one()
    result = conn.execute(
        generations._RECORD,
        {
            "org": probe.org,
            "user": probe.user,
            "type": "chat",
            "credits": None,
            "at": None,
            "key": None,
        },
    )
    cursor = result.cursor
    assert cursor is not None and cursor.description is not None
    columns = [(column[0], column[1]) for column in cursor.description]
    result.close()
    conn.rollback()
    typed = [
        f"{name} " + conn.execute(text("SELECT format_type(:oid, NULL)"), {"oid": oid}).scalar_one()
        for name, oid in columns
    ]
    conn.execute(
        text(
            f"CREATE OR REPLACE FUNCTION {_FUNCTION}(p_org bigint, p_user bigint, p_type text, "
            "p_credits integer, p_at timestamptz, p_key text) "
            f"RETURNS TABLE ({', '.join(typed)}) LANGUAGE plpgsql AS $fn$\n"
            f"#variable_conflict use_column\nBEGIN\nRETURN QUERY {body};\nEND\n$fn$"
        )
    )
    conn.commit()


def _function_transaction() -> str:
    """The pgbench transaction with the work statement replaced by a call of the function."""
    call = (
        "SELECT * FROM benchmark_record_generation(:org, :uid, (SELECT type FROM generation_types "
        "ORDER BY type OFFSET :type_index LIMIT 1), NULL, NULL, NULL);"
    )
    lines = writes.PGBENCH_TRANSACTION.split("\\startpipeline\n")[0]
    return f"{lines}\\startpipeline\nBEGIN;\n{generations._LOCK.text.strip()};\n{call}\n\\endpipeline\nEND;\n"


def variants() -> dict[str, tuple[str, str]]:
    """Each variant's pgbench transaction and query mode."""
    full = re.sub(r"\n *--[^\n]*", "", writes.PGBENCH_TRANSACTION)  # comments sit between blocks
    lock = generations._LOCK.text.strip() + ";\n"
    bare = without(full, *_ROLLUPS)
    return {
        "record_generation's transaction": (full, "extended"),
        "the same, prepared": (full, "prepared"),
        "without the lock statement": (full.replace(lock, ""), "extended"),
        **{f"without {block}": (without(full, block), "extended") for block in _ROLLUPS[:4]},
        "without any rollup": (bare, "extended"),
        "without any rollup, prepared": (bare, "prepared"),
        "the work as a PL/pgSQL function (prototype)": (_function_transaction(), "extended"),
        "the minimal transaction": (MINIMAL, "extended"),
    }


def run(
    transaction: str,
    mode: str,
    *,
    orgs: list[writes.WriteOrg],
    types: int,
    seconds: int,
    connection: tuple[str, ...],
) -> float:
    """pgbench's tx/s for ``transaction``, one script per organization, 8 clients."""
    with tempfile.TemporaryDirectory(prefix="bench-rollups-") as folder:
        command = [writes.pgbench_binary(), "-n", "-c", str(writes.THREADS), "-j", "2"]
        command += ["-M", mode, "-T", str(seconds), "-D", f"types={types}", "-D", "ms=10000"]
        for org in orgs:
            script = Path(folder) / f"org_{org.id}.sql"
            script.write_text(
                f"\\set org {org.id}\n\\set first_user {org.first_user}\n"
                f"\\set last_user {org.last_user}\n{transaction}"
            )
            command += ["-f", f"{script}@1"]
        done = subprocess.run([*command, *connection], capture_output=True, text=True, check=False)
    found = re.search(r"tps = ([\d.]+) \(without", done.stdout)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"pgbench failed:\n{done.stdout}\n{done.stderr}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--database", default="dashboard_bench_1000000")
    parser.add_argument("--seconds", type=int, default=8, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="variant names (default: all)")
    args = parser.parse_args()
    target = bench_target(args.database)
    direct = create_direct_engine(target.url)
    try:
        with direct.connect() as conn:
            everyone = writes.write_orgs(conn)
            types = conn.execute(text("SELECT count(*) FROM generation_types")).scalar_one()
        ids = sorted(everyone)
        step = max(1, -(-len(ids) // writes.MAX_PGBENCH_SCRIPTS))
        spread = [everyone[i] for i in ids[::step]]
        chosen = {k: v for k, v in variants().items() if not args.only or k in args.only}
        print(f"2 CPUs; load average at start {os.getloadavg()[0]:.2f}.\n")
        results: dict[str, list[float]] = {name: [] for name in chosen}
        with direct.connect() as conn:
            create_function(conn)
        writes.prepare_writes(direct)
        try:
            for _ in range(args.rounds):  # alternating, so a slow spell hits every variant
                for name, (transaction, mode) in chosen.items():
                    results[name].append(
                        run(
                            transaction,
                            mode,
                            orgs=spread,
                            types=types,
                            seconds=args.seconds,
                            connection=target.pgbench_connection,
                        )
                    )
        finally:
            writes.restore_after_writes(direct)
            with direct.begin() as conn:
                conn.execute(text(f"DROP FUNCTION IF EXISTS {_FUNCTION}"))
    finally:
        direct.dispose()
    minimal = statistics.median(results.get("the minimal transaction") or [float("nan")])
    print(
        f"pgbench -c {writes.THREADS} -j 2, {len(spread)} organizations, {args.rounds} "
        f"alternating rounds of {args.seconds} s.\n"
    )
    print("| variant | tx/s per round | median | of the minimal |")
    print("| --- | --- | ---: | ---: |")
    for name, runs in results.items():
        median = statistics.median(runs)
        print(
            f"| {name} | {', '.join(f'{r:,.0f}' for r in runs)} | {median:,.0f} | "
            f"{median / minimal:.2f} |"
        )


if __name__ == "__main__":
    main()
