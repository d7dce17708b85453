"""Streamlit's two notices for code that runs outside a visitor's script run, dropped
where that is expected, and nowhere else.

- "No runtime found, using MemoryCacheStorageManager": logged by ``st.cache_data`` each
  time a cache is made without a server (the cached reads of :mod:`dashboard.data`,
  made when it is imported by a script, a test or the command line: 26 lines before
  ``scripts/benchmark_pages.py --help`` printed its usage). :func:`making_caches` drops
  that one message while :mod:`dashboard.data` makes its caches, only without a runtime.
- "Thread '…': missing ScriptRunContext!": logged by every cached read made from a
  thread that is not a script run. The server's warm-up thread reads the default view
  through the caches on purpose (:mod:`dashboard.warmup`): :func:`quiet_thread` drops
  that message for that one thread (31 lines at each start-up). Any other thread that
  touches Streamlit outside a run still warns.

Every other record of those loggers, and every message of any other, passes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Final

CACHE_LOGGER: Final = "streamlit.runtime.caching.cache_data_api"
NO_RUNTIME: Final = "No runtime found, using MemoryCacheStorageManager"
CONTEXT_LOGGER: Final = "streamlit.runtime.scriptrunner_utils.script_run_context"
NO_CONTEXT: Final = "missing ScriptRunContext"


class _NoRuntime(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != NO_RUNTIME


class _NoContextIn(logging.Filter):
    def __init__(self, thread_name: str) -> None:
        super().__init__()
        self.thread_name = thread_name

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName == self.thread_name and NO_CONTEXT in str(record.msg))


@contextlib.contextmanager
def making_caches() -> Iterator[None]:
    """While caches are made without a server, drop the "No runtime found" notice."""
    from streamlit import runtime

    if runtime.exists():
        yield
        return
    logger = logging.getLogger(CACHE_LOGGER)
    only = _NoRuntime()
    logger.addFilter(only)
    try:
        yield
    finally:
        logger.removeFilter(only)


def quiet_thread(thread_name: str) -> None:
    """Drop "missing ScriptRunContext" for the thread named ``thread_name`` (once)."""
    logger = logging.getLogger(CONTEXT_LOGGER)
    if not any(
        isinstance(f, _NoContextIn) and f.thread_name == thread_name for f in logger.filters
    ):
        logger.addFilter(_NoContextIn(thread_name))
