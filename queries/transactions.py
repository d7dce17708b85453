"""Running a write as one transaction, bounded in time, that tells the truth when it fails.

``run_in_transaction`` drives connect, begin, the body and COMMIT itself (rather than
``engine.begin()``'s implicit commit) so it knows which phase a failure happened in:

- before COMMIT was sent, nothing can have changed (the server rolls back a transaction
  whose connection goes away), so the whole transaction is retried on a fresh
  connection until the budget is spent;
- while COMMIT was in flight, the outcome is unknown. A write with an idempotency key
  runs again: under the organization's lock it finds the committed row by its key and
  returns it, or applies the change now, so the caller learns what really happened.
  Without a key, or when the answer cannot be had before the budget runs out, it raises
  ``OutcomeUnknown``.

Every exception a caller sees is a ``DashboardError``: the body's own refusals, ``Busy``,
``DatabaseUnavailable``, ``OutcomeUnknown`` or ``DatabaseRefused``.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import psycopg
import psycopg.errors
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, Engine, TextClause, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from queries.errors import (
    Busy,
    Cancelled,
    ConnectionLost,
    DashboardError,
    DatabaseRefused,
    DatabaseUnavailable,
    OutcomeUnknown,
    from_driver,
)

T = TypeVar("T")

# The whole call, end to end: connecting, waiting for locks, retries. A person is
# waiting on a confirmation; after this long they are better told to try again.
BUDGET_SECONDS = 10.0

# Both timeouts last only until the end of this transaction (``is_local`` true), so
# nothing leaks to the next client of a transaction pooler's server connection. A body
# that runs with ``sets_timeouts`` sends these two set_config calls in its own first
# statement instead, with ``timeout_ms()`` bound, which saves this round trip.
_TIMEOUTS = text(
    "SELECT set_config('lock_timeout', :ms, true), set_config('statement_timeout', :ms, true)"
)
# conn.info key: this server connection has been handed to a transaction before.
_SERVED = "queries.transactions.served"
# When the running transaction's budget ends (time.monotonic()); per thread/context.
_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("transaction_deadline")

# OutcomeUnknown's own sentence says confirming again is safe, which is true only for a
# write with an idempotency key.
_UNKNOWN_WITHOUT_KEY = (
    "The connection to the database was lost while this change was being saved, and it "
    "could not be checked whether it was applied. This change has no idempotency key: "
    "check whether it is there before making it again, or it may apply twice."
)

Failure = Literal["conflict", "lost", "unavailable"]


class Retry(Exception):
    """Raised inside a transaction body to roll back and run it again (e.g. a lost race
    on a unique key, after which the next attempt sees the winner's row)."""


def _classify(error: DashboardError) -> Failure:
    """What ``error`` (:func:`queries.errors.from_driver`'s reading of a database
    exception that is not a refusal) means for the transaction it interrupted. A
    statement cancelled, by our own statement_timeout or otherwise, is a conflict: it
    runs again while the budget lasts."""
    if isinstance(error, Busy | Cancelled):
        return "conflict"
    if isinstance(error, ConnectionLost):
        return "lost"
    return "unavailable"  # the server answered that it is short of resources


def _refused(kind: str, refused: type[DatabaseRefused] = DatabaseRefused) -> DatabaseRefused:
    return refused(
        f"The database refused this change ({kind}). Nothing was changed; trying again "
        "will not help, so please report it.",
        kind=kind,
    )


def _close_quietly(conn: Connection) -> None:
    """Give the connection back; an open transaction is rolled back on the way. A dead
    connection may fail to roll back: the server has already rolled it back."""
    with contextlib.suppress(Exception):
        conn.close()


def _pause(attempt: int, failure: Failure, deadline: float) -> None:
    if failure == "conflict":
        delay = random.uniform(0, 0.005 * attempt)
    else:  # wait for a restarting server or pooler, more patiently each time
        delay = min(1.0, 0.01 * 2 ** min(attempt, 7)) * random.uniform(0.5, 1.0)
    time.sleep(max(0.0, min(delay, deadline - time.monotonic())))


# Each statement as PostgreSQL's own placeholders ($1, $2 ...) and the names they bind,
# converted once per dialect: psycopg would parse its %(name)s form again on every call
# of a statement this long (it caches only short ones), which cost record_generation
# about a fifth of its client CPU.
_COMPILED: dict[tuple[int, str], tuple[str, tuple[str, ...]]] = {}
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")


def _positional(conn: Connection, statement: TextClause) -> tuple[str, tuple[str, ...]]:
    key = (id(statement), conn.dialect.name)
    found = _COMPILED.get(key)
    if found is None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:  # an escaped percent sign
                return "%"
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        compiled = str(statement.compile(dialect=conn.dialect))
        found = _COMPILED[key] = (_PLACEHOLDER.sub(number, compiled), tuple(names))
    return found


def pipelined(
    conn: Connection,
    statements: Sequence[tuple[TextClause, Mapping[str, object]]],
    *,
    commit: bool = False,
) -> list[list[Any]]:
    """Run ``statements`` (each a ``text()`` with its bound parameters) in one round trip,
    in psycopg's pipeline mode, and return the rows of each (named tuples).

    Each is still a statement of its own, with its own snapshot, run in order; only the
    waits for the answers in between are saved. A write that holds a lock from its first
    statement holds it that much less. Errors are raised as SQLAlchemy's, as for
    ``conn.execute``; after one, the later statements do not run.

    ``commit``: COMMIT is the last statement of the same round trip (for a body run with
    ``run_in_transaction(..., commits=True)``). After an error it does not run either:
    the transaction is left to roll back.
    """
    raw = conn.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):  # pragma: no cover - the only driver
        raise TypeError("pipelined needs a psycopg connection")
    cursors = []
    try:
        with raw.pipeline():
            for statement, params in statements:
                sql, names = _positional(conn, statement)
                cursor = psycopg.RawCursor(raw, row_factory=namedtuple_row)
                cursor.execute(sql, [params[name] for name in names])
                cursors.append(cursor)
            if commit:
                raw.cursor().execute("COMMIT")
        return [cursor.fetchall() for cursor in cursors]
    except psycopg.Error as exc:
        # Handed to SQLAlchemy as if it had run the statement (its one entry point for
        # that, private): the error comes back wrapped, handle_error listeners see it,
        # and a lost connection is invalidated with every one pooled before it.
        conn._handle_dbapi_exception(exc, None, None, None, None)


