"""The worker's default table store, RocksDB, in a real worker process on the real broker.

A worker stopped (SIGTERM) and started again serves the same counters, roll-ups, deal
pages and open alerts from its local tables, even with its changelogs emptied in
between: it does not read them from their start. A worker SIGKILLed mid-stream, twice,
ends with every message counted once and the pure fold's value streams and roll-ups,
and no alert sent twice or lost.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from projections import default_policy, events_by_deal
from projections.portfolio.rollup import DIMENSIONS, add_vectors
from streams.settings import Settings
from streams.worker.value_streams import ValueStreamFolder
from tests.support.worker_harness import (
    Counts,
    TopicReader,
    TouchStream,
    WorkerProcess,
    WorkerSetup,
    publish,
    realistic_touches,
    wait_for,
)

pytestmark = pytest.mark.integration

DEALS = 120
"""Simulated deals: about four thousand events."""
ROCKSDB = "rocksdb://"


@pytest.fixture(scope="module")
def stream() -> TouchStream:
    return realistic_touches(DEALS, seed=23)


def _rocksdb_setup(settings: Settings, state: Path, **env: str) -> WorkerSetup:
    setup = WorkerSetup.fresh(settings, state / "gemba")
    return replace(setup, store=ROCKSDB, history_sink=False, extra_env=tuple(env.items()))


def _rollups(worker: WorkerProcess) -> dict[str, Any]:
    """Every dimension's roll-ups as the pages show them, zero fields and buckets left out."""
    return _without_zeros({d: worker.page(f"/gemba/rollups/{d}/") or {} for d in DIMENSIONS})


def _without_zeros(rollups: dict[str, dict[str, dict[str, int]]]) -> dict[str, Any]:
    return {
        dimension: {
            name: {field: n for field, n in flat.items() if n}
            for name, flat in buckets.items()
            if any(flat.values())
        }
        for dimension, buckets in rollups.items()
    }


def _pure_rollups(stream: TouchStream) -> dict[str, Any]:
    """The roll-ups summed from the pure fold of every opened deal, as the pages name them."""
    folder = ValueStreamFolder(default_policy())
    sums: dict[str, dict[str, dict[str, int]]] = {dimension: {} for dimension in DIMENSIONS}
    for events in events_by_deal(stream.events).values():
        folded = folder.fold_events(events)
        for key, flat in (folded.contribution if folded else {}).items():
            dimension, value, month = key.split("|", 2)
            bucket = sums[dimension]
            bucket[f"{value}|{month}"] = add_vectors(bucket.get(f"{value}|{month}", {}), flat)
    return _without_zeros(sums)


def _deal_pages(worker: WorkerProcess, stream: TouchStream) -> dict[str, bytes | None]:
    return {
        deal_id: worker.get(f"/gemba/deals/{deal_id}/")
        for deal_id in sorted(events_by_deal(stream.events))
    }


def _open_alerts(worker: WorkerProcess) -> list[Any]:
    page = worker.page("/gemba/alerts/") or {}
    return list(page.get("open", []))


def _settled_alerts(worker: WorkerProcess) -> list[Any]:
    """The open alerts once the live clock has fired what was due (the same over a second)."""
    seen: list[list[Any]] = [_open_alerts(worker)]

    def settled() -> bool | None:
        seen.append(_open_alerts(worker))
        return True if seen[-1] == seen[-2] else None

    with contextlib.suppress(TimeoutError):
        wait_for(settled, timeout_s=30, interval_s=1.0)
    return seen[-1]


@dataclass(frozen=True)
class Served:
    """What a worker's pages say."""

    counts: Counts
    rollups: dict[str, Any]
    deals: dict[str, bytes | None]
    open_alerts: list[Any]

    @classmethod
    def by(cls, worker: WorkerProcess, stream: TouchStream) -> Served:
        counts = worker.counts()
        assert counts is not None, worker.tail()
        alerts = _settled_alerts(worker)
        return cls(counts, _rollups(worker), _deal_pages(worker, stream), alerts)


