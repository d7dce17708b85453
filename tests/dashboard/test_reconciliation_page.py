"""Reconciliation page: finance sees what the last recorded run found, when and by whom,
without the page checking anything; "Check what changed" checks the books then and
shows that the books close, or a drift with its organization and the first entry or day
where it appears. The page records nothing.

"Now" is fixed (``dashboard.clock.now``), hours after the load's last generation: no
test depends on the wall clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Connection, Engine, make_url, text
from streamlit.testing.v1 import AppTest

import queries.reconciliation
from dashboard import clock
from queries.reconciliation import Reconciliation, reconcile
from tests.conftest import PgServer
from tests.dashboard.apptest import (
    click,
    links_of,
    make_app,
    open_page,
    plain_texts,
    table_with,
    texts,
)
from tests.queries.roles import AUDITOR_LOGIN, login_engine
from tooling.demo_data import append_only_guard_lifted


@pytest.fixture
def reconciliation_page(
    fresh_url: str, use_database: Callable[[str], None]
) -> Callable[..., AppTest]:
    use_database(fresh_url)

    def open_reconciliation(role: str = "finance") -> AppTest:
        return open_page(make_app(role=role), "reconciliation")

    return open_reconciliation


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every check of the books made from now on (its ``full``), the real one run."""
    made: list[bool] = []
    real = queries.reconciliation.check_books

    def counted(
        conn: Connection, *, full: bool = False, now: dt.datetime | None = None
    ) -> Reconciliation:
        made.append(full)
        return real(conn, full=full, now=now)

    monkeypatch.setattr(queries.reconciliation, "check_books", counted)
    return made


@pytest.fixture
def ran_at(fresh_engine: Engine) -> dt.datetime:
    """When the recorded run checks: an hour after the load's last generation."""
    with fresh_engine.connect() as conn:
        last = conn.execute(text("SELECT max(created_at) FROM generations")).scalar_one()
    assert isinstance(last, dt.datetime)
    return (last + dt.timedelta(hours=1)).replace(second=0, microsecond=0).astimezone(dt.UTC)


@pytest.fixture
def reconciler(test_server: PgServer, fresh_url: str) -> Iterator[Engine]:
    """What `dashboard reconcile` runs as: a dashboard_auditor login."""
    engine = login_engine(test_server, str(make_url(fresh_url).database), AUDITOR_LOGIN)
    yield engine
    engine.dispose()


def _fix_now(monkeypatch: pytest.MonkeyPatch, now: dt.datetime) -> None:
    monkeypatch.setattr(clock, "now", lambda: now)


def _recorded(engine: Engine) -> tuple[int, int]:
    """(runs recorded, checkpoints): what a check from the page must leave as it was."""
    with engine.connect() as conn:
        runs, checkpoints = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM reconciliation_runs), "
                "(SELECT count(*) FROM reconciliation_checkpoints)"
            )
        ).one()
    return int(runs), int(checkpoints)


def _corrupt_a_balance(engine: Engine) -> str:
    """The first organization's balance moved by 11 in SQL; its slug."""
    with engine.begin() as conn:
        org, slug = conn.execute(
            text("SELECT id, slug FROM organizations ORDER BY id LIMIT 1")
        ).one()
        conn.execute(
            text("UPDATE credit_balances SET balance = balance + 11 WHERE organization_id = :o"),
            {"o": org},
        )
    return str(slug)


