"""Running a write as one transaction that is retried whole when PostgreSQL asks."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg.errors
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

T = TypeVar("T")

# Errors after which the same transaction, run again, can succeed.
_RETRYABLE = (
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.LockNotAvailable,
)
MAX_ATTEMPTS = 8


class Retry(Exception):
    """Raised inside a transaction body to roll back and run it again (e.g. a lost race
    on a unique key, after which the next attempt sees the winner's row)."""


def run_in_transaction(engine: Engine, body: Callable[[Connection], T]) -> T:
    """Run ``body`` in a transaction on ``engine``; commit, or roll back everything.

    Serialization failures, deadlocks and :class:`Retry` roll back and run ``body``
    again (with jittered back-off), up to ``MAX_ATTEMPTS`` times. Any other error rolls
    back and propagates, so a refused write leaves no row behind.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                # Bounded waits, scoped to this transaction (safe behind a pooler).
                conn.exec_driver_sql(
                    "SELECT set_config('lock_timeout', '5s', true), "
                    "set_config('statement_timeout', '15s', true)"
                )
                return body(conn)
        except Retry:
            pass
        except DBAPIError as exc:
            if isinstance(exc, IntegrityError) or not isinstance(exc.orig, _RETRYABLE):
                raise
            if attempt == MAX_ATTEMPTS:
                raise
        time.sleep(random.uniform(0, 0.005 * attempt))
    raise RuntimeError("the transaction kept conflicting; try again")  # pragma: no cover
