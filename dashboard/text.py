"""Customer and URL text shown inside Markdown, as the text it is.

Streamlit renders Markdown in titles, captions, alerts and toasts. An organization named
``![x](http://host/p.png)`` or a link value ``**urgent**`` must show those characters,
not an image fetched by every viewer's browser or bold text.
"""

from __future__ import annotations

import re
import string
from typing import Final

# Every ASCII punctuation character may be backslash-escaped in CommonMark, and an
# escaped one always stands for itself, so escaping all of them is safe whatever
# Markdown extension (Streamlit's :color[...] and :material/...: included) comes later.
_PUNCTUATION: Final = re.compile("([" + re.escape(string.punctuation) + "])")


def escape_markdown(text: str) -> str:
    """``text`` with every ASCII punctuation character backslash-escaped, so Markdown
    shows it literally (no links, images, emphasis, code, HTML or directives)."""
    return _PUNCTUATION.sub(r"\\\1", text)
