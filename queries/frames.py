"""Turning a result into a DataFrame with the columns a function documents."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

import pandas as pd
from sqlalchemy import CursorResult


def frame(result: CursorResult[object], dtypes: Mapping[str, str]) -> pd.DataFrame:
    """A DataFrame with exactly ``dtypes``' columns, in that order, even when empty."""
    rows: list[tuple[object, ...]] = [tuple(row) for row in result]
    df = pd.DataFrame.from_records(rows, columns=list(result.keys()))
    df = df.reindex(columns=list(dtypes))
    return df.astype(dict(dtypes))


# The orders of a list by time: newest or oldest first (the audit trail, the ledger).
TimeSort = Literal["newest", "oldest"]
TIME_SORTS: tuple[TimeSort, ...] = ("newest", "oldest")
# The SQL words of each time order, for a keyset statement written once for both (fixed
# words, never input): the direction, the bound the cursor sets on the time index, and
# "after the cursor" in that order.
TIME_ORDER_WORDS: Final[dict[TimeSort, dict[str, str]]] = {
    "newest": {"dir": "DESC", "at_bound": "<=", "after": "<"},
    "oldest": {"dir": "ASC", "at_bound": ">=", "after": ">"},
}


@dataclass(frozen=True, slots=True)
class KeysetCursor:
    """Where the next page of a newest-first list starts: the (created_at, id) of the
    last row shown. Keyset pagination stays fast and exact on any page, where OFFSET
    gets slower with every page and skips or repeats rows when new ones arrive."""

    created_at: dt.datetime
    id: int


def split_page(rows: pd.DataFrame, limit: int) -> tuple[pd.DataFrame, KeysetCursor | None]:
    """Rows fetched with ``LIMIT limit + 1`` -> (the page, the cursor of the next one)."""
    if len(rows) <= limit:
        return rows.reset_index(drop=True), None
    page = rows.iloc[:limit].reset_index(drop=True)
    last = page.iloc[-1]
    return page, KeysetCursor(last["created_at"].to_pydatetime(), int(last["id"]))
