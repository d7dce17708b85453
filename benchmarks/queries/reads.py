"""Timing the read cases of one size, and checking the naive answers against them."""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from benchmarks.queries.cases import Case, all_cases
from benchmarks.queries.tenants import OrgInfo, pick_organizations
from queries.usage import Runway
from tests.queries.read_functions import public_read_functions
from tests.statements import recording

# The targets at 100M generations, 10,000 organizations and 365 days.
PER_ORGANIZATION_TARGET_MS = 20.0  # every per-organization read of the largest tenant
CROSS_ORGANIZATION_TARGET_MS = 50.0  # every cross-organization read


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
    def target_ms(self) -> float:
        return PER_ORGANIZATION_TARGET_MS if self.case.org else CROSS_ORGANIZATION_TARGET_MS

    @property
    def targeted(self) -> bool:
        """Whether a target applies: the largest tenant's reads and the cross-organization
        ones (the median tenant is shown for contrast)."""
        return self.case.org is None or self.case.org.label == "largest"

    @property
    def meets_target(self) -> bool:
        return self.p95 <= self.target_ms


@dataclass(frozen=True, slots=True)
class SizeRun:
    """The reads of one size: the organizations measured and every result."""

    generations: int
    organizations: list[OrgInfo]
    results: list[Result]
    naive_measured: bool


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


_EXPLAIN = "EXPLAIN (ANALYZE, BUFFERS) "


def explain(engine: Engine, case: Case) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of every statement one call of ``case`` issues."""
    with engine.connect() as conn:
        with recording(conn) as seen:
            case.run(conn)
        conn.rollback()
        plans: list[str] = []
        for statement, parameters in seen.statements:
            # The recorded statement, prefixed: its values stay bound parameters.
            rows = conn.exec_driver_sql(_EXPLAIN + statement, parameters).scalars()
            plans.append("\n".join(str(r) for r in rows))
        conn.rollback()
    return "\n\n".join(plans)


def unbenchmarked(cases: list[Case]) -> set[str]:
    """Public read functions no case calls (none while the registry test passes)."""
    return public_read_functions() - {c.function for c in cases}


def run_reads(
    engine: Engine,
    *,
    generations: int,
    repeat: int,
    naive_repeat: int,
    warmup: int,
    now: dt.datetime | None = None,
) -> SizeRun:
    """Every case of one size, timed, at ``now`` (None: the wall clock); naive answers
    when ``naive_repeat`` > 0."""
    with engine.connect() as conn:
        picked = pick_organizations(conn, now)
        cases = all_cases(conn, picked)
    missing = unbenchmarked(cases)
    if missing:
        print(f"WARNING: public read functions not benchmarked: {', '.join(sorted(missing))}\n")
    results: list[Result] = []
    for number, case in enumerate(cases, 1):
        label = case.name
        print(
            f"  {generations:,}: {number}/{len(cases)} {label}", end="", flush=True, file=sys.stderr
        )
        result = measure(engine, case, repeat=repeat, naive_repeat=naive_repeat, warmup=warmup)
        print(f": p95 {result.p95:.2f} ms", file=sys.stderr)
        results.append(result)
    return SizeRun(generations, picked, results, naive_repeat > 0)


def plans_of_misses(engine: Engine, run: SizeRun) -> str:
    """The plans of the targeted reads that miss their target (or of the three slowest
    per-organization reads when none does)."""
    misses = [r for r in run.results if r.targeted and not r.meets_target]
    slow = (
        misses
        or sorted(
            (r for r in run.results if r.case.org is not None), key=lambda r: r.p95, reverse=True
        )[:3]
    )
    parts = []
    for r in slow:
        parts.append(f"EXPLAIN (ANALYZE, BUFFERS): {r.case.name}\n")
        parts.append("```\n" + explain(engine, r.case) + "\n```\n")
    return "\n".join(parts)
