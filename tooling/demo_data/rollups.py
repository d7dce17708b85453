"""The rollups, counted from the drawn arrays chunk by chunk with the rules of their
recounts (``queries.recounts``); those without a numpy path are loaded by their recount."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from queue import Queue

import numpy as np
import psycopg
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect

from queries import edges, recounts
from tooling import staging
from tooling.demo_data.binary import N_TYPES, PG_EPOCH_DAY, PG_EPOCH_US, TEXT, binary_rows
from tooling.demo_data.copying import copy_bytes


@dataclass(frozen=True, slots=True)
class Chunk:
    """A chunk of generations with what its rollups need: each row's local day."""

    gens: dict[str, np.ndarray]
    local_day: np.ndarray  # the organization's local date, days since 1970-01-01
    user_org: np.ndarray  # organization of each user id - 1
    first_day: int  # first day of the window every row falls in
    span: int  # days in that window


# The rollups record_generation keeps besides usage_limits, each loaded by the numpy path
# of ROLLUP_COPIES when it has one (counted from the drawn arrays, chunk by chunk, no
# GROUP BY over the whole table), else by its recount for every organization
# (queries/recounts.py) after generations are loaded. The recount tests hold both paths
# to that definition.
ROLLUPS = recounts.ROLLUPS
# The loader's sessions are plain psycopg: the recounts are rendered for its driver.
PSYCOPG = psycopg_dialect.dialect()  # type: ignore[no-untyped-call]

_QUARTER_US = 900_000_000  # 2000-01-01 00:00 UTC is a whole number of quarter-hours


