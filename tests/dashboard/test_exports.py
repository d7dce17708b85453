"""Every CSV is safe to open in a spreadsheet: text cells that would start a formula
are quoted with a leading ', numbers stay numbers (OWASP's rule for CSV injection)."""

from __future__ import annotations

import csv
import io

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from dashboard.exports import FORMULA_START, csv_bytes

ATTACKS = ('=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1:A9)", "\t=1", "\r=1")


def rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


def test_formula_cells_are_quoted_and_numbers_stay_numbers() -> None:
    frame = pd.DataFrame(
        {
            "Organization": list(ATTACKS),
            "Amount": [-5, 10, -2, 3, 0, -1],
            "Share": [-0.5, 1.25, 0.0, 2.0, -3.5, 1.0],
            "Entry": pd.array([1, None, 3, 4, 5, 6], dtype="Int64"),
            "When": pd.to_datetime(["2026-11-20 10:00"] * 6, utc=True),
        }
    )
    header, *body = rows(csv_bytes(frame))
    assert header == ["Organization", "Amount", "Share", "Entry", "When"]
    assert [row[0] for row in body] == ["'" + attack for attack in ATTACKS]
    assert [row[1] for row in body] == ["-5", "10", "-2", "3", "0", "-1"]
    assert [float(row[2]) for row in body] == [-0.5, 1.25, 0.0, 2.0, -3.5, 1.0]
    assert [row[3] for row in body] == ["1", "", "3", "4", "5", "6"]
    assert body[0][4].startswith("2026-11-20 10:00")
    # Read back as a spreadsheet would: the number columns are numbers.
    back = pd.read_csv(io.BytesIO(csv_bytes(frame)))
    assert back["Amount"].tolist() == [-5, 10, -2, 3, 0, -1]


def test_a_text_column_of_numbers_like_text_is_text() -> None:
    frame = pd.DataFrame({"Details": ["-2+3", "12", None, "x"]}, dtype="object")
    assert [row[0] for row in rows(csv_bytes(frame))[1:]] == ["'-2+3", "12", "", "x"]


# Any text a database can hold: PostgreSQL stores UTF-8, which has no lone surrogates.
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from("=+-@\t\r\n\",; '"), st.characters(exclude_categories=["Cs"])
    ),
    max_size=20,
)


@given(st.lists(st.tuples(TEXT, st.integers(-(10**12), 10**12), TEXT), min_size=1, max_size=8))
def test_no_text_cell_can_start_a_formula_and_every_value_reads_back(
    data: list[tuple[str, int, str]],
) -> None:
    frame = pd.DataFrame(data, columns=["Name", "Amount", "Note"])
    header, *body = rows(csv_bytes(frame))
    assert header == ["Name", "Amount", "Note"]
    assert len(body) == len(data)
    for (name, amount, note), (name_cell, amount_cell, note_cell) in zip(data, body, strict=True):
        assert int(amount_cell) == amount  # a number, written as one
        for typed, cell in ((name, name_cell), (note, note_cell)):
            assert not cell.startswith(FORMULA_START)
            assert cell == ("'" + typed if typed.startswith(FORMULA_START) else typed)
