"""The forecast reads at a fixed clock, on a query-benchmark database, side by side with
the forecast as it was first written (the limit in force read by ``limit_in_force()``
once per row). The registry's calls use "the afternoon of today", which falls after the
data once a benchmark load is a day old; this script fixes the clock inside the load.

    uv run python scripts/benchmark_forecast.py --size 100000000 --now 2026-11-25T15:00Z
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import time
from collections.abc import Callable

from sqlalchemy import TextClause, create_engine, text

from queries import forecast
from tooling import embedded


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


def _timed(call: Callable[[], object], repeat: int) -> list[float]:
    call()  # warm-up
    out = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        out.append((time.perf_counter() - began) * 1000)
    return out


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000_000, help="dashboard_bench_<size>")
    parser.add_argument("--now", required=True, help="an aware ISO time inside the load")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    now = dt.datetime.fromisoformat(args.now.replace("Z", "+00:00"))
    if now.tzinfo is None:
        raise SystemExit("--now needs a zone, e.g. 2026-11-25T15:00Z")
    url = os.environ.get("BENCH_DATABASE_URL") or embedded.ensure_running().url(
        f"dashboard_bench_{args.size}"
    )
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    params = {
        "now": now,
        "flat_mix": forecast.FLAT_MIX,
        "floor": forecast.SHARE_FLOOR,
        "near": forecast.NEAR,
    }
    baseline = _first_written()
    with engine.connect() as conn:
        rows = conn.execute(forecast._FORECAST, params).all()
        if sorted(map(tuple, rows), key=str) != sorted(
            map(tuple, conn.execute(baseline, params).all()), key=str
        ):
            raise SystemExit("the baseline and the forecast disagree")
        cases: dict[str, Callable[[], object]] = {
            "quota_forecast": lambda: forecast.quota_forecast(conn, now=now),
            "quota_forecast, limit_in_force() per row (baseline)": lambda: conn.execute(
                baseline, params
            ).all(),
            "usage_spikes": lambda: forecast.usage_spikes(conn, now=now),
            "low_runway (14 days)": lambda: forecast.low_runway(conn, now=now),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeat):  # interleaved, so the load hits every case alike
            for name, call in cases.items():
                times[name] += _timed(call, 1)
    print(f"dashboard_bench_{args.size}, now = {now.isoformat()}: {len(rows):,} (organization,")
    print(f"type) rows with use today; same answers; {args.repeat} interleaved calls each.\n")
    print("| read | p50 ms | p95 ms |\n| --- | ---: | ---: |")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):,.0f} | {_p95(values):,.0f} |")


if __name__ == "__main__":
    main()