def timeout_ms() -> str:
    """What is left of the running transaction's budget, in milliseconds, as the text
    ``set_config`` takes: for a body run with ``sets_timeouts`` to bind in its first
    statement. Only valid inside ``run_in_transaction``."""
    return str(max(1, int((_DEADLINE.get() - time.monotonic()) * 1000)))


def run_in_transaction(
    engine: Engine,
    body: Callable[[Connection], T],
    *,
    idempotent: bool = False,
    budget: float | None = None,
    sets_timeouts: bool = False,
    commits: bool = False,
) -> T:
    """Run ``body`` in a transaction on ``engine`` and commit it, within ``budget`` seconds
    (default ``BUDGET_SECONDS``).

    ``idempotent``: running ``body`` again after its commit was applied returns what the
    first run committed and changes nothing (the write carries an idempotency key).
    Only then is a commit whose answer was lost retried.

    ``sets_timeouts``: the body's first statement sets ``lock_timeout`` and
    ``statement_timeout`` (local to the transaction) to ``timeout_ms()`` itself, so no
    separate statement is sent for them. That first statement runs under the server's
    own statement_timeout; its lock waits already obey the lock_timeout it sets.

    ``commits``: the body sends COMMIT itself, in the round trip of its work
    (``pipelined(..., commit=True)``), which saves a round trip. Only for an
    ``idempotent`` write: a connection lost anywhere in that round trip may have lost a
    COMMIT that was applied, and only a write that recognises its earlier commit may run
    again.

    A connection that died while it sat in the pool (server or pooler restarted, backend
    terminated) fails on its first statement: that attempt is retried at once on a new
    connection, so an engine without ``pool_pre_ping`` loses nothing by it.

    Raises what ``body`` raises when it refuses (rolled back), or:

    - ``Busy``: conflicts and lock waits used up the budget; nothing was changed.
    - ``DatabaseUnavailable``: no connection, or it was lost before COMMIT was sent,
      until the budget ran out; nothing was changed.
    - ``OutcomeUnknown``: the connection was lost while COMMIT was in flight and the
      outcome could not be learned.
    - ``DatabaseRefused``: any other database error; nothing was changed.
    """
    if commits and not idempotent:
        raise ValueError("only an idempotent body may send its own COMMIT")
    deadline = time.monotonic() + (BUDGET_SECONDS if budget is None else budget)
    token = _DEADLINE.set(deadline)
    try:
        return _run(engine, body, idempotent, deadline, sets_timeouts, commits)
    finally:
        _DEADLINE.reset(token)


