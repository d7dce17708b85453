"""``--now`` of the benchmarks (benchmarks/arguments.py): an aware instant or a sentence."""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.arguments import instant

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-12-07T23:30Z", dt.datetime(2026, 12, 7, 23, 30, tzinfo=dt.UTC)),
        ("2026-12-08T05:15+05:45", dt.datetime(2026, 12, 7, 23, 30, tzinfo=dt.UTC)),
    ],
)
def test_now_is_an_aware_instant_in_utc(value: str, expected: dt.datetime) -> None:
    at = instant(value)
    assert at == expected and at.tzinfo == dt.UTC


@pytest.mark.parametrize("value", ["2026-12-07T23:30", "yesterday", ""])
def test_a_naive_or_unreadable_now_is_refused(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        instant(value)


@pytest.mark.parametrize(
    "command", [["scripts/benchmark_pages.py"], ["-m", "benchmarks.queries"]], ids=str
)
def test_a_naive_now_stops_the_benchmark_with_a_sentence(command: list[str]) -> None:
    run = subprocess.run(
        [sys.executable, *command, "--now", "2026-12-07T23:30"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 2
    assert "needs an offset" in run.stderr and "Traceback" not in run.stderr