def _changelog_topics(setup: WorkerSetup) -> list[str]:
    admin = KafkaAdminClient(bootstrap_servers=setup.bootstrap_servers)
    try:
        names = admin.list_topics()
    finally:
        admin.close()
    return sorted(n for n in names if n.startswith(f"{setup.app_id}-") and "changelog" in n)


def _empty_changelogs(setup: WorkerSetup) -> int:
    """Delete every record of the app's changelog topics (the records, not the topics, so
    that their offsets go on); how many there were. A compacted topic refuses deletions,
    so each one is made compacted and deleted first."""
    topics = _changelog_topics(setup)
    admin = KafkaAdminClient(bootstrap_servers=setup.bootstrap_servers)
    consumer = KafkaConsumer(bootstrap_servers=setup.bootstrap_servers, group_id=None)
    try:
        deletable = {"cleanup.policy": "compact,delete"}
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, configs=deletable) for t in topics]
        )
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        ends = consumer.end_offsets(partitions)
        starts = consumer.beginning_offsets(partitions)
        admin.delete_records({tp: end for tp, end in ends.items() if end})
        held = sum(ends[tp] - starts[tp] for tp in partitions)
        after = consumer.beginning_offsets(partitions)
        assert after == ends, "the changelogs still hold records"
        return held
    finally:
        consumer.close()
        admin.close()


def _latest_message(stream: TouchStream) -> tuple[bytes, bytes]:
    """The message of the stream's latest event (published again, it moves the worker's
    "now" to the end of the stream, as in the run before)."""
    latest = max(stream.events, key=lambda event: event.occurred_at)
    for key, value in stream.messages:
        try:
            if orjson.loads(value).get("event_id") == latest.event_id:
                return key, value
        except (orjson.JSONDecodeError, AttributeError):
            continue
    raise AssertionError("the latest event has no message")


def _wait_until_folded(worker: WorkerProcess, rollups: dict[str, Any]) -> None:
    """Wait until the roll-ups are those given: the counters count a message when it is
    taken, the roll-ups once its batch is folded (a catch-up batch takes a while)."""
    with contextlib.suppress(TimeoutError):  # the assertions say what differs
        wait_for(lambda: True if _rollups(worker) == rollups else None, timeout_s=60)


def _ready(worker: WorkerProcess) -> bool | None:
    answer = worker.readiness()
    return True if answer is not None and answer[0] == 200 else None


def test_a_restarted_worker_serves_its_state_from_disk_without_reading_the_changelogs(
    kafka_settings: Settings, tmp_path: Path, stream: TouchStream
) -> None:
    setup = _rocksdb_setup(kafka_settings, tmp_path)
    setup.create_touches_topic()
    publish(setup.bootstrap_servers, setup.touches_topic, stream.messages)
    total = len(stream.messages)
    pure = _pure_rollups(stream)
    worker = WorkerProcess(setup, tmp_path / "worker.log")
    try:
        worker.start()
        first = worker.wait_until_consumed(total, timeout_s=120)
        wait_for(lambda: _ready(worker), timeout_s=30)
        _wait_until_folded(worker, pure)
        before = Served.by(worker, stream)
        worker.stop()
        emptied = _empty_changelogs(setup)

        began = time.monotonic()
        worker.start()
        wait_for(lambda: _ready(worker), timeout_s=60)
        ready_s = time.monotonic() - began
        restored = worker.counts()
        publish(setup.bootstrap_servers, setup.touches_topic, [_latest_message(stream)])
        worker.wait_until_consumed(total + 1, timeout_s=30)
        _wait_until_folded(worker, pure)
        after = Served.by(worker, stream)
    finally:
        worker.stop()

    context = f"{emptied} changelog records deleted; ready {ready_s:.1f}s after the restart"
    assert first == Counts(total, total - len(stream.poison), len(stream.poison))
    assert emptied > total / 2, context  # the tables were all there, and are gone from Kafka
    assert restored == before.counts, context
    assert after.counts == before.counts._replace(
        consumed=total + 1, processed=before.counts.processed + 1
    ), context
    assert after.rollups == before.rollups == pure, context
    assert sum(page is not None for page in before.deals.values()) >= DEALS / 2
    changed = [deal for deal, page in after.deals.items() if page != before.deals[deal]]
    assert not changed, f"{len(changed)} deal pages differ, e.g. {changed[:3]}; {context}"
    # Every stall open before is open still (the live clock may open more meanwhile).
    ids_before = {alert["alert_id"] for alert in before.open_alerts}
    ids_after = {alert["alert_id"] for alert in after.open_alerts}
    assert ids_before, context
    assert ids_before <= ids_after, f"closed by the restart: {ids_before - ids_after}; {context}"
    kept = [e for e in worker.log_events() if e.get("event") == "worker_starting"]
    assert [e["local_tables_kept"] for e in kept] == [False, True], context


