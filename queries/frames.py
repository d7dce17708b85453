"""Turning a result into a DataFrame with the columns a function documents."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from sqlalchemy import CursorResult


def frame(result: CursorResult[object], dtypes: Mapping[str, str]) -> pd.DataFrame:
    """A DataFrame with exactly ``dtypes``' columns, in that order, even when empty."""
    rows: list[tuple[object, ...]] = [tuple(row) for row in result]
    df = pd.DataFrame.from_records(rows, columns=list(result.keys()))
    df = df.reindex(columns=list(dtypes))
    return df.astype(dict(dtypes))
