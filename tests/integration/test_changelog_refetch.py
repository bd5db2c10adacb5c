"""Changelog records Faust drops because they came back while the flow was stopped are
fetched again (streams/worker/rebalance.py), against the real broker, unless something
(recovery's own seek) moved the partition's position meanwhile."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faust.types import TP

from events.producer import ensure_topic
from streams.settings import Settings
from streams.worker.rebalance import fetch_again

pytestmark = pytest.mark.integration

RECORDS = 10


async def _consumer_at_the_end(servers: str, topic: str) -> AIOKafkaConsumer:
    """A consumer that has fetched (and so moved past) every record of the topic's partition."""
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        for n in range(RECORDS):
            await producer.send_and_wait(topic, f"record {n}".encode(), partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False,
                                auto_offset_reset="earliest")  # fmt: skip
    await consumer.start()
    consumer.assign([TopicPartition(topic, 0)])
    fetched = 0
    while fetched < RECORDS:
        batch = await consumer.getmany(timeout_ms=2000)
        fetched += sum(len(records) for records in batch.values())
    return consumer


async def _offsets_fetched(consumer: AIOKafkaConsumer) -> list[int]:
    batch = await consumer.getmany(timeout_ms=2000)
    return [record.offset for records in batch.values() for record in records]


def test_dropped_changelog_records_are_fetched_again_from_the_first_dropped(
    kafka_settings: Settings,
) -> None:
    topic = f"refetch-{uuid.uuid4().hex[:8]}-changelog"
    ensure_topic(kafka_settings.bootstrap_servers, topic, 1)

    async def scenario() -> tuple[list[TP], list[int]]:
        consumer = await _consumer_at_the_end(kafka_settings.bootstrap_servers, topic)
        try:
            again = await fetch_again(consumer, {TP(topic, 0): (4, RECORDS)})
            return again, await _offsets_fetched(consumer)
        finally:
            await consumer.stop()

    again, offsets = asyncio.run(scenario())

    assert again == [TP(topic, 0)]
    assert offsets == list(range(4, RECORDS))


def test_a_partition_sought_elsewhere_since_the_fetch_is_left_where_it_was_sought(
    kafka_settings: Settings,
) -> None:
    topic = f"refetch-{uuid.uuid4().hex[:8]}-changelog"
    ensure_topic(kafka_settings.bootstrap_servers, topic, 1)

    async def scenario() -> tuple[list[TP], list[int]]:
        consumer = await _consumer_at_the_end(kafka_settings.bootstrap_servers, topic)
        try:
            consumer.seek(TopicPartition(topic, 0), 7)  # as recovery seeks its changelogs
            again = await fetch_again(consumer, {TP(topic, 0): (4, RECORDS)})
            return again, await _offsets_fetched(consumer)
        finally:
            await consumer.stop()

    again, offsets = asyncio.run(scenario())

    assert again == []
    assert offsets == list(range(7, RECORDS))
