"""`gemba import` and `gemba export` as a user runs them: files in, the archive out.

No broker: imports write JSON lines (--out) or nothing (--dry-run); exports read a
real DuckDB archive file built as the worker's sink builds it.
"""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import click
import orjson
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from events import EventBase, PublishError, decode
from events.importers import ImportRequest, import_file
from projections.archive import open_archive
from streams.cli.export import register as register_export
from streams.cli.importing import register as register_import
from streams.cli.main import cli
from streams.simulator import SimulationConfig, history_lines
from tests.support.archives import archive_of
from tests.support.shared_data import maven_crm_pipeline

pytestmark = [
    pytest.mark.integration,
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:Install the optional requirement:UserWarning"),
]

ROOT = Path(__file__).parents[2]
MAVEN_MAPPING = ROOT / "deploy" / "mappings" / "maven_crm.toml"
CONFIG = SimulationConfig(seed=7, deals=25, accounts=12, months=2)


@pytest.fixture(scope="module")
def gemba() -> click.Group:
    """The gemba command line with import and export registered (as streams/cli/main.py does)."""
    for register, name in ((register_import, "import"), (register_export, "export")):
        if name not in cli.commands:
            register(cli)
    return cli


def run(gemba: click.Group, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(gemba, list(args), env=env, catch_exceptions=True)


def archived_count(path: Path) -> int:
    connection = open_archive(path, read_only=True)
    try:
        return int(connection.execute("SELECT count(*) FROM events").fetchall()[0][0])
    finally:
        connection.close()


@pytest.fixture(scope="module")
def simulated() -> list[bytes]:
    return list(history_lines(CONFIG))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, simulated: list[bytes]) -> Path:
    return archive_of(tmp_path_factory.mktemp("archive") / "gemba.duckdb", simulated)


def env_for(archive: Path) -> dict[str, str]:
    return {"GEMBA_DUCKDB_PATH": str(archive), "GEMBA_STATE_DIR": str(archive.parent)}


# --- import ----------------------------------------------------------------------------------


def test_maven_crm_imports_to_json_lines_and_reports_every_refused_row(
    gemba: click.Group, tmp_path: Path
) -> None:
    out = tmp_path / "maven.jsonl"

    done = run(gemba, "import", "csv", str(maven_crm_pipeline()), "--mapping", str(MAVEN_MAPPING),
               "--out", str(out), "--show", "2")  # fmt: skip

    assert done.exit_code == 1, done.output  # rows were refused; the rest went in
    lines = out.read_bytes().splitlines()
    assert done.stdout.strip().endswith(
        f"imported {len(lines):,} event(s) (deal_lost 2,473, deal_opened 7,212, "
        f"deal_won 4,238) written to {out}; skipped 0; refused 1,588"
    )
    assert "refused sales_pipeline.csv line 11: no account" in done.stderr
    assert "... and 1,586 more refused" in done.stderr
    assert "refused 500: no engage_date: cannot place the deal in time" in done.stderr
    assert all(isinstance(decode(line), EventBase) for line in lines)


def test_a_dry_run_reads_everything_and_writes_nothing(gemba: click.Group, tmp_path: Path) -> None:
    done = run(
        gemba,
        "import",
        "csv",
        str(maven_crm_pipeline()),
        "--mapping",
        str(MAVEN_MAPPING),
        "--dry-run",
    )

    assert done.exit_code == 1
    assert "would import 13,923 event(s)" in done.stdout
    assert "(dry run: nothing written)" in done.stdout
    assert not list(tmp_path.iterdir())


def test_importing_the_same_file_twice_adds_no_events_to_the_log(
    gemba: click.Group, tmp_path: Path
) -> None:
    sample = tmp_path / "sample.csv"
    sample.write_text("".join(maven_crm_pipeline().read_text().splitlines(keepends=True)[:400]))
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    for out in (first, second):
        run(gemba, "import", "csv", str(sample), "--mapping", str(MAVEN_MAPPING), "--out", str(out))
    once = first.read_bytes().splitlines()

    archive = archive_of(tmp_path / "gemba.duckdb", once + second.read_bytes().splitlines())

    assert first.read_bytes() == second.read_bytes()
    assert archived_count(archive) == len(once)


def test_a_clean_import_exits_zero(gemba: click.Group, tmp_path: Path) -> None:
    path = tmp_path / "Opportunity.csv"
    path.write_text(
        "Id,AccountId,OwnerId,StageName,CreatedDate\n006A,001X,005R,Prospecting,2024-03-04\n"
    )

    done = run(gemba, "import", "salesforce-opportunities", str(path), "--dry-run")

    assert done.exit_code == 0, done.output
    assert "would import 1 event(s) (deal_opened 1)" in done.stdout


def test_future_dated_rows_are_refused_each_with_the_reason_and_old_ones_go_in(
    gemba: click.Group, tmp_path: Path
) -> None:
    path = tmp_path / "Opportunity.csv"
    path.write_text(
        "Id,AccountId,OwnerId,StageName,CreatedDate\n"
        "006A,001X,005R,Prospecting,2009-03-04\n006B,001X,005R,Prospecting,2199-03-04\n"
    )

    done = run(gemba, "import", "salesforce-opportunities", str(path), "--dry-run")

    assert done.exit_code == 1, done.output
    assert "would import 1 event(s) (deal_opened 1)" in done.stdout
    assert "refused 1" in done.stdout
    assert "refused Opportunity.csv event " in done.stderr
    assert "(occurred_at 2199-03-04" in done.stderr
    assert "future-dated: more than 1 day after the event was recorded" in done.stderr


