"""The archive as segments and a catalog: readers never make the writer wait nor wait for it;
the worker's decoded events and folded value streams are stored as given; later versions of a
deal supersede earlier ones; files no commit lists, or no reader may still read, go."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import pytest

from events import EventBase, decode, encode
from projections import default_policy
from projections.archive import ArchiveBatch, HistoryWriter, LogRecord, open_archive, open_reader
from projections.archive.store import segments_dir
from projections.deal.value_stream import DealValueStream, deal_value_stream
from projections.errors import DealNotOpened
from streams.simulator import SimulationConfig, history_lines

pytestmark = pytest.mark.integration

TOPIC = "touches"


def _log(deals: int = 12) -> tuple[list[LogRecord], list[EventBase]]:
    lines = list(history_lines(SimulationConfig(seed=11, deals=deals, accounts=4, months=1)))
    events = [decode(line) for line in lines]
    records = [
        LogRecord(TOPIC, 0, offset, event.occurred_at + timedelta(minutes=1), line)
        for offset, (line, event) in enumerate(zip(lines, events, strict=True))
    ]
    return records, events


def _streams(events: list[EventBase]) -> dict[str, DealValueStream]:
    """Each deal folded from `events`, as the worker's fold holds it."""
    by_deal: dict[str, list[EventBase]] = defaultdict(list)
    for event in events:
        if event.deal_id is not None:
            by_deal[event.deal_id].append(event)
    streams = {}
    for deal_id, deal_events in by_deal.items():
        try:
            streams[deal_id] = deal_value_stream(deal_events, default_policy())
        except DealNotOpened:
            continue
    return streams


def _count(path: Path, sql: str) -> int:
    reader = open_reader(path)
    try:
        return int(reader.execute(sql).fetchall()[0][0])
    finally:
        reader.close()


def test_a_reader_holding_a_snapshot_never_makes_the_writer_wait_and_keeps_its_snapshot(
    tmp_path: Path,
) -> None:
    records, _ = _log()
    half = len(records) // 2
    path = tmp_path / "gemba.duckdb"
    writer = HistoryWriter(default_policy(), value_streams=False)
    with open_archive(path) as store:
        writer.append(store, ArchiveBatch(events=records[:half]))
    reader = open_reader(path)
    try:
        with open_archive(path) as store:  # the writer opens while a reader holds the archive
            outcome = writer.append(store, ArchiveBatch(events=records[half:]))
        seen_by_old = reader.execute("SELECT count(*) FROM events").fetchall()
    finally:
        reader.close()

    assert outcome.stored == len(records) - half
    assert seen_by_old == [(half,)]
    assert _count(path, "SELECT count(*) FROM events") == len(records)


def test_a_reader_opens_and_reads_the_last_commit_while_the_writer_holds_the_archive(
    tmp_path: Path,
) -> None:
    records, _ = _log()
    path = tmp_path / "gemba.duckdb"
    with open_archive(path) as store:
        HistoryWriter(default_policy(), value_streams=False).append(
            store, ArchiveBatch(events=records)
        )
        held_by_writer = _count(path, "SELECT count(*) FROM events")

    assert held_by_writer == len(records)


def test_value_streams_from_the_fold_are_stored_as_given_and_nothing_is_refolded(
    tmp_path: Path,
) -> None:
    records, events = _log()
    half = len(records) // 2
    # The fold's streams as of the first half, handed over with the whole batch: the
    # archive stores them as they are (a refold of the archived events would differ).
    given = _streams(events[:half])
    path = tmp_path / "gemba.duckdb"
    with open_archive(path) as store:
        outcome = HistoryWriter(default_policy()).append(
            store,
            ArchiveBatch(events=records, decoded=events, value_streams=list(given.values())),
        )
    reader = open_reader(path)
    try:
        stored = dict(reader.execute("SELECT deal_id, value_stream FROM vs_deals").fetchall())
        dirty = reader.execute("SELECT count(*) FROM dirty_deals").fetchall()
    finally:
        reader.close()

    assert stored == {deal_id: s.model_dump_json() for deal_id, s in given.items()}
    assert stored != {d: s.model_dump_json() for d, s in _streams(events).items()}
    assert (outcome.deals_refreshed, outcome.deals_to_refresh, dirty) == (len(given), 0, [(0,)])


def test_streams_handed_over_by_several_batches_are_stored_once_each_the_latest(
    tmp_path: Path,
) -> None:
    records, events = _log(deals=3)
    half = len(records) // 2
    path = tmp_path / "gemba.duckdb"
    writer = HistoryWriter(default_policy())
    early, late = _streams(events[:half]), _streams(events)
    with open_archive(path) as store:
        for part, streams in ((slice(None, half), early), (slice(half, None), late)):
            batch = ArchiveBatch(records[part], decoded=events[part],
                                 value_streams=list(streams.values()))  # fmt: skip
            assert writer.append(store, batch, refresh=False).deals_to_refresh == len(streams)
        outcome = writer.refresh(store, limit=0)  # streams held: stored, whatever the limit
        versions = store.snapshot().segments["vs_deals"]
    reader = open_reader(path)
    try:
        deals = dict(reader.execute("SELECT deal_id, value_stream FROM vs_deals").fetchall())
    finally:
        reader.close()

    assert (outcome.deals_refreshed, outcome.deals_to_refresh, len(versions)) == (len(late), 0, 1)
    assert deals == {deal_id: s.model_dump_json() for deal_id, s in late.items()}


