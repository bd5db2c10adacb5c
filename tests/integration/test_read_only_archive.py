"""A reader of the archive reaches the archive and nothing else: no other file, no extension,
no setting; `gemba query` says so and exits non-zero, and the exports still write their files."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from click.testing import CliRunner

from projections.archive import (
    READER_SETTINGS,
    StatementRefused,
    open_archive,
    open_reader,
    read_only_query,
)
from streams.cli.main import cli
from streams.errors import GembaError
from streams.simulator import SimulationConfig, history_lines
from tests.support.archives import archive_of

pytestmark = pytest.mark.integration

SECRET = "canary-3f9d0c1e-not-for-queries"
"""Text kept in files beside the archive: no query may read it."""

PROBES = {
    "read_blob": "SELECT * FROM read_blob('/proc/self/environ')",
    "read_text": "SELECT * FROM read_text('{outside}/secret.txt')",
    "read_csv": "SELECT * FROM read_csv('{outside}/secret.csv')",
    "glob": "SELECT * FROM glob('{outside}/*')",
    "copy_to": "COPY (SELECT * FROM events) TO '{outside}/copied.csv'",
    "explain_analyze_copy_to": (
        "EXPLAIN ANALYZE COPY (SELECT * FROM events) TO '{outside}/explained.csv'"
    ),
    "install": "INSTALL fake FROM '{outside}/repository'",
    "load": "LOAD '{outside}/fake.duckdb_extension'",
    "attach": "ATTACH '{other}' AS other (READ_ONLY)",
    "set_external_access": "SET enable_external_access = true",
    "unlock_configuration": "SET lock_configuration = false",
}
"""Every way out of the archive that issue 17 names, as a query would try it."""

DUCKDB_REFUSALS = "disabled by configuration|disabled through configuration|has been locked"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = history_lines(SimulationConfig(seed=17, deals=8, accounts=4, months=1))
    return archive_of(tmp_path_factory.mktemp("archive") / "gemba.duckdb", lines)


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another DuckDB file, holding the secret."""
    path = tmp_path_factory.mktemp("other") / "other.duckdb"
    with duckdb.connect(str(path)) as connection:
        connection.execute(f"CREATE TABLE secrets AS SELECT '{SECRET}' AS token")
    return path


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory of files no query may read, with a home for DuckDB's extension folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "secret.txt").write_text(SECRET)
    (tmp_path / "secret.csv").write_text(f"token\n{SECRET}\n")
    (tmp_path / "fake.duckdb_extension").write_bytes(b"\0" * 1024)
    return tmp_path


@pytest.fixture
def reader(archive: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_reader(archive)
    try:
        yield connection
    finally:
        connection.close()


def probe(name: str, outside: Path, other: Path) -> str:
    return PROBES[name].format(outside=outside, other=other)


def assert_nothing_written(outside: Path) -> None:
    assert not (outside / "copied.csv").exists()
    assert not (outside / "explained.csv").exists()


def test_a_reader_gets_no_file_system_no_extensions_and_a_locked_configuration(
    reader: duckdb.DuckDBPyConnection,
) -> None:
    names = [*READER_SETTINGS, "lock_configuration"]
    settings = dict(
        reader.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN $names", {"names": names}
        ).fetchall()
    )

    assert settings == {
        "enable_external_access": "false",
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
        "allow_community_extensions": "false",
        "allow_unsigned_extensions": "false",
        "python_enable_replacements": "false",
        "lock_configuration": "true",
    }


def test_every_reader_opened_read_only_is_locked_down_the_same_way(archive: Path) -> None:
    connection = open_archive(archive, read_only=True)
    try:
        locked = connection.execute("SELECT current_setting('lock_configuration')").fetchall()
    finally:
        connection.close()

    assert locked == [(True,)]


def test_readers_open_at_once_in_one_process_share_the_lock_and_the_utc_clock(
    archive: Path,
) -> None:
    # DuckDB gives the connections of one process to one file one database instance: the
    # second reader finds its configuration locked already (the dashboard's threads do this).
    first = open_reader(archive)
    try:
        second = open_reader(archive)
        try:
            figures = [
                c.execute(
                    "SELECT current_setting('TimeZone'), current_setting('lock_configuration')"
                ).fetchall()
                for c in (first, second)
            ]
        finally:
            second.close()
    finally:
        first.close()

    assert figures == [[("UTC", True)], [("UTC", True)]]


