"""Small drawing helpers every page shares: the header with "data as of" and Refresh,
messages that survive a rerun, and errors turned into sentences."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from typing import Final, Literal

import pandas as pd
import streamlit as st
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from streamlit.delta_generator import DeltaGenerator

from dashboard import data
from dashboard.auth import AccessDenied
from queries.db import ConfigurationError
from queries.errors import DashboardError

_log = logging.getLogger(__name__)
_AS_OF_SLOT: Final = "ui._as_of_slot"
_FLASH: Final = "ui._flash"

Level = Literal["success", "error", "warning", "info"]

# Errors a page boundary turns into a sentence rather than a traceback.
EXPECTED_ERRORS: Final = (
    DashboardError,
    AccessDenied,
    ConfigurationError,
    SQLAlchemyError,
    OSError,
)


def describe_error(exc: BaseException) -> str:
    """What went wrong and what to do, in one or two sentences (no stack trace)."""
    if isinstance(exc, DashboardError | AccessDenied):
        return str(exc)
    if isinstance(exc, ConfigurationError):
        return f"The database is not configured correctly: {exc}. Fix DATABASE_URL and reload."
    if isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return (
            "The database cannot be reached right now. Check that it is running "
            "(`uv run dashboard` starts the local one) and that DATABASE_URL is right, "
            "then press Refresh."
        )
    if isinstance(exc, DBAPIError):
        kind = type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
        return (
            f"The database refused a query ({kind}). Press Refresh to try again; if it keeps "
            "failing, tell the team that runs the dashboard."
        )
    if isinstance(exc, SQLAlchemyError | OSError):
        return (
            f"Reading the data failed ({type(exc).__name__}). Press Refresh to try again; if "
            "it keeps failing, tell the team that runs the dashboard."
        )
    return f"Something went wrong ({type(exc).__name__}). Press Refresh to try again."


def describe_write_error(exc: BaseException) -> str:
    """As :func:`describe_error`, and always says that nothing was changed."""
    sentence = describe_error(exc)
    if "nothing was" not in sentence.lower():
        sentence = f"{sentence.rstrip()} Nothing was changed."
    return sentence


@contextlib.contextmanager
def section(what: str) -> Iterator[None]:
    """Draw a part of a page; if its data cannot be read, say so and go on with the rest."""
    try:
        yield
    except EXPECTED_ERRORS as exc:
        _log.warning("%s failed: %r", what, exc)
        st.error(f"{what} could not be shown. {describe_error(exc)}", icon=":material/error:")


def page_header(title: str, caption: str | None = None) -> None:
    """The page title, an optional caption, "data as of" (filled in by
    :func:`finish_page`) and a Refresh button that empties the caches."""
    st.title(title)
    left, right = st.columns([5, 1], vertical_alignment="center")
    with left:
        if caption:
            st.caption(caption)
        st.session_state[_AS_OF_SLOT] = st.empty()
    with right:
        st.button(
            "Refresh",
            icon=":material/refresh:",
            key=f"ui.refresh.{title}",
            on_click=data.clear,
            help="Read everything again from the database.",
        )


def finish_page() -> None:
    """Write "data as of HH:MM UTC" into the header of the page that just ran."""
    slot = st.session_state.pop(_AS_OF_SLOT, None)
    if not isinstance(slot, DeltaGenerator):
        return
    as_of = data.as_of()
    if as_of is None:
        return
    slot.caption(f"Data as of {as_of.astimezone(dt.UTC):%H:%M} UTC")


def flash(key: str, level: Level, message: str) -> None:
    """Keep a message for the next run of the page (e.g. after ``st.rerun``)."""
    st.session_state.setdefault(_FLASH, {})[key] = (level, message)


def show_flash(key: str) -> None:
    """Show, once, the message :func:`flash` kept under ``key``."""
    stored = st.session_state.get(_FLASH, {}).pop(key, None)
    if stored is None:
        return
    level, message = stored
    {"success": st.success, "error": st.error, "warning": st.warning, "info": st.info}[level](
        message
    )


def number(value: float | int) -> str:
    return f"{value:,.0f}"


def change(value: float | None) -> str | None:
    """A relative change as a metric delta ("+12.5 %"), or None when there was nothing
    to compare with."""
    return None if value is None else f"{value:+.1%}".replace("%", " %")


def local_times(series: pd.Series, timezone: str) -> pd.Series:
    """UTC timestamps shown in ``timezone`` (the organization's own or UTC)."""
    converted: pd.Series = series.dt.tz_convert(timezone)
    return converted