def test_deals_whose_handed_over_streams_died_with_the_process_are_refolded_from_the_archive(
    tmp_path: Path,
) -> None:
    records, events = _log(deals=3)
    path = tmp_path / "gemba.duckdb"
    streams = _streams(events)
    with open_archive(path) as store:
        HistoryWriter(default_policy()).append(
            store,
            ArchiveBatch(records, decoded=events, value_streams=list(streams.values())),
            refresh=False,
        )
    with open_archive(path) as store:  # a new process: the streams it was handed are gone
        outcome = HistoryWriter(default_policy()).refresh(store)
    reader = open_reader(path)
    try:
        deals = dict(reader.execute("SELECT deal_id, value_stream FROM vs_deals").fetchall())
    finally:
        reader.close()

    assert (outcome.deals_refreshed, outcome.deals_to_refresh) == (len(streams), 0)
    assert deals == {deal_id: s.model_dump_json() for deal_id, s in streams.items()}


def test_decoded_events_given_are_stored_without_decoding_the_records_again(
    tmp_path: Path,
) -> None:
    records, events = _log(deals=2)
    unreadable = [
        LogRecord(r.topic, r.partition, r.offset, r.recorded_at, b"not decoded again")
        for r in records
    ]
    path = tmp_path / "gemba.duckdb"
    with open_archive(path) as store:
        outcome = HistoryWriter(default_policy(), value_streams=False).append(
            store, ArchiveBatch(events=unreadable, decoded=events)
        )
    reader = open_reader(path)
    try:
        payloads = [
            p
            for (p,) in reader.execute(
                "SELECT payload FROM events ORDER BY source_offset"
            ).fetchall()
        ]
    finally:
        reader.close()

    assert (outcome.stored, outcome.not_events) == (len(events), 0)
    assert payloads == [encode(event).decode() for event in events]


def test_a_later_version_of_a_deal_supersedes_the_earlier_in_every_value_stream_table(
    tmp_path: Path,
) -> None:
    records, events = _log(deals=3)
    half = len(records) // 2
    path = tmp_path / "gemba.duckdb"
    writer = HistoryWriter(default_policy())
    early, late = _streams(events[:half]), _streams(events)
    with open_archive(path) as store:
        writer.append(store, ArchiveBatch(records[:half], decoded=events[:half],
                                          value_streams=list(early.values())))  # fmt: skip
        writer.append(store, ArchiveBatch(records[half:], decoded=events[half:],
                                          value_streams=list(late.values())))  # fmt: skip
    reader = open_reader(path)
    try:
        deals = dict(reader.execute("SELECT deal_id, value_stream FROM vs_deals").fetchall())
        touches = reader.execute("SELECT count(*) FROM vs_touches").fetchall()
        visits = reader.execute("SELECT count(*) FROM vs_visits").fetchall()
    finally:
        reader.close()

    assert deals == {deal_id: s.model_dump_json() for deal_id, s in late.items()}
    assert touches == [(sum(len(s.touches) for s in late.values()),)]
    assert visits == [(sum(len(s.stage_history) for s in late.values()),)]


def test_a_segment_no_commit_lists_is_removed_when_the_writer_next_opens(tmp_path: Path) -> None:
    records, _ = _log(deals=2)
    path = tmp_path / "gemba.duckdb"
    with open_archive(path) as store:
        HistoryWriter(default_policy()).append(store, ArchiveBatch(events=records))
    orphan = segments_dir(path) / "events-999999999999.parquet"
    orphan.write_bytes(b"written before a crash, never committed")

    assert _count(path, "SELECT count(*) FROM events") == len(records)  # readers ignore it
    with open_archive(path):
        pass
    assert not orphan.exists()


def test_compacted_segments_stay_while_a_reader_may_read_them_and_go_after(
    tmp_path: Path,
) -> None:
    records, _ = _log()
    path = tmp_path / "gemba.duckdb"
    writer = HistoryWriter(default_policy(), value_streams=False)
    with open_archive(path) as store:
        for start in range(0, len(records), 50):
            writer.append(store, ArchiveBatch(events=records[start : start + 50]))
    before = sorted(segments_dir(path).glob("events-*"))
    reader = open_reader(path)
    try:
        with open_archive(path) as store:
            merged = store.compact("events")
        kept_for_reader = all(file.exists() for file in before)
        read_meanwhile = reader.execute("SELECT count(*) FROM events").fetchall()
    finally:
        reader.close()
        del reader
    with open_archive(path) as store:
        store.compact("fold_facts")  # any later commit deletes what no reader holds

    assert merged == len(before) > 1
    assert kept_for_reader and read_meanwhile == [(len(records),)]
    assert not any(file.exists() for file in before)
    assert _count(path, "SELECT count(*) FROM events") == len(records)
