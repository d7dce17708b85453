"""When things go wrong: a sentence that says what happened and what to do, never a
traceback; a failed write changes nothing and says so."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError
from streamlit.testing.v1 import AppTest

import queries.credits
from dashboard import data, navigation
from queries.db import NOT_CONFIGURED
from queries.embedded_server import owns_url
from queries.errors import DatabaseUnavailable
from tests.conftest import PgServer, _recreate
from tests.dashboard.apptest import make_app, open_page, page_file, plain_texts, scalar, texts
from tests.faults import table_locked
from tooling import schema


def outage(*_: object, **__: object) -> NoReturn:
    raise OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused"))


def write_outage(*_: object, **__: object) -> NoReturn:
    """What a write raises when the database cannot be reached before anything was
    sent (queries turns the driver's error into this typed one)."""
    raise DatabaseUnavailable()


@pytest.mark.parametrize(
    ("url", "sentence"),
    [
        ("postgresql://nobody@127.0.0.1:9/nowhere", "The database cannot be reached right now"),
        ("mysql://nobody@localhost/db", "not configured correctly"),
    ],
)
def test_an_unreachable_or_misconfigured_database_is_a_sentence(
    use_database: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    sentence: str,
) -> None:
    use_database(url)
    # Not the embedded database: without [auth] only an explicit single user may start.
    monkeypatch.setenv("DASHBOARD_USER", "tester@example.com")
    at = make_app().run()
    assert not at.exception
    (error,) = texts(at, "error")
    assert sentence in error
    assert [b.label for b in at.button] == ["Try again"]


def test_an_empty_database_says_how_to_load_data(
    empty_url: str, use_database: Callable[[str], None]
) -> None:
    use_database(empty_url)
    at = make_app().run()
    assert not at.exception
    assert any("no organizations yet" in i and "dashboard seed" in i for i in texts(at, "info"))


def test_a_failing_query_spoils_only_its_own_part_of_the_page(
    today_url: str, use_database: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_database(today_url)
    monkeypatch.setattr(data, "top_users", outage)
    at = make_app().run()
    assert not at.exception
    (error,) = texts(at, "error")
    assert error.startswith("Top users could not be shown.")
    assert "cannot be reached" in error
    assert at.metric and any("Most recent" in s.value for s in at.subheader)


def test_a_read_behind_a_lock_is_a_sentence_within_the_read_timeout(
    fresh_url: str,
    fresh_engine: Engine,
    use_database: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A real lock held by another connection (a migration rewriting audit_log, say):
    # the trail's read gives up after the read timeout (1 s here, 15 s by default) and
    # its part of the page says so; the rest of the page is drawn.
    monkeypatch.setenv("DASHBOARD_READ_TIMEOUT", "1")
    use_database(fresh_url)
    at = make_app(role="manager").run()
    with table_locked(fresh_engine, "audit_log"):
        began = time.monotonic()
        at.switch_page("app_pages/audit.py").run()
        took = time.monotonic() - began
    assert not at.exception
    (error,) = plain_texts(at, "error")
    assert error.startswith("The audit trail could not be shown. The database did not answer ")
    assert "within 1 s;" in error and "cannot be reached" not in error
    assert at.title[0].value == "Audit trail" and at.radio(key="audit.scope")
    assert took < 10, took


def test_every_page_renders_on_a_small_database(
    today_url: str, use_database: Callable[[str], None]
) -> None:
    use_database(today_url)
    at = make_app().run()
    for page in ("overview", "usage", "credits", "quotas", "audit"):
        at.switch_page(page_file(page)).run()
        assert not at.exception, page
        assert not at.error, (page, texts(at, "error"))
        assert any(c.startswith("Data as of ") for c in texts(at, "caption")), page


def test_refresh_reads_again(today_url: str, use_database: Callable[[str], None]) -> None:
    use_database(today_url)
    at = make_app().run()
    refresh = next(b for b in at.button if b.label == "Refresh")
    refresh.click().run()
    assert not at.exception
    assert any(c.startswith("Data as of ") for c in texts(at, "caption"))


def test_a_write_during_an_outage_changes_nothing_and_can_be_retried_once(
    fresh_url: str,
    fresh_engine: Engine,
    use_database: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_database(fresh_url)
    org = int(scalar(fresh_engine, "SELECT id FROM organizations ORDER BY name LIMIT 1"))
    rows = int(scalar(fresh_engine, "SELECT count(*) FROM credit_ledger"))
    at = open_page(make_app(query={"org": str(org)}), "credits")
    at.text_input(key="credits.amount").input("99")
    at.selectbox(key="credits.reason").set_value("Promotion")
    next(b for b in at.button if b.label == "Review adjustment").click()
    at.run()

    real = queries.credits.adjust_credits
    monkeypatch.setattr(queries.credits, "adjust_credits", write_outage)
    next(b for b in at.button if b.label.startswith("Confirm")).click()
    at.run()
    assert not at.exception
    (error,) = texts(at, "error")
    assert "cannot be reached" in error and "Nothing was changed" in error
    assert int(scalar(fresh_engine, "SELECT count(*) FROM credit_ledger")) == rows

    # The request (and its idempotency key) is still there: confirming again is safe.
    monkeypatch.setattr(queries.credits, "adjust_credits", real)
    next(b for b in at.button if b.label.startswith("Confirm")).click()
    at.run()
    assert any("New balance" in s for s in texts(at, "success"))
    assert int(scalar(fresh_engine, "SELECT count(*) FROM credit_ledger")) == rows + 1


# ------------------------------------------------ no database, demo data, old schema


def demo_badges(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if "badge[" in m.value and "Demo data" in m.value]


def test_with_no_database_configured_the_app_says_so_and_makes_none_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DIRECT_URL", raising=False)
    at = make_app().run()
    assert not at.exception
    assert texts(at, "error") == [NOT_CONFIGURED]
    assert not at.sidebar.selectbox and not at.metric and not demo_badges(at)


def test_every_page_on_the_embedded_database_carries_the_demo_badge(
    today_url: str, use_database: Callable[[str], None]
) -> None:
    assert owns_url(today_url)
    use_database(today_url)
    at = make_app().run()
    for page in ("overview", "usage", "credits", "quotas", "audit"):
        at.switch_page(page_file(page)).run()
        assert not at.exception, page
        assert len(demo_badges(at)) == 1, page


def test_a_database_that_is_not_the_embedded_one_has_no_demo_badge(
    today_url: str,
    use_database: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    use_database(today_url)
    monkeypatch.setenv("DASHBOARD_PGDATA", str(tmp_path / "no-cluster"))  # owns nothing
    monkeypatch.setenv("DASHBOARD_USER", "tester@example.com")
    assert not owns_url(today_url)
    at = make_app().run()
    assert not at.exception and at.metric
    assert not demo_badges(at)


@pytest.fixture
def behind_url(test_server: PgServer) -> str:
    """A database migrated to the first revision only: its schema is behind."""
    _recreate(test_server, "dashboard_test_ui_behind")
    url = test_server.url("dashboard_test_ui_behind")
    schema.upgrade(url=url)
    schema.downgrade(revision="0001", url=url)
    return url


def test_a_schema_that_is_behind_is_a_sentence_not_a_traceback(
    behind_url: str, use_database: Callable[[str], None]
) -> None:
    use_database(behind_url)
    at = make_app().run()
    assert not at.exception
    (error,) = texts(at, "error")
    assert "schema is behind" in error and "dashboard migrate" in error
    assert not at.sidebar.selectbox and not at.metric
    assert [b.label for b in at.button] == ["Try again"]

    # Checked once per database and process: the answer is kept, not read again.
    with schema_reads() as reads:
        at.run()
    assert texts(at, "error") == [error]
    assert reads == []


@contextlib.contextmanager
def schema_reads() -> Iterator[list[str]]:
    """The statements that read alembic_version while the block runs (any engine)."""
    reads: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "alembic_version" in statement:
            reads.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        yield reads
    finally:
        event.remove(Engine, "before_cursor_execute", seen)


def test_a_current_schema_is_read_once(today_url: str, use_database: Callable[[str], None]) -> None:
    use_database(today_url)
    at = make_app()
    with schema_reads() as first:
        at.run()
    assert not at.exception and at.metric
    assert len(first) == 1
    with schema_reads() as again:
        at.switch_page(page_file("credits")).run()
    assert not at.exception and again == []


def test_the_tab_title_names_the_page_and_the_organization_as_plain_text() -> None:
    credits, usage = (
        next(s for s in navigation.PAGES if s.title == t) for t in ("Credits", "Usage review")
    )
    assert navigation.tab_title(credits, "Acme Games") == "Credits · Acme Games — Usage dashboard"
    # Customer text stays as it is (a browser shows a title as text), on one line.
    hostile = "**Bold** <b>x</b> [a](http://e.com)\nnext"
    assert navigation.tab_title(credits, hostile) == (
        "Credits · **Bold** <b>x</b> [a](http://e.com) next — Usage dashboard"
    )
    long = navigation.tab_title(credits, "A" * 300)
    assert len(long) < 100 and "A…" in long
    # A page across organizations names no organization.
    assert navigation.tab_title(usage, "Acme Games") == "Usage review — Usage dashboard"
