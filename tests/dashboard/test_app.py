"""When things go wrong: a sentence that says what happened and what to do, never a
traceback; a failed write changes nothing and says so."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

import queries.credits
from dashboard import data
from queries.errors import DatabaseUnavailable
from tests.dashboard.apptest import make_app, open_page, scalar, texts


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
    use_database: Callable[[str], None], url: str, sentence: str
) -> None:
    use_database(url)
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


def test_every_page_renders_on_a_small_database(
    today_url: str, use_database: Callable[[str], None]
) -> None:
    use_database(today_url)
    at = make_app().run()
    for page in ("overview", "usage", "credits", "quotas", "audit"):
        at.switch_page(f"app_pages/{page}.py").run()
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
