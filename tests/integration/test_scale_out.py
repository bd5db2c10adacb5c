"""Scale-out on the real broker: two workers of one app share a six-partition topic, and
when one stops the other takes its partitions, tables and all.

One scenario, in three acts, recorded by a fixture: the first worker folds a third of a
realistic stream alone; a second worker (same app id, so same consumer group, tables and
topics; its own state directory and web port; no history sink) joins and the next third
is shared between them; then the second is stopped (SIGTERM) while the last third flows,
and the first carries on alone. The tests then say what must hold.
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from events import DealOpened, EventRejected, decode
from projections import default_policy
from projections.archive import open_archive
from streams.settings import Settings
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

DEALS = 30
"""About 2,900 messages: a thousand in each act."""
RECOVERY_STALL_ENV = (("GEMBA_RECOVERY_STALL_TIMEOUT_S", "45"),)
"""A recovery that stalls (it did once in CI: streams/worker/liveness.py) is reported, with
what the consumer fetched, and the worker exits, before the fixture gives up at 90 s."""

Partitions = dict[int, dict[str, int]]
"""A worker's counters page by source partition: consumed, processed, dead_lettered and the
range of offsets read (first_offset, last_offset)."""


@dataclass(frozen=True)
class ScaleOut:
    """What the two workers reported in each act, and what the survivor ended with."""

    stream: TouchStream
    expected: dict[bytes, bytes]
    ends: list[dict[int, int]]
    """The topic's end offsets after each act's messages were published."""
    alone: Partitions
    shared: tuple[Partitions, Partitions]
    survivor: Partitions
    survivor_counts: Counts
    value_streams: dict[bytes, bytes | None]
    archived: int | None
    """Offsets of the topic the survivor's archive holds."""
    archive: Path
    stopped_after: int
    """Messages consumed (by both) when the second worker was stopped."""
    shared_rollup_deals: tuple[int, int]
    """Deals counted in the owner roll-ups of the first and second worker, while shared."""
    opened_by_then: int
    """Deals opened in the messages of the first two acts."""
    survivor_rollup_deals: int
    """Deals counted in the survivor's owner roll-ups at the end."""


def _partitions(worker: WorkerProcess) -> Partitions:
    page = worker.page("/gemba/counts/") or {"partitions": {}}
    return {int(p): counts for p, counts in page["partitions"].items()}


def _read_up_to(partitions: Partitions) -> dict[int, int]:
    """Per partition, the next offset after the last one counted."""
    return {p: c["last_offset"] + 1 for p, c in partitions.items() if c["last_offset"] >= 0}


def _progress(*workers: WorkerProcess) -> dict[int, int]:
    """Per partition, the furthest any of the workers has read."""
    furthest: dict[int, int] = {}
    for worker in workers:
        for p, n in _read_up_to(_partitions(worker)).items():
            furthest[p] = max(furthest.get(p, 0), n)
    return furthest


def _caught_up(ends: dict[int, int], *workers: WorkerProcess) -> bool | None:
    progress = _progress(*workers)
    return True if all(progress.get(p, 0) >= n for p, n in ends.items() if n) else None


def _end_offsets(setup: WorkerSetup) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=setup.bootstrap_servers)
    try:
        tps = [TopicPartition(setup.touches_topic, p) for p in range(setup.partitions)]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def _ready(worker: WorkerProcess) -> bool | None:
    """True once the worker's /ready page says 200 (partitions assigned, tables recovered)."""
    try:
        with urllib.request.urlopen(worker.setup.base_url + "/ready", timeout=5) as response:
            return True if response.status == 200 else None
    except (urllib.error.HTTPError, OSError):
        return None


def _opened_deals(messages: Sequence[tuple[bytes, bytes]]) -> int:
    """Deals whose deal_opened event is among the messages."""
    opened = set()
    for _, value in messages:
        with contextlib.suppress(EventRejected):
            event = decode(value)
            if isinstance(event, DealOpened):
                opened.add(event.deal_id)
    return len(opened)