def test_readers_opened_on_many_threads_at_once_all_open_locked(archive: Path) -> None:
    # The dashboard answers each request on a thread of its own, each opening a reader.
    def opened(_: int) -> list[tuple[Any, ...]]:
        connection = open_reader(archive)
        try:
            return connection.execute(
                "SELECT current_setting('TimeZone'), current_setting('lock_configuration')"
            ).fetchall()
        finally:
            connection.close()

    for _ in range(20):
        with ThreadPoolExecutor(max_workers=8) as pool:
            figures = list(pool.map(opened, range(8)))
        assert figures == [[("UTC", True)]] * 8


@pytest.mark.parametrize("name", PROBES)
def test_a_query_cannot_reach_past_the_archive(
    name: str, reader: duckdb.DuckDBPyConnection, outside: Path, other: Path
) -> None:
    with pytest.raises(StatementRefused, match="read-only") as refused:
        read_only_query(reader, probe(name, outside, other))

    assert SECRET not in str(refused.value)
    assert_nothing_written(outside)


@pytest.mark.parametrize("name", PROBES)
def test_the_reader_connection_itself_refuses_what_the_query_gate_lets_through(
    name: str, reader: duckdb.DuckDBPyConnection, outside: Path, other: Path
) -> None:
    with pytest.raises(duckdb.Error, match=DUCKDB_REFUSALS):
        reader.execute(probe(name, outside, other)).fetchall()

    assert_nothing_written(outside)


def test_the_readers_own_work_still_runs_under_the_lock(reader: duckdb.DuckDBPyConnection) -> None:
    result = read_only_query(
        reader, "SELECT type, count(*) AS events FROM events GROUP BY ALL ORDER BY ALL"
    )
    described = read_only_query(reader, "DESCRIBE events")

    assert sum(count for _, count in result.rows) > 0
    assert "event_id" in {row[0] for row in described.rows}


@pytest.mark.parametrize("name", PROBES)
def test_gemba_query_refuses_it_with_a_message_and_exits_non_zero(
    name: str, archive: Path, outside: Path, other: Path
) -> None:
    env = {"GEMBA_DUCKDB_PATH": str(archive)}

    result = CliRunner().invoke(cli, ["query", probe(name, outside, other)], env=env)

    assert result.exit_code != 0
    assert isinstance(result.exception, GembaError)
    assert "read-only" in str(result.exception)
    assert SECRET not in result.output
    assert_nothing_written(outside)


def test_gemba_query_cannot_print_the_processs_environment(archive: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEMBA_")}
    env |= {"GEMBA_DUCKDB_PATH": str(archive), "GEMBA_INGEST_TOKEN": SECRET}
    sql = "SELECT decode(content) AS environment FROM read_blob('/proc/self/environ')"

    done = subprocess.run(
        [sys.executable, "-m", "streams", "query", sql, "--format", "csv"],
        check=False, capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip

    assert done.returncode != 0
    assert SECRET not in done.stdout + done.stderr
    assert "the archive is read-only here" in done.stderr
    assert "Traceback" not in done.stderr


def test_audit_export_still_writes_its_parquet_files_and_manifest(
    archive: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    env = {"GEMBA_DUCKDB_PATH": str(archive)}

    done = CliRunner().invoke(cli, ["audit", "export", str(out)], env=env)

    assert done.exit_code == 0, done.output
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    events = duckdb.sql(f"SELECT count(*) FROM '{out / 'events.parquet'}'").fetchall()
    payload = duckdb.sql(f"DESCRIBE SELECT payload FROM '{out / 'events.parquet'}'").fetchall()
    assert events == [(manifest["files"]["events.parquet"]["rows"],)]
    assert payload[0][1] == "JSON"


def test_an_install_is_refused_under_its_own_name(reader: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(StatementRefused, match="INSTALL and LOAD statements are refused"):
        read_only_query(reader, "INSTALL httpfs")
