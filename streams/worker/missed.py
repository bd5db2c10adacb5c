"""Records Faust never delivered to an agent, read back from Kafka by offset.

A rebalance can make Faust skip messages: its stream drops messages of an older
consumer generation, and a partition given back can keep a read position past them
(streams/worker/rebalance.py says how, and keeps such messages from being committed unread,
so that they are fetched again). The worker's agents also watch each partition's
offsets, as a second line: a jump forward from the last offset counted (or from the
partition's first record, when none was) is a gap, and the missing records are read
here, straight from the topic, before the agent goes on. Reading them twice is
harmless: every write downstream is idempotent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from kafka import KafkaConsumer, TopicPartition

from streams.kafka.clients import kafka_client_options
from streams.settings import Settings

__all__ = ["MissedRecord", "MissedRecordReader"]

log = structlog.get_logger("gemba.worker")
READ_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class MissedRecord:
    """One record read back by offset."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class MissedRecordReader:
    """Reads offset ranges of a partition with a consumer of its own (no group, no commits)."""

    bootstrap_servers: str
    client_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """TLS and SASL options for the consumer (streams.kafka.clients.kafka_client_options)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> MissedRecordReader:
        """A reader that connects as every other client of these settings does."""
        return cls(settings.bootstrap_servers, kafka_client_options(settings))

    async def read(self, topic: str, partition: int, first: int, last: int) -> list[MissedRecord]:
        """The records at offsets first..last (fewer if some no longer exist), in offset order."""
        records = await asyncio.get_running_loop().run_in_executor(
            None, self._read, topic, partition, first, last
        )
        log.warning(
            "missed_records_read_back", topic=topic, partition=partition, first=first, last=last,
            found=len(records),
        )  # fmt: skip
        return records

    def _read(self, topic: str, partition: int, first: int, last: int) -> list[MissedRecord]:
        tp = TopicPartition(topic, partition)
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", **self.client_options,
        )  # fmt: skip
        try:
            consumer.assign([tp])
            start = max(first, consumer.beginning_offsets([tp])[tp])
            end = min(last + 1, consumer.end_offsets([tp])[tp])
            if start >= end:
                return []
            consumer.seek(tp, start)
            found: list[MissedRecord] = []
            deadline = time.monotonic() + READ_TIMEOUT_S
            while consumer.position(tp) < end and time.monotonic() < deadline:
                for record in consumer.poll(timeout_ms=500).get(tp, []):
                    if start <= record.offset < end:
                        found.append(_missed(record))
            return found
        finally:
            consumer.close()


def _missed(record: object) -> MissedRecord:
    headers = tuple((str(k), bytes(v)) for k, v in (getattr(record, "headers", None) or []))
    return MissedRecord(
        topic=record.topic,  # type: ignore[attr-defined]
        partition=record.partition,  # type: ignore[attr-defined]
        offset=record.offset,  # type: ignore[attr-defined]
        timestamp_ms=record.timestamp,  # type: ignore[attr-defined]
        key=record.key,  # type: ignore[attr-defined]
        value=record.value or b"",  # type: ignore[attr-defined]
        headers=headers,
    )
