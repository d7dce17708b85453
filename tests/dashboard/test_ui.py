"""Pages word the typed errors of ``queries.errors.from_driver``: a read's sentence says
what to do, a write's says only what is known about the change."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.exc import OperationalError, ProgrammingError

from dashboard import ui
from queries.errors import (
    Busy,
    Cancelled,
    ConnectionLost,
    DatabaseRefused,
    DatabaseUnavailable,
    OutcomeUnknown,
    TimedOut,
)
from tests.dashboard.apptest import plain

LOST = OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused"))
REFUSED = ProgrammingError("SELECT x", {}, psycopg.errors.UndefinedColumn("no column x"))


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (TimedOut(), "did not answer within"),
        (Cancelled(), "cancelled this read"),
        (Busy(), "conflicted with another change"),
        (ConnectionLost(), "cannot be reached right now. Check that it is running"),
        (DatabaseUnavailable(), "cannot be reached right now. Check that it is running"),
        (DatabaseRefused(kind="DivisionByZero"), "refused a query (DivisionByZero)"),
        (LOST, "cannot be reached right now"),
        (REFUSED, "refused a query (UndefinedColumn)"),
    ],
)
def test_a_failed_read_is_one_sentence_of_what_to_do(error: Exception, said: str) -> None:
    assert said in plain(ui.describe_error(error))


def test_a_write_refused_by_the_database_changed_nothing_and_goes_back_to_its_form() -> None:
    assert "refused the change (UndefinedColumn). Nothing was changed" in plain(
        ui.describe_write_error(REFUSED)
    )
    assert not ui.keeps_request(REFUSED)
    assert not ui.keeps_request(DatabaseRefused(kind="CheckViolation"))


def test_a_lost_connection_outside_the_write_path_is_an_unknown_outcome_kept_for_retry() -> None:
    assert "not known whether the change was applied" in plain(ui.describe_write_error(LOST))
    assert ui.keeps_request(LOST)


@pytest.mark.parametrize("error", [DatabaseUnavailable(), Busy(), Cancelled(), OutcomeUnknown()])
def test_a_write_that_may_work_again_keeps_its_request(error: Exception) -> None:
    assert ui.keeps_request(error)
    sentence = plain(ui.describe_write_error(error))
    assert "Nothing was changed" in sentence or "applies at most once" in sentence
