"""The history archive on a real DuckDB file: append once, SQL = pure fold, as-of, audit, export."""

from __future__ import annotations

import hashlib
import shutil
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import orjson
import pytest
from click.testing import CliRunner

from events import Event, decode
from projections import deal_value_stream, default_policy, total, totals_by_stage
from projections.archive import (
    ArchiveBatch,
    HistoryWriter,
    LogRecord,
    StatementRefused,
    Tampering,
    archived_events,
    content_hash,
    export_archive,
    open_archive,
    read_only_query,
    replay,
    value_stream_report,
    verify_archive,
)
from projections.deal.state import events_by_deal
from projections.errors import DealNotOpened
from streams.cli.main import cli
from streams.errors import GembaError
from streams.simulator import SimulationConfig, history_records
from tests.support.archives import tamper

pytestmark = pytest.mark.integration

TOPIC = "touches"
PARTITIONS = 3
LATE = timedelta(days=9)
"""How late the late-recorded events reached the log."""


@dataclass(frozen=True)
class Archive:
    """An archive file written from simulated history, and the log it was written from."""

    path: Path
    log: tuple[LogRecord, ...]
    events: tuple[Event, ...]
    late: frozenset[str]
    """Ids of events recorded LATE after they occurred (the others: a minute after)."""


def _log(deals: int) -> tuple[tuple[LogRecord, ...], tuple[Event, ...], frozenset[str]]:
    records = list(history_records(SimulationConfig(seed=5, deals=deals)))
    events = tuple(decode(r.line) for r in records)
    late = frozenset(e.event_id for n, e in enumerate(events) if n % 17 == 3)
    offsets = [0] * PARTITIONS
    log = []
    for record, event in zip(records, events, strict=True):
        partition = zlib.crc32(record.key.encode()) % PARTITIONS
        delay = LATE if event.event_id in late else timedelta(minutes=1)
        log.append(
            LogRecord(TOPIC, partition, offsets[partition], event.occurred_at + delay, record.line)
        )
        offsets[partition] += 1
    return tuple(log), events, late


def _write(path: Path, records: tuple[LogRecord, ...], batch: int = 700) -> None:
    writer = HistoryWriter(default_policy())
    for start in range(0, len(records), batch):
        connection = open_archive(path)
        writer.append(connection, ArchiveBatch(events=records[start : start + batch]))
        connection.close()


@pytest.fixture(scope="module")
def log() -> tuple[tuple[LogRecord, ...], tuple[Event, ...], frozenset[str]]:
    return _log(deals=60)


@pytest.fixture(scope="module")
def pristine(
    tmp_path_factory: pytest.TempPathFactory,
    log: tuple[tuple[LogRecord, ...], tuple[Event, ...], frozenset[str]],
) -> Archive:
    """The archive as the sink wrote it, shared by the tests that only read it."""
    records, events, late = log
    path = tmp_path_factory.mktemp("archive") / "gemba.duckdb"
    _write(path, records)
    return Archive(path, records, events, late)


@pytest.fixture
def archive(pristine: Archive, tmp_path: Path) -> Archive:
    """A copy of the archive of this test's own, to append to or tamper with."""
    path = tmp_path / "gemba.duckdb"
    shutil.copytree(pristine.path, path)
    return replace(pristine, path=path)


@pytest.fixture
def reader(pristine: Archive) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_archive(pristine.path, read_only=True)
    yield connection
    connection.close()


def _pure_documents(events: list[Event] | tuple[Event, ...]) -> dict[str, bytes]:
    documents = {}
    for deal_id, deal_events in events_by_deal(events).items():
        try:
            stream = deal_value_stream(deal_events, default_policy())
        except DealNotOpened:
            continue
        documents[deal_id] = stream.model_dump_json().encode()
    return documents


# --- appending -------------------------------------------------------------------------------


