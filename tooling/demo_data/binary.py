"""COPY BINARY tuples built from numpy arrays, without a Python loop."""

from __future__ import annotations

import functools

import numpy as np

from tooling.demo_data.organizations import GENERATION_TYPES

# Postgres epoch for binary timestamptz, in microseconds since the Unix epoch.
PG_EPOCH_US = 946_684_800_000_000
PG_EPOCH_DAY = 10_957  # 2000-01-01 in days since 1970-01-01

N_TYPES = len(GENERATION_TYPES)
_TYPE_WIDTH = max(len(t[0]) for t in GENERATION_TYPES)
_TYPE_KEYS = np.array([t[0].encode() for t in GENERATION_TYPES], dtype=f"S{_TYPE_WIDTH}")
_TYPE_LENGTHS = np.array([len(t[0]) for t in GENERATION_TYPES], dtype=np.int32)
TEXT = "type"  # the one text column of the binary COPYs: a generation type key


@functools.lru_cache(maxsize=8)
def _layout(columns: tuple[str, ...]) -> tuple[np.dtype, np.ndarray]:
    """A fixed-width COPY BINARY record for ``columns`` (big-endian numpy types, or
    ``TEXT``), and per type code which of its bytes are real: the type text is shorter
    than its slot, and COPY BINARY wants exactly its length."""
    fields: list[tuple[str, str]] = [("ncols", ">i2")]
    for i, column in enumerate(columns):
        fields += [(f"l{i}", ">i4"), (f"v{i}", f"S{_TYPE_WIDTH}" if column == TEXT else column)]
    record = np.dtype(fields)
    keep = np.ones((len(GENERATION_TYPES), record.itemsize), dtype=bool)
    if TEXT in columns:
        start: int = record.fields[f"v{columns.index(TEXT)}"][1]  # type: ignore[index]
        for code, length in enumerate(_TYPE_LENGTHS):
            keep[code, start + length : start + _TYPE_WIDTH] = False
    return record, keep


def binary_rows(columns: tuple[tuple[str, np.ndarray], ...], kind: np.ndarray) -> bytes:
    """COPY BINARY tuples (no header) of ``columns``, built without a Python loop.

    ``columns`` are (big-endian numpy type or ``TEXT``, values) in the table's order;
    ``kind`` is each row's type code, whose key fills the ``TEXT`` column. Each row is
    laid out in a fixed-width record with room for the longest type, then the unused
    type bytes are dropped with one boolean mask.
    """
    record, keep = _layout(tuple(c for c, _ in columns))
    n = len(kind)
    rec = np.empty(n, dtype=record)
    rec["ncols"] = len(columns)
    for i, (column, values) in enumerate(columns):
        if column == TEXT:
            rec[f"l{i}"] = _TYPE_LENGTHS[kind]
            rec[f"v{i}"] = _TYPE_KEYS[kind]
        else:
            rec[f"l{i}"] = np.dtype(column).itemsize
            rec[f"v{i}"] = values
    raw = rec.view(np.uint8).reshape(n, record.itemsize)
    return bytes(raw[keep[kind]].tobytes())
