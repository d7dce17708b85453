"""Who a person is, in one canonical form, in Python and in the database alike.

An identity (an email address or a login name) is compared as NFKC-normalised,
case-folded and trimmed text: ``ANA@Example.com`` and ``ana@example.com`` are one
person, and so are the full-width ``ａｎａ@example.com`` and the plain one. An identity
holding a character that cannot be seen or that has no fixed meaning is refused rather
than compared: control and format characters (Unicode Cc and Cf, such as U+200B ZERO
WIDTH SPACE or a bidirectional override), line and paragraph separators, surrogates,
private-use and unassigned code points, and any space other than U+0020 inside it.

The database holds the same rule as ``canonical_identity(text)`` (migration 0012): it
folds case with the same table as Python's ``str.casefold`` (written into the migration
from Unicode 14, Python 3.11's tables) and raises on the characters refused here, so a
check such as "the approver is not the requester" holds in both places;
``tests/queries/test_identity.py`` holds the two equal.
"""

from __future__ import annotations

import unicodedata
from typing import Final

from queries.checks import MAX_ACTOR
from queries.errors import InvalidInput

__all__ = ["REFUSED_CATEGORIES", "canonical_identity", "same_person", "stored_identity"]

# Invisible or meaningless in a name: Cc control, Cf format (zero-width, bidi), Zl/Zp
# line and paragraph separators, Cs surrogates, Co private use, Cn unassigned.
REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def canonical_identity(
    value: object, name: str = "identity", *, error: type[InvalidInput] = InvalidInput
) -> str:
    """The canonical form of a person's identity: NFKC, case-folded, trimmed.

    Raises ``error`` with a sentence for a value that is not text, is blank, is longer
    than ``MAX_ACTOR`` characters, or holds a refused character (see the module).
    """
    if not isinstance(value, str):
        raise error(f"The {name} must be text.")
    for char in value:
        category = unicodedata.category(char)
        if category in REFUSED_CATEGORIES:
            label = unicodedata.name(char, "an unnamed character")
            raise error(
                f"The {name} contains an invisible or control character "
                f"(U+{ord(char):04X} {label}); type it again without it."
            )
    folded = unicodedata.normalize("NFKC", value).casefold().strip(" ")
    for char in folded:
        if char != " " and unicodedata.category(char) == "Zs":
            raise error(
                f"The {name} contains a space character other than a plain space "
                f"(U+{ord(char):04X}); type it again without it."
            )
    if not folded:
        raise error(f"The {name} cannot be empty.")
    if len(folded) > MAX_ACTOR:
        raise error(f"The {name} is too long ({len(folded):,} characters; at most {MAX_ACTOR:,}).")
    return folded


def same_person(a: str, b: str) -> bool:
    """Whether two identities name the same person (both must be valid identities)."""
    return canonical_identity(a) == canonical_identity(b)


def stored_identity(value: str) -> str:
    """The form to compare an identity read from the database in, which may predate
    canonical identities: its canonical form; for one that would be refused today (it
    holds an invisible character), the canonical form of what is left without the
    refused characters, so ``ana@example.com`` + U+200B stays the same person as
    ``ana@example.com`` (the safe side of a two-person check)."""
    visible = "".join(
        char
        for char in unicodedata.normalize("NFKC", value)
        if unicodedata.category(char) not in REFUSED_CATEGORIES
        and (char == " " or unicodedata.category(char) != "Zs")
    )
    # Normalised again: what is left may compose anew (e + U+200B + U+0301).
    return unicodedata.normalize("NFKC", visible).casefold().strip(" ")