def test_appending_a_batch_again_changes_nothing(archive: Archive) -> None:
    connection = open_archive(archive.path)
    before = connection.execute("SELECT count(*), max(chain_hash) FROM events").fetchall()

    outcome = HistoryWriter(default_policy()).append(connection, ArchiveBatch(archive.log[:900]))

    assert outcome.stored == 0
    assert outcome.already_archived == 900
    assert connection.execute("SELECT count(*), max(chain_hash) FROM events").fetchall() == before
    connection.close()


def test_a_later_copy_of_an_event_is_listed_as_a_duplicate_not_stored(archive: Archive) -> None:
    original = archive.log[10]
    after = 1 + max(r.offset for r in archive.log if r.partition == original.partition)
    copy = LogRecord(TOPIC, original.partition, after, original.recorded_at, original.value)
    connection = open_archive(archive.path)

    outcome = HistoryWriter(default_policy()).append(connection, ArchiveBatch([copy]))

    assert (outcome.stored, outcome.duplicates) == (0, 1)
    assert connection.execute("SELECT count(*) FROM events").fetchall() == [(len(archive.events),)]
    assert connection.execute(
        "SELECT event_id, identical FROM duplicates WHERE source_offset = ?", [after]
    ).fetchall() == [(decode(original.value).event_id, True)]
    connection.close()
    assert verify_archive(open_archive(archive.path, read_only=True)).intact


def test_a_message_that_is_not_an_event_is_consumed_but_not_stored(tmp_path: Path) -> None:
    path = tmp_path / "gemba.duckdb"
    bad = LogRecord(TOPIC, 0, 0, datetime.fromisoformat("2026-01-01T00:00:00+00:00"), b"{oops")
    connection = open_archive(path)

    outcome = HistoryWriter(default_policy()).append(connection, ArchiveBatch([bad]))

    assert (outcome.stored, outcome.not_events) == (0, 1)
    assert outcome.next_offsets == {(TOPIC, 0): 1}
    connection.close()


def test_the_archive_holds_every_event_once_and_its_value_streams_are_the_pure_fold(
    archive: Archive, reader: duckdb.DuckDBPyConnection
) -> None:
    documents = {
        deal_id: document.encode()
        for deal_id, document in reader.execute(
            "SELECT deal_id, value_stream FROM vs_deals"
        ).fetchall()
    }

    assert reader.execute("SELECT count(*) FROM events").fetchall() == [(len(archive.events),)]
    assert documents == _pure_documents(archive.events)


# --- SQL and the pure aggregates -------------------------------------------------------------