def _rollup_deals(worker: WorkerProcess) -> int:
    """Deals the worker's owner roll-ups count (each opened deal once, under its owner)."""
    page = worker.page("/gemba/rollups/owner/") or {}
    return sum(vector.get("deals", 0) for vector in page.values())


def _rollups_settle(expected: int, *workers: WorkerProcess) -> tuple[int, ...]:
    """Each worker's roll-up deal count, once their sum is `expected` (or after 30 s):
    roll-ups follow the counters by a batch."""
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: True if sum(map(_rollup_deals, workers)) == expected else None, 30)
    return tuple(map(_rollup_deals, workers))


def _publish_paced(
    setup: WorkerSetup, messages: Any, failures: list[BaseException], chunk: int = 50
) -> None:
    """Publish over a few seconds, so that a worker can be stopped while events flow."""
    try:
        for start in range(0, len(messages), chunk):
            publish(setup.bootstrap_servers, setup.touches_topic, messages[start : start + chunk])
            time.sleep(0.2)  # pacing, not an assertion
    except BaseException as exc:  # handed to the test thread
        failures.append(exc)


@pytest.fixture(scope="module")
def scale_out(
    kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ScaleOut]:
    stream = realistic_touches(DEALS, seed=17)
    messages = stream.messages
    third = len(messages) // 3
    acts = [messages[:third], messages[third : 2 * third], messages[2 * third :]]
    state = tmp_path_factory.mktemp("scale-out")
    first_setup = replace(
        WorkerSetup.fresh(kafka_settings, state / "first", fast_rejoin=False),
        extra_env=RECOVERY_STALL_ENV,
    )
    second_setup = first_setup.sibling(state / "second", history_sink=False)
    first_setup.create_touches_topic()
    first = WorkerProcess(first_setup, state / "first.log")
    second = WorkerProcess(second_setup, state / "second.log")
    ends: list[dict[int, int]] = []
    failures: list[BaseException] = []
    try:
        first.start()
        publish(first_setup.bootstrap_servers, first_setup.touches_topic, acts[0])
        ends.append(_end_offsets(first_setup))
        wait_for(lambda: _caught_up(ends[0], first), timeout_s=60)
        alone = _partitions(first)

        second.start()
        wait_for(lambda: _ready(second) and _ready(first), timeout_s=60)
        publish(first_setup.bootstrap_servers, first_setup.touches_topic, acts[1])
        ends.append(_end_offsets(first_setup))
        wait_for(lambda: _caught_up(ends[1], first, second), timeout_s=60)
        shared = (_partitions(first), _partitions(second))
        opened_by_then = _opened_deals(messages[: 2 * third])
        shared_rollup_deals = _rollups_settle(opened_by_then, first, second)

        publisher = threading.Thread(target=_publish_paced, args=(first_setup, acts[2], failures))
        publisher.start()
        halfway = sum(ends[1].values()) + len(acts[2]) // 3
        wait_for(
            lambda: True if sum(_progress(first, second).values()) >= halfway else None,
            timeout_s=60,
            interval_s=0.05,
        )
        stopped_after = sum(_progress(first, second).values())
        second.stop()
        publisher.join(timeout=60)
        ends.append(_end_offsets(first_setup))
        survivor_counts = first.wait_until_consumed(len(messages), timeout_s=90)
        expected = stream.expected_value_streams(default_policy())
        with TopicReader(first_setup.bootstrap_servers, first_setup.value_streams_topic) as reader:
            reader.read_until(lambda r: r.latest_by_key() == expected, timeout_s=45)
            value_streams = reader.latest_by_key()
        archived = first.wait_until_archived(len(messages))
        survivor = _partitions(first)
        (survivor_rollup_deals,) = _rollups_settle(_opened_deals(messages), first)
    finally:
        second.stop()
        first.stop()
    assert not failures, failures
    yield ScaleOut(
        stream=stream, expected=expected, ends=ends, alone=alone, shared=shared,
        survivor=survivor, survivor_counts=survivor_counts, value_streams=value_streams,
        archived=archived, archive=first_setup.archive, stopped_after=stopped_after,
        shared_rollup_deals=(shared_rollup_deals[0], shared_rollup_deals[1]),
        opened_by_then=opened_by_then, survivor_rollup_deals=survivor_rollup_deals,
    )  # fmt: skip


