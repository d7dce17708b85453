"""A monthly statement as the files finance sends: a CSV and a PDF.

Both are built from a ``queries.statements.MonthlyStatement`` alone (no database), so
they are tested without a browser. Customer text (the organization's name, reasons,
notes, actors) is data: the CSV goes through ``dashboard.exports.csv_bytes`` and the PDF
writes it as plain text cells (fpdf2 interprets no Markdown or HTML unless asked).

Every character of the PDF is printed, never left blank. Its fonts are a chain (fpdf2's
fallback fonts): DejaVu Sans (or ``STATEMENT_PDF_FONT``) for Latin, Greek, Cyrillic and
most symbols; Noto Sans CJK (Debian's ``fonts-noto-cjk``) for Chinese, Japanese and
Korean; Symbola (``fonts-symbola``) for emoji and other symbols, in black and white
(colour emoji fonts are not something a PDF font can carry here). A character that no
installed font has is printed as U+FFFD (the replacement character), and the PDF says
so in a note at its end. Bidirectional controls and other invisible format characters
are removed (they could make text read differently from what it says), and a very long
organization name is shortened to three lines in the heading.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pandas as pd
from fontTools.ttLib import TTFont  # type: ignore[import-untyped]  # fpdf2 requires fontTools
from fpdf import FPDF
from fpdf.enums import MethodReturnValue, XPos, YPos

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
# Heading names longer than this many lines are shortened (a name can be 3,000
# characters: it would fill pages before the first total).
MAX_NAME_LINES: Final = 3
REPLACEMENT: Final = "\ufffd"
REPLACED_NOTE: Final = (
    f"Characters that none of this document's fonts can draw are printed as {REPLACEMENT}."
)
# Invisible characters removed from every text: bidirectional embeddings, overrides,
# isolates and marks (they can make text read differently from what it says), zero-width
# spaces and joiners, the byte-order mark, variation selectors (an emoji's U+FE0F) and
# tag characters. They have no glyph of their own.
BIDI_CONTROLS: Final = frozenset(
    [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]
)
_INVISIBLE: Final = BIDI_CONTROLS | frozenset(
    [*range(0x200B, 0x200E), 0x2060, 0xFEFF, *range(0xFE00, 0xFE10), *range(0xE0000, 0xE0080)]
)


@dataclass(frozen=True, slots=True)
class FontFile:
    """A font file and, for a collection (.ttc), which font of it."""

    path: Path
    number: int = 0


# After the main font, in the order a missing character is looked for; regular faces
# only (a bold heading uses them as they are: loading and embedding Noto Sans CJK's bold
# too would double the second it costs). Noto Sans CJK's first font draws Han characters
# in their Japanese forms; Chinese and Korean text is printed with it too.
FALLBACK_FONTS: Final = (
    FontFile(Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"), 0),
    FontFile(Path("/usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf")),
)


@functools.lru_cache(maxsize=16)
def _covered(path: Path, number: int) -> frozenset[int]:
    """The code points ``path`` (font ``number`` of a collection) has glyphs for."""
    options = {"fontNumber": number} if path.suffix.lower() == ".ttc" else {}
    with TTFont(str(path), lazy=True, **options) as font:
        return frozenset(font.getBestCmap())


def clean(text: str) -> str:
    """Text as a statement prints it: composed (NFC), without invisible format
    characters, on one line with single spaces."""
    composed = unicodedata.normalize("NFC", text)
    return " ".join("".join(c for c in composed if ord(c) not in _INVISIBLE).split())


def period(statement: MonthlyStatement) -> str:
    """ "November 2026 (2026-11-01 – 2026-11-30, Europe/Berlin)"; "running, so far" added
    for the current month."""
    last = statement.period_end.date() - dt.timedelta(days=1)
    to_date = ", running, so far" if statement.to_date else ""
    return (
        f"{statement.month:%B %Y} ({statement.month.isoformat()} – {last.isoformat()}, "
        f"{statement.timezone}{to_date})"
    )


# The one sign convention of the page, the CSV and the PDF: credits into the balance
# are positive, credits out of it negative, in the totals and on every line alike.
SIGNS: Final = (
    "Credits into the balance are positive, credits out of it negative, on every line: "
    "closing balance = opening balance + granted + deducted + consumed + expired, and the "
    "opening balance plus every entry, expiry and consumption line is the closing balance."
)
# What each total counts, under the totals on the page and in the PDF.
TOTALS_EXPLAINED: Final = (
    "Granted: grants, refunds and reversed deductions. Deducted: deductions and reversed "
    "grants or refunds. Consumed: the credits of the month's generations. Expired: what "
    "grants still held when they expired in the month, at the time they expired (even when "
    "it was written off later). " + SIGNS
)


def totals(statement: MonthlyStatement) -> list[tuple[str, int]]:
    """(label, credits) from the opening to the closing balance, the movements signed
    as they move the balance (:data:`SIGNS`): they add up from opening to closing."""
    return [
        ("Opening balance", statement.opening_balance),
        ("Granted", statement.granted),
        ("Deducted", -statement.deducted),
        ("Consumed", -statement.consumed),
        ("Expired", -statement.expired),
        ("Closing balance", statement.closing_balance),
    ]


def before_organization(statement: MonthlyStatement) -> str:
    """What the page says for a month before the organization existed (plain text)."""
    return (
        f"{statement.organization_name} did not exist yet in {statement.month:%B %Y}: it was "
        f"created on {statement.created_on} ({statement.timezone}). There is no statement "
        "for this month; choose a later one."
    )


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


def expiry_what(source: str, grant_id: int) -> str:
    """The line an expiry is shown as: "Expired: grant 12 (allowance)"."""
    return f"Expired: grant {grant_id} ({source})"


def expiries_frame(statement: MonthlyStatement) -> pd.DataFrame:
    """Each grant that expired in the month, at its expiry (its effective time), in the
    organization's zone; ``Written off`` is when the ledger recorded it, blank while it
    is due and not yet written off."""
    zone = statement.timezone
    return pd.DataFrame(
        {
            f"Expired at ({zone})": [_local(x.effective_at, zone) for x in statement.expiries],
            "Grant": [x.grant_id for x in statement.expiries],
            "Source": [x.source for x in statement.expiries],
            "Credits": [-x.credits for x in statement.expiries],  # out of the balance
            "Entry": [x.ledger_entry_id for x in statement.expiries],
            f"Written off ({zone})": [
                "" if x.recorded_at is None else _local(x.recorded_at, zone)
                for x in statement.expiries
            ],
        },
        columns=[
            f"Expired at ({zone})",
            "Grant",
            "Source",
            "Credits",
            "Entry",
            f"Written off ({zone})",
        ],
    ).astype({"Grant": "int64", "Credits": "int64", "Entry": "Int64"})


def consumption_frame(statement: MonthlyStatement) -> pd.DataFrame:
    """Consumption per local day and generation type."""
    return pd.DataFrame(
        {
            "Date": [c.date for c in statement.consumption],
            "Type": [c.type for c in statement.consumption],
            "Generations": [c.generations for c in statement.consumption],
            "Credits": [-c.credits for c in statement.consumption],  # out of the balance
        },
        columns=["Date", "Type", "Generations", "Credits"],
    ).astype({"Generations": "int64", "Credits": "int64"})


def overage_frame(statement: MonthlyStatement) -> pd.DataFrame:
    """Generations past a soft daily limit over the month, per type."""
    return pd.DataFrame(
        {
            "Type": [v.type for v in statement.overage],
            "Generations over the limit": [v.generations for v in statement.overage],
        },
        columns=["Type", "Generations over the limit"],
    ).astype({"Generations over the limit": "int64"})


OVERAGE_EXPLAINED: Final = (
    "Generations a soft daily limit let through past the limit, summed over the month's "
    "days. Their credits are in the consumption above."
)


def statement_csv(statement: MonthlyStatement) -> bytes:
    """One CSV: two header lines (the period, the sign convention) and a blank line,
    then the table: the totals, each entry, each expiry (at the time it took effect),
    the consumption per day and type.

    Every credit is signed as it moves the balance (:data:`SIGNS`): a grant is
    positive, a deduction or a consumption negative, in the totals as on the lines, so
    opening + granted + deducted + consumed = closing, and the opening plus the lines
    is the closing too."""
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
    for x in statement.expiries:
        line(
            "Expiry",
            expiry_what(x.source, x.grant_id),
            -x.credits,
            When=_local(x.effective_at, zone),
            Entry=x.ledger_entry_id,
            Reason="" if x.recorded_at is None else f"Written off {_local(x.recorded_at, zone)}",
            Actor="system",
        )
    for c in statement.consumption:
        line("Consumption", c.type, -c.credits, When=c.date.isoformat(), Generations=c.generations)
    for v in statement.overage:
        # No credits of its own: they are in the consumption lines.
        rows.append({"Section": "Overage", "Line": v.type, "Generations": v.generations})
    header = pd.DataFrame(
        [["Credit statement", period(statement)], ["Sign convention", SIGNS]]
    ).to_csv(index=False, header=False, lineterminator="\r\n")
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
    for column in ("Credits", "Balance after", "Generations", "Entry"):
        frame[column] = frame[column].astype("Int64")
    # Every value of these columns is text (or blank): neutralised as text by csv_bytes.
    for column in ("When", "Reason", "Note", "Actor"):
        frame[column] = frame[column].astype(object).fillna("")
    # The header holds no customer text (the period is a month, dates and a zone name).
    return header.encode() + b"\r\n" + csv_bytes(frame)


def file_stem(statement: MonthlyStatement) -> str:
    return f"statement_{statement.organization_slug}_{statement.month:%Y-%m}"


class Typeface:
    """The fonts one PDF is printed with, and its text made printable with them.

    The main font (``STATEMENT_PDF_FONT``, else DejaVu Sans) is ``family``; a fallback
    font is added only when ``texts`` have a character it draws and the fonts before it
    do not (Noto Sans CJK costs a second to load). Without a Unicode main font the PDF
    core font Helvetica prints Latin-1, and other characters as "?"."""

    def __init__(self, pdf: FPDF, texts: Iterable[str]) -> None:
        self.replaced = False
        chosen = os.environ.get("STATEMENT_PDF_FONT", "").strip()
        regular, bold = (
            (Path(chosen), Path(chosen)) if chosen else (_FONT_DIR / _FONT, _FONT_DIR / _BOLD)
        )
        if not (regular.is_file() and bold.is_file()):
            self.family = "Helvetica"
            self._covered: frozenset[int] = frozenset()
            return
        self.family = "Statement"
        pdf.add_font(self.family, "", str(regular))
        pdf.add_font(self.family, "B", str(bold))
        # What both faces draw: headings are bold, the rest regular.
        covered = set(_covered(regular, 0) & _covered(bold, 0))
        wanted = {ord(c) for text in texts for c in clean(text)}
        fallbacks: list[str] = []
        for font in FALLBACK_FONTS:
            missing = wanted - covered
            if not missing or not font.path.is_file():
                continue
            glyphs = _covered(font.path, font.number)
            if missing.isdisjoint(glyphs):
                continue
            name = f"Fallback{len(fallbacks) + 1}"
            pdf.add_font(name, "", str(font.path), collection_font_number=font.number)
            fallbacks.append(name)
            covered |= glyphs
        if fallbacks:
            # exact_match=False: bold text uses a fallback's regular face.
            pdf.set_fallback_fonts(fallbacks, exact_match=False)
        self._covered = frozenset(covered)

    def printable(self, text: str) -> str:
        """``text`` cleaned (:func:`clean`), each character no font draws replaced by
        :data:`REPLACEMENT` (noted in ``replaced``); Latin-1 with "?" under Helvetica."""
        one_line = clean(text)
        if self.family == "Helvetica":
            return one_line.encode("latin-1", "replace").decode("latin-1")
        instead = REPLACEMENT if ord(REPLACEMENT) in self._covered else "?"
        shown = "".join(c if c == " " or ord(c) in self._covered else instead for c in one_line)
        self.replaced = self.replaced or shown != one_line
        return shown


def _customer_texts(statement: MonthlyStatement) -> list[str]:
    texts = [statement.organization_name]
    for e in statement.entries:
        texts += [e.reason, e.note or "", e.actor]
    texts += [c.type for c in statement.consumption]
    return texts


def _shortened(pdf: FPDF, text: str, *, height: float) -> str:
    """``text`` as it fits in :data:`MAX_NAME_LINES` lines of the current font across the
    page, with "…" where it was cut."""

    def lines(candidate: str) -> list[str]:
        shown = pdf.multi_cell(0, height, candidate, dry_run=True, output=MethodReturnValue.LINES)
        assert isinstance(shown, list)
        return shown

    shown = lines(text)
    if len(shown) <= MAX_NAME_LINES:
        return text
    keep = sum(len(line) for line in shown[:MAX_NAME_LINES])
    while keep > 1 and len(lines(text[:keep].rstrip() + "…")) > MAX_NAME_LINES:
        keep -= max(1, keep // 50)
    return text[:keep].rstrip() + "…"


def statement_pdf(statement: MonthlyStatement) -> bytes:
    """The statement finance sends to a customer: the organization's name, the period
    in its zone, the totals and the entries, and the consumption per day and type."""
    pdf = FPDF(orientation="portrait", format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    face = Typeface(pdf, _customer_texts(statement))
    family, printable = face.family, face.printable
    pdf.set_title(f"Credit statement {statement.month:%Y-%m}")
    pdf.add_page()

    def text_line(value: str, *, size: int = 10, bold: bool = False, height: float = 6) -> None:
        pdf.set_font(family, "B" if bold else "", size)
        pdf.multi_cell(0, height, printable(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    text_line("Credit statement", size=16, bold=True, height=9)
    pdf.set_font(family, "B", 13)
    name = printable(statement.organization_name)
    heading = _shortened(pdf, name, height=7)
    text_line(heading, size=13, bold=True, height=7)
    if heading != name:
        text_line(f"(The organization's name is shortened here: {len(name):,} characters.)", size=8)
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
                row.cell(printable(reason))
                row.cell(printable(e.actor))
    pdf.ln(4)

    if statement.expiries:
        text_line("Expired grants", size=12, bold=True, height=8)
        pdf.set_font(family, "", 8)
        with pdf.table(
            col_widths=(28, 46, 18, 14, 28),
            text_align=("LEFT", "LEFT", "RIGHT", "RIGHT", "LEFT"),
            markdown=False,
        ) as table:
            header = table.row()
            for title in ("Expired at", "Grant", "Credits", "Entry", "Written off"):
                header.cell(title)
            for x in statement.expiries:
                row = table.row()
                row.cell(_local(x.effective_at, statement.timezone))
                row.cell(expiry_what(x.source, x.grant_id))
                row.cell(f"{-x.credits:+,}")
                row.cell("" if x.ledger_entry_id is None else str(x.ledger_entry_id))
                row.cell(
                    "not yet"
                    if x.recorded_at is None
                    else _local(x.recorded_at, statement.timezone)
                )
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
                row.cell(printable(c.type))
                row.cell(f"{c.generations:,}")
                row.cell(f"{-c.credits:,}")  # out of the balance, as everywhere
    if statement.overage:
        pdf.ln(4)
        text_line("Overage past soft limits", size=12, bold=True, height=8)
        pdf.set_font(family, "", 8)
        with pdf.table(col_widths=(1, 1), text_align=("LEFT", "RIGHT"), markdown=False) as table:
            header = table.row()
            for title in ("Type", "Generations over the limit"):
                header.cell(title)
            for v in statement.overage:
                row = table.row()
                row.cell(printable(v.type))
                row.cell(f"{v.generations:,}")
        pdf.ln(1)
        text_line(OVERAGE_EXPLAINED, size=8, height=4)
    if face.replaced:
        pdf.ln(4)
        text_line(REPLACED_NOTE, size=8, height=4)
    return bytes(pdf.output())
