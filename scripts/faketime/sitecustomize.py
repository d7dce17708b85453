"""Imported by every Python process of ``scripts/test_at.sh`` (its PYTHONPATH), and only there.

The script keeps monotonic clocks real (FAKETIME_DONT_FAKE_MONOTONIC=1). Debian 12's
libfaketime 0.9.10 still rewrites the deadline of ``clock_nanosleep(CLOCK_MONOTONIC,
TIMER_ABSTIME)`` as if that clock were faked (libfaketime issue #426, fixed after 0.9.10):
the deadline comes out negative and the call fails with EINVAL, which is how Python's
``time.sleep`` waits. Here ``time.sleep`` waits with ``select()`` instead, a relative
timeout that libfaketime passes through unchanged (and that Python resumes after a signal).
"""

from __future__ import annotations

import select
import time
from typing import SupportsIndex


def _sleep(seconds: float | SupportsIndex) -> None:
    length = float(seconds)
    if length < 0:
        raise ValueError("sleep length must be non-negative")
    select.select([], [], [], length)


time.sleep = _sleep
