"""Statements page: a month's statement per organization, the month in the URL, CSV and
PDF downloads that carry the same totals, customer text shown as typed."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from zoneinfo import ZoneInfo

import pandas as pd
import pypdf
import pytest
from sqlalchemy import Engine, text
from streamlit.testing.v1 import AppTest

from dashboard import statement_files
from dashboard.state import today_in
from dashboard.text import md
from queries.grants import expire_credits
from queries.statements import MonthlyStatement, monthly_statement, previous_month
from tests.dashboard.apptest import (
    capture_downloads,
    click,
    links_of,
    make_app,
    metrics,
    open_page,
    plain,
    scalar,
    statement_csv_parts,
    table_with,
)
from tests.dashboard.hostile import FORMULAS, MARKUP, add_hostile_books, rename
from tests.dashboard.shown import readable, shown

OCTOBER = dt.date(2026, 10, 1)


def busiest(engine: Engine) -> int:
    """The demo organization with the most ledger entries in October 2026."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT organization_id FROM credit_ledger "
                    "WHERE created_at >= '2026-09-30' AND created_at < '2026-11-02' "
                    "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
                )
            ).scalar_one()
        )


def statement(engine: Engine, org: int, month: dt.date) -> MonthlyStatement:
    with engine.connect() as conn:
        return monthly_statement(conn, organization_id=org, month=month)


@pytest.fixture
def statements_page(demo_url: str, use_database: Callable[[str], None]) -> Callable[..., AppTest]:
    use_database(demo_url)

    def open_statements(*, role: str = "finance", **query: str) -> AppTest:
        return open_page(make_app(role=role, query=query), "statements")

    return open_statements


def tiles(s: MonthlyStatement) -> dict[str, str]:
    return {label: f"{amount:,}" for label, amount in statement_files.totals(s)}


