"""Customer and staff text shown as plain text.

Organization and user names, slugs, emails, reasons, notes and actors are data. Streamlit
renders titles, captions, alerts, toasts, radio options, metric values and button labels
as Markdown (with its extras: ``:red[...]`` colours, ``:material/...:`` icons, ``$...$``
LaTeX, emoji shortcodes, bare-URL links), and plotly renders a subset of HTML in titles,
hover text, tick labels and legend entries. Text that reaches either goes through one
of these helpers first, so that ``![x](http://host/p.png)`` shows as those characters and
never makes a browser fetch anything. Tables (``st.dataframe``), select boxes and
multiselects show their values as plain text already and need nothing.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from typing import Final

# CommonMark lets any ASCII punctuation character be escaped with a backslash, and an
# escaped character is always literal text: no emphasis, link, image, code, HTML, list
# marker, heading, table, directive (``:red[``), math (``$``) or shortcode (``:x:``) can
# start at it.
_ESCAPE: Final = re.compile("([" + re.escape(string.punctuation) + "])")
# A line break in a name would end a Markdown paragraph or start a block; shown inline,
# it becomes a space (the table shows the text as stored).
_BREAKS: Final = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")
# GitHub-flavoured Markdown turns bare addresses (``http://``, ``www.``, ``a@b.com``) into
# links after the escapes are resolved, so no backslash stops it. An invisible word
# joiner (U+2060) after ``://``, in ``www.`` and after ``@`` breaks those patterns
# without changing what a person reads.
_AUTOLINK: Final = re.compile(r"(://|@|(?i:www)(?=\.))")
JOINER: Final = "\u2060"
_HTML: Final = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def escape_markdown(text: str) -> str:
    """``text`` with every ASCII punctuation character backslash-escaped, so that
    Markdown (and Streamlit's extensions of it) shows it literally."""
    return _ESCAPE.sub(r"\\\1", text)


def md(value: object) -> str:
    """Any value as literal Markdown text, on one line and never a link: for customer
    text placed inside a Markdown string (titles, captions, alerts, toasts, radio
    options, metric values). What a person reads is the text as stored."""
    one_line = _BREAKS.sub(" ", str(value))
    return escape_markdown(_AUTOLINK.sub(lambda m: m.group(1) + JOINER, one_line))


def plotly_text(value: object) -> str:
    """Any value as literal text for plotly (trace names, tick labels, hover text):
    ``&``, ``<`` and ``>`` as entities, so no tag (``<a href>``, ``<img>``, ``<b>``) is
    drawn and an entity typed by a customer shows as typed."""
    return str(value).translate(_HTML)


def plotly_texts(values: Iterable[object]) -> list[str]:
    """:func:`plotly_text` of each value of a sequence (a column of names)."""
    return [plotly_text(value) for value in values]
