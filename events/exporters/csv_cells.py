"""CSV cells a spreadsheet will not run as formulas (CSV injection, as OWASP describes it)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

__all__ = ["FORMULA_STARTS", "neutralise_cell", "neutralise_row"]

FORMULA_STARTS = frozenset("=+-@\t\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP's list)."""

NUMBERS = (int, float, Decimal)
"""Typed numbers: their text (-5, 1e-3, -inf) is a number to a spreadsheet, never a formula."""


def neutralise_cell(value: object) -> object:
    """The cell as a spreadsheet may safely open it.

    Text whose first character is = + - @, a tab or a carriage return gets a single
    quote in front (`=HYPERLINK(...)` becomes `'=HYPERLINK(...)`), so the spreadsheet
    shows it as text; dropping that one quote gives the original back. Typed numbers
    and None stay as they are (-5 as a number is not a formula); any other value
    becomes its text, neutralised the same way (a negative interval starts with -).
    """
    if value is None or isinstance(value, NUMBERS):
        return value
    text = value if isinstance(value, str) else str(value)
    return f"'{text}" if text[:1] in FORMULA_STARTS else text


def neutralise_row(row: Iterable[object]) -> list[object]:
    """Each cell of a row, neutralised (see `neutralise_cell`)."""
    return [neutralise_cell(value) for value in row]
