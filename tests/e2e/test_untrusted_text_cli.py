"""Event text with markup and control characters, through `gemba query`, `report`, `campaigns`
as a user runs them on a real DuckDB archive: printed literally, controls escaped, no traceback.

The log cannot be edited, so one such event must not break these commands for good.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from events.codec import encode
from streams.cli.main import cli
from tests.support.archives import archive_of
from tests.support.deal_builders import DealScript, campaign_response, march
from tests.support.terminal_checks import assert_literal

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

STAGE = "[/x] Qualify \x1b[2J\x1b]8;;http://x\x1b\\ \u202eevil"
SEGMENT = "[bold]SMB\x07\x00 :smile:"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    script = DealScript().opened(march(2, 9), stage=STAGE, segment=SEGMENT)
    script.call(march(3, 9), 20).won(march(20, 9))
    events = [campaign_response(march(1, 9)), *script.events]
    path = tmp_path_factory.mktemp("untrusted") / "gemba.duckdb"
    return archive_of(path, [encode(event) for event in events], value_streams=True)


def env_for(archive: Path) -> dict[str, str]:
    """Settings for the archive; a console wide enough that no cell wraps."""
    return {
        "GEMBA_DUCKDB_PATH": str(archive),
        "GEMBA_STATE_DIR": str(archive.parent),
        "COLUMNS": "400",
    }


def gemba(archive: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=env_for(archive), catch_exceptions=False)


def test_query_prints_stage_and_segment_literally(archive: Path) -> None:
    result = gemba(
        archive,
        "query",
        "SELECT DISTINCT stage, segment FROM touches",
    )

    assert result.exit_code == 0, result.output
    assert_literal(result.output, [STAGE, SEGMENT])
    assert "1 row(s)" in result.output


def test_query_json_holds_the_same_text_with_no_raw_control_character(archive: Path) -> None:
    result = gemba(archive, "query", "--format", "json", "SELECT stage FROM touches")

    assert result.exit_code == 0, result.output
    assert orjson.loads(result.output) == [{"stage": STAGE}]
    assert_literal(result.output, [])


def test_report_prints_the_stage_literally(archive: Path) -> None:
    result = gemba(archive, "report")

    assert result.exit_code == 0, result.output
    assert_literal(result.output, [STAGE])


def test_campaign_flow_prints_the_stage_literally(archive: Path) -> None:
    result = gemba(archive, "campaigns", "--flow")

    assert result.exit_code == 0, result.output
    assert_literal(result.output, [STAGE])


def test_an_error_quoting_markup_is_printed_literally_without_a_traceback(archive: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streams", "query", 'SELECT * FROM "[/x]\x1b[2J"'],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, **env_for(archive)},
    )  # fmt: skip

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert_literal(done.stderr, ["[/x]\x1b[2J"])
    assert done.stderr.startswith("error: ")
