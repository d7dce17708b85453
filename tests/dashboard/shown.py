"""What a person reads from the Markdown the app sends: AppTest hands back an element's
Markdown source, in which customer text is escaped (``dashboard.text.md``)."""

from __future__ import annotations

import re
import string

from streamlit.testing.v1 import AppTest

from dashboard.text import JOINER

_ESCAPED = re.compile(r"\\([" + re.escape(string.punctuation) + "])")


def readable(markdown: str) -> str:
    """``markdown`` as read: backslash escapes resolved, invisible joiners removed."""
    return _ESCAPED.sub(r"\1", markdown).replace(JOINER, "")


def shown(at: AppTest, kind: str) -> list[str]:
    """The readable text of every element of ``kind`` (error, warning, markdown...)."""
    return [readable(str(element.value)) for element in getattr(at, kind)]
