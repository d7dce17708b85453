"""Counted nouns: the singular only for exactly one, as shown."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

from queries.words import counted, plural


@pytest.mark.parametrize(
    ("args", "kwargs", "said"),
    [
        ((1, "day"), {}, "1 day"),
        ((0, "day"), {}, "0 days"),
        ((2, "day"), {}, "2 days"),
        ((1234, "organization"), {}, "1,234 organizations"),
        ((1, "entry"), {}, "1 entry"),
        ((3, "entry"), {}, "3 entries"),
        ((2, "match"), {}, "2 matches"),
        ((2, "person", "people"), {}, "2 people"),
        ((1.0, "day"), {"fmt": ".1f"}, "1.0 days"),
        ((1.04, "day"), {"fmt": ",.0f"}, "1 day"),  # shown as "1": one day
        ((0.6, "day"), {"fmt": ",.0f"}, "1 day"),
        ((-1, "day"), {}, "-1 days"),
    ],
)
def test_the_noun_agrees_with_the_number_shown(
    args: tuple[object, ...], kwargs: dict[str, str], said: str
) -> None:
    assert counted(*args, **kwargs) == said  # type: ignore[arg-type]


def test_regular_plurals() -> None:
    assert [plural(w) for w in ("alert", "key", "entry", "box", "spike")] == [
        "alerts", "keys", "entries", "boxes", "spikes",
    ]  # fmt: skip


def test_no_message_falls_back_on_a_parenthesised_plural() -> None:
    # One helper, used everywhere: no "row(s)" left in what the app or the CLI says
    # (the text of every string literal but docstrings).
    root = pathlib.Path(__file__).resolve().parents[2]
    offenders = []
    for package in ("queries", "dashboard", "tooling", "cli", "scripts"):
        for path in (root / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
            offenders += [
                f"{path.relative_to(root)}:{node.lineno}"
                for node in ast.walk(tree)
                if isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and re.search(r"[a-z]\(s\)", node.value)
            ]
    assert offenders == []
