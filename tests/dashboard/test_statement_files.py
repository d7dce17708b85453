"""The statement's CSV and PDF, built from a statement alone: totals, period, entries, and
customer text as text."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import logging
from zoneinfo import ZoneInfo

import pypdf
import pytest

from dashboard.statement_files import (
    BIDI_CONTROLS,
    FALLBACK_FONTS,
    REPLACED_NOTE,
    REPLACEMENT,
    SIGNS,
    statement_csv,
    statement_pdf,
)
from queries.credits import LedgerEntry
from queries.statements import ConsumptionLine, ExpiryLine, MonthlyStatement, OverageLine
from tests.dashboard.apptest import statement_csv_parts

ZONE = "Asia/Kathmandu"
NAME = "Ünïcødé & Søn **bold** <b>x</b> =1+2"


def _statement(
    *, name: str = NAME, reason: str = '=HYPERLINK("x")', note: str = "a\nnote"
) -> MonthlyStatement:
    at = dt.datetime(2026, 10, 31, 20, tzinfo=dt.UTC)  # 1 November 01:45 in Kathmandu
    entries = (
        LedgerEntry(1, 9, 500, 510, "grant", reason, note, "a@b.example", "k1", None, at),
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
    # pypdf reads the two-byte codes of Noto Sans CJK's embedded CMap one byte at a time
    # and puts a NUL before each CJK character; the PDF itself maps them right.
    return " ".join(" ".join(p.extract_text().replace("\x00", "").split()) for p in pages)


def _pdf(statement: MonthlyStatement, caplog: pytest.LogCaptureFixture) -> bytes:
    """The statement's PDF; a glyph missing from every font it uses fails the test
    (fpdf2 logs each one when it writes the fonts)."""
    caplog.set_level(logging.WARNING, logger="fpdf")
    pdf = statement_pdf(statement)
    missing = [
        r.getMessage() for r in caplog.records if "missing the following glyphs" in r.getMessage()
    ]
    assert not missing, missing
    return pdf


def _fonts(pdf: bytes) -> set[str]:
    """The fonts embedded in the PDF, without their subset prefix."""
    names: set[str] = set()
    for page in pypdf.PdfReader(io.BytesIO(pdf)).pages:
        resources = page["/Resources"].get_object()
        assert isinstance(resources, pypdf.generic.DictionaryObject)
        fonts = resources["/Font"].get_object()
        assert isinstance(fonts, pypdf.generic.DictionaryObject)
        names |= {str(f.get_object()["/BaseFont"]).split("+")[-1] for f in fonts.values()}
    return names


@pytest.fixture(scope="module", autouse=True)
def _fonts_installed() -> None:
    for font in FALLBACK_FONTS:
        assert font.path.is_file(), (
            f"{font.path} is missing: install Debian's fonts-noto-cjk and fonts-symbola "
            "(.ci/run does)"
        )


def test_the_pdf_has_the_name_the_local_period_the_totals_and_the_entries() -> None:
    shown = _text(statement_pdf(_statement()))
    assert NAME in shown
    assert "November 2026 (2026-11-01 – 2026-11-30, Asia/Kathmandu)" in shown
    for line in (
        "Opening balance 10",
        "Granted 500",
        "Deducted -20",
        "Consumed -4",
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


def test_the_csv_has_one_sign_convention_stated_in_its_header_and_text_is_neutralised() -> None:
    header, rows = statement_csv_parts(statement_csv(_statement()))
    assert header == [
        ["Credit statement", "November 2026 (2026-11-01 – 2026-11-30, Asia/Kathmandu)"],
        ["Sign convention", SIGNS],
    ]
    assert "credits into the balance are positive" in SIGNS.lower()
    totals = {r["Line"]: int(r["Credits"]) for r in rows if r["Section"] == "Total"}
    assert totals == {
        "Opening balance": 10,
        "Granted": 500,
        "Deducted": -20,
        "Consumed": -4,
        "Expired": 0,
        "Closing balance": 486,
    }
    # Opening + movements = closing, in the totals and on the lines alike.
    movements = totals["Granted"] + totals["Deducted"] + totals["Consumed"] + totals["Expired"]
    assert totals["Opening balance"] + movements == totals["Closing balance"]
    lines = sum(int(r["Credits"]) for r in rows if r["Section"] != "Total")
    assert lines == movements
    entries = {r["Line"]: int(r["Credits"]) for r in rows if r["Section"] == "Entry"}
    assert entries == {"Grant": 500, "Deduction": -20}
    assert all(int(r["Credits"]) < 0 for r in rows if r["Section"] == "Consumption")
    assert [r["Reason"] for r in rows if r["Section"] == "Entry"] == [
        '\'=HYPERLINK("x")',
        "Correction",
    ]


def test_overage_past_soft_limits_is_a_line_per_type_with_no_credits_of_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    statement = dataclasses.replace(_statement(), overage=(OverageLine("image", 7),))
    _, rows = statement_csv_parts(statement_csv(statement))
    assert [
        (r["Line"], r["Generations"], r["Credits"]) for r in rows if r["Section"] == "Overage"
    ] == [("image", "7", "")]
    text = _text(_pdf(statement, caplog))
    assert "Overage past soft limits" in text
    assert "Type Generations over the limit image 7" in text
    assert "Overage" not in _text(_pdf(_statement(), caplog))


def test_each_expiry_is_a_line_at_the_time_it_took_effect_out_of_the_balance(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One expiry written off the next day, one still due: both lines of the month, at
    their expiry in the organization's zone, adding up from opening to closing."""
    expired_at = dt.datetime(2026, 11, 30, 18, tzinfo=dt.UTC)  # 23:45 in Kathmandu
    statement = dataclasses.replace(
        _statement(),
        expired=130,
        closing_balance=356,
        expiries=(
            ExpiryLine(7, "allowance", 100, expired_at, 42, expired_at + dt.timedelta(hours=7)),
            ExpiryLine(8, "manual", 30, expired_at, None, None),
        ),
    )
    _, rows = statement_csv_parts(statement_csv(statement))
    totals = {r["Line"]: int(r["Credits"]) for r in rows if r["Section"] == "Total"}
    assert totals["Expired"] == -130 and totals["Closing balance"] == 356
    lines = sum(int(r["Credits"]) for r in rows if r["Section"] != "Total")
    assert totals["Opening balance"] + lines == totals["Closing balance"]
    assert [
        (r["Line"], r["When"], r["Credits"], r["Entry"], r["Reason"])
        for r in rows
        if r["Section"] == "Expiry"
    ] == [
        (
            "Expired: grant 7 (allowance)",
            "2026-11-30 23:45",
            "-100",
            "42",
            "Written off 2026-12-01 06:45",
        ),
        ("Expired: grant 8 (manual)", "2026-11-30 23:45", "-30", "", ""),
    ]
    text = _text(_pdf(statement, caplog))
    assert "Expired -130" in text and "Closing balance 356" in text
    assert "2026-11-30 23:45 Expired: grant 7 (allowance) -100 42 2026-12-01 06:45" in text
    assert "Expired: grant 8 (manual) -30 not yet" in text
    assert "Expired grants" not in _text(_pdf(_statement(), caplog))