def test_the_pdf_is_drawn_only_when_its_button_is_clicked(
    statements_page: Callable[..., AppTest],
    demo_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn: list[MonthlyStatement] = []

    def draw(statement: MonthlyStatement) -> bytes:
        drawn.append(statement)
        return b""

    monkeypatch.setattr(statement_files, "statement_pdf", draw)
    at = statements_page(org=str(busiest(demo_engine)), month="2026-10")
    assert not at.exception and not at.error
    assert "Download PDF" in [getattr(b, "label", None) for b in at.get("download_button")]
    assert drawn == [], "a run of the page drew the PDF nobody asked for"


def test_the_month_in_the_link_shows_its_statement_and_both_files_carry_its_totals(
    statements_page: Callable[..., AppTest],
    demo_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    downloads = capture_downloads(monkeypatch)
    org = busiest(demo_engine)
    expected = statement(demo_engine, org, OCTOBER)
    assert expected.entries and expected.consumption, "the demo month is not empty"
    at = statements_page(org=str(org), month="2026-10")
    assert not at.exception and not at.error
    assert not [w for w in at.warning if w.icon == ":material/link_off:"]
    assert at.selectbox(key="statements.month").value == OCTOBER
    assert at.query_params["month"] == "2026-10"
    assert {k: v for k, (v, _) in metrics(at).items()} == tiles(expected)
    entries = table_with(at, "Balance after")
    assert list(entries["Entry"]) == [e.id for e in expected.entries]
    # Out of the balance: negative, as in the files.
    assert table_with(at, "Generations")["Credits"].sum() == -expected.consumed

    stem = f"statement_{expected.organization_slug}_2026-10"
    _, rows = statement_csv_parts(downloads[f"{stem}.csv"])
    totals = {r["Line"]: int(r["Credits"]) for r in rows if r["Section"] == "Total"}
    assert totals["Opening balance"] == expected.opening_balance
    assert totals["Closing balance"] == expected.closing_balance
    assert sum(int(r["Credits"]) for r in rows if r["Section"] != "Total") == (
        expected.closing_balance - expected.opening_balance
    )
    pdf = "\n".join(
        p.extract_text() for p in pypdf.PdfReader(io.BytesIO(downloads[f"{stem}.pdf"])).pages
    )
    assert expected.organization_name in pdf
    assert f"Closing balance {expected.closing_balance:,}" in pdf
    assert f"Opening balance {expected.opening_balance:,}" in pdf


def test_choosing_a_month_puts_it_in_the_link_and_months_chain(
    statements_page: Callable[..., AppTest], demo_engine: Engine
) -> None:
    org = busiest(demo_engine)
    at = statements_page(org=str(org), month="2026-10")
    october = metrics(at)
    at.selectbox(key="statements.month").set_value(dt.date(2026, 9, 1)).run()
    assert not at.exception
    assert at.query_params["month"] == "2026-09"
    september = metrics(at)
    assert september["Closing balance"] == october["Opening balance"]
    assert {k: v for k, (v, _) in september.items()} == tiles(
        statement(demo_engine, org, dt.date(2026, 9, 1))
    )


@pytest.mark.parametrize(
    ("month", "says"),
    [
        ("2026-13", "not a real month"),
        ("October", "not written YYYY-MM"),
        ("1999-12", "outside the years"),
        ("2099-01", "no statement for January 2099 yet"),
    ],
)
def test_a_bad_month_in_the_link_is_said_and_the_last_closed_month_shown(
    statements_page: Callable[..., AppTest], demo_engine: Engine, month: str, says: str
) -> None:
    org = busiest(demo_engine)
    at = statements_page(org=str(org), month=month)
    assert not at.exception
    warnings = shown(at, "warning")
    assert any(says in w and "last closed month" in w for w in warnings), warnings
    chosen = at.selectbox(key="statements.month").value
    zone = statement(demo_engine, org, OCTOBER).timezone
    assert chosen == previous_month(today_in(zone))  # the organization's last closed month
    assert at.query_params["month"] == f"{chosen:%Y-%m}"


def test_without_a_month_the_page_opens_on_the_last_closed_month_and_offers_the_running_one(
    statements_page: Callable[..., AppTest], demo_engine: Engine
) -> None:
    org = busiest(demo_engine)
    zone = statement(demo_engine, org, OCTOBER).timezone
    at = statements_page(org=str(org))
    assert not at.exception
    assert not [w for w in at.warning if w.icon == ":material/link_off:"]
    box = at.selectbox(key="statements.month")
    current = today_in(zone).replace(day=1)
    last_closed = previous_month(current)
    assert box.value == last_closed
    assert at.query_params["month"] == f"{last_closed:%Y-%m}"
    assert box.options[:2] == [
        f"{current:%B %Y} (running, so far)",
        f"{last_closed:%B %Y}",
    ]
    assert not any("This month is not over" in c.value for c in at.caption)

    box.set_value(current).run()
    assert not at.exception
    assert at.query_params["month"] == f"{current:%Y-%m}"
    assert any("This month is not over" in c.value for c in at.caption)
    assert any("running, so far" in plain(c.value) for c in at.caption)  # the period too


@pytest.mark.parametrize("role", ["manager", "support"])
def test_only_finance_and_admins_can_open_statements(
    demo_url: str, use_database: Callable[[str], None], role: str
) -> None:
    use_database(demo_url)
    at = make_app(role=role)
    at.run()
    assert not at.exception
    # A link to it lands on the Overview, told why; the statements page never runs.
    at.switch_page("app_pages/statements.py").run()
    assert not at.exception
    assert at.title[0].value.startswith("Overview")
    assert [plain(str(w.value)) for w in at.main.warning] == [
        f"Statements is for finance and admin; your role ({role}) cannot open it."
    ]


def test_names_and_reasons_are_data_on_the_page_and_in_the_files(
    fresh_url: str,
    fresh_engine: Engine,
    use_database: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_database(fresh_url)
    with fresh_engine.connect() as conn:
        org = int(conn.execute(text("SELECT min(id) FROM organizations")).scalar_one())
    rename(fresh_engine, org, MARKUP)
    add_hostile_books(fresh_engine, org)
    with fresh_engine.connect() as conn:
        # The month the hostile entries were stamped in, in the organization's zone.
        month = conn.execute(
            text(
                "SELECT to_char(max(l.created_at) AT TIME ZONE min(o.timezone), 'YYYY-MM') "
                "FROM credit_ledger l JOIN organizations o ON o.id = l.organization_id "
                "WHERE l.organization_id = :org"
            ),
            {"org": org},
        ).scalar_one()
    downloads = capture_downloads(monkeypatch)
    at = open_page(make_app(role="admin", query={"org": str(org), "month": month}), "statements")
    assert not at.exception and not at.error
    assert any(md(MARKUP) in c.value for c in at.caption)
    assert any(readable(c.value).startswith(MARKUP + ":") for c in at.caption)
    reasons = set(table_with(at, "Reason")["Reason"])
    assert set(FORMULAS) <= reasons  # the table shows them as stored
    (csv_name,) = [n for n in downloads if n.endswith(".csv")]
    _, rows = statement_csv_parts(downloads[csv_name])
    cells = {r["Reason"] for r in rows if r["Section"] == "Entry"}
    assert {"'" + formula for formula in FORMULAS} <= cells
    (pdf_name,) = [n for n in downloads if n.endswith(".pdf")]
    pdf = pypdf.PdfReader(io.BytesIO(downloads[pdf_name])).pages[0].extract_text()
    assert MARKUP in " ".join(pdf.split())  # the name as typed, not rendered


def test_a_month_before_the_organization_existed_says_so_and_offers_no_files(
    statements_page: Callable[..., AppTest],
    demo_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    downloads = capture_downloads(monkeypatch)
    org = busiest(demo_engine)
    with demo_engine.connect() as conn:
        created, zone = conn.execute(
            text("SELECT created_at, timezone FROM organizations WHERE id = :org"), {"org": org}
        ).one()
    created_on = created.astimezone(ZoneInfo(zone)).date()
    before = previous_month(created_on.replace(day=1))
    at = statements_page(org=str(org), month=f"{before:%Y-%m}")
    assert not at.exception and not at.error
    assert at.selectbox(key="statements.month").value == before
    box = at.selectbox(key="statements.month")
    assert f"{before:%B %Y} (before it was created)" in box.options
    said = [plain(i.value) for i in at.info]
    assert any(
        f"did not exist yet in {before:%B %Y}: it was created on {created_on} ({zone})" in s
        for s in said
    ), said
    # No statement of zeros: no totals, no tables, no files.
    assert not metrics(at)
    assert not [n for n in downloads if n.startswith("statement_")]
    assert not at.dataframe


def test_each_entry_of_the_statement_opens_the_ledger_at_that_entry(
    statements_page: Callable[..., AppTest], demo_engine: Engine
) -> None:
    org = busiest(demo_engine)
    expected = statement(demo_engine, org, OCTOBER)
    at = statements_page(org=str(org), month="2026-10")
    links = links_of(at, "statements.entries", "Entry")
    assert [(link.page, link.query["org"], link.query["entry"]) for link in links] == [
        ("credits", str(org), str(e.id)) for e in expected.entries
    ]
    last = len(links) - 1
    click(at, "statements.entries", last, "Entry")
    assert not at.exception and not at.error
    assert at.query_params["entry"] == str(expected.entries[-1].id)
    assert list(table_with(at, "Balance after")["Entry"]) == [expected.entries[-1].id]


def test_an_expired_grants_write_off_entry_opens_the_ledger_at_it(
    fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]
) -> None:
    use_database(fresh_url)
    with fresh_engine.begin() as conn:
        org, zone, created = conn.execute(
            text("SELECT id, timezone, created_at FROM organizations ORDER BY id LIMIT 1")
        ).one()

    def grant(key: str, hours: int) -> None:
        # Back-dated into the organization's first hours, as the owner may write it, so
        # that the grant is due whatever the clock says.
        with fresh_engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO credit_ledger (organization_id, amount, kind, reason, actor, "
                    "idempotency_key, created_at, grant_expires_at) VALUES (:o, 50, 'grant', "
                    "'Promotion', 'setup@example.com', :key, :at, :expires)"
                ),
                {
                    "o": org,
                    "key": key,
                    "at": created + dt.timedelta(hours=1),
                    "expires": created + dt.timedelta(hours=hours),
                },
            )

    grant("written-off", 2)
    expire_credits(fresh_engine, organization_ids=[org])
    grant("due", 3)  # due as well, not written off yet: no entry
    month = (created + dt.timedelta(hours=3)).astimezone(ZoneInfo(zone))
    written_off = int(
        scalar(
            fresh_engine,
            "SELECT id FROM credit_ledger WHERE organization_id = :o AND kind = 'expired'",
            o=org,
        )
    )
    at = open_page(
        make_app(role="finance", query={"org": str(org), "month": f"{month:%Y-%m}"}), "statements"
    )
    assert not at.exception and not at.error
    expiries = table_with(at, "Grant").reset_index(drop=True)
    links = links_of(at, "statements.expiries", "Entry")
    assert [None if link is None else link.query["entry"] for link in links] == [
        None if pd.isna(e) else str(e) for e in expiries["Entry"]
    ]
    assert sorted(str(e) for e in expiries["Entry"]) == sorted([str(written_off), "<NA>"])
    (row,) = expiries.index[expiries["Entry"] == written_off]
    click(at, "statements.expiries", int(row), "Entry")
    assert not at.exception and at.query_params["entry"] == str(written_off)
    assert list(table_with(at, "Balance after")["Entry"]) == [written_off]
