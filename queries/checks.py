"""The one set of input checks: every rule about what a caller, a form, a URL or a file
may pass is written here once, and the data layer and the pages both use it (the pages
for their messages). Each check returns the clean value or raises an ``InvalidInput``
(or the subclass the caller names) whose text is a sentence a person understands.
"""

from __future__ import annotations

import datetime as dt
import numbers
import re
import unicodedata
import zoneinfo
from typing import Final, Literal, TypeVar

from queries.errors import InvalidInput

Granularity = Literal["day", "week", "month"]
GRANULARITIES: tuple[Granularity, ...] = ("day", "week", "month")
MAX_RANGE_DAYS = 3 * 366
MAX_PAGE_SIZE = 1000

# Text that people and callers hand in.
MAX_REASON: Final = 320
MAX_NOTE: Final = 2000
MAX_ACTOR: Final = 320  # an email address can be 320 characters long
MAX_KEY: Final = 200
# Dates anywhere near the data: a typo such as 0001-01-01 or 9999-12-31 is refused,
# never sent to the database or turned into an overflow.
MIN_DATE: Final = dt.date(2000, 1, 1)
MAX_DATE: Final = dt.date(2100, 12, 31)
# Whole numbers a person types: plain digits, or digits grouped by commas in threes.
_WHOLE_NUMBER = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+")
_MAX_DIGITS: Final = 18
# Bidirectional overrides and isolates can make a reason read differently from what it
# says; they are format characters (Cf), refused with the control characters (Cc).
_BIDI: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_text(
    value: object,
    name: str,
    *,
    maximum: int,
    required: bool = True,
    multiline: bool = False,
    error: type[InvalidInput] = InvalidInput,
) -> str | None:
    """Text a person or caller gave: a string, not blank when ``required`` (an optional
    blank one is None), at most ``maximum`` characters, and free of NUL, other control
    characters, unpaired surrogates and bidirectional overrides (a line break is allowed
    when ``multiline``).
    Leading and trailing white space is removed."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise error(f"The {name} must be text.")
    for char in value:
        category = unicodedata.category(char)
        if (char == "\n" and multiline) or not (category in ("Cc", "Cs") or char in _BIDI):
            continue
        # A lone surrogate (Cs) is not a character at all: no UTF-8 can carry it to the
        # database, so it would fail there rather than here.
        what = (
            "a NUL character"
            if char == "\x00"
            else "an unpaired surrogate"
            if category == "Cs"
            else f"a control character ({char!r})"
        )
        raise error(f"The {name} contains {what}; remove it and try again.")
    value = value.strip()
    if not value:
        if required:
            raise error(f"The {name} cannot be empty.")
        return None
    if len(value) > maximum:
        raise error(f"The {name} is too long ({len(value):,} characters; at most {maximum:,}).")
    return value


def required_text(
    value: object,
    name: str,
    *,
    maximum: int,
    multiline: bool = False,
    error: type[InvalidInput] = InvalidInput,
) -> str:
    """:func:`check_text` for text that must be there."""
    checked = check_text(value, name, maximum=maximum, multiline=multiline, error=error)
    assert checked is not None
    return checked


# Key shapes the system derives (a reversal, an approved request, a bulk row without a
# key); the database refuses them on any other row (migration 0012).
DERIVED_KEY_PREFIXES: Final = (
    "reversal:",
    "approval:",
    "bulk:",
    "expiry:",
    "allowance:",
    "rollover:",
)


def check_key(
    value: object,
    name: str = "idempotency key",
    *,
    required: bool = True,
    error: type[InvalidInput] = InvalidInput,
) -> str | None:
    """An idempotency key a caller gives: text of at most ``MAX_KEY`` characters that
    does not start with a prefix the system keeps for the keys it derives."""
    key = check_text(value, name, maximum=MAX_KEY, required=required, error=error)
    if key is not None and key.startswith(DERIVED_KEY_PREFIXES):
        raise error(
            f"The {name} may not start with {key.split(':', 1)[0]!r}: keys of that shape "
            "are made by the dashboard itself. Choose another key."
        )
    return key


def check_whole(
    value: object,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    error: type[InvalidInput] = InvalidInput,
) -> int:
    """A whole number given as an int (never a float, a bool or a string), in bounds."""
    # bool is an int in Python; a checkbox value must never become a 1-credit grant.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise error(f"The {name} must be a whole number, not {value!r}.")
    number = int(value)
    _in_bounds(number, name, minimum, maximum, error)
    return number


def parse_whole(
    value: object,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    error: type[InvalidInput] = InvalidInput,
) -> int:
    """A whole number a person typed ("1500" or "1,500"). Fractions, exponents and
    signs ("1.5", "1e3", "0.999", "-3") are refused with a sentence, never rounded."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return check_whole(value, name, minimum=minimum, maximum=maximum, error=error)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise error(f"Enter the {name}.")
    if not isinstance(value, str):
        raise error(f"The {name} must be a whole number, not {value!r}.")
    typed = value.strip()
    if not _WHOLE_NUMBER.fullmatch(typed) or len(typed) > _MAX_DIGITS + 6:
        shown = typed if len(typed) <= 40 else typed[:40] + "…"
        raise error(
            f"The {name} must be a whole number such as 1500 or 1,500, not {shown!r}: "
            "fractions, exponents and signs are not accepted."
        )
    return check_whole(
        int(typed.replace(",", "")), name, minimum=minimum, maximum=maximum, error=error
    )


