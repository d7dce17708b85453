"""The statement's CSV and PDF, built from a statement alone: totals, period, entries, and
customer text as text."""

from __future__ import annotations

import csv
import datetime as dt
import io
from zoneinfo import ZoneInfo

import pypdf
import pytest

from dashboard.statement_files import statement_csv, statement_pdf
from queries.credits import LedgerEntry
from queries.statements import ConsumptionLine, MonthlyStatement

ZONE = "Asia/Kathmandu"
NAME = "Ünïcødé & Søn **bold** <b>x</b> =1+2"


def _statement(*, name: str = NAME) -> MonthlyStatement:
    at = dt.datetime(2026, 10, 31, 20, tzinfo=dt.UTC)  # 1 November 01:45 in Kathmandu
    entries = (
        LedgerEntry(
            1, 9, 500, 510, "grant", '=HYPERLINK("x")', "a\nnote", "a@b.example", "k1", None, at
        ),
        LedgerEntry(
            2,
            9,
            -20,
            486,
            "deduct",
            "Correction",
            None,
            "a@b.example",
            "k2",
            None,
            at + dt.timedelta(days=3),
        ),
    )
    zone = ZoneInfo(ZONE)
    return MonthlyStatement(
        organization_id=9,
        organization_name=name,
        organization_slug="acme",
        timezone=ZONE,
        month=dt.date(2026, 11, 1),
        period_start=dt.datetime(2026, 11, 1, tzinfo=zone),
        period_end=dt.datetime(2026, 12, 1, tzinfo=zone),
        to_date=False,
        opening_balance=10,
        granted=500,
        deducted=20,
        consumed=4,
        closing_balance=486,
        entries=entries,
        consumption=(ConsumptionLine(dt.date(2026, 11, 1), "image", 1, 4),),
    )


def _text(pdf: bytes) -> str:
    pages = pypdf.PdfReader(io.BytesIO(pdf)).pages
    return " ".join(" ".join(p.extract_text().split()) for p in pages)


def test_the_pdf_has_the_name_the_local_period_the_totals_and_the_entries() -> None:
    shown = _text(statement_pdf(_statement()))
    assert NAME in shown
    assert "November 2026 (2026-11-01 – 2026-11-30, Asia/Kathmandu)" in shown
    for line in (
        "Opening balance 10",
        "Granted 500",
        "Deducted 20",
        "Consumed 4",
        "Closing balance 486",
    ):
        assert line in shown
    assert "2026-11-01 01:45 Grant +500 510" in shown  # the time in the organization's zone
    assert "Deduction -20 486" in shown


def test_without_a_unicode_font_the_pdf_still_prints_every_latin_1_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STATEMENT_PDF_FONT", "/nonexistent/font.ttf")
    shown = _text(statement_pdf(_statement(name="Zürich Café ☃")))
    assert "Zürich Café ?" in shown and "Closing balance 486" in shown


def test_the_csv_totals_and_lines_add_up_and_text_is_neutralised() -> None:
    rows = list(csv.DictReader(io.StringIO(statement_csv(_statement()).decode(), newline="")))
    totals = {r["Line"]: int(r["Credits"]) for r in rows if r["Section"] == "Total"}
    assert totals == {
        "Opening balance": 10,
        "Granted": 500,
        "Deducted": 20,
        "Consumed": 4,
        "Closing balance": 486,
    }
    lines = sum(int(r["Credits"]) for r in rows if r["Section"] != "Total")
    assert lines == totals["Closing balance"] - totals["Opening balance"]
    assert [r["Reason"] for r in rows if r["Section"] == "Entry"] == [
        '\'=HYPERLINK("x")',
        "Correction",
    ]
