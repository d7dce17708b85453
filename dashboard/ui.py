"""Small drawing helpers every page shares: the header with "data as of" and Refresh,
messages that survive a rerun, and errors turned into sentences.

Every sentence these helpers return or show is Markdown-safe: text that came from the
data or from an exception is escaped (:func:`dashboard.text.md`), so it can be passed to
``st.error`` and friends as it is."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Final, Literal

import pandas as pd
import streamlit as st
from sqlalchemy.exc import SQLAlchemyError
from streamlit.delta_generator import DeltaGenerator

from dashboard import data, exports
from dashboard.auth import AccessDenied
from dashboard.text import md
from queries.db import ConfigurationError, read_timeout_seconds
from queries.errors import (
    Busy,
    Cancelled,
    ConnectionLost,
    DashboardError,
    DatabaseRefused,
    DatabaseUnavailable,
    OutcomeUnknown,
    TimedOut,
    from_driver,
)

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
    """What went wrong reading data and what to do, in one or two sentences (no stack
    trace), Markdown-safe. A raw driver error (a read outside the cached ones) is read
    by ``queries.errors.from_driver`` first, as the cached reads' errors were."""
    if isinstance(exc, ConfigurationError):
        return md(f"The database is not configured correctly: {exc}. Fix DATABASE_URL and reload.")
    error = _typed(exc)
    if isinstance(error, TimedOut):
        return md(
            f"The database did not answer within {_read_timeout()}; another change may be "
            "holding what this reads (a migration, a long update), or the query is slow. "
            "Press Refresh to try again in a moment; if it keeps happening, tell the team "
            "that runs the dashboard."
        )
    if isinstance(error, Cancelled):
        return md(
            "The database cancelled this read (an administrator or a restart stopped it). "
            "Press Refresh to try again."
        )
    if isinstance(error, Busy):
        return md(
            "The database stopped this read because it conflicted with another change (or "
            "with a replica catching up). Press Refresh to try again."
        )
    if isinstance(error, DatabaseUnavailable):
        return md(
            "The database cannot be reached right now. Check that it is running "
            "(uv run dashboard starts the local one) and that DATABASE_URL is right, "
            "then press Refresh."
        )
    if isinstance(error, DatabaseRefused):
        return md(
            f"The database refused a query ({error.kind}). Press Refresh to try again; if "
            "it keeps failing, tell the team that runs the dashboard."
        )
    if error is not None:
        return md(error)
    if isinstance(exc, SQLAlchemyError | OSError):
        return md(
            f"Reading the data failed ({type(exc).__name__}). Press Refresh to try again; if "
            "it keeps failing, tell the team that runs the dashboard."
        )
    return md(f"Something went wrong ({type(exc).__name__}). Press Refresh to try again.")


def _typed(exc: BaseException) -> DashboardError | AccessDenied | None:
    """``exc`` as the typed error a page words: itself when it is one, else what
    ``queries.errors.from_driver`` reads in a driver's error; None for anything else."""
    if isinstance(exc, DashboardError | AccessDenied):
        return exc
    return from_driver(exc)


def _read_timeout() -> str:
    try:
        return f"{read_timeout_seconds():g} s"
    except ConfigurationError:  # (the engine would have said so first)
        return "the time a read may take"


# Failures after which the request stays for "Confirm again": nothing was changed and
# trying again may work (unavailable, busy, cancelled), or the outcome is unknown and
# the same request with the same idempotency key applies at most once.
TRANSIENT: Final = (DatabaseUnavailable, Busy, Cancelled, OutcomeUnknown)


def describe_write_error(exc: BaseException) -> str:
    """What happened to a write that failed, promising only what is known (Markdown-safe):

    - a refusal (``InvalidInput``, ``InsufficientCredits``, ``AlreadyReversed``,
      ``IdempotencyConflict``, ``DatabaseUnavailable``, ``Busy``, ``DatabaseRefused``,
      access denied): its own sentence, and that nothing was changed;
    - ``OutcomeUnknown``: its sentence, that the outcome is unknown and confirming
      again is safe and applies at most once;
    - a statement the database refused (a raw driver error that gets through; queries
      wraps them): nothing was changed;
    - a lost connection outside a write's own transaction handling, or anything else:
      that it is not known whether the change was applied.
    """
    if isinstance(exc, OutcomeUnknown):
        return md(exc)
    error = _typed(exc)
    if error is not exc:  # a raw driver error that got through, or something else
        if isinstance(error, DatabaseRefused):
            return md(
                f"The database refused the change ({error.kind}). Nothing was changed. If it "
                "keeps happening, tell the team that runs the dashboard."
            )
        if isinstance(error, ConnectionLost):  # the commit may have reached the server
            error = None
    if error is None:
        return md(
            f"Saving failed with an unexpected error ({type(exc).__name__}), so it is not "
            "known whether the change was applied. Check the ledger or the audit trail "
            "before confirming again."
        )
    sentence = str(error).rstrip()
    if "nothing was changed" not in sentence.lower():
        sentence = f"{sentence} Nothing was changed."
    return md(sentence)


