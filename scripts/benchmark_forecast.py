"""The forecast reads at a fixed clock, on a query-benchmark database, side by side with
the forecast as it was first written (the limit in force read by ``limit_in_force()``
once per row). The registry's calls use "the afternoon of today", which falls after the
data once a benchmark load is a day old; this script fixes the clock inside the load.

    uv run python scripts/benchmark_forecast.py --size 100000000 --now 2026-11-25T15:00Z
        [--repeat N] [--database-url URL] [--baseline REF]

With ``--baseline REF``, the three reads as REF wrote them and as this checkout does, on
the same database at the same clock, ``--repeat`` alternating rounds of one call each,
in one table (``scripts/_baseline.py``: REF in a temporary worktree, each side in a warm
worker process). The first-written SQL is left out there: REF is the baseline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import time
from collections.abc import Callable, Sequence

import _baseline
from sqlalchemy import Connection, TextClause, create_engine, make_url, text

from queries import forecast


def _first_written() -> TextClause:
    """The forecast with a limit_in_force() call per row: the baseline."""
    sql = forecast._FORECAST.text
    changed = sql.replace(
        "u.daily_limit, c.now, u.date AS day,", "f.daily_limit, c.now, u.date AS day,"
    ).replace(
        "        WHERE u.used > 0\n",
        "        CROSS JOIN LATERAL limit_in_force(o.id, u.type, u.date) f\n"
        "        WHERE u.used > 0\n",
        1,
    )
    if changed == sql:
        raise SystemExit("the forecast's SQL changed: update this baseline")
    return text(changed)


def _timed(call: Callable[[], object], repeat: int, *, warm: bool = True) -> list[float]:
    if warm:
        call()
    out = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        out.append((time.perf_counter() - began) * 1000)
    return out


def _reads(conn: Connection, now: dt.datetime) -> dict[str, Callable[[], object]]:
    """The public reads, as the code under measurement writes them."""
    return {
        "quota_forecast": lambda: forecast.quota_forecast(conn, now=now),
        "usage_spikes": lambda: forecast.usage_spikes(conn, now=now),
        "low_runway (14 days)": lambda: forecast.low_runway(conn, now=now),
    }


def _work(url: str, now: dt.datetime) -> None:
    """A worker of ``--baseline``: every read once to warm up, then one call per round."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        reads = _reads(conn, now)
        for call in reads.values():
            call()
        _baseline.serve(lambda: {name: _timed(call, 1, warm=False) for name, call in reads.items()})


def _database_url(given: str | None, size: int) -> str:
    if given or os.environ.get("BENCH_DATABASE_URL"):
        return given or os.environ["BENCH_DATABASE_URL"]
    from tooling import embedded

    return embedded.ensure_running().url(f"dashboard_bench_{size}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000_000, help="dashboard_bench_<size>")
    parser.add_argument("--now", required=True, help="an aware ISO time inside the load")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--database-url", help="default: BENCH_DATABASE_URL or the size's")
    _baseline.add_arguments(parser)
    args = parser.parse_args(argv)
    now = dt.datetime.fromisoformat(args.now.replace("Z", "+00:00"))
    if now.tzinfo is None:
        raise SystemExit("--now needs a zone, e.g. 2026-11-25T15:00Z")
    url = _database_url(args.database_url, args.size)
    if args.json:
        _work(url, now)
        return
    if args.baseline:
        comparison = _baseline.compare(
            "benchmark_forecast.py",
            ["--database-url", url, "--now", args.now],
            ref=args.baseline,
            rounds=args.repeat,
        )
        print(
            f"{make_url(url).database}, now = {now.isoformat()}; {args.repeat} calls of each read a side."
        )
        print(*comparison.notes, sep="\n", end="\n\n")
        print(comparison.table(digits=1))
        return
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    params = {
        "now": now,
        "flat_mix": forecast.FLAT_MIX,
        "floor": forecast.SHARE_FLOOR,
        "near": forecast.NEAR,
        "recent_hours": forecast.RECENT_HOURS,
    }
    baseline = _first_written()
    with engine.connect() as conn:
        rows = conn.execute(forecast._FORECAST, params).all()
        if sorted(map(tuple, rows), key=str) != sorted(
            map(tuple, conn.execute(baseline, params).all()), key=str
        ):
            raise SystemExit("the baseline and the forecast disagree")
        reads = _reads(conn, now)
        cases: dict[str, Callable[[], object]] = {
            "quota_forecast": reads.pop("quota_forecast"),
            "quota_forecast, limit_in_force() per row (baseline)": lambda: conn.execute(
                baseline, params
            ).all(),
            **reads,
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeat):  # interleaved, so the load hits every case alike
            for name, call in cases.items():
                times[name] += _timed(call, 1)
    print(f"{make_url(url).database}, now = {now.isoformat()}: {len(rows):,} (organization,")
    print(f"type) rows with use today; same answers; {args.repeat} interleaved calls each.\n")
    print("| read | p50 ms | p95 ms |\n| --- | ---: | ---: |")
    for name, values in times.items():
        print(
            f"| {name} | {statistics.median(values):,.0f} | {_baseline.percentile(values, 0.95):,.0f} |"
        )


if __name__ == "__main__":
    main()
