"""COPY on the wire: text rows, binary tuples framed by their header and trailer, and
the thread that overlaps drawing, encoding and COPY."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator, Iterator
from queue import Empty, Queue
from typing import TypeVar, cast

import psycopg

T = TypeVar("T")

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def copy_rows(conn: psycopg.Connection, statement: str, rows: list[tuple[object, ...]]) -> None:
    with conn.cursor().copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def copy_bytes(conn: psycopg.Connection, statement: str, rows: bytes) -> None:
    with conn.cursor().copy(statement) as copy:
        copy.write(_COPY_HEADER)
        copy.write(rows)
        copy.write(_COPY_TRAILER)


def in_background(items: Iterator[T], *, name: str, ahead: int = 1) -> Iterator[T]:
    """``items`` produced by a thread while the caller consumes them.

    Three stages then overlap: drawing (numpy, in one thread, in order, so the rows do
    not depend on timing), encoding (numpy, another thread) and COPY (the server's
    parsing, in this one); numpy and the socket let go of the GIL meanwhile.
    """
    done = object()
    queue: Queue[object] = Queue(maxsize=ahead)
    failure: list[BaseException] = []
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                queue.put(item)
        except BaseException as error:  # handed to the consumer below
            failure.append(error)
        finally:
            if isinstance(items, Generator):
                items.close()  # an inner stage stops its own thread
            queue.put(done)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not done:
            yield cast(T, item)
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(Empty):
                queue.get(timeout=0.05)
        thread.join()
    if failure:
        raise failure[0]
