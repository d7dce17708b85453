"""Driving the app with ``streamlit.testing.v1.AppTest``: building it as a given
identity, opening a page, reading what it shows, and checking rows with SQL."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st
from sqlalchemy import Engine, text
from streamlit.testing.v1 import AppTest

from dashboard.navigation import PAGES
from queries.db import dispose_engine

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
# Demo data in the demo_engine database ends on 2026-11-20 (DEMO_NOW).
DEMO_RANGE = {"range": "custom", "from": "2026-10-22", "to": "2026-11-20"}
TIMEOUT = 30


def reset_app_state() -> None:
    """Forget the engine and every cached read (between tests and databases)."""
    dispose_engine()
    st.cache_data.clear()
    st.cache_resource.clear()


def make_app(
    *,
    role: str | None = "admin",
    email: str = "tester@example.com",
    query: dict[str, str] | None = None,
    secrets: dict[str, Any] | None = None,
) -> AppTest:
    """The app as ``email`` with ``role`` (the development identity from secrets)."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    dev: dict[str, str] = {"user": email}
    if role is not None:
        dev["role"] = role
    at.secrets = secrets if secrets is not None else {"dev": dev}
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at


def page_file(page: str) -> str:
    """The script of the page at ``/<page>`` (e.g. "credits"), as ``switch_page`` takes it:
    a page is a module or a package's page.py."""
    (spec,) = (spec for spec in PAGES if spec.url_path == page)
    return f"app_pages/{spec.file}"


def open_page(at: AppTest, page: str) -> AppTest:
    """Run the app once, then switch to ``page`` (e.g. "credits") and run it."""
    at.run()
    return at.switch_page(page_file(page)).run()


def scalar(engine: Engine, statement: str, **params: object) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(statement), params).scalar_one()


def texts(at: AppTest, kind: str) -> list[str]:
    """The text of every element of ``kind`` (error, success, info, warning, toast...)."""
    return [str(element.value) for element in getattr(at, kind)]


def plain(markdown: str) -> str:
    """What a person reads of Markdown whose punctuation was backslash-escaped
    (``dashboard.text.escape_markdown``)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def plain_texts(at: AppTest, kind: str) -> list[str]:
    """:func:`texts`, as read (escaped punctuation shown as itself)."""
    return [plain(value) for value in texts(at, kind)]


def no_exception(at: AppTest) -> bool:
    return not at.exception


def table_with(at: AppTest, column: str) -> Any:
    """The first table (as a DataFrame) that has ``column``."""
    for element in at.dataframe:
        frame = element.value
        if column in frame.columns:
            return frame
    raise AssertionError(f"no table with a {column!r} column")


def statement_csv_parts(data: bytes) -> tuple[list[list[str]], list[dict[str, str]]]:
    """A statement CSV's header lines (as cells) and its table's rows (by column)."""
    head, _, table = data.decode().partition("\r\n\r\n")
    lines = list(csv.reader(io.StringIO(head, newline="")))
    return lines, list(csv.DictReader(io.StringIO(table, newline="")))


def figures(at: AppTest) -> list[dict[str, Any]]:
    """The plotly figures on the page, as their JSON specs."""
    return [json.loads(element.proto.spec) for element in at.get("plotly_chart")]


def metrics(at: AppTest) -> dict[str, tuple[str, str]]:
    """label -> (value, delta) of every metric tile."""
    return {m.label: (m.value, m.delta) for m in at.metric}


def capture_downloads(monkeypatch: Any) -> dict[str, bytes]:
    """file name -> bytes of every file a download button offers from now on.

    AppTest keeps download contents in an in-memory media store that is dropped after
    each run; this records them as they are stored.
    """
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    offered: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def load_and_get_id(
        self: MemoryMediaFileStorage,
        path_or_data: str | bytes,
        mimetype: str,
        kind: Any,
        filename: str | None = None,
    ) -> str:
        if isinstance(path_or_data, bytes) and filename:
            offered[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", load_and_get_id)

    # A file made only when its button is clicked (``data`` a callable, as the PDF of a
    # statement): made here at once, as a click would, so its bytes can be read.
    deferred = MediaFileManager.add_deferred

    def add_deferred(
        self: MediaFileManager,
        data_callable: Callable[[], Any],
        mimetype: str | None,
        coordinates: str,
        file_name: str | None = None,
        **kwargs: Any,
    ) -> str:
        if file_name:
            made = data_callable()
            offered[file_name] = made.encode() if isinstance(made, str) else made
        return deferred(self, data_callable, mimetype, coordinates, file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", add_deferred)
    return offered


def click(at: AppTest, table: str, row: int, column: str) -> AppTest:
    """A person clicking the cell (``row``, ``column``) of the table keyed ``table``, as
    the browser reports it (a single-cell selection), and the run it starts."""
    at.session_state[table] = {"selection": {"rows": [], "columns": [], "cells": [[row, column]]}}
    return at.run()


def links_of(at: AppTest, table: str, column: str) -> list[Any]:
    """What each cell of ``column`` of the table keyed ``table`` opens when clicked
    (``dashboard.url.Link``, or None for plain text), as the last run drew it."""
    return list(at.session_state["url._tables"][table][column])


def has_links(at: AppTest, table: str) -> bool:
    """Whether the last run drew the table keyed ``table`` with links in it."""
    return table in at.session_state["url._tables"]
