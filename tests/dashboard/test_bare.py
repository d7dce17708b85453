"""Streamlit's notices for code outside a script run: silent where expected (the
warm-up thread, caches made without a server), loud everywhere else."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from dashboard import bare, warmup

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def records(name: str) -> Iterator[list[logging.LogRecord]]:
    """What ``name`` logs inside the block, whatever its level or propagation."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logger = logging.getLogger(name)
    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _in_thread(name: str) -> None:
    thread = threading.Thread(target=get_script_run_ctx, name=name)
    thread.start()
    thread.join()


def test_the_warm_up_thread_reads_without_missing_context_lines_and_others_still_warn() -> None:
    bare.quiet_thread(warmup.THREAD_NAME)
    bare.quiet_thread(warmup.THREAD_NAME)  # once, however often asked
    with records(bare.CONTEXT_LOGGER) as seen:
        _in_thread(warmup.THREAD_NAME)
        _in_thread("somebody-else")
    assert [r.threadName for r in seen] == ["somebody-else"]
    assert bare.NO_CONTEXT in seen[0].getMessage()
    filters = logging.getLogger(bare.CONTEXT_LOGGER).filters
    assert sum(isinstance(f, bare._NoContextIn) for f in filters) == 1


def test_caches_made_without_a_server_say_nothing_and_other_notices_pass() -> None:
    with records(bare.CACHE_LOGGER) as seen:
        with bare.making_caches():
            st.cache_data(ttl=1)(lambda: 1)
            logging.getLogger(bare.CACHE_LOGGER).warning("a real warning")
        st.cache_data(ttl=1)(lambda: 2)  # outside: Streamlit's notice as before
    assert [r.getMessage() for r in seen] == ["a real warning", bare.NO_RUNTIME]


def test_benchmark_help_prints_its_usage_and_nothing_else() -> None:
    run = subprocess.run(
        [sys.executable, "scripts/benchmark_pages.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: benchmark_pages.py")
    assert run.stderr == ""
