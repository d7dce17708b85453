"""Checks of the arguments query functions share, with errors a person understands."""

from __future__ import annotations

import datetime as dt
import numbers
import zoneinfo
from typing import Literal

from queries.errors import InvalidInput

Granularity = Literal["day", "week", "month"]
GRANULARITIES: tuple[Granularity, ...] = ("day", "week", "month")
MAX_RANGE_DAYS = 3 * 366
MAX_PAGE_SIZE = 1000


def check_id(
    value: object, name: str = "organization_id", *, error: type[InvalidInput] = InvalidInput
) -> int:
    """A positive integer id (booleans and strings refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) <= 0:
        raise error(f"{name} must be a positive whole number, not {value!r}.")
    return int(value)


def check_range(start: object, end: object) -> tuple[dt.date, dt.date]:
    """An inclusive range of calendar dates, start <= end, at most about three years."""
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
            raise InvalidInput(f"{name} must be a date (YYYY-MM-DD), not {value!r}.")
    assert isinstance(start, dt.date) and isinstance(end, dt.date)
    if start > end:
        raise InvalidInput(f"The start date {start} is after the end date {end}.")
    if (end - start).days >= MAX_RANGE_DAYS:
        raise InvalidInput(f"Choose a range of at most {MAX_RANGE_DAYS} days.")
    return start, end


def check_granularity(value: object) -> Granularity:
    for granularity in GRANULARITIES:
        if value == granularity:
            return granularity
    raise InvalidInput(f"Granularity must be one of day, week, month, not {value!r}.")


def check_timezone(value: object) -> str:
    """An IANA time zone name PostgreSQL and Python both know."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"Time zone must be an IANA name such as Europe/Berlin, not {value!r}.")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"Unknown time zone {value!r}.") from None
    return value


def check_limit(value: object, *, maximum: int = MAX_PAGE_SIZE) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not 1 <= int(value) <= maximum
    ):
        raise InvalidInput(f"Page size must be a whole number from 1 to {maximum}, not {value!r}.")
    return int(value)


def like_pattern(value: object, name: str = "filter") -> str | None:
    """A case-insensitive substring filter for ILIKE ... ESCAPE '\\', or None if blank.

    ``%`` and ``_`` typed by a person match themselves, not "anything".
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"The {name} must be text.")
    value = value.strip()
    if not value:
        return None
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
