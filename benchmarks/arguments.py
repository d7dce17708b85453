"""Command-line values the benchmarks share."""

from __future__ import annotations

import argparse
import datetime as dt


def instant(value: str) -> dt.datetime:
    """``--now``: an aware ISO 8601 instant ("2026-12-07T23:30Z", "...+05:45"), in UTC.
    A naive or unreadable one stops the command with a sentence (argparse's exit 2)."""
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 instant: {value!r}") from None
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} needs an offset (Z, +05:45, ...)")
    return at.astimezone(dt.UTC)