ALL = set(range(6))


def _advanced(partitions: Partitions, since: dict[int, int]) -> set[int]:
    """The partitions read further than `since`: the ones this worker held meanwhile."""
    return {p for p, n in _read_up_to(partitions).items() if n > since.get(p, 0)}


def test_a_worker_alone_reads_every_partition(scale_out: ScaleOut) -> None:
    assert set(scale_out.alone) == ALL
    assert _read_up_to(scale_out.alone) == scale_out.ends[0]


def test_two_workers_of_one_app_share_the_partitions_each_reading_a_part(
    scale_out: ScaleOut,
) -> None:
    first, second = (_advanced(page, scale_out.ends[0]) for page in scale_out.shared)

    assert first and second
    assert not first & second
    assert first | second == ALL


def test_each_worker_reports_only_its_own_partitions_and_their_sum_is_what_was_read(
    scale_out: ScaleOut,
) -> None:
    first, second = scale_out.shared
    consumed = sum(c["consumed"] for page in scale_out.shared for c in page.values())

    assert not set(first) & set(second)
    assert consumed == sum(scale_out.ends[1].values())


def test_each_worker_rolls_up_only_the_deals_of_its_partitions_so_none_is_counted_twice(
    scale_out: ScaleOut,
) -> None:
    first, second = scale_out.shared_rollup_deals

    assert first and second
    assert first + second == scale_out.opened_by_then


def test_the_survivors_roll_ups_count_every_opened_deal_once(scale_out: ScaleOut) -> None:
    assert scale_out.survivor_rollup_deals == _opened_deals(scale_out.stream.messages)


def test_the_second_worker_was_stopped_while_events_flowed(scale_out: ScaleOut) -> None:
    assert sum(scale_out.ends[1].values()) < scale_out.stopped_after
    assert scale_out.stopped_after < len(scale_out.stream.messages)


def test_the_survivor_takes_every_partition_and_its_counters_reconcile(
    scale_out: ScaleOut,
) -> None:
    sent, poison = len(scale_out.stream.messages), len(scale_out.stream.poison)

    assert _read_up_to(scale_out.survivor) == scale_out.ends[2]
    assert all(c["consumed"] == c["processed"] + c["dead_lettered"]
               for c in scale_out.survivor.values())  # fmt: skip
    assert scale_out.survivor_counts == Counts(sent, sent - poison, poison)


def test_every_value_stream_equals_the_pure_fold_of_all_events_as_one_worker_makes_it(
    scale_out: ScaleOut,
) -> None:
    got, expected = scale_out.value_streams, scale_out.expected
    wrong = {k.decode() for k in expected.keys() | got.keys() if got.get(k) != expected.get(k)}

    assert not wrong, f"{len(wrong)} of {len(expected)} deals differ: {sorted(wrong)[:5]}"


def test_the_survivors_own_archive_holds_every_event_once(scale_out: ScaleOut) -> None:
    connection = open_archive(scale_out.archive, read_only=True)
    try:
        rows, ids = connection.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM events"
        ).fetchall()[0]
        gaps = connection.execute("SELECT count(*) FROM offset_gaps").fetchall()[0][0]
    finally:
        connection.close()

    assert scale_out.archived == len(scale_out.stream.messages)
    assert rows == ids == len(scale_out.stream.events)
    assert gaps == 0