def keeps_request(exc: BaseException) -> bool:
    """Whether a write that failed with ``exc`` keeps its request (and idempotency key)
    on the confirmation, for "Confirm again": yes when nothing was refused (the
    database was unavailable or busy, or the outcome is unknown); no when the request
    itself was refused, so the person goes back to the form to change it."""
    error = _typed(exc)
    return error is None or isinstance(error, TRANSIENT)


def drafted_elsewhere(what: str, drafted: tuple[int, str], shown: tuple[int, str]) -> str:
    """The sentence (Markdown-safe) for a draft whose organization the page no longer
    shows."""
    (drafted_id, drafted_name), (shown_id, shown_name) = drafted, shown
    return (
        f"This {what} was drafted for {md(drafted_name)} (#{drafted_id}), but the page now "
        f"shows {md(shown_name)} (#{shown_id}); switch back to confirm it, or discard it."
    )


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
    :func:`finish_page`) and a Refresh button that reads again what the page showed (:func:`dashboard.data.refresh`). ``title`` and
    ``caption`` are Markdown: escape customer text in them with :func:`md`."""
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
            on_click=data.refresh,
            help="Read what this page shows again from the database.",
        )


def finish_page() -> None:
    """Write "data as of HH:MM UTC" into the header of the page that just ran, with how
    far behind the replica was when the data came from one."""
    slot = st.session_state.pop(_AS_OF_SLOT, None)
    if not isinstance(slot, DeltaGenerator):
        return
    as_of = data.as_of()
    if as_of is None:
        return
    lag = data.replica_lag()
    behind = "" if lag is None else f" (replica {behind_by(lag)} behind)"
    slot.caption(f"Data as of {as_of.astimezone(dt.UTC):%H:%M} UTC{behind}")


def behind_by(lag: dt.timedelta) -> str:
    """A replica's lag in words: "less than 1 s", "12 s", "4 min"."""
    seconds = lag.total_seconds()
    if seconds < 1:
        return "less than 1 s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds // 60:.0f} min"


def flash(key: str, level: Level, message: str) -> None:
    """Keep a message for the next run of the page (e.g. after ``st.rerun``).
    ``message`` is Markdown: escape customer text in it with :func:`md`."""
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


def csv_download(
    key: str,
    *,
    filters: object,
    complete: pd.DataFrame | None,
    read_all: Callable[[], tuple[pd.DataFrame, str | None]],
    file_name: str,
    prepare_label: str,
    label: str = "Download CSV",
    disabled: bool = False,
) -> None:
    """The "Download CSV" of a paged list: every matching row, not only the page shown.
    A second list on the same page names its own in ``label``.

    ``complete`` is the list when the page shown already holds all of it (offered at
    once). Else reading every row costs a second query as large as the list, so it is
    read (``read_all``: the rows, and a caption when they were cut) only after a click
    on ``prepare_label``, for these ``filters``, and offered from then on.
    """
    asked = f"{key}.csv_for"
    if complete is None and st.session_state.get(asked) == filters:
        complete, cut = read_all()
        if cut:
            st.caption(cut)
    if complete is None:
        st.button(
            prepare_label,
            key=f"{key}.prepare_csv",
            on_click=st.session_state.__setitem__,
            args=(asked, filters),
            icon=":material/download:",
        )
        return
    st.download_button(
        label,
        # Written when clicked, not on every run: a list's CSV cost a run 10-50 ms.
        data=functools.partial(exports.csv_bytes, complete),
        file_name=file_name,
        mime="text/csv",
        icon=":material/download:",
        key=f"{key}.download",
        on_click="ignore",
        disabled=disabled,
    )


def in_full(
    table: pd.DataFrame,
    selected: Sequence[int],
    *,
    heading: Sequence[str],
    fields: Sequence[str],
    what: str,
) -> None:
    """The selected row's long text as plain text, however long: a table's cells are cut
    to their column's width, so a list with reasons, notes or details shows the chosen
    row's ``heading`` columns on one line and each of ``fields`` in full below it.
    ``selected`` is the dataframe's selection (``event.selection.rows``); ``what`` names
    the fields in the hint shown while nothing is selected."""
    if not selected or not 0 <= selected[0] < len(table):
        st.caption(f"Select a row (the box at its left) to read its {what} in full.")
        return
    row = table.iloc[selected[0]]
    with st.container(border=True):
        # st.text: customer text shown as it is, never as Markdown.
        st.text(" · ".join(str(row[column]) for column in heading))
        for column in fields:
            value = row[column]
            st.text(f"{column}: {value if isinstance(value, str) else ''}")