def _publish_paced(setup: WorkerSetup, stream: TouchStream, failures: list[BaseException]) -> None:
    try:
        for start in range(0, len(stream.messages), 200):
            chunk = stream.messages[start : start + 200]
            publish(setup.bootstrap_servers, setup.touches_topic, chunk)
            time.sleep(0.1)  # pacing, so that the worker is killed mid-stream
    except BaseException as exc:  # handed to the test thread
        failures.append(exc)


@pytest.fixture
def killed_twice(
    kafka_settings: Settings, tmp_path: Path, stream: TouchStream
) -> Iterator[tuple[WorkerProcess, str]]:
    """A RocksDB worker (event-time alert clock) SIGKILLed twice while the stream arrives,
    restarted each time, left running once it has read the whole stream."""
    setup = _rocksdb_setup(kafka_settings, tmp_path, GEMBA_ALERT_CLOCK="event")
    setup.create_touches_topic()
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    total = len(stream.messages)
    kill_after = sorted([int(total * rng.uniform(0.15, 0.4)), int(total * rng.uniform(0.55, 0.8))])
    failures: list[BaseException] = []
    publisher = threading.Thread(target=_publish_paced, args=(setup, stream, failures))
    worker = WorkerProcess(setup, tmp_path / "worker.log")
    killed_at: list[int] = []
    try:
        worker.start()
        publisher.start()
        for threshold in kill_after:
            reached = worker.wait_past(threshold, timeout_s=90, interval_s=0.05)
            time.sleep(rng.uniform(0, 0.3))  # anywhere in a batch, not only between them
            worker.kill()
            killed_at.append(reached.consumed)
            worker.start()
        publisher.join(timeout=60)
        assert not failures, failures
        worker.wait_until_consumed(total, timeout_s=120)
        yield worker, f"seed {seed}, killed after {killed_at} of {total} consumed"
    finally:
        worker.stop()


def test_a_rocksdb_worker_killed_mid_stream_loses_and_doubles_nothing(
    killed_twice: tuple[WorkerProcess, str], stream: TouchStream
) -> None:
    worker, context = killed_twice
    setup = worker.setup
    total = len(stream.messages)
    expected = stream.expected_value_streams(default_policy())

    _wait_until_folded(worker, _pure_rollups(stream))
    counts = worker.counts()
    value_streams = setup.read_value_streams(expected, timeout_s=60)
    rollups = _rollups(worker)
    opened = {alert["alert_id"] for alert in _open_alerts(worker)}
    with TopicReader(setup.bootstrap_servers, setup.alerts_topic) as reader:
        reader.read_until(
            lambda r: opened <= {orjson.loads(x.value or b"{}")["alert_id"] for x in r.records},
            timeout_s=30,
        )
        reader.poll(1.0)
        sent = [orjson.loads(record.value or b"{}")["alert_id"] for record in reader.records]

    assert worker.starts == 3, context
    assert counts == Counts(total, total - len(stream.poison), len(stream.poison)), context
    keys = expected.keys() | value_streams.keys()
    wrong = [k for k in keys if value_streams.get(k) != expected.get(k)]
    assert not wrong, f"{len(wrong)} value streams differ, e.g. {wrong[:3]}; {context}"
    assert rollups == _pure_rollups(stream), context
    assert opened, f"no open stall to check alerts by; {context}"
    assert len(sent) == len(set(sent)), f"an alert was sent twice; {context}"
    assert opened <= set(sent), f"an open stall's alert was never sent; {context}"
