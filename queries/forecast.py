"""PLACEHOLDER for the forecast slice of issue 10 (quota_forecast, usage_spikes,
low_runway): the same signatures and columns, every frame empty, no statement issued.

The alerts slice builds on these shapes; the lead replaces this file with the real one
at merge.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlalchemy import Connection

FORECAST_COLUMNS = {
    "organization_id": "int64",
    "name": "str",
    "slug": "str",
    "timezone": "str",
    "type": "str",
    "used": "int64",
    "daily_limit": "int64",
    "projected_used": "float64",
    "hits_limit_at": "datetime64[us, UTC]",
    "status": "str",
}
SPIKE_COLUMNS = {
    "organization_id": "int64",
    "name": "str",
    "slug": "str",
    "timezone": "str",
    "recent_credits": "int64",
    "baseline_credits": "float64",
    "factor": "float64",
}
RUNWAY_COLUMNS = {
    "organization_id": "int64",
    "name": "str",
    "slug": "str",
    "timezone": "str",
    "plan": "str",
    "balance": "int64",
    "daily_burn": "float64",
    "runway_days": "float64",
    "runs_out_on": "object",
}


def _empty(dtypes: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in dtypes.items()})


def quota_forecast(conn: Connection, *, now: dt.datetime | None = None) -> pd.DataFrame:
    """Placeholder: no rows. Columns as the forecast slice documents them."""
    return _empty(FORECAST_COLUMNS)


def usage_spikes(
    conn: Connection,
    *,
    now: dt.datetime | None = None,
    hours: int = 3,
    factor: float = 3.0,
    min_credits: int = 100,
) -> pd.DataFrame:
    """Placeholder: no rows. Columns as the forecast slice documents them."""
    return _empty(SPIKE_COLUMNS)


def low_runway(
    conn: Connection,
    *,
    within_days: int = 14,
    burn_days: int = 30,
    now: dt.datetime | None = None,
) -> pd.DataFrame:
    """Placeholder: no rows. Columns as the forecast slice documents them."""
    return _empty(RUNWAY_COLUMNS)