def _minutes(span: timedelta) -> float:
    return (span // timedelta(microseconds=1)) / 6e7


def test_pce_and_minutes_by_stage_in_sql_equal_the_pure_aggregates(
    archive: Archive, reader: duckdb.DuckDBPyConnection
) -> None:
    streams = replay(archived_events(reader), default_policy()).streams.values()
    pure = totals_by_stage(streams) | {"all": total(streams)}

    rows = reader.execute(
        "SELECT value, deals, pce, value_added_min, waste_min, wait_min, waiting_on_us_min "
        "FROM pce_by WHERE dimension IN ('stage', 'all')"
    ).fetchall()

    assert {row[0]: row[1:] for row in rows} == {
        name: (
            totals.deals,
            totals.process_cycle_efficiency,
            _minutes(totals.value_added),
            _minutes(totals.waste.total),
            _minutes(totals.wait),
            _minutes(totals.waiting_on_us),
        )
        for name, totals in pure.items()
    }


def test_waste_pareto_ranks_wastes_by_minutes_lost_and_adds_up_to_all_of_them(
    reader: duckdb.DuckDBPyConnection,
) -> None:
    rows = reader.execute(
        "SELECT rank, category, minutes, cumulative_share FROM waste_pareto ORDER BY rank"
    ).fetchall()

    minutes = [row[2] for row in rows]
    assert [row[0] for row in rows] == list(range(1, 8))
    assert minutes == sorted(minutes, reverse=True)
    assert rows[-1][3] == pytest.approx(1.0)


def test_cumulative_flow_counts_each_opened_deal_once_a_day(
    reader: duckdb.DuckDBPyConnection,
) -> None:
    rows = reader.execute(
        "SELECT f.day, sum(f.deals), (SELECT count(*) FROM vs_deals "
        "  WHERE CAST(timezone('UTC', opened_at) AS DATE) <= f.day) "
        "FROM cumulative_flow f GROUP BY f.day"
    ).fetchall()

    assert rows
    assert all(in_stages == opened for _, in_stages, opened in rows)


def test_throughput_in_flow_by_month_counts_the_deals_closed_that_month(
    reader: duckdb.DuckDBPyConnection,
) -> None:
    closed = reader.execute("SELECT sum(closed), sum(won), sum(lost) FROM flow_by_month").fetchall()

    assert (
        closed
        == reader.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'won'), "
            "count(*) FILTER (WHERE status = 'lost') FROM vs_deals WHERE closed_at IS NOT NULL"
        ).fetchall()
    )
    assert (
        reader.execute(
            "SELECT count(*) FROM flow_by_month WHERE avg_wip > 0 AND littles_law_ratio IS NOT NULL"
        ).fetchall()[0][0]
        > 0
    )


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM events",
        "INSERT INTO offsets VALUES ('t', 0, 0, NULL, NULL, NULL)",
        "UPDATE events SET payload = '{}'",
        "DROP TABLE events",
        "COPY events TO '/tmp/gemba-leak.csv'",
        "ATTACH 'other.duckdb'",
        "SET threads = 1",
        "CREATE TABLE x AS SELECT 1",
        "SELECT 1; DELETE FROM events",
    ],
)
def test_writing_statements_are_refused(reader: duckdb.DuckDBPyConnection, sql: str) -> None:
    with pytest.raises(StatementRefused, match=r"refused|exactly one query"):
        read_only_query(reader, sql)


def test_a_query_answers_with_columns_and_rows(reader: duckdb.DuckDBPyConnection) -> None:
    result = read_only_query(reader, "SELECT status, count(*) AS deals FROM vs_deals GROUP BY 1")

    assert result.columns == ("status", "deals")
    assert sum(deals for _, deals in result.rows) == 60


# --- replay as of a time ---------------------------------------------------------------------


