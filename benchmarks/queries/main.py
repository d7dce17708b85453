"""The command line: load each size, time the reads, print the tables, then the writes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from benchmarks.arguments import instant
from benchmarks.queries import __doc__ as package_doc
from benchmarks.queries.cases import REGISTRY_DAYS
from benchmarks.queries.database import (
    LoadParameters,
    Target,
    bench_target,
    database_name,
    drop,
    load_unless_loaded,
    prepare_schema,
)
from benchmarks.queries.reads import SizeRun, plans_of_misses, run_reads
from benchmarks.queries.report import (
    growth_table,
    naive_summary,
    organizations_table,
    read_table,
    size_label,
    write_table,
)
from benchmarks.queries.writes import benchmark_writes, restore_after_writes
from queries.db import create_direct_engine, create_runtime_engine

COMMAND = "uv run python -m benchmarks.queries"


def _sizes(value: str) -> list[int]:
    try:
        sizes = sorted({int(part.replace("_", "")) for part in value.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not whole numbers: {value!r}") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes must be positive whole numbers")
    return sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    summary = package_doc.split("\n\n")[0] if package_doc else None
    parser = argparse.ArgumentParser(prog=COMMAND, description=summary)
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=[1_000_000],
        help="generations to load, comma-separated; one database and one column each",
    )
    parser.add_argument("--orgs", type=int, default=40)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per read")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before them")
    parser.add_argument(
        "--naive-repeat", type=int, default=5, help="timed calls of each naive answer"
    )
    parser.add_argument(
        "--naive-max",
        type=int,
        default=1_000_000,
        help="largest size whose naive answers are timed (they read every raw row)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="per write measurement")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating write rounds per side and case"
    )
    parser.add_argument(
        "--database",
        default="dashboard_bench",
        help="name prefix on the embedded server: <prefix>_<size>",
    )
    parser.add_argument("--reload", action="store_true", help="load the data even if present")
    parser.add_argument(
        "--drop",
        action="store_true",
        help="drop each size's database on the embedded server once measured, so only one "
        "size is on disk at a time (the next run loads again)",
    )
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-reads", action="store_true")
    parser.add_argument("--skip-writes", action="store_true")
    parser.add_argument(
        "--now",
        type=instant,
        help="the reads' clock (ISO 8601 with an offset, e.g. 2026-12-07T23:30Z): "
        "'today' inside a load that ended before today; default the wall clock",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print EXPLAIN (ANALYZE, BUFFERS) of the reads that miss their target "
        "(or of the three slowest per-organization ones), for each size",
    )
    args = parser.parse_args(argv)
    if min(args.repeat, args.rounds, args.orgs, args.days) < 1 or args.seconds <= 0:
        parser.error("--repeat, --rounds, --orgs and --days must be positive, --seconds above 0")
    return args


def prepare(args: argparse.Namespace, generations: int) -> Target:
    """The size's database, migrated, with an interrupted write benchmark undone and the
    load in place (reused when its parameters match)."""
    target = bench_target(database_name(args.database, generations))
    prepare_schema(target)
    direct = create_direct_engine(target.url)
    try:
        restore_after_writes(direct)
    finally:
        direct.dispose()
    wanted = LoadParameters(args.orgs, generations, args.days, args.seed)
    load_unless_loaded(target, wanted, reload=args.reload)
    return target


def measure_size(args: argparse.Namespace, target: Target, generations: int) -> SizeRun:
    naive = not args.skip_naive and generations <= args.naive_max
    engine = create_runtime_engine(target.url, pool_size=1, max_overflow=0)
    try:
        run = run_reads(
            engine,
            generations=generations,
            repeat=args.repeat,
            naive_repeat=args.naive_repeat if naive else 0,
            warmup=args.warmup,
            now=args.now,
        )
        print(f"## Reads at {generations:,} generations ({size_label(generations)})\n")
        print(organizations_table(run) + "\n")
        print(
            f"p50/p95 over {args.repeat} calls after {args.warmup} warm-up calls; "
            + (
                f"naive p50 over {args.naive_repeat} calls.\n"
                if naive
                else "naive answers not run at this size.\n"
            )
        )
        print(
            f"Variants without a range read the shared registry's calls over the last "
            f"{REGISTRY_DAYS} days (per organization in its zone, across organizations in UTC).\n"
        )
        print(read_table(run.results) + "\n")
        if naive:
            print(naive_summary(run.results) + "\n")
        if args.explain:
            print(plans_of_misses(engine, run))
    finally:
        engine.dispose()
    return run


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    shown_args = list(sys.argv[1:] if argv is None else argv)
    print("# Benchmark of queries/\n")
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs; load average at start {load:.2f}.\n")
    if load > 1.0:
        print("WARNING: the machine is busy; the numbers below are pessimistic.\n")
    print(f"Command: `{' '.join([COMMAND, *shown_args])}`\n")
    runs: list[SizeRun] = []
    target: Target | None = None
    largest = args.sizes[-1]
    for generations in args.sizes:
        target = prepare(args, generations)
        print(f"Size {size_label(generations)}: {target.description}.\n")
        if not args.skip_reads:
            runs.append(measure_size(args, target, generations))
        if args.drop and generations != largest:
            _drop(target)
    if runs:
        print(f"## Growth: {args.orgs:,} organizations, {args.days} days\n")
        print(growth_table(runs, naive_max=None if args.skip_naive else args.naive_max) + "\n")
        # The write benchmark loads the machine itself: check for other work before it.
        print(f"Load average after the reads: {os.getloadavg()[0]:.2f}.\n")
    if not args.skip_writes and target is not None:
        print(f"## Writes at {largest:,} generations\n")
        comparisons = benchmark_writes(target, seconds=args.seconds, rounds=args.rounds)
        print(write_table(comparisons, seconds=args.seconds, rounds=args.rounds) + "\n")
    if args.drop and target is not None:
        _drop(target)


def _drop(target: Target) -> None:
    if drop(target):
        print(f"Dropped {target.embedded_database} (--drop).\n")
    else:
        print("--drop leaves the database of BENCH_DATABASE_URL in place.\n")
