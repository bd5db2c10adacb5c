"""Events published by Gemba reach a real Kafka broker whole, once, and in order per deal."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from events import CallLogged, CallOutcome, Direction, EmailLogged, decode, encode
from events.errors import PublishError
from events.producer import KafkaEventPublisher, ensure_topic
from streams.kafka.clients import ensure_topic_for
from streams.settings import Settings

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 2, 9, tzinfo=UTC)


def many_events(count: int, deals: int) -> list[CallLogged | EmailLogged]:
    made: list[CallLogged | EmailLogged] = []
    for n in range(count):
        common = {
            "event_id": f"e-{n}",
            "occurred_at": START + timedelta(minutes=n),
            "account_id": f"acct-{n % deals // 4}",
            "deal_id": f"deal-{n % deals}",
            "actor_id": f"rep-{n % 7}",
        }
        if n % 3:
            made.append(
                CallLogged(
                    **common,
                    direction=Direction.OUTBOUND,
                    outcome=CallOutcome.CONNECTED,
                    duration_seconds=n % 900,
                )
            )
        else:
            made.append(EmailLogged(**common, direction=Direction.OUTBOUND))
    return made


def consume_all(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, bytes, int]]:
    """Read the topic from the start with aiokafka (not the producer's client)."""

    async def run() -> list[tuple[bytes, bytes, int]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        got: list[tuple[bytes, bytes, int]] = []
        try:
            idle = 0
            while len(got) < expected and idle < 10:
                batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
                idle = 0 if batch else idle + 1
                for records in batch.values():
                    got.extend((r.key, r.value, r.partition) for r in records)
            # Anything beyond what was expected would show up within a short wait.
            extra = await consumer.getmany(timeout_ms=500)
            for records in extra.values():
                got.extend((r.key, r.value, r.partition) for r in records)
        finally:
            await consumer.stop()
        return got

    return asyncio.run(run())


def test_ten_thousand_events_arrive_unaltered_once_and_in_order_per_deal(
    kafka_settings: Settings, topic: str
) -> None:
    sent = many_events(10_000, deals=250)
    ensure_topic(kafka_settings.bootstrap_servers, topic, partitions=6)
    with KafkaEventPublisher(kafka_settings.bootstrap_servers, topic) as publisher:
        for event in sent:
            publisher.publish(event)

    received = consume_all(kafka_settings.bootstrap_servers, topic, len(sent))

    assert len(received) == len(sent)
    decoded = [decode(value) for _, value, _ in received]
    assert sorted(decoded, key=lambda e: e.event_id) == sorted(sent, key=lambda e: e.event_id)
    by_deal: dict[str, list[str]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for (key, _, partition), event in zip(received, decoded, strict=True):
        assert key.decode() == event.deal_id
        by_deal[key.decode()].append(event.event_id)
        partitions[key.decode()].add(partition)
    expected: dict[str, list[str]] = defaultdict(list)
    for event in sent:
        expected[str(event.deal_id)].append(event.event_id)
    assert by_deal == expected
    assert all(len(p) == 1 for p in partitions.values())
    assert len({p for ps in partitions.values() for p in ps}) > 1


def test_the_event_topic_keeps_everything_forever(kafka_settings: Settings, topic: str) -> None:
    assert ensure_topic(kafka_settings.bootstrap_servers, topic, partitions=3)
    assert not ensure_topic(kafka_settings.bootstrap_servers, topic, partitions=3)
    admin = KafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    try:
        [described] = admin.describe_topics([topic])
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    assert len(described["partitions"]) == 3
    entries = configs["topic"][topic]
    assert entries["retention.ms"]["value"] == "-1"
    assert entries["retention.bytes"]["value"] == "-1"


def test_gemba_produce_publishes_good_lines_and_reports_every_bad_one(
    kafka_settings: Settings, topic: str, tmp_path: Path
) -> None:
    good = many_events(5, deals=2)
    lines = [encode(e) for e in good]
    lines.insert(1, b'{"type": "call", "event_id": "bad one"}')
    lines.insert(4, b"{not json")
    lines.append(orjson.dumps({**orjson.loads(lines[0]), "occurred_at": "2026-03-02T10:00:00"}))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    result = subprocess.run(
        [sys.executable, "-m", "streams", "produce", str(path), "--topic", topic],
        capture_output=True,
        text=True,
        env=env_for(kafka_settings),
        check=False,
    )

    assert result.returncode == 1, result.stderr
    assert "published 5 event(s)" in result.stdout
    assert "refused 3" in result.stdout
    assert "line 2: event_id: String should match pattern" in result.stderr
    assert "line 5: (event): not valid JSON" in result.stderr
    assert "line 8: occurred_at: Input should have timezone info" in result.stderr
    received = consume_all(kafka_settings.bootstrap_servers, topic, 5)
    assert sorted(decode(v).event_id for _, v, _ in received) == sorted(e.event_id for e in good)


def env_for(settings: Settings) -> dict[str, str]:
    """The environment that points a `gemba` subprocess at the test broker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEMBA_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    env["GEMBA_LOG_FORMAT"] = "json"
    return env


def test_more_replicas_than_brokers_is_refused_naming_the_setting_to_change(
    kafka_settings: Settings, topic: str
) -> None:
    three = kafka_settings.model_copy(update={"topic_replication_factor": 3})

    with pytest.raises(PublishError, match=r"3 replicas: .*GEMBA_TOPIC_REPLICATION_FACTOR .*1 for"):
        ensure_topic_for(three, topic)
