"""What each part of record_generation's work costs the server: pgbench running the write
benchmark's plain-SQL transaction (``benchmarks.queries.writes``: the lock, then the call
of ``record_generation_work``, migration 0016), the same with the function's rollups taken
out, and the work statement sent inline as before migration 0016 (with rollup blocks taken
out, prepared or not), beside the seed's minimal transaction (the quota upsert and the
insert, whose trigger debits the balance), in alternating rounds on a write-benchmark
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
from benchmarks.queries.database import bench_target, prepare_schema
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


# The work statement inline, as record_generation sent it before migration 0016: the
# function's stored body (so it is the statement the function runs, today's rollups
# included), its parameters swapped for what pgbench sends.
_FUNCTION = "record_generation_work"
_INLINE_SWAPS = (
    ("p_org", ":org"),
    ("p_user", ":uid"),
    ("p_type", "(SELECT gtype FROM ty)"),
    ("p_credits", "CAST(NULL AS integer)"),  # the type's default cost
    ("p_at", "CAST(NULL AS timestamptz)"),  # now()
    ("p_key", "CAST(NULL AS text)"),  # no idempotency key
)
# The function without its rollups, created for the run and dropped after it.
_BARE = "benchmark_record_generation_bare"


def _body(conn: Connection) -> str:
    """The function's work statement, as stored."""
    source = conn.execute(
        text("SELECT prosrc FROM pg_proc WHERE proname = :name"), {"name": _FUNCTION}
    ).scalar_one()
    found = re.fullmatch(
        r"\s*#variable_conflict use_column\s+BEGIN\s+RETURN QUERY\s+(WITH .*?);\s*END\s*",
        source,
        flags=re.S,
    )
    if found is None:
        raise SystemExit(f"{_FUNCTION} is no longer one RETURN QUERY of a WITH statement")
    return "    " + found.group(1)


def inline_work(conn: Connection) -> str:
    """The work statement sent inline, in pgbench's terms."""
    work = _body(conn)
    for old, new in _INLINE_SWAPS:
        if not re.search(rf"\b{old}\b", work):
            raise SystemExit(f"{_FUNCTION} no longer has {old!r}")
        work = re.sub(rf"\b{old}\b", new, work)
    ty = "SELECT type AS gtype FROM generation_types ORDER BY type OFFSET :type_index LIMIT 1"
    return f"WITH ty AS MATERIALIZED ({ty}),\n{work.strip().removeprefix('WITH ')};"


def create_bare_function(conn: Connection) -> None:
    """``_BARE``: the function with every rollup block taken out."""
    definition = conn.execute(
        text("SELECT pg_get_functiondef(CAST(:name AS regproc))"), {"name": _FUNCTION}
    ).scalar_one()
    body = _body(conn)
    definition = definition.replace(body.strip(), without(body, *_ROLLUPS).strip())
    definition = definition.replace(f"public.{_FUNCTION}(", f"public.{_BARE}(", 1)
    conn.execute(text(definition))
    conn.commit()


def _transaction(work: str) -> str:
    """The pgbench transaction with ``work`` in place of the call of the function."""
    head, rest = writes.PGBENCH_TRANSACTION.split("\\startpipeline\n")
    lock = generations._LOCK.text.strip() + ";\n"
    if lock not in rest:
        raise SystemExit("the pgbench transaction no longer has the lock statement")
    return f"{head}\\startpipeline\nBEGIN;\n{lock}{work}\n\\endpipeline\nEND;\n"


def variants(inline: str) -> dict[str, tuple[str, str]]:
    """Each variant's pgbench transaction and query mode, ``inline`` the work statement
    as record_generation sent it before migration 0016."""
    full = writes.PGBENCH_TRANSACTION
    lock = generations._LOCK.text.strip() + ";\n"
    inline_full = _transaction(inline)
    bare = without(inline_full, *_ROLLUPS)
    return {
        "record_generation's transaction (the function, migration 0016)": (full, "extended"),
        "the function without any rollup": (full.replace(_FUNCTION, _BARE), "extended"),
        "the function, without the lock statement": (full.replace(lock, ""), "extended"),
        "the work statement inline (before 0016)": (inline_full, "extended"),
        "inline, prepared": (inline_full, "prepared"),
        **{f"inline without {b}": (without(inline_full, b), "extended") for b in _ROLLUPS[:4]},
        "inline without any rollup": (bare, "extended"),
        "inline without any rollup, prepared": (bare, "prepared"),
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
    prepare_schema(target)  # the load may predate the newest migration
    direct = create_direct_engine(target.url)
    try:
        with direct.connect() as conn:
            everyone = writes.write_orgs(conn)
            types = conn.execute(text("SELECT count(*) FROM generation_types")).scalar_one()
        ids = sorted(everyone)
        step = max(1, -(-len(ids) // writes.MAX_PGBENCH_SCRIPTS))
        spread = [everyone[i] for i in ids[::step]]
        with direct.connect() as conn:
            inline = inline_work(conn)
            create_bare_function(conn)
        chosen = {k: v for k, v in variants(inline).items() if not args.only or k in args.only}
        print(f"2 CPUs; load average at start {os.getloadavg()[0]:.2f}.\n")
        results: dict[str, list[float]] = {name: [] for name in chosen}
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
                conn.execute(text(f"DROP FUNCTION IF EXISTS {_BARE}"))
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