CJK_NAME = "株式会社テスト 🚀 社名"


def test_a_cjk_and_emoji_name_and_cjk_reasons_are_printed_not_left_blank(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pdf = _pdf(_statement(name=CJK_NAME, reason="返金: 障害のため", note="顧客 ✓"), caplog)
    shown = _text(pdf)
    assert CJK_NAME in shown
    assert "返金: 障害のため (顧客 ✓)" in shown
    assert "Closing balance 486" in shown
    assert REPLACEMENT not in shown and REPLACED_NOTE not in shown
    # DejaVu Sans for the rest, Noto Sans CJK for the Japanese, Symbola for the rocket.
    assert {"DejaVuSansBook", "DejaVuSansBold", "NotoSansCJKJP", "Symbola"} <= _fonts(pdf)


@pytest.mark.parametrize(
    "name",
    ["Ünïcødé & Søn", "Москва ООО", "Αθήνα", "한국 주식회사", "北京科技有限公司", "café ☕ ♥ ★"],
)
def test_names_in_many_scripts_and_symbols_are_printed_as_stored(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    shown = _text(_pdf(_statement(name=name), caplog))
    assert name in shown and REPLACEMENT not in shown


def test_a_latin_statement_embeds_only_its_main_font(caplog: pytest.LogCaptureFixture) -> None:
    # Noto Sans CJK costs a second to load: it is added only for text that needs it.
    fonts = _fonts(_pdf(_statement(name="Acme GmbH"), caplog))
    assert all(font.startswith("DejaVuSans") for font in fonts), fonts


def test_a_character_no_font_draws_is_a_visible_replacement_and_the_pdf_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Devanagari (no installed font here has it) and an emoji newer than Symbola's.
    shown = _text(_pdf(_statement(name="Acme क 🥲 Ltd"), caplog))
    assert f"Acme {REPLACEMENT} {REPLACEMENT} Ltd" in shown
    assert REPLACED_NOTE in shown


def test_bidi_controls_and_invisible_characters_are_not_printed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = "Acme\u202e evil\u202c \u2066Co\u2069\u200f\u061c \u200bLtd 👍\ufe0f"
    reason = "Refund\u202d for\u200e outage"
    shown = _text(_pdf(_statement(name=name, reason=reason, note=""), caplog))
    assert "Acme evil Co Ltd 👍" in shown and "Refund for outage" in shown
    assert not set(shown) & {chr(c) for c in BIDI_CONTROLS}
    assert REPLACEMENT not in shown


@pytest.mark.parametrize("name", ["x" * 3000, "株" * 3000, "Acme " * 600])
def test_a_3000_character_name_is_shortened_and_the_statement_stays_on_one_page(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    pdf = _pdf(_statement(name=name), caplog)
    assert len(pypdf.PdfReader(io.BytesIO(pdf)).pages) == 1
    shown = _text(pdf)
    assert "…" in shown
    assert f"(The organization's name is shortened here: {len(name.strip()):,} characters.)" in (
        shown
    )
    assert "Closing balance 486" in shown
