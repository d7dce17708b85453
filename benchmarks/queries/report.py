"""The markdown tables the benchmark prints."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from benchmarks.queries.cases import describe
from benchmarks.queries.reads import (
    CROSS_ORGANIZATION_TARGET_MS,
    PER_ORGANIZATION_TARGET_MS,
    Result,
    SizeRun,
)
from benchmarks.queries.writes import THREADS, WriteComparison

# Issue 8: record_generation at 0.9x or better of the same transaction in plain SQL.
WRITE_TARGET_RATIO = 0.9
# Issue 17: record_generation at 0.6x or better of the minimal transaction (its rollups).
ROLLUP_TARGET_RATIO = 0.6


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if value < 10 else f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


def size_label(generations: int) -> str:
    """1000000 -> 1M, 250000 -> 250k: the column heads of the growth table."""
    for unit, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if generations >= unit and generations % unit == 0:
            return f"{generations // unit}{suffix}"
    return f"{generations:,}"


def organizations_table(run: SizeRun) -> str:
    lines = [
        "| org | id | name | time zone | generations | users | most active user (generations) |",
        "| --- | ---: | --- | --- | ---: | ---: | --- |",
    ]
    for org in run.organizations:
        lines.append(
            f"| {org.label} | {org.id} | {org.name} | {org.timezone} | {org.generations:,} | "
            f"{org.users} | {org.user_id} ({org.user_generations:,}) |"
        )
    return "\n".join(lines)


def _target_mark(r: Result) -> str:
    if not r.targeted:
        return "n/a (median tenant)"
    return f"≤ {r.target_ms:.0f} ms: " + ("yes" if r.meets_target else "**NO**")


def read_table(results: Sequence[Result]) -> str:
    """One size: every case, p50/p95, the naive answer and the target."""
    lines = [
        "| function | variant | org | p50 ms | p95 ms | naive p50 ms | speed-up | target p95 |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        naive = r.naive_p50
        speedup = f"{naive / r.p50:,.0f}×" if naive is not None and r.p50 > 0 else "—"
        lines.append(
            f"| `{r.case.function}` | {r.case.variant or '—'} | {r.case.scope} | "
            f"{fmt_ms(r.p50)} | {fmt_ms(r.p95)} | {fmt_ms(naive)} | {speedup} | {_target_mark(r)} |"
        )
    return "\n".join(lines)


def naive_summary(results: Sequence[Result]) -> str:
    checked = [r for r in results if r.agrees is not None]
    wrong = [r for r in checked if not r.agrees]
    lines = [
        "Naive answers checked against the functions' (row count and column totals): "
        f"{len(checked) - len(wrong)} of {len(checked)} agree."
    ]
    lines += [f"  differs: {r.case.name}" for r in wrong]
    return "\n".join(lines)


def _key(r: Result) -> tuple[str, str, str]:
    return (r.case.function, r.case.variant, r.case.scope)


def growth_table(runs: Sequence[SizeRun], *, naive_max: int | None) -> str:
    """The targeted reads side by side: p95 per size, marked against the target, and the
    naive p50 at the sizes it was measured."""
    sizes = [run.generations for run in runs]
    naive_sizes = [run.generations for run in runs if run.naive_measured]
    by_size = {run.generations: {_key(r): r for r in run.results if r.targeted} for run in runs}
    rows: list[tuple[str, str, str]] = []
    for run in runs:
        rows += [k for k in by_size[run.generations] if k not in rows]
    largest = sizes[-1]
    head = ["read", "variant", "org"]
    head += [f"p95 ms at {size_label(s)}" for s in sizes]
    head += [f"naive p50 ms at {size_label(s)}" for s in naive_sizes]
    head += ["target p95", f"met at {size_label(largest)}"]
    lines = ["| " + " | ".join(head) + " |"]
    lines.append(
        "| --- | --- | --- |" + " ---: |" * (len(sizes) + len(naive_sizes)) + " ---: | --- |"
    )
    for key in rows:
        function, variant, scope = key
        cells = [f"`{function}`", variant or "—", scope]
        for size in sizes:
            r = by_size[size].get(key)
            if r is None:
                cells.append("—")
            else:
                mark = "✓" if r.meets_target else "✗"
                shown = f"{fmt_ms(r.p95)} {mark}"
                cells.append(shown if r.meets_target else f"**{shown}**")
        for size in naive_sizes:
            r = by_size[size].get(key)
            cells.append(fmt_ms(r.naive_p50 if r else None))
        target = PER_ORGANIZATION_TARGET_MS if scope != "all" else CROSS_ORGANIZATION_TARGET_MS
        cells.append(f"≤ {target:.0f} ms")
        last = by_size[largest].get(key)
        cells.append("—" if last is None else "yes" if last.meets_target else "**NO**")
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        "",
        f"Per-organization reads: the largest tenant of each size (target p95 ≤ "
        f"{PER_ORGANIZATION_TARGET_MS:.0f} ms); cross-organization reads: org 'all' (target "
        f"p95 ≤ {CROSS_ORGANIZATION_TARGET_MS:.0f} ms). ✓ met, ✗ missed.",
    ]
    skipped = [s for s in sizes if s not in naive_sizes]
    if naive_max is None:
        notes.append("Naive (pandas) baselines not run (`--skip-naive`).")
    elif skipped:
        notes.append(
            f"Naive (pandas) baselines run only up to {naive_max:,} generations (`--naive-max`): "
            "they read every raw row of the range into pandas and would take hours at "
            f"{', '.join(size_label(s) for s in skipped)}."
        )
    misses = [k for k in rows if (r := by_size[largest].get(k)) is not None and not r.meets_target]
    notes.append(
        f"Missed at {size_label(largest)}: "
        + (", ".join(describe(*key) for key in misses) or "none")
        + "."
    )
    return "\n".join(lines + notes)


def write_table(comparisons: Sequence[WriteComparison], *, seconds: float, rounds: int) -> str:
    lines = [
        f"Writes: {THREADS} threads, {rounds} alternating rounds of {seconds:g} s per side; "
        f"pgbench -n -c {THREADS} -j 2 -M extended with the same transaction in plain SQL. "
        "Each side's median round is shown; the ratio is of the medians.\n",
        "| organizations | record_generation tx/s | mean latency ms | client CPU ms/tx | errors "
        "| pgbench tx/s | mean latency ms | client CPU ms/tx | ratio (per round) | "
        "meets 0.9x target |",
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
            f"{c.ratio:.2f} ({rounds_shown}) | {'yes' if c.ratio >= WRITE_TARGET_RATIO else '**NO**'} |"
        )
    lines += [
        "",
        "What the rollups cost: record_generation beside the minimal transaction (the quota "
        "upsert and the insert, whose trigger debits the balance; no lock statement, no "
        f"rollup), plain psycopg, {THREADS} threads, in the same rounds.\n",
        "| organizations | record_generation tx/s | minimal tx/s | mean latency ms "
        "| client CPU ms/tx | errors | ratio (per round) | meets 0.6x target |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for c in comparisons:
        python, minimal = c.median(c.python), c.median(c.minimal)
        failed: Counter[str] = Counter()
        for run in c.minimal:
            failed.update(run.errors)
        rounds_shown = ", ".join(f"{r:.2f}" for r in c.rollup_ratios)
        meets = "yes" if c.rollup_ratio >= ROLLUP_TARGET_RATIO else "**NO**"
        lines.append(
            f"| {c.label} | {python.per_second:,.0f} | {minimal.per_second:,.0f} | "
            f"{minimal.latency_ms:.2f} | {minimal.client_cpu_ms_per_transaction:.2f} | "
            f"{', '.join(f'{k} {v}' for k, v in failed.items()) or 'none'} | "
            f"{c.rollup_ratio:.2f} ({rounds_shown}) | {meets} |"
        )
    return "\n".join(lines)
