"""The start-up warm-up: what it imports, compiles and reads ahead for the first visitor."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event

from dashboard import clock, warmup
from tests.dashboard.apptest import make_app, reset_app_state


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every statement any engine sends inside the block (the app's engines are its own)."""
    sent: list[str] = []

    def before(*args: Any) -> None:
        sent.append(str(args[2]))

    event.listen(Engine, "before_cursor_execute", before)
    try:
        yield sent
    finally:
        event.remove(Engine, "before_cursor_execute", before)


def test_the_warm_up_imports_what_the_app_uses_and_never_a_page() -> None:
    warmup.import_modules()
    assert set(warmup.MODULES) <= sys.modules.keys()
    assert not any(name.startswith("dashboard.app_pages.") for name in warmup.MODULES)
    assert warmup.compile_scripts() == 0  # no server runtime here: nothing to fill


def test_the_default_view_read_ahead_is_what_the_first_visitor_reads(
    today_url: str, use_database: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_database(today_url)
    # One instant for the warm-up and the visit: the KPIs are keyed on the quarter-hour,
    # and a boundary passing between them would make this test fail by chance.
    fixed = clock.now()
    monkeypatch.setattr(clock, "now", lambda: fixed)
    with statements() as cold:
        make_app(role="manager").run()
    reset_app_state()

    with statements() as ahead:
        warmup.read_default_view()
    assert ahead, "the warm-up read nothing"
    with statements() as first_visit:
        at = make_app(role="manager").run()
    assert not at.exception and not at.error
    # Every read the warm-up made is served from the cache on the first visit: the
    # visit sends only what the warm-up could not do (the schema check).
    assert len(first_visit) <= len(cold) - len(ahead)
    assert not set(ahead) & set(first_visit)


def test_the_default_view_charts_are_built_from_the_read_ahead_alone(
    today_url: str, use_database: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm-up's last step builds the Overview's two charts (so Plotly's figure
    classes and validators are loaded before the first visitor needs them) from what it
    read ahead: no statement of its own."""
    use_database(today_url)
    fixed = clock.now()
    monkeypatch.setattr(clock, "now", lambda: fixed)
    reset_app_state()
    warmup.read_default_view()
    with statements() as drawing:
        assert warmup.draw_default_view() == 2
    assert drawing == []