def test_replay_as_of_a_time_leaves_out_later_events_and_late_recorded_ones(
    archive: Archive, reader: duckdb.DuckDBPyConnection
) -> None:
    times = sorted(event.occurred_at for event in archive.events)
    as_of = times[len(times) // 2]
    delay = {e.event_id: LATE if e.event_id in archive.late else timedelta(minutes=1)
             for e in archive.events}  # fmt: skip
    known = [
        event
        for event in archive.events
        if event.occurred_at <= as_of and event.occurred_at + delay[event.event_id] <= as_of
    ]

    replayed = replay(archived_events(reader), default_policy(), as_of)
    filtered_in_sql = replay(archived_events(reader, as_of), default_policy(), as_of)

    late_but_occurred = {
        e.event_id for e in archive.events if e.event_id in archive.late and e.occurred_at <= as_of
    } - {e.event_id for e in known}
    assert late_but_occurred, "the test needs events that occurred but were not yet recorded"
    assert replayed.events_known == len(known) < len(archive.events)
    assert replayed.documents == _pure_documents(known)
    assert filtered_in_sql.content_hash == replayed.content_hash


def test_replay_gives_the_same_hash_whatever_the_order_and_duplicates(
    archive: Archive, reader: duckdb.DuckDBPyConnection
) -> None:
    records = archived_events(reader)
    shuffled = list(reversed(records)) + records[::7]

    assert (
        replay(shuffled, default_policy()).content_hash
        == replay(records, default_policy()).content_hash
        == content_hash(_pure_documents(archive.events))
    )


# --- audit -----------------------------------------------------------------------------------


def _tamper(path: Path, *statements: str) -> None:
    tamper(path, *statements)


def _events_of_partition(path: Path, partition: int) -> list[tuple[str, int]]:
    connection = open_archive(path, read_only=True)
    rows = connection.execute(
        "SELECT event_id, source_offset FROM events WHERE source_partition = ? "
        "ORDER BY source_offset",
        [partition],
    ).fetchall()
    connection.close()
    return rows


def _findings(path: Path) -> set[tuple[Tampering, str | None]]:
    connection = open_archive(path, read_only=True)
    report = verify_archive(connection)
    connection.close()
    return {(finding.kind, finding.event_id) for finding in report.findings}


def test_an_untouched_archive_verifies(archive: Archive, reader: duckdb.DuckDBPyConnection) -> None:
    report = verify_archive(reader)

    assert report.intact
    assert (report.partitions, report.events) == (PARTITIONS, len(archive.events))


def test_a_changed_event_is_named(archive: Archive) -> None:
    event_id, _ = _events_of_partition(archive.path, 1)[40]
    _tamper(
        archive.path,
        f'UPDATE events SET payload = replace(payload, \'"account_id":"\', \'"account_id":"x\') '
        f"WHERE event_id = '{event_id}'",
    )

    assert _findings(archive.path) == {(Tampering.CHANGED, event_id)}


def test_an_event_whose_time_column_was_changed_is_named(archive: Archive) -> None:
    event_id, _ = _events_of_partition(archive.path, 2)[5]
    _tamper(
        archive.path,
        "UPDATE events SET occurred_at = occurred_at + INTERVAL 1 DAY "
        f"WHERE event_id = '{event_id}'",
    )

    assert _findings(archive.path) == {(Tampering.CHANGED, event_id)}


@pytest.mark.parametrize("position", [0, 30, -1], ids=["first", "middle", "last"])
def test_a_removed_event_is_named(archive: Archive, position: int) -> None:
    event_id, _ = _events_of_partition(archive.path, 0)[position]
    _tamper(archive.path, f"DELETE FROM events WHERE event_id = '{event_id}'")

    assert _findings(archive.path) == {(Tampering.REMOVED, event_id)}


@pytest.mark.parametrize("offset", [20, 100_000], ids=["among-others", "after-the-head"])
def test_an_inserted_event_is_named(archive: Archive, offset: int) -> None:
    event_id, _ = _events_of_partition(archive.path, 1)[20]
    forged = f"{event_id}-forged"
    _tamper(
        archive.path,
        f"INSERT INTO events SELECT * REPLACE ('{forged}' AS event_id, "
        f"replace(payload, '{event_id}', '{forged}') AS payload, {offset} AS source_offset) "
        f"FROM events WHERE event_id = '{event_id}'",
    )

    assert _findings(archive.path) == {(Tampering.INSERTED, forged)}


def test_two_reordered_events_are_named(archive: Archive) -> None:
    rows = _events_of_partition(archive.path, 2)
    (first, first_offset), (second, second_offset) = rows[10], rows[14]
    _tamper(
        archive.path,
        f"UPDATE events SET source_offset = -1 WHERE event_id = '{first}'",
        f"UPDATE events SET source_offset = {first_offset} WHERE event_id = '{second}'",
        f"UPDATE events SET source_offset = {second_offset} WHERE event_id = '{first}'",
    )

    assert _findings(archive.path) == {(Tampering.REORDERED, first), (Tampering.REORDERED, second)}


def test_gemba_audit_verify_names_the_problem_and_exits_non_zero(archive: Archive) -> None:
    runner = CliRunner()
    env = {"GEMBA_DUCKDB_PATH": str(archive.path)}
    intact = runner.invoke(cli, ["audit", "verify"], env=env)
    event_id, _ = _events_of_partition(archive.path, 0)[7]
    _tamper(archive.path, f"DELETE FROM events WHERE event_id = '{event_id}'")

    broken = runner.invoke(cli, ["audit", "verify"], env=env)

    assert intact.exit_code == 0, intact.output
    assert "intact" in intact.output
    assert broken.exit_code == 1
    assert f"removed: {event_id}" in broken.output


# --- export, query and report from the command line ------------------------------------------


def test_export_writes_parquet_files_whose_hashes_the_manifest_lists(
    archive: Archive, reader: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    out = tmp_path / "export"

    manifest = export_archive(reader, out)

    on_disk = orjson.loads((out / "manifest.json").read_bytes())
    assert on_disk == manifest
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"]
    assert manifest["files"]["events.parquet"]["rows"] == len(archive.events)
    documents = duckdb.sql(
        f"SELECT deal_id, value_stream FROM '{out / 'deal_value_streams.parquet'}'"
    ).fetchall()
    assert (
        content_hash({d: v.encode() for d, v in documents})
        == (manifest["value_streams"]["content_hash"])
    )
    assert sum(chain["length"] for chain in manifest["chains"]) == len(archive.events)


def test_gemba_query_prints_csv_and_json_and_refuses_writes(archive: Archive) -> None:
    runner = CliRunner()
    env = {"GEMBA_DUCKDB_PATH": str(archive.path)}
    sql = "SELECT status, count(*) AS deals FROM deal_value_streams GROUP BY 1 ORDER BY 1"

    as_csv = runner.invoke(cli, ["query", sql, "--format", "csv"], env=env)
    as_json = runner.invoke(cli, ["query", sql, "--format", "json"], env=env)
    refused = runner.invoke(cli, ["query", "DELETE FROM events"], env=env)

    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.output.splitlines()[0] == "status,deals"
    assert sum(row["deals"] for row in orjson.loads(as_json.output)) == 60
    assert isinstance(refused.exception, GembaError)
    assert "DELETE statements are refused" in str(refused.exception)


def test_a_missing_archive_is_reported_with_what_to_do(tmp_path: Path) -> None:
    env = {"GEMBA_DUCKDB_PATH": str(tmp_path / "none.duckdb")}

    result = CliRunner().invoke(cli, ["query", "SELECT 1"], env=env)

    assert isinstance(result.exception, GembaError)
    assert "gemba worker" in str(result.exception)


def test_the_report_gives_pce_top_wastes_stalls_and_changes(
    archive: Archive, reader: duckdb.DuckDBPyConnection
) -> None:
    streams = replay(archived_events(reader), default_policy()).streams.values()

    report = value_stream_report(reader, timedelta(days=30), top=3)
    printed = CliRunner().invoke(cli, ["report"], env={"GEMBA_DUCKDB_PATH": str(archive.path)})

    assert report.overall["pce"] == total(streams).process_cycle_efficiency
    assert [row["value"] for row in report.stages][:3] == [
        "Prospecting", "Qualification", "Discovery",
    ]  # fmt: skip
    assert len(report.wastes) == 3
    assert all(line["examples"] for line in report.wastes)
    assert {change.metric for change in report.changes} >= {"deals_won", "win_rate"}
    assert printed.exit_code == 0, printed.output
    assert "What changed since the previous period" in printed.output


def test_replay_with_another_policy_shows_which_deals_change(
    archive: Archive, tmp_path: Path
) -> None:
    stricter = tmp_path / "stricter.toml"
    text = (Path(__file__).parents[2] / "projections" / "policy" / "default.toml").read_text()
    stricter.write_text(
        text.replace('name = "default"', 'name = "strict"').replace(
            "emails_before_chasing = 2", "emails_before_chasing = 0"
        )
    )
    env = {"GEMBA_DUCKDB_PATH": str(archive.path)}

    result = CliRunner().invoke(cli, ["replay", "--diff", str(stricter), "--json"], env=env)

    assert result.exit_code == 0, result.output
    document = orjson.loads(result.output)
    assert document["base"]["content_hash"] != document["other"]["content_hash"]
    assert document["deals"], "a stricter chasing rule changes some deals"
    assert all("waste_chasing" in deal["figures"] for deal in document["deals"][:5])