def _run(
    engine: Engine,
    body: Callable[[Connection], T],
    idempotent: bool,
    deadline: float,
    sets_timeouts: bool,
    commits: bool,
) -> T:
    commit_unknown = False  # a COMMIT was sent and its answer lost
    last: Failure = "lost"
    attempt = 0
    reused = False  # the attempt's connection had served an earlier transaction
    while attempt == 0 or time.monotonic() < deadline:
        attempt += 1
        phase: Literal["connect", "body", "commit"] = "connect"
        conn: Connection | None = None
        try:
            conn = engine.connect()
            # conn.info lasts as long as the server connection (cleared when replaced).
            reused = bool(conn.info.get(_SERVED))
            conn.info[_SERVED] = True
            phase = "body"
            transaction = conn.begin()
            if not sets_timeouts:
                conn.execute(_TIMEOUTS, {"ms": timeout_ms()})
            if commits:
                phase = "commit"
            result = body(conn)
            phase = "commit"
            transaction.commit()  # nothing is sent when the body has committed
            return result
        except Retry:
            last = "conflict"
        except DashboardError:
            raise
        except (DBAPIError, psycopg.Error, PoolTimeout) as exc:
            error = from_driver(exc)
            if isinstance(error, DatabaseRefused):
                # After a lost COMMIT, a refusal of the retry says nothing about it.
                raise (
                    OutcomeUnknown() if commit_unknown else _refused(error.kind, type(error))
                ) from exc
            assert error is not None  # each of these is a driver's error
            last = _classify(error)
            if phase == "commit" and last == "lost":
                # The server may have committed: only a write that recognises its own
                # earlier commit may run again.
                if not idempotent:
                    raise OutcomeUnknown(_UNKNOWN_WITHOUT_KEY) from exc
                commit_unknown = True
        except SQLAlchemyError as exc:  # misuse or a bug in the body
            if phase == "commit" or commit_unknown:
                raise OutcomeUnknown(None if idempotent else _UNKNOWN_WITHOUT_KEY) from exc
            raise _refused(type(exc).__name__) from exc
        finally:
            if conn is not None:
                _close_quietly(conn)
        if last == "lost" and reused and (phase == "body" or commits):
            # A pooled connection that died while idle (nothing can have changed, or a
            # write that commits itself may run again anyway): the next attempt takes
            # another, or a new one, at once. A new connection that fails gets the usual
            # back-off, for a server that is really away.
            continue
        _pause(attempt, last, deadline)
    if commit_unknown:
        raise OutcomeUnknown()
    if last == "conflict":
        raise Busy()
    raise DatabaseUnavailable()
