"""`gemba export csv` and `gemba query --format csv` write no cell a spreadsheet would run,
unless asked for raw cells with --raw-csv."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from events.exporters.csv_cells import FORMULA_STARTS
from streams.cli.main import cli
from streams.simulator import SimulationConfig, history_lines
from tests.support.archives import archive_of

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

FORMULAS = {"event_id": "-2+3", "account_id": "=1+2", "contact_id": "+A1", "actor_id": "@A2"}
"""Ids the event model accepts that a spreadsheet would run as formulas."""


def formula_event(template: bytes) -> bytes:
    """A simulated event whose ids would each start a formula in a spreadsheet."""
    document = orjson.loads(template)
    return orjson.dumps(document | FORMULAS)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = list(history_lines(SimulationConfig(seed=71, deals=4, accounts=3, months=1)))
    path = tmp_path_factory.mktemp("archive") / "gemba.duckdb"
    return archive_of(path, [*lines, formula_event(lines[0])])


def gemba(archive: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"GEMBA_DUCKDB_PATH": str(archive)})


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def formula_row(rows: list[dict[str, str]]) -> dict[str, str]:
    return next(row for row in rows if row["event_id"].endswith(FORMULAS["event_id"]))


def test_export_csv_puts_a_quote_before_every_cell_that_would_start_a_formula(
    archive: Path, tmp_path: Path
) -> None:
    out = tmp_path / "events.csv"

    done = gemba(archive, "export", "csv", "--out", str(out))

    assert done.exit_code == 0, done.output
    rows = rows_of(out.read_text())
    assert {column: formula_row(rows)[column] for column in FORMULAS} == {
        column: f"'{value}" for column, value in FORMULAS.items()
    }
    assert all(cell[:1] not in FORMULA_STARTS for row in rows for cell in row.values())


def test_export_csv_with_raw_csv_writes_the_cells_as_they_are(
    archive: Path, tmp_path: Path
) -> None:
    out = tmp_path / "events.csv"

    done = gemba(archive, "export", "csv", "--out", str(out), "--raw-csv")

    assert done.exit_code == 0, done.output
    row = formula_row(rows_of(out.read_text()))
    assert {column: row[column] for column in FORMULAS} == FORMULAS


def test_query_csv_neutralises_text_cells_and_headers_but_not_numbers(archive: Path) -> None:
    sql = (
        "SELECT account_id AS \"=total\", actor_id, -5 AS balance, '-5' AS balance_text "
        f"FROM events WHERE event_id = '{FORMULAS['event_id']}'"
    )

    done = gemba(archive, "query", sql, "--format", "csv")

    assert done.exit_code == 0, done.output
    assert done.output.splitlines() == [
        "'=total,actor_id,balance,balance_text",
        "'=1+2,'@A2,-5,'-5",
    ]


def test_query_csv_with_raw_csv_prints_the_cells_as_they_are(archive: Path) -> None:
    sql = f"SELECT account_id, -5 AS balance FROM events WHERE event_id = '{FORMULAS['event_id']}'"

    done = gemba(archive, "query", sql, "--format", "csv", "--raw-csv")

    assert done.exit_code == 0, done.output
    assert done.output.splitlines() == ["account_id,balance", "=1+2,-5"]


@pytest.mark.parametrize(
    "args",
    [
        ("query", "SELECT 1", "--format", "json", "--raw-csv"),
        ("export", "xes", "--out", "never.xes", "--raw-csv"),
    ],
)
def test_raw_csv_with_another_format_is_a_usage_error(archive: Path, args: tuple[str, ...]) -> None:
    done = gemba(archive, *args)

    assert done.exit_code == 2
    assert "--raw-csv applies to csv only" in done.output
