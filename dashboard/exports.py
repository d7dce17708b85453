"""Every CSV the dashboard offers, made by one function that a spreadsheet cannot
turn into formulas.

A spreadsheet runs a cell whose text begins with ``=``, ``+``, ``-`` or ``@`` as a
formula (``=HYPERLINK(...)``, ``@SUM(...)``, ``-2+3``), and some also after a leading tab
or carriage return. Organization names, reasons, notes and actors come from customers
and staff, so, following OWASP's rule for CSV injection, such a text cell is written
with a single quote in front: the spreadsheet shows the text, and a person reading the
file sees what was stored after the quote. Numbers stay numbers: numeric, boolean and
date columns are written as they are (a negative amount is a number, not a formula).
"""

from __future__ import annotations

from typing import Final

import pandas as pd
from pandas.api import types

# The characters OWASP lists as starting a formula.
FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> object:
    """A text cell that would start a formula, with a single quote in front; any other
    value as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _is_text(column: pd.Series) -> bool:
    return not (
        types.is_numeric_dtype(column)
        or types.is_bool_dtype(column)
        or types.is_datetime64_any_dtype(column)
        or isinstance(column.dtype, pd.PeriodDtype)
        or types.is_timedelta64_dtype(column)
    )


def safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every text cell (and column name) neutralised; numeric, boolean and
    date columns untouched."""
    out = df.copy()
    for position in range(df.shape[1]):
        column = df.iloc[:, position]
        if _is_text(column):
            out.isetitem(position, column.map(neutralise).astype(object).to_numpy())
    out.columns = [neutralise(name) for name in df.columns]
    return out


def csv_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as UTF-8 CSV (no index, RFC 4180 line ends), safe to open in a
    spreadsheet."""
    # CRLF line ends (RFC 4180) also make the writer quote a cell holding a lone CR,
    # which it would otherwise leave bare for a reader to take as the end of the row.
    text: str = safe_frame(df).to_csv(index=False, lineterminator="\r\n")
    return text.encode()
