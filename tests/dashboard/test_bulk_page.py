"""Credits page, bulk adjustments: upload a CSV, review the dry run (errors by line,
balances before and after), confirm through the one write flow; once per file."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from tests.dashboard.apptest import plain, plain_texts, scalar, table_with
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


def test_a_file_with_grant_terms_shows_them_and_applies_them(
    org: int, fresh_engine: Engine
) -> None:
    s = slug(fresh_engine, org)
    content = (
        "organization,amount,reason,expires_at,priority\n"
        f"{s},700,Promotion,2099-01-06T05:45:00+05:45,5\n"
        f"{s},10,Top-up,,\n"
    ).encode()
    at = upload(credits_page(org), content)
    assert not at.exception
    table = table_with(at, "Expires (UTC)")
    assert list(table["Expires (UTC)"]) == ["2099-01-06 00:00", ""]
    assert list(table["Priority"].astype("object").fillna(-1)) == [5, -1]
    button(at, "Confirm: apply 2 rows").click()
    at.run()
    assert not at.exception
    terms = scalar(
        fresh_engine,
        "SELECT to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' ' || priority "
        "FROM credit_grants WHERE organization_id = :o AND source = 'bulk' AND amount = 700",
        o=org,
    )
    assert terms == "2099-01-06 00:00 5"


def test_a_naive_expiry_is_a_line_error_and_nothing_is_applied(
    org: int, fresh_engine: Engine
) -> None:
    before = (balance(fresh_engine, org), ledger_rows(fresh_engine, org))
    s = slug(fresh_engine, org)
    content = f"organization,amount,reason,expires_at\n{s},10,Promo,2099-01-06T00:00\n".encode()
    at = upload(credits_page(org), content)
    lines = " ".join(t.value for t in at.markdown)
    assert "Line 2:" in lines and "has no UTC offset" in plain(lines)
    assert not [b for b in at.button if b.label.startswith("Confirm")]
    assert (balance(fresh_engine, org), ledger_rows(fresh_engine, org)) == before
