"""The tooling's errors that the command line shows as a sentence. They sit apart from
the modules that raise them, so the command can name them without importing those (the
demo loader brings NumPy, which a start that loads nothing does not need)."""

from __future__ import annotations


class DemoDataError(RuntimeError):
    """The demo data cannot be loaded as asked (the reason is in the message)."""


class EmbeddedServerError(Exception):
    """The embedded server did not start; ``str(error)`` says why, in one sentence."""
