"""Counted nouns in plain English: "1 day", "2 days", "1,234 organizations".

One helper for every sentence that puts a number before a noun (pages, the CLI, alert
messages), so no place says "1 days" or falls back on "day(s)".
"""

from __future__ import annotations

_VOWELS = frozenset("aeiou")


def plural(noun: str) -> str:
    """The regular English plural of ``noun`` (day -> days, entry -> entries, match ->
    matches); irregular ones are passed to :func:`counted` as ``many``."""
    if len(noun) > 1 and noun.endswith("y") and noun[-2].lower() not in _VOWELS:
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def counted(number: int | float, noun: str, many: str | None = None, *, fmt: str = ",") -> str:
    """``number`` formatted with ``fmt`` and ``noun`` agreeing with what is shown: the
    singular only when the number reads exactly "1" ("1 day", "1.0 days", "0 days",
    "-1 day" is "-1 days": only one is singular), else ``many`` (default: the regular
    plural)."""
    shown = format(number, fmt)
    return f"{shown} {noun if shown == '1' else (many or plural(noun))}"
