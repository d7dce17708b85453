"""Customer text shown as plain text: the escaping helpers, over any text."""

from __future__ import annotations

import re
import string

from hypothesis import given
from hypothesis import strategies as st

from dashboard.text import JOINER, escape_markdown, md, plotly_text
from tests.dashboard.shown import readable

LINE_BREAKS = "\r\n\u2028\u2029\x0b\x0c\x85"
HOSTILE = (
    "![x](http://127.0.0.1:9/p.png)",
    ":red[x]",
    "**bold**",
    "<b>x</b>",
    ":material/home:",
    "$x^2$",
    ":smile:",
    "[link](http://example.com)",
    "`code`",
    "# heading",
    "> quote",
    "1. list",
    "a_b_",
    "&amp;",
)
# Text as customers type it: any characters, with Markdown's and HTML's special ones
# drawn often.
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(string.punctuation + " \n\r\t:/@w."),
        st.characters(exclude_categories=["Cs"]),
    ),
    max_size=60,
)


@given(TEXT)
def test_every_ascii_punctuation_character_is_escaped_and_nothing_else_changes(
    text: str,
) -> None:
    escaped = escape_markdown(text)
    position = 0
    for char in text:
        if char in string.punctuation:
            assert escaped[position : position + 2] == "\\" + char
            position += 2
        else:
            assert escaped[position] == char
            position += 1
    assert position == len(escaped)


@given(TEXT)
def test_shown_inline_the_text_reads_as_typed_on_one_line(text: str) -> None:
    shown = md(text)
    assert not set(shown) & set(LINE_BREAKS)
    # Each run of line breaks becomes one space; everything else reads as typed.
    expected = re.sub(f"[{LINE_BREAKS}]+", " ", text).replace(JOINER, "")
    assert readable(shown) == expected


def test_hostile_names_have_no_unescaped_markup() -> None:
    for name in HOSTILE:
        shown = md(name)
        assert readable(shown) == name
        unescaped = [
            c
            for i, c in enumerate(shown)
            if c in string.punctuation and (i == 0 or shown[i - 1] != "\\") and c != "\\"
        ]
        assert not unescaped, (name, shown)


def test_bare_addresses_cannot_become_links() -> None:
    shown = md("see https://evil.example/x, www.evil.example and ann@evil.example")
    assert f"https\\:\\/\\/{JOINER}evil" in shown
    assert f"www{JOINER}\\." in shown
    assert f"ann\\@{JOINER}evil" in shown
    assert shown.count(JOINER) == 3


@given(TEXT)
def test_plotly_text_has_no_tag_and_reads_as_typed(text: str) -> None:
    shown = plotly_text(text)
    assert "<" not in shown and ">" not in shown
    decoded = shown.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert decoded == text
