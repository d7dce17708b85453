"""Credits page, bulk adjustments: upload a CSV, review the dry run (errors by line,
balances before and after), confirm through the one write flow; once per file."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from tests.dashboard.apptest import plain_texts, scalar, table_with
from tests.dashboard.test_credits_page import balance, button, credits_page, first_org, ledger_rows


@pytest.fixture
def org(fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]) -> int:
    use_database(fresh_url)
    return first_org(fresh_engine)


def slug(engine: Engine, org: int) -> str:
    return str(scalar(engine, "SELECT slug FROM organizations WHERE id = :o", o=org))


def upload(at: AppTest, content: bytes, name: str = "grants.csv") -> AppTest:
    at.file_uploader(key="credits.bulk_file").set_value((name, content, "text/csv"))
    at.run()
    button(at, "Check the file").click()
    return at.run()


def test_upload_review_confirm_applies_once(org: int, fresh_engine: Engine) -> None:
    start, rows = balance(fresh_engine, org), ledger_rows(fresh_engine, org)
    s = slug(fresh_engine, org)
    content = (
        f"organization,amount,reason,note\n{s},700,Goodwill,<b>hi</b>\n{s},-200,Correction,\n"
    ).encode()
    at = upload(credits_page(org), content)
    assert not at.exception
    table = table_with(at, "Balance before")
    assert list(table["Line"]) == [2, 3]
    assert list(table["Balance before"]) == [start, start + 700]
    assert list(table["Balance after"]) == [start + 700, start + 500]
    assert (balance(fresh_engine, org), ledger_rows(fresh_engine, org)) == (start, rows)
    button(at, "Confirm: apply 2 rows").click()
    at.run()
    assert not at.exception
    assert any("2 rows applied" in t for t in plain_texts(at, "success"))
    assert (balance(fresh_engine, org), ledger_rows(fresh_engine, org)) == (start + 500, rows + 2)
    # The same file again: reviewed as already there, confirmed, nothing changes.
    at = upload(at, content)
    assert list(table_with(at, "Status")["Status"]) == ["already there", "already there"]
    button(at, "Confirm").click()
    at.run()
    assert any("2 already there" in t for t in plain_texts(at, "success"))
    assert (balance(fresh_engine, org), ledger_rows(fresh_engine, org)) == (start + 500, rows + 2)


def test_a_file_with_errors_shows_each_line_and_offers_no_confirm(
    org: int, fresh_engine: Engine
) -> None:
    before = (balance(fresh_engine, org), ledger_rows(fresh_engine, org))
    s = slug(fresh_engine, org)
    content = f"organization,amount,reason\n{s},10,Fine\nnobody,1.5,x\n{s},0,Zero\n".encode()
    at = upload(credits_page(org), content)
    assert not at.exception
    assert any(
        "problems; nothing of this file can be applied" in t for t in plain_texts(at, "error")
    )
    lines = " ".join(t.value for t in at.markdown)
    assert "Line 3:" in lines and "Line 4:" in lines and "Line 2:" not in lines
    assert not [b for b in at.button if b.label.startswith("Confirm")]
    assert (balance(fresh_engine, org), ledger_rows(fresh_engine, org)) == before
    button(at, "Discard").click()
    at.run()
    assert [b for b in at.button if b.label.startswith("Check the file")] or at.file_uploader
