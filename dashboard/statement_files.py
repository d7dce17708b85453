"""A monthly statement as the files finance sends: a CSV and a PDF.

Both are built from a ``queries.statements.MonthlyStatement`` alone (no database), so
they are tested without a browser. Customer text (the organization's name, reasons,
notes, actors) is data: the CSV goes through ``dashboard.exports.csv_bytes`` and the PDF
writes it as plain text cells (fpdf2 interprets no Markdown or HTML unless asked).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Final

import pandas as pd
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from dashboard.exports import csv_bytes
from queries.statements import MonthlyStatement

KIND_LABELS: Final = {
    "grant": "Grant",
    "refund": "Refund",
    "deduct": "Deduction",
    "reversal": "Reversal",
}
# A Unicode font, so a name in any script is printed as stored (the PDF core fonts only
# know Latin-1). Debian's fonts-dejavu-core; STATEMENT_PDF_FONT names another TTF.
_FONT_DIR: Final = Path("/usr/share/fonts/truetype/dejavu")
_FONT: Final = "DejaVuSans.ttf"
_BOLD: Final = "DejaVuSans-Bold.ttf"


def period(statement: MonthlyStatement) -> str:
    """ "November 2026 (2026-11-01 – 2026-11-30, Europe/Berlin)"; "running, so far" added
    for the current month."""
    last = statement.period_end.date() - dt.timedelta(days=1)
    to_date = ", running, so far" if statement.to_date else ""
    return (
        f"{statement.month:%B %Y} ({statement.month.isoformat()} – {last.isoformat()}, "
        f"{statement.timezone}{to_date})"
    )


# What each total counts, under the totals on the page and in the PDF.
TOTALS_EXPLAINED: Final = (
    "Granted: grants, refunds and reversed deductions. Deducted: deductions and reversed "
    "grants or refunds. Consumed: the credits of the month's generations. Closing = "
    "opening + granted - deducted - consumed."
)


def totals(statement: MonthlyStatement) -> list[tuple[str, int]]:
    """(label, credits) from the opening to the closing, each total a positive number as
    in the statement (the equation in :data:`TOTALS_EXPLAINED` gives the signs)."""
    return [
        ("Opening balance", statement.opening_balance),
        ("Granted", statement.granted),
        ("Deducted", statement.deducted),
        ("Consumed", statement.consumed),
        ("Closing balance", statement.closing_balance),
    ]


def _local(at: dt.datetime, timezone: str) -> str:
    from zoneinfo import ZoneInfo

    return at.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


def entries_frame(statement: MonthlyStatement) -> pd.DataFrame:
    """The month's ledger entries, oldest first, times in the organization's zone."""
    return pd.DataFrame(
        {
            "Entry": [e.id for e in statement.entries],
            f"When ({statement.timezone})": [
                _local(e.created_at, statement.timezone) for e in statement.entries
            ],
            "Kind": [KIND_LABELS.get(e.kind, e.kind) for e in statement.entries],
            "Credits": [e.amount for e in statement.entries],
            "Balance after": [e.balance_after for e in statement.entries],
            "Reason": [e.reason for e in statement.entries],
            "Note": [e.note or "" for e in statement.entries],
            "Actor": [e.actor for e in statement.entries],
        },
        columns=[
            "Entry",
            f"When ({statement.timezone})",
            "Kind",
            "Credits",
            "Balance after",
            "Reason",
            "Note",
            "Actor",
        ],
    ).astype({"Entry": "int64", "Credits": "int64", "Balance after": "int64"})


def consumption_frame(statement: MonthlyStatement) -> pd.DataFrame:
    """Consumption per local day and generation type."""
    return pd.DataFrame(
        {
            "Date": [c.date for c in statement.consumption],
            "Type": [c.type for c in statement.consumption],
            "Generations": [c.generations for c in statement.consumption],
            "Credits": [c.credits for c in statement.consumption],
        },
        columns=["Date", "Type", "Generations", "Credits"],
    ).astype({"Generations": "int64", "Credits": "int64"})


def statement_csv(statement: MonthlyStatement) -> bytes:
    """One CSV: the totals, then each entry, then the consumption per day and type.

    Totals are positive, as on the page; the lines' credits are signed as they move the
    balance (a deduction or a consumption is negative), so the lines add up to closing
    minus opening."""
    rows: list[dict[str, object]] = []

    def line(section: str, what: str, credits: int, **more: object) -> None:
        rows.append({"Section": section, "Line": what, "Credits": credits, **more})

    for label, amount in totals(statement):
        line("Total", label, amount)
    zone = statement.timezone
    for e in statement.entries:
        line(
            "Entry",
            KIND_LABELS.get(e.kind, e.kind),
            e.amount,
            When=_local(e.created_at, zone),
            Entry=e.id,
            **{"Balance after": e.balance_after},
            Reason=e.reason,
            Note=e.note or "",
            Actor=e.actor,
        )
    for c in statement.consumption:
        line("Consumption", c.type, -c.credits, When=c.date.isoformat(), Generations=c.generations)
    columns = [
        "Section",
        "Line",
        "When",
        "Credits",
        "Balance after",
        "Generations",
        "Entry",
        "Reason",
        "Note",
        "Actor",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("Balance after", "Generations", "Entry"):
        frame[column] = frame[column].astype("Int64")
    # Every value of these columns is text (or blank): neutralised as text by csv_bytes.
    for column in ("When", "Reason", "Note", "Actor"):
        frame[column] = frame[column].fillna("").astype(object)
    return csv_bytes(frame)


def file_stem(statement: MonthlyStatement) -> str:
    return f"statement_{statement.organization_slug}_{statement.month:%Y-%m}"


def _fonts(pdf: FPDF) -> str:
    chosen = os.environ.get("STATEMENT_PDF_FONT", "").strip()
    regular = Path(chosen) if chosen else _FONT_DIR / _FONT
    bold = regular if chosen else _FONT_DIR / _BOLD
    if regular.is_file() and bold.is_file():
        pdf.add_font("Statement", "", str(regular))
        pdf.add_font("Statement", "B", str(bold))
        return "Statement"
    return "Helvetica"


def _plain(text: str, family: str) -> str:
    """Text the font can draw: as stored with a Unicode font; with the Latin-1 core font
    (no Unicode font installed) other characters become "?"."""
    one_line = " ".join(text.split())
    if family == "Helvetica":
        return one_line.encode("latin-1", "replace").decode("latin-1")
    return one_line


def statement_pdf(statement: MonthlyStatement) -> bytes:
    """The statement finance sends to a customer: the organization's name, the period
    in its zone, the totals and the entries, and the consumption per day and type."""
    pdf = FPDF(orientation="portrait", format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    family = _fonts(pdf)
    pdf.set_title(f"Credit statement {statement.month:%Y-%m}")
    pdf.add_page()

    def text_line(value: str, *, size: int = 10, bold: bool = False, height: float = 6) -> None:
        pdf.set_font(family, "B" if bold else "", size)
        pdf.multi_cell(0, height, _plain(value, family), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    text_line("Credit statement", size=16, bold=True, height=9)
    text_line(statement.organization_name, size=13, bold=True, height=7)
    text_line(f"Period: {period(statement)}")
    pdf.ln(3)

    pdf.set_font(family, "", 10)
    with pdf.table(col_widths=(3, 1), text_align=("LEFT", "RIGHT"), markdown=False) as table:
        for label, amount in totals(statement):
            row = table.row()
            row.cell(label)
            row.cell(f"{amount:,}")
    pdf.ln(1)
    text_line(TOTALS_EXPLAINED, size=8, height=4)
    pdf.ln(4)

    text_line("Entries", size=12, bold=True, height=8)
    if not statement.entries:
        text_line("No credit movements this month.")
    else:
        pdf.set_font(family, "", 8)
        with pdf.table(
            col_widths=(14, 28, 18, 18, 20, 52, 40),
            text_align=("RIGHT", "LEFT", "LEFT", "RIGHT", "RIGHT", "LEFT", "LEFT"),
            markdown=False,
        ) as table:
            header = table.row()
            for title in ("Entry", "When", "Kind", "Credits", "Balance", "Reason", "Actor"):
                header.cell(title)
            for e in statement.entries:
                row = table.row()
                row.cell(str(e.id))
                row.cell(_local(e.created_at, statement.timezone))
                row.cell(KIND_LABELS.get(e.kind, e.kind))
                row.cell(f"{e.amount:+,}")
                row.cell(f"{e.balance_after:,}")
                reason = e.reason if not e.note else f"{e.reason} ({e.note})"
                row.cell(_plain(reason, family))
                row.cell(_plain(e.actor, family))
    pdf.ln(4)

    text_line("Consumption per day and type", size=12, bold=True, height=8)
    if not statement.consumption:
        text_line("No generations this month.")
    else:
        pdf.set_font(family, "", 8)
        with pdf.table(
            col_widths=(1, 1, 1, 1), text_align=("LEFT", "LEFT", "RIGHT", "RIGHT"), markdown=False
        ) as table:
            header = table.row()
            for title in ("Date", "Type", "Generations", "Credits"):
                header.cell(title)
            for c in statement.consumption:
                row = table.row()
                row.cell(c.date.isoformat())
                row.cell(c.type)
                row.cell(f"{c.generations:,}")
                row.cell(f"{c.credits:,}")
    return bytes(pdf.output())