def test_with_no_recorded_run_the_page_says_so_and_checks_only_when_asked(
    reconciliation_page: Callable[..., AppTest],
    fresh_engine: Engine,
    checks: list[bool],
    ran_at: dt.datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fix_now(monkeypatch, ran_at)
    at = reconciliation_page()
    assert not at.exception and not at.error
    assert checks == []
    (info,) = plain_texts(at, "info")
    assert info.startswith("No reconciliation run has been recorded on this database")
    assert "Check what changed" in info
    assert not any("The books close" in t for t in texts(at, "markdown"))

    at.button(key="reconciliation.check").click().run()
    assert not at.exception and not at.error
    assert checks == [False]
    shown = plain_texts(at, "markdown")
    assert any("The books closed" in t for t in shown)
    assert f"Nothing had drifted at {ran_at:%Y-%m-%d %H:%M} UTC (just now)." in shown
    assert any(t.startswith("**Checked in this session**: check of what changed") for t in shown)
    # The page checks; the checkpoints and the runs are the reconciler's to write.
    assert _recorded(fresh_engine) == (0, 0)


def test_a_first_visit_shows_the_last_recorded_run_and_checks_nothing(
    reconciliation_page: Callable[..., AppTest],
    fresh_engine: Engine,
    reconciler: Engine,
    checks: list[bool],
    ran_at: dt.datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    night = reconcile(reconciler, now=ran_at)
    assert night.ok
    checks.clear()
    recorded = _recorded(fresh_engine)
    assert recorded[0] == 1
    _fix_now(monkeypatch, ran_at + dt.timedelta(hours=9, minutes=20))

    at = reconciliation_page()
    assert not at.exception and not at.error
    assert checks == []  # opening the page checked nothing
    assert not [w for w in plain_texts(at, "warning") if w.startswith("This result is from")]
    shown = plain_texts(at, "markdown")
    summary = next(t for t in shown if t.startswith("**Last recorded run**"))
    assert "check of what changed by `dashboard reconcile` (login " + AUDITOR_LOGIN in summary
    assert f"at {ran_at:%Y-%m-%d %H:%M} UTC, **9 h ago**" in summary
    assert any("The books closed" in t for t in shown)
    assert f"Nothing had drifted at {ran_at:%Y-%m-%d %H:%M} UTC (9 h ago)." in shown
    # Opened again (a new session), it still only shows.
    assert not reconciliation_page().exception and checks == []

    # The button checks, shows the new result, and records nothing.
    slug = _corrupt_a_balance(fresh_engine)
    at.button(key="reconciliation.check").click().run()
    assert checks == [False]
    assert any(t.startswith("**Checked in this session**") for t in plain_texts(at, "markdown"))
    assert any("2 drifts in 1 organization" in t for t in texts(at, "error"))
    assert list(table_with(at, "Drifted rows")["Organization"]) == [slug, slug]
    assert _recorded(fresh_engine) == recorded


def test_an_old_run_that_found_drift_stays_prominent_with_its_age(
    reconciliation_page: Callable[..., AppTest],
    fresh_engine: Engine,
    reconciler: Engine,
    checks: list[bool],
    ran_at: dt.datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slug = _corrupt_a_balance(fresh_engine)
    assert not reconcile(reconciler, full=True, now=ran_at).ok
    checks.clear()
    monkeypatch.setenv("DASHBOARD_TIMEZONE", "Asia/Kathmandu")
    _fix_now(monkeypatch, ran_at + dt.timedelta(days=3, hours=2))

    at = reconciliation_page(role="admin")
    assert not at.exception and checks == []
    local = ran_at.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=45)))
    stamp = f"{ran_at:%Y-%m-%d %H:%M} UTC ({local:%Y-%m-%d %H:%M} Asia/Kathmandu, the company zone)"
    (error,) = plain_texts(at, "error")
    assert error.startswith(f"2 drifts in 1 organization at {stamp} (3 days ago).")
    (warning,) = [w for w in plain_texts(at, "warning") if w.startswith("This result is")]
    assert warning.startswith(f"This result is from {stamp}, 3 days ago")
    assert "Is the nightly `dashboard reconcile` running?" in warning
    assert not any("The books close" in t for t in texts(at, "markdown"))
    rows = table_with(at, "Drifted rows")
    assert list(rows["Organization"]) == [slug, slug]
    assert list(rows["Found"] - rows["Expected"]) == [11, 11]


def test_a_corrupted_balance_is_shown_with_its_organization(
    reconciliation_page: Callable[..., AppTest], fresh_engine: Engine, checks: list[bool]
) -> None:
    slug = _corrupt_a_balance(fresh_engine)
    at = reconciliation_page(role="admin")
    assert not at.exception and checks == []
    at.button(key="reconciliation.check").click().run()
    assert not at.exception
    # Off the ledger and off the grants' remaining amounts alike.
    assert any("2 drifts in 1 organization" in t for t in texts(at, "error"))
    rows = table_with(at, "Drifted rows")
    assert list(rows["Organization"]) == [slug, slug]
    assert list(rows["Check"]) == [
        "Balance = ledger − consumption",
        "Balance = the grants' remaining amounts",
    ]
    assert list(rows["Found"] - rows["Expected"]) == [11, 11]
    # A full check finds the same.
    at.button(key="reconciliation.full").click().run()
    assert checks == [False, True]
    assert list(table_with(at, "Drifted rows")["Organization"]) == [slug, slug]


def test_a_drifts_first_entry_opens_the_ledger_at_that_entry(
    reconciliation_page: Callable[..., AppTest], fresh_engine: Engine
) -> None:
    with fresh_engine.begin() as conn:
        org, entry = conn.execute(
            text(
                "SELECT organization_id, id FROM credit_ledger ORDER BY organization_id, id LIMIT 1"
            )
        ).one()
        with append_only_guard_lifted(conn):
            conn.execute(
                text(
                    "UPDATE credit_ledger SET balance_after = balance_after + 1 "
                    "WHERE organization_id = :o AND id = :e"
                ),
                {"o": org, "e": entry},
            )
    at = reconciliation_page()
    assert not at.exception
    at.button(key="reconciliation.check").click().run()
    assert not at.exception
    rows = table_with(at, "Drifted rows").reset_index(drop=True)
    (row,) = rows.index[rows["First entry"] == entry]
    links = links_of(at, "reconciliation.table", "First entry")
    # A drift found on a day or on the balance has no entry: no link.
    assert [link is None for link in links] == list(rows["First entry"].isna())
    link = links[row]
    assert link.page == "credits"
    assert (link.query["org"], link.query["entry"]) == (str(org), str(entry))
    click(at, "reconciliation.table", int(row), "First entry")
    assert not at.exception and "Credits" in at.title[0].value
    assert [int(e) for e in table_with(at, "Balance after")["Entry"]] == [entry]