def _group(key: np.ndarray, credits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct keys (sorted), the rows and the credits of each."""
    keys, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    spent = np.bincount(inverse, weights=credits, minlength=len(keys)).astype(np.int64)
    return keys, counts, spent


def _user_daily_rows(chunk: Chunk) -> bytes:
    """user_daily_usage rows of the chunk: (organization, user, local date, type)."""
    g = chunk.gens
    day = chunk.local_day - chunk.first_day
    key = ((g["user"] - 1) * chunk.span + day) * N_TYPES + g["type"]
    keys, counts, spent = _group(key, g["credits"])
    kind = keys % N_TYPES
    user = keys // N_TYPES // chunk.span + 1
    date = keys // N_TYPES % chunk.span + chunk.first_day - PG_EPOCH_DAY
    return binary_rows(
        (
            (">i8", chunk.user_org[user - 1]),
            (">i8", user),
            (">i4", date),
            (TEXT, kind),
            (">i4", counts),
            (">i8", spent),
        ),
        kind,
    )


def _quarter_hour_rows(chunk: Chunk) -> bytes:
    """quarter_hour_usage rows of the chunk: (organization, UTC quarter-hour, type)."""
    g = chunk.gens
    quarters = chunk.span * 96
    first = chunk.first_day * 96
    key = (g["org"] * quarters + g["ts"] // _QUARTER_US - first) * N_TYPES + g["type"]
    keys, counts, spent = _group(key, g["credits"])
    kind = keys % N_TYPES
    org = keys // N_TYPES // quarters
    bucket = (keys // N_TYPES % quarters + first) * _QUARTER_US - PG_EPOCH_US
    return binary_rows(
        ((">i8", org), (">i8", bucket), (TEXT, kind), (">i4", counts), (">i8", spent)),
        kind,
    )


def _organization_daily_rows(chunk: Chunk) -> bytes:
    """organization_daily_usage rows of the chunk: (organization, local date), with the
    running totals through each day (a chunk holds whole organizations)."""
    g = chunk.gens
    key = g["org"] * chunk.span + (chunk.local_day - chunk.first_day)
    keys, counts, spent = _group(key, g["credits"])
    org = keys // chunk.span
    date = keys % chunk.span + chunk.first_day - PG_EPOCH_DAY
    # keys are sorted by (organization, day): a cumulative sum restarted at each
    # organization's first row is its running total.
    first = np.r_[True, org[1:] != org[:-1]]
    group = np.cumsum(first) - 1
    generations_through = np.cumsum(counts)
    credits_through = np.cumsum(spent)
    generations_through -= (generations_through - counts)[first][group]
    credits_through -= (credits_through - spent)[first][group]
    return binary_rows(
        (
            (">i8", org),
            (">i4", date),
            (">i8", counts),
            (">i8", spent),
            (">i8", generations_through),
            (">i8", credits_through),
        ),
        np.zeros(len(keys), dtype=np.intp),
    )


def _organization_monthly_rows(chunk: Chunk) -> bytes:
    """organization_monthly_usage rows of the chunk: (organization, local month)."""
    g = chunk.gens
    month = chunk.local_day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    first_month = int(month.min()) if len(month) else 0
    months = (int(month.max()) - first_month + 1) if len(month) else 1
    key = g["org"] * months + (month - first_month)
    keys, counts, spent = _group(key, g["credits"])
    month_start = (
        (keys % months + first_month).astype("datetime64[M]").astype("datetime64[D]")
    ).astype(np.int64) - PG_EPOCH_DAY
    return binary_rows(
        (
            (">i4", month_start),
            (">i8", keys // months),
            (">i8", counts),
            (">i8", spent),
        ),
        np.zeros(len(keys), dtype=np.intp),
    )


# Rollups with a numpy path: table -> (its COPY, its rows of one chunk). Optional: an
# entry of ROLLUPS without one is loaded by its statement (see there).
ROLLUP_COPIES: dict[str, tuple[str, Callable[[Chunk], bytes]]] = {
    "user_daily_usage": (
        "COPY user_daily_usage (organization_id, user_id, date, type, generations, credits) "
        "FROM STDIN (FORMAT BINARY)",
        _user_daily_rows,
    ),
    "quarter_hour_usage": (
        "COPY quarter_hour_usage (organization_id, bucket, type, generations, credits) "
        "FROM STDIN (FORMAT BINARY)",
        _quarter_hour_rows,
    ),
    "organization_daily_usage": (
        "COPY organization_daily_usage (organization_id, date, generations, credits, "
        "generations_through, credits_through) FROM STDIN (FORMAT BINARY)",
        _organization_daily_rows,
    ),
    "organization_monthly_usage": (
        "COPY organization_monthly_usage (month, organization_id, generations, credits) "
        "FROM STDIN (FORMAT BINARY)",
        _organization_monthly_rows,
    ),
}


class RollupSession:
    """COPYs the numpy rollups on a session of its own (staged loads only), so the
    server parses them on one core while the loader's session parses the generations
    on the other. Its transaction commits at :meth:`finish`; a failure on either side
    stops both (the staged tables are dropped by the caller)."""

    def __init__(self, connect: Callable[[], psycopg.Connection]) -> None:
        self._queue: Queue[dict[str, bytes] | None] = Queue(maxsize=2)
        self._failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(connect,), name="demo-rollups", daemon=True
        )
        self._thread.start()

    def _run(self, connect: Callable[[], psycopg.Connection]) -> None:
        try:
            with connect() as conn:
                staging.begin_loading(conn, tuple(ROLLUP_COPIES))
                while (item := self._queue.get()) is not None:
                    for table, tuples in item.items():
                        copy_bytes(conn, ROLLUP_COPIES[table][0], tuples)
                conn.commit()
        except BaseException as error:  # raised in the loader's thread
            self._failure.append(error)
            while self._queue.get() is not None:  # let the loader finish its puts
                pass

    def put(self, rollups: dict[str, bytes]) -> None:
        """Queue one chunk's rollup tuples (waits while two are queued)."""
        if self._failure:
            raise self._failure[0]
        self._queue.put(rollups)

    def finish(self) -> None:
        """Wait for the last COPY and the commit; raise what failed there."""
        self._queue.put(None)
        self._thread.join()
        if self._failure:
            raise self._failure[0]


def keep_usual_days(conn: psycopg.Connection, now: dt.datetime) -> None:
    """The usual day of each organization's local day at ``now``, the forecast's."""
    statement = recounts.KEEP_USUAL_DAYS.bindparams(organization_ids=None).compile(dialect=PSYCOPG)
    conn.execute(str(statement), {**statement.params, "at": now})


def keep_usage_edges(conn: psycopg.Connection, now: dt.datetime, timezone: str) -> None:
    """The usage edges the presets read at ``now`` in the company zone ``timezone``
    (``queries.edges``), recounted from the loaded generations."""
    register = edges.REGISTER_EDGES.compile(dialect=PSYCOPG)
    conn.execute(str(register), {"tz": timezone, "now": now, "days": edges.KEEP_DAYS})
    fill = recounts.insert_usage_edges_recount().compile(dialect=PSYCOPG)
    conn.execute(str(fill), fill.params)
