"""The usage ranking and the monthly trend beside a git ref's, on one database as it is.

The reads of ``queries/usage.py`` as REF has them (loaded from ``git show REF:...``, so
one process, one connection and alternating calls measure both) and as this checkout
has them; every answer compared row by row first. For a database shared with other
work, where ``benchmark_pages.py`` would need this checkout's schema revision: the
database only needs the objects the reads use (here, migration 0025's tables and
function, applied by hand).

    uv run python scripts/benchmark_edges.py --database-url URL --baseline main --runs 20
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
from sqlalchemy import Connection, create_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from queries import usage


def _module_at(ref: str) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{ref}:queries/usage.py"], check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "usage_at_ref.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("usage_at_ref", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _cases(module: Any, today: dt.date, zone: str) -> dict[str, Callable[[Connection], Any]]:
    out: dict[str, Callable[[Connection], Any]] = {}
    for days in (7, 30, 90):
        start = today - dt.timedelta(days=days - 1)
        span = {"start": start, "end": today, "timezone": zone}
        out[f"ranking, all rows, {days}d"] = partial(module.all_orgs_usage, **span)
        out[f"ranking, a page of 50, {days}d"] = partial(module.all_orgs_usage_page, **span)
        out[f"monthly trend, {days}d"] = partial(module.all_orgs_monthly_credits, **span)
    return out


def _frame(answer: Any) -> pd.DataFrame:
    """A page's rows (either side's UsagePage), or the frame itself."""
    frame: pd.DataFrame = getattr(answer, "rows", answer)
    return frame


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--baseline", default="main")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--timezone", default="UTC", help="the company zone")
    parser.add_argument("--today", type=dt.date.fromisoformat, default=None)
    args = parser.parse_args()
    today = args.today or dt.datetime.now(dt.UTC).date()
    sides = {args.baseline: _module_at(args.baseline), "HEAD": usage}
    cases = {name: _cases(module, today, args.timezone) for name, module in sides.items()}
    engine = create_engine(args.database_url)
    print(f"# load average at start: {os.getloadavg()}; today {today}; zone {args.timezone}")
    samples: dict[tuple[str, str], list[float]] = {}
    with engine.connect() as conn:
        for case in cases["HEAD"]:
            answers = [_frame(cases[side][case](conn)) for side in sides]
            pd.testing.assert_frame_equal(answers[0], answers[1])
            print(f"# {case}: {len(answers[1])} rows, equal row by row")
        for run in range(args.runs):
            order = list(sides) if run % 2 == 0 else list(reversed(sides))
            for case in cases["HEAD"]:
                for side in order:
                    started = time.perf_counter()
                    cases[side][case](conn)
                    elapsed = (time.perf_counter() - started) * 1000
                    samples.setdefault((case, side), []).append(elapsed)
            conn.rollback()
    print(f"# load average at end: {os.getloadavg()}")
    print(f"| read | {args.baseline} p50 / p95 ms | HEAD p50 / p95 ms |")
    print("| --- | ---: | ---: |")
    for case in cases["HEAD"]:
        cells = [
            f"{statistics.median(s):.1f} / {_percentile(s, 0.95):.1f}"
            for s in (samples[(case, side)] for side in sides)
        ]
        print(f"| {case} | {cells[0]} | {cells[1]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
