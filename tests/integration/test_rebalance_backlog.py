"""Workers joining one by one while the first folds a backlog: no partition is left unread;
and a partition whose group offset was committed past records nobody counted is read from
its first record.

The topic is filled before any worker starts; four workers of one app then join one
after another, so the group rebalances while each holds fetched messages it has not
taken yet, and partitions are revoked and given back in the middle of their batches.
Before streams/worker/rebalance.py this lost messages: a partition the group had committed
nothing for kept its old read position when given back (past everything fetched
before), and the skipped messages were acked and committed, so the next owner started
past them too (in one run of two of this scenario, and in every first round of four
workers over 30,000 events).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from projections import default_policy
from streams.settings import Settings
from tests.support.worker_harness import (
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
"""About 6,300 messages: a backlog of several seconds for each worker on this machine."""
PARTITIONS = 8
WORKERS = 4
Partitions = dict[int, dict[str, int]]


@dataclass(frozen=True)
class Backlog:
    """What the workers reported once the backlog was folded."""

    stream: TouchStream
    ends: dict[int, int]
    by_worker: list[Partitions]
    committed: dict[int, int | None]
    value_streams: dict[bytes, bytes | None]
    expected: dict[bytes, bytes]
    rollup_deals: int
    """Deals the workers' owner roll-ups count between them (each counts its partitions')."""


def _partitions(worker: WorkerProcess) -> Partitions:
    page = worker.page("/gemba/counts/") or {"partitions": {}}
    return {int(p): counts for p, counts in page["partitions"].items()}


def _offsets(
    setup: WorkerSetup, partitions: int = PARTITIONS
) -> tuple[dict[int, int], dict[int, int | None]]:
    """The topic's end offsets, and the group's committed offsets, by partition."""
    consumer = KafkaConsumer(
        bootstrap_servers=setup.bootstrap_servers, group_id=setup.app_id,
        enable_auto_commit=False,
    )  # fmt: skip
    try:
        tps = [TopicPartition(setup.touches_topic, p) for p in range(partitions)]
        ends = {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
        return ends, {tp.partition: consumer.committed(tp) for tp in tps}
    finally:
        consumer.close()


def _rollup_deals(workers: list[WorkerProcess]) -> int:
    pages = [worker.page("/gemba/rollups/owner/") or {} for worker in workers]
    return sum(vector.get("deals", 0) for page in pages for vector in page.values())


def _consumed(workers: list[WorkerProcess]) -> int:
    return sum(c["consumed"] for worker in workers for c in _partitions(worker).values())


@pytest.fixture(scope="module")
def backlog(
    kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backlog]:
    stream = realistic_touches(DEALS, seed=23)
    state = tmp_path_factory.mktemp("backlog")
    first = replace(
        WorkerSetup.fresh(kafka_settings, state / "worker-0", fast_rejoin=False),
        partitions=PARTITIONS, history_sink=False,
    )  # fmt: skip
    first.create_touches_topic()
    publish(first.bootstrap_servers, first.touches_topic, stream.messages)
    setups = [first] + [
        first.sibling(state / f"worker-{n}", history_sink=False) for n in range(1, WORKERS)
    ]
    workers = [WorkerProcess(setup, state / f"worker-{n}.log") for n, setup in enumerate(setups)]
    try:
        for worker in workers:  # each start waits for its web server: they join one by one
            worker.start(timeout_s=120)
        total = len(stream.messages)
        with contextlib.suppress(TimeoutError):  # the tests say what is missing
            wait_for(lambda: True if _consumed(workers) >= total else None, timeout_s=300)
        with contextlib.suppress(TimeoutError):  # commits follow the fold by a second or so
            wait_for(lambda: True if _offsets(first)[1] == _offsets(first)[0] else None, 30)
        ends, committed = _offsets(first)
        by_worker = [_partitions(worker) for worker in workers]
        expected = stream.expected_value_streams(default_policy())
        with TopicReader(first.bootstrap_servers, first.value_streams_topic) as reader:
            reader.read_until(lambda r: r.latest_by_key() == expected, timeout_s=60)
            value_streams = reader.latest_by_key()
        opened = len(expected)
        with contextlib.suppress(TimeoutError):  # roll-ups follow the counters by a batch
            wait_for(lambda: True if _rollup_deals(workers) == opened else None, 30)
        rollup_deals = _rollup_deals(workers)
    finally:
        for worker in workers:
            worker.stop()
    yield Backlog(stream, ends, by_worker, committed, value_streams, expected, rollup_deals)


def test_every_partition_is_held_by_exactly_one_worker_at_the_end(backlog: Backlog) -> None:
    held = sorted(p for partitions in backlog.by_worker for p in partitions)

    assert held == list(range(PARTITIONS)), backlog.by_worker


def test_every_offset_of_every_partition_was_counted_from_the_first(backlog: Backlog) -> None:
    read = {
        p: (c["first_offset"], c["last_offset"]) for w in backlog.by_worker for p, c in w.items()
    }

    assert read == {p: (0, end - 1) for p, end in backlog.ends.items()}


def test_consumed_equals_published_and_processed_plus_dead_lettered_equals_consumed(
    backlog: Backlog,
) -> None:
    counts = [c for partitions in backlog.by_worker for c in partitions.values()]
    consumed = sum(c["consumed"] for c in counts)

    assert consumed == len(backlog.stream.messages)
    assert sum(c["processed"] + c["dead_lettered"] for c in counts) == consumed
    assert sum(c["dead_lettered"] for c in counts) == len(backlog.stream.poison)


def test_the_group_committed_every_partition_to_its_end(backlog: Backlog) -> None:
    assert backlog.committed == backlog.ends


def test_every_value_stream_equals_the_pure_fold_of_all_events(backlog: Backlog) -> None:
    assert backlog.value_streams == backlog.expected


def test_the_workers_roll_ups_count_every_opened_deal_once_between_them(backlog: Backlog) -> None:
    assert backlog.rollup_deals == len(backlog.expected)


def test_a_partition_committed_past_records_nobody_counted_is_read_from_its_first_record(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    # What the lost rebalances left behind: the group's offset of partition 0 committed
    # halfway, and no worker's counters holding any of it.
    stream = realistic_touches(12, seed=5)
    setup = replace(
        WorkerSetup.fresh(kafka_settings, tmp_path / "worker"), partitions=2, history_sink=False
    )
    setup.create_touches_topic()
    publish(setup.bootstrap_servers, setup.touches_topic, stream.messages)
    ends, _ = _offsets(setup, partitions=2)
    group = KafkaConsumer(
        bootstrap_servers=setup.bootstrap_servers, group_id=setup.app_id,
        enable_auto_commit=False,
    )  # fmt: skip
    try:
        halfway = TopicPartition(setup.touches_topic, 0)
        group.commit({halfway: OffsetAndMetadata(ends[0] // 2, "", -1)})
    finally:
        group.close()

    with WorkerProcess(setup, tmp_path / "worker.log").start() as worker:
        counts = worker.wait_until_consumed(len(stream.messages), timeout_s=90)
        partitions = _partitions(worker)
        expected = stream.expected_value_streams(default_policy())
        with TopicReader(setup.bootstrap_servers, setup.value_streams_topic) as reader:
            reader.read_until(lambda r: r.latest_by_key() == expected, timeout_s=45)
            value_streams = reader.latest_by_key()
        read_back = [e for e in worker.log_events() if e["event"] == "missed_records_read_back"]

    assert counts.consumed == len(stream.messages)
    assert {p: (c["first_offset"], c["last_offset"]) for p, c in partitions.items()} == {
        p: (0, end - 1) for p, end in ends.items()
    }
    assert value_streams == expected
    assert [(e["partition"], e["first"], e["last"]) for e in read_back] == [
        (0, 0, ends[0] // 2 - 1)
    ]
