"""Records Faust skipped are read back from Kafka by offset, and the archive holds them all."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from events.producer import ensure_topic
from projections import default_policy
from projections.archive import HistoryWriter, open_archive
from streams.settings import Settings
from streams.simulator import SimulationConfig, history_lines
from streams.worker.missed import MissedRecordReader
from streams.worker.sink import HistorySink
from tests.support.worker_harness import publish

pytestmark = pytest.mark.integration


def _filled(settings: Settings, topic: str, count: int) -> list[tuple[bytes, bytes]]:
    ensure_topic(settings.bootstrap_servers, topic, 1)
    lines = list(history_lines(SimulationConfig(seed=3, deals=4)))[:count]
    messages = [(f"k{n}".encode(), line) for n, line in enumerate(lines)]
    publish(settings.bootstrap_servers, topic, messages)
    return messages


def test_a_range_of_offsets_is_read_back_in_order(kafka_settings: Settings, topic: str) -> None:
    messages = _filled(kafka_settings, topic, 10)
    reader = MissedRecordReader(kafka_settings.bootstrap_servers)

    records = asyncio.run(reader.read(topic, 0, 3, 6))

    assert [r.offset for r in records] == [3, 4, 5, 6]
    assert [(r.key, r.value) for r in records] == messages[3:7]


def test_offsets_past_the_end_of_the_partition_are_not_waited_for(
    kafka_settings: Settings, topic: str
) -> None:
    _filled(kafka_settings, topic, 3)
    reader = MissedRecordReader(kafka_settings.bootstrap_servers)

    assert [r.offset for r in asyncio.run(reader.read(topic, 0, 1, 50))] == [1, 2]


@dataclass
class FakeMessage:
    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    timestamp: float = 1_772_442_000.0
    headers: dict[str, bytes] = field(default_factory=dict)


@dataclass
class FakeEvent:
    message: FakeMessage


@dataclass
class FakeStream:
    acked: list[int] = field(default_factory=list)

    async def ack(self, event: Any) -> bool:
        self.acked.append(event.message.offset)
        return True


def test_the_sink_reads_back_what_it_never_received_and_archives_every_offset(
    kafka_settings: Settings, topic: str, tmp_path: Path
) -> None:
    messages = _filled(kafka_settings, topic, 8)
    sink = HistorySink(
        tmp_path / "gemba.duckdb",
        HistoryWriter(default_policy()),
        MissedRecordReader(kafka_settings.bootstrap_servers),
    )
    stream = FakeStream()
    delivered = [0, 1, 5, 7]  # Faust skipped 2-4 and 6

    async def run() -> None:
        for offset in delivered:
            key, value = messages[offset]
            event = FakeEvent(FakeMessage(topic, 0, offset, value, key))
            await sink.take("events", stream, event)  # type: ignore[arg-type]
        await sink.flush()

    asyncio.run(run())

    connection = open_archive(tmp_path / "gemba.duckdb", read_only=True)
    try:
        held = connection.execute(
            "SELECT source_offset FROM events ORDER BY source_offset"
        ).fetchall()
        gaps = connection.execute("SELECT count(*) FROM offset_gaps").fetchall()
        next_offset = connection.execute("SELECT next_offset FROM offsets").fetchall()
    finally:
        connection.close()
    assert [offset for (offset,) in held] == list(range(8))
    assert gaps == [(0,)]
    assert next_offset == [(8,)]
    assert stream.acked == delivered
