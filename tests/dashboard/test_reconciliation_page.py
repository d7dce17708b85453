"""Reconciliation page: finance sees that the books close, and a drift with its
organization and the first entry or day where it appears."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text
from streamlit.testing.v1 import AppTest

from tests.dashboard.apptest import click, links_of, make_app, open_page, table_with, texts
from tooling.demo_data import append_only_guard_lifted


@pytest.fixture
def reconciliation_page(
    fresh_url: str, use_database: Callable[[str], None]
) -> Callable[..., AppTest]:
    use_database(fresh_url)

    def open_reconciliation(role: str = "finance") -> AppTest:
        return open_page(make_app(role=role), "reconciliation")

    return open_reconciliation


def test_finance_sees_that_the_demo_books_close(
    reconciliation_page: Callable[..., AppTest], fresh_engine: Engine
) -> None:
    at = reconciliation_page()
    assert not at.exception and not at.error
    assert any("The books close" in t for t in texts(at, "markdown"))
    # The page checks; the checkpoints are the reconciler's (dashboard_auditor) to write.
    with fresh_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM reconciliation_checkpoints")).scalar() == 0


def test_a_corrupted_balance_is_shown_with_its_organization(
    reconciliation_page: Callable[..., AppTest], fresh_engine: Engine
) -> None:
    with fresh_engine.begin() as conn:
        org, slug = conn.execute(
            text("SELECT id, slug FROM organizations ORDER BY id LIMIT 1")
        ).one()
        conn.execute(
            text("UPDATE credit_balances SET balance = balance + 11 WHERE organization_id = :o"),
            {"o": org},
        )
    at = reconciliation_page(role="admin")
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
