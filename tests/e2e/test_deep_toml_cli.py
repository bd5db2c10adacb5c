"""A TOML file nested thousands of levels deep, on the command line: a message, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e]

DEEP = "x = " + "[" * 5000 + "]" * 5000 + "\n"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["replay", "--policy", "{file}"], "policy {file} refused"),
        (["assumptions", "check", "{file}"], "assumptions file {file} refused"),
        (["import", "csv", "{rows}", "--mapping", "{file}", "--dry-run"], "the mapping {file}"),
    ],
    ids=["policy", "assumptions", "import-mapping"],
)
def test_a_file_nested_too_deep_is_refused_with_its_name_and_no_traceback(
    tmp_path: Path, args: list[str], named: str
) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text(DEEP, encoding="utf-8")
    rows = tmp_path / "rows.csv"
    rows.write_text("a\n1\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEMBA_")}
    env |= {"GEMBA_STATE_DIR": str(tmp_path), "GEMBA_DUCKDB_PATH": str(tmp_path / "none.duckdb")}
    filled = [arg.format(file=deep, rows=rows) for arg in args]

    done = subprocess.run(
        [sys.executable, "-m", "streams", *filled],
        check=False, capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip

    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    assert named.format(file=deep) in output
    assert "nested too deep" in output