def _in_bounds(
    number: int,
    name: str,
    minimum: int | None,
    maximum: int | None,
    error: type[InvalidInput],
) -> None:
    if minimum is not None and maximum is not None and not minimum <= number <= maximum:
        raise error(f"The {name} must be from {minimum:,} to {maximum:,}, not {number:,}.")
    if minimum is not None and number < minimum:
        raise error(f"The {name} must be at least {minimum:,}, not {number:,}.")
    if maximum is not None and number > maximum:
        raise error(f"The {name} must be at most {maximum:,}, not {number:,}.")


def check_date(
    value: object, name: str = "date", *, error: type[InvalidInput] = InvalidInput
) -> dt.date:
    """A calendar date (not a datetime) between 2000-01-01 and 2100-12-31."""
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise error(f"The {name} must be a date (YYYY-MM-DD), not {value!r}.")
    if not MIN_DATE <= value <= MAX_DATE:
        raise error(f"The {name} {value} is outside the years {MIN_DATE.year}–{MAX_DATE.year}.")
    return value


def check_timestamp(
    value: object, name: str = "time", *, error: type[InvalidInput] = InvalidInput
) -> dt.datetime:
    """An aware datetime (with a time zone) between 2000 and 2100."""
    if not isinstance(value, dt.datetime):
        raise error(f"The {name} must be a date and time, not {value!r}.")
    if value.tzinfo is None or value.utcoffset() is None:
        raise error(
            f"The {name} must carry a time zone (an aware datetime), or the day is ambiguous."
        )
    check_date(value.date(), name, error=error)
    return value


def parse_date(
    value: object, name: str = "date", *, error: type[InvalidInput] = InvalidInput
) -> dt.date:
    """A date a person or a URL gave as text: exactly YYYY-MM-DD, ASCII digits, in range."""
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value.strip()):
        shown = value if isinstance(value, str) and len(value) <= 40 else "that value"
        raise error(f"The {name} must be a date written YYYY-MM-DD, not {shown!r}.")
    try:
        parsed = dt.date.fromisoformat(value.strip())
    except ValueError:
        raise error(f"The {name} {value.strip()!r} is not a real date.") from None
    return check_date(parsed, name, error=error)


def parse_id(value: object, name: str = "id", *, error: type[InvalidInput] = InvalidInput) -> int:
    """A positive id a person or a URL gave as text: ASCII digits only, at most 18."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,18}", value.strip()):
        return check_id(int(value.strip()), name, error=error)
    shown = value if isinstance(value, str) and len(value) <= 40 else "that value"
    raise error(f"The {name} must be a positive whole number, not {shown!r}.")


MAX_ID: Final = 2**63 - 1  # PostgreSQL bigint


def check_id(
    value: object, name: str = "organization_id", *, error: type[InvalidInput] = InvalidInput
) -> int:
    """A positive integer id that fits a bigint (booleans and strings refused)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not 0 < int(value) <= MAX_ID
    ):
        raise error(f"{name} must be a positive whole number, not {value!r}.")
    return int(value)


def check_range(start: object, end: object) -> tuple[dt.date, dt.date]:
    """An inclusive range of calendar dates, start <= end, at most about three years."""
    start = check_date(start, "start date")
    end = check_date(end, "end date")
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


S = TypeVar("S", bound=str)


def check_sort(value: object, sorts: tuple[S, ...]) -> S:
    """One of a list's fixed sort orders (``sorts``, its ``Literal``'s values)."""
    for sort in sorts:
        if value == sort:
            return sort
    raise InvalidInput(f"sort must be one of {', '.join(sorts)}, not {value!r}.")
