"""The start-up warm-up: what it imports, compiles and reads ahead for the first visitor."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from dashboard import clock, warmup
from tests.dashboard.apptest import make_app, reset_app_state

ROOT = Path(__file__).resolve().parents[2]


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


def test_the_sample_charts_load_plotlys_chart_classes_without_a_database() -> None:
    """The warm-up's charts step needs no database (it runs while the command still
    readies it) and leaves Plotly's bar and layout classes loaded, which a first figure
    otherwise loads in the first visitor's run. In a fresh process: this one has them."""
    code = (
        "import sys; from dashboard import warmup; "
        "before = 'plotly.graph_objs._bar' in sys.modules; "
        "print(before, warmup.build_sample_charts(), "
        "{'plotly.graph_objs._bar', 'plotly.graph_objs._figure'} <= sys.modules.keys())"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "DIRECT_URL", "DATABASE_READ_URL")
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "2", "True"]