def test_a_bad_mapping_stops_the_import_with_what_is_wrong(
    gemba: click.Group, tmp_path: Path
) -> None:
    mapping = tmp_path / "m.toml"
    mapping.write_text("shape = 'rows'\n")

    done = run(
        gemba, "import", "csv", str(maven_crm_pipeline()), "--mapping", str(mapping), "--dry-run"
    )

    assert done.exit_code != 0
    assert 'use "deals" or "events"' in str(done.exception)


def test_refused_rows_are_listed_with_their_reason_as_written(
    gemba: click.Group, tmp_path: Path
) -> None:
    log = tmp_path / "log.xes"
    log.write_text(
        '<log><trace><string key="concept:name" value="D-1"/><event>'
        '<string key="concept:name" value="Coffee"/>'
        '<date key="time:timestamp" value="2024-03-01T10:00:00+01:00"/></event></trace></log>'
    )
    mapping = tmp_path / "log.toml"
    mapping.write_text('[activities."Call"]\ntype = "call"\n')

    done = run(gemba, "import", "xes", str(log), "--mapping", str(mapping), "--dry-run")

    assert done.exit_code == 1
    assert (
        "refused log.xes trace D-1, event 0: activity 'Coffee' is not in the mapping's "
        "[activities]" in done.stderr
    )


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_without_a_broker_the_import_fails_fast_saying_what_to_do(gemba: click.Group) -> None:
    started = time.monotonic()
    done = run(gemba, "import", "csv", str(maven_crm_pipeline()), "--mapping", str(MAVEN_MAPPING),
               env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_closed_port()}"})  # fmt: skip

    assert isinstance(done.exception, PublishError)
    assert "gemba broker start" in str(done.exception)
    assert time.monotonic() - started < 10


# --- export ----------------------------------------------------------------------------------


def _xes_counts(path: Path) -> tuple[int, int]:
    traces = events = 0
    for _, element in ET.iterparse(path):
        tag = element.tag.rsplit("}", 1)[-1]
        if tag == "event":
            events += 1
            element.clear()
        elif tag == "trace":
            traces += 1
    return traces, events


def _cases(lines: list[bytes]) -> int:
    return len({event.deal_id or f"account:{event.account_id}" for event in map(decode, lines)})


def test_an_exported_xes_reads_back_in_pm4py_with_every_case_and_event(
    gemba: click.Group, archive: Path, simulated: list[bytes], tmp_path: Path
) -> None:
    import pm4py

    out = tmp_path / "log.xes"
    done = run(gemba, "export", "xes", "--out", str(out), env=env_for(archive))

    assert done.exit_code == 0, done.output
    log = pm4py.read_xes(str(out))
    assert len(log) == len(simulated)
    assert log["case:concept:name"].nunique() == _cases(simulated)
    assert _xes_counts(out) == (_cases(simulated), len(simulated))


def test_an_exported_xes_imports_back_as_the_same_events(
    gemba: click.Group, archive: Path, simulated: list[bytes], tmp_path: Path
) -> None:
    out = tmp_path / "log.xes.gz"
    run(gemba, "export", "xes", "--out", str(out), env=env_for(archive))

    back = [item for item in import_file(ImportRequest("xes", out)) if isinstance(item, EventBase)]

    assert sorted(back, key=_key) == sorted(map(decode, simulated), key=_key)


def _key(event: EventBase) -> str:
    return event.event_id


def test_ocel_export_reads_back_in_pm4py(
    gemba: click.Group, archive: Path, simulated: list[bytes], tmp_path: Path
) -> None:
    import pm4py

    out = tmp_path / "log.json"
    done = run(gemba, "export", "ocel", "--out", str(out), env=env_for(archive))

    assert done.exit_code == 0, done.output
    ocel = pm4py.read_ocel2_json(str(out))
    assert len(ocel.events) == len(simulated)
    document = orjson.loads(out.read_bytes())
    types = {obj["type"] for obj in document["objects"]}
    assert {"deal", "account", "campaign"} <= types


def test_parquet_and_csv_exports_hold_one_row_per_event(
    gemba: click.Group, archive: Path, simulated: list[bytes], tmp_path: Path
) -> None:
    parquet, table = tmp_path / "events.parquet", tmp_path / "events.csv"
    run(gemba, "export", "parquet", "--out", str(parquet), env=env_for(archive))
    run(gemba, "export", "csv", "--out", str(table), env=env_for(archive))

    rows = pq.read_table(parquet)
    assert rows.num_rows == len(simulated)
    assert set(rows.column("event_id").to_pylist()) == {decode(x).event_id for x in simulated}
    assert len(table.read_text().splitlines()) == len(simulated) + 1


def test_as_of_exports_only_what_was_known_then(
    gemba: click.Group, archive: Path, simulated: list[bytes], tmp_path: Path
) -> None:
    times = sorted(decode(line).occurred_at for line in simulated)
    middle = times[len(times) // 2]
    out = tmp_path / "early.csv"

    run(gemba, "export", "csv", "--out", str(out), "--as-of", middle.isoformat(),
        env=env_for(archive))  # fmt: skip

    known = sum(1 for t in times if t + timedelta(minutes=1) <= middle)
    assert len(out.read_text().splitlines()) - 1 == known


def test_export_without_an_archive_says_what_to_do(gemba: click.Group, tmp_path: Path) -> None:
    done = run(gemba, "export", "xes", "--out", str(tmp_path / "x.xes"),
               env=env_for(tmp_path / "none.duckdb"))  # fmt: skip

    assert done.exit_code != 0
    assert "no history archive" in str(done.exception)
