"""SIGKILL at random points while 100,000 events stream in: nothing lost, nothing twice.

One worker (history sink on, event-time alert clock) reads a realistic stream of about
100,000 events (a quarter of the deals shuffled, one event in twenty published twice,
poison messages) while it is being published. It is SIGKILLed several times, each time
once it has read past a point drawn by a seeded generator, and restarted at once. A
fixture records what the worker ended with; the tests compare it with the pure fold of
the same events, as an uninterrupted run would have it: the archive, the value streams,
the roll-ups and the stall alerts.

The seed is new each run and named in every assertion message; set KILL_RECOVERY_SEED to
run the same kill points again.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from events import EventBase
from events.producer import KafkaEventPublisher
from projections import DealNotOpened, deal_value_stream, default_policy, events_by_deal
from projections.archive import (
    archived_events,
    content_hash,
    open_archive,
    replay,
    verify_archive,
)
from projections.deal.alerts import AlertKind, StallAlert, StallThresholds, check_stalls
from projections.portfolio.rollup import DIMENSIONS, add_vectors
from streams.settings import Settings
from streams.worker.value_streams import ValueStreamFolder
from tests.support.worker_harness import (
    Counts,
    TopicReader,
    TouchStream,
    WorkerProcess,
    WorkerSetup,
    realistic_touches,
    wait_for,
)

pytestmark = pytest.mark.integration

DEALS = 3_110
STREAM_SEED = 7
"""100,280 distinct events; 105,302 messages with the copies and the poison."""
KILLS = 3
CHUNK = 1_000
LEAD = 20_000
"""The publisher keeps at most this many messages ahead of what the worker has read, so
that events are still arriving at every kill, however fast or slow the machine is (and
the worker reads them as history, in its large catch-up batches)."""
CATCH_UP_S = 600.0
"""Deadline for any one wait on the worker: generous, the machine is shared and busy (the
worker reads a few hundred messages a second on two busy cores)."""


@dataclass(frozen=True)
class KillSetup(WorkerSetup):
    """A worker with the event-time alert clock: the same log gives the same alerts."""

    def env(self) -> dict[str, str]:
        return super().env() | {"GEMBA_ALERT_CLOCK": "event"}


@dataclass(frozen=True)
class KilledRun:
    """What a worker killed and restarted several times ended with, and what it should have."""

    setup: KillSetup
    stream: TouchStream
    seed: int
    kills: tuple[tuple[int, int], ...]
    """Per SIGKILL: messages the worker had read (its counters said) and messages published."""
    counts: Counts
    expected: dict[bytes, bytes]
    value_streams: dict[bytes, bytes | None]
    expected_rollups: dict[str, dict[str, dict[str, int]]]
    rollups: dict[str, dict[str, dict[str, int]]]
    alerts: list[StallAlert]
    open_expected: frozenset[str]
    """Episode ids of the stalls the pure fold says are open at the end."""
    open_in_worker: frozenset[str]
    seconds: float
    timeline: tuple[str, ...]

    @property
    def context(self) -> str:
        """For assertion messages: how to run these kill points again."""
        return (
            f"seed {self.seed} (KILL_RECOVERY_SEED={self.seed}), killed after "
            f"{[read for read, _ in self.kills]} of {len(self.stream.messages)} messages read"
        )


def _kill_points(rng: random.Random, total: int) -> list[int]:
    """One point in each of KILLS equal stretches of the stream between 5 % and 75 % (the
    publisher is still at work: it stops once the worker has read all but LEAD)."""
    start, end = int(total * 0.05), int(total * 0.75)
    width = (end - start) // KILLS
    return [rng.randrange(start + k * width, start + (k + 1) * width) for k in range(KILLS)]


def _caught_up_to(worker: WorkerProcess, consumed: int) -> bool | None:
    """True once the worker has read `consumed` messages (None also while it is down)."""
    counts = worker.counts()
    return True if consumed <= 0 or (counts is not None and counts.consumed >= consumed) else None


@dataclass
class Alongside:
    """Publishes the stream in a thread of its own while the worker runs (and dies)."""

    worker: WorkerProcess
    messages: Sequence[tuple[bytes, bytes]]
    sent: int = 0
    """Messages acknowledged by Kafka so far."""
    failure: BaseException | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._publish, daemon=True)

    def _publish(self) -> None:
        """Publish in chunks, each once the worker has read to within LEAD of it."""
        setup = self.worker.setup
        try:
            with KafkaEventPublisher(setup.bootstrap_servers, setup.touches_topic) as publisher:
                for start in range(0, len(self.messages), CHUNK):
                    caught_up = functools.partial(_caught_up_to, self.worker, start - LEAD)
                    wait_for(caught_up, timeout_s=CATCH_UP_S)
                    for key, value in self.messages[start : start + CHUNK]:
                        publisher.publish_encoded(key.decode(), value)
                    publisher.flush()
                    self.sent = start + len(self.messages[start : start + CHUNK])
        except BaseException as exc:  # handed to the test thread
            self.failure = exc


def _archive_settled(worker: WorkerProcess, total: int) -> bool | None:
    """True once the archive holds every offset of touches and every deal is refolded."""
    page = worker.page("/gemba/history/")
    if page is None or page["pending"] or page["deals_to_refold"]:
        return None
    prefix = f"{worker.setup.touches_topic}["
    held = sum(n for key, n in page["next_offsets"].items() if key.startswith(prefix))
    return True if held == total else None


def _latest_value_streams(
    setup: WorkerSetup, expected: dict[bytes, bytes], timeout_s: float = 180
) -> dict[bytes, bytes | None]:
    """The latest value of each deal on the value-stream topic, once they equal `expected`
    (or at the deadline, for the test to report). Only the latest is kept: the topic holds
    one record per refold, a few hundred thousand here, too many to keep or sort."""
    latest: dict[bytes, bytes | None] = {}
    consumer = KafkaConsumer(
        bootstrap_servers=setup.bootstrap_servers, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest",
    )  # fmt: skip
    try:
        partitions = consumer.partitions_for_topic(setup.value_streams_topic) or set()
        consumer.assign([TopicPartition(setup.value_streams_topic, p) for p in partitions])
        deadline = time.monotonic() + timeout_s
        while latest != expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500, max_records=20_000).values():
                latest.update((r.key, r.value) for r in records if r.key is not None)
    finally:
        consumer.close()
    return latest


def _pure_rollups(stream: TouchStream) -> dict[str, dict[str, dict[str, int]]]:
    """Each dimension's roll-ups, summed from every opened deal's contribution, as the
    worker's /gemba/rollups/<dimension>/ pages show them ("value|month" -> vector)."""
    folder = ValueStreamFolder(default_policy())
    sums: dict[str, dict[str, dict[str, int]]] = {dimension: {} for dimension in DIMENSIONS}
    for events in events_by_deal(stream.events).values():
        folded = folder.fold_events(events)
        if folded is None:
            continue
        for key, flat in folded.contribution.items():
            dimension, value, month = key.split("|", 2)
            bucket = sums.setdefault(dimension, {})
            name = f"{value}|{month}"
            bucket[name] = add_vectors(bucket.get(name, {}), flat)
    return _without_zeros(sums)


def _without_zeros(
    rollups: dict[str, dict[str, dict[str, int]]],
) -> dict[str, dict[str, dict[str, int]]]:
    """Roll-ups with zero fields and empty buckets left out (subtraction leaves them behind)."""
    kept: dict[str, dict[str, dict[str, int]]] = {}
    for dimension, buckets in rollups.items():
        kept[dimension] = {}
        for name, flat in buckets.items():
            nonzero = {field: n for field, n in flat.items() if n}
            if nonzero:
                kept[dimension][name] = nonzero
    return kept


def _open_stalls(stream: TouchStream, partitions: int) -> frozenset[str]:
    """Episode ids of the stalls open at the end, as the pure core sees them.

    As the worker's event clock does: each deal is judged as of the event time of its
    partition (the producer's: murmur2 of its key), the latest event time of the opened
    deals in it.
    """
    policy = default_policy()
    thresholds = StallThresholds(policy)
    by_deal: dict[str, tuple[int, list[EventBase]]] = {}
    clock: dict[int, datetime] = {}
    for deal_id, events in events_by_deal(stream.events).items():
        partition = (murmur2(events[0].partition_key.encode()) & 0x7FFFFFFF) % partitions
        try:
            as_of = deal_value_stream(events, policy).as_of
        except DealNotOpened:
            continue
        by_deal[deal_id] = (partition, events)
        clock[partition] = max(clock.get(partition, as_of), as_of)
    open_ids: set[str] = set()
    for partition, events in by_deal.values():
        at_the_end = deal_value_stream(events, policy, clock[partition])
        check = check_stalls(at_the_end, events[0].account_id, thresholds)
        open_ids |= check.ledger.open.keys()
    return frozenset(open_ids)


def _alerts_in(reader: TopicReader) -> list[StallAlert]:
    return [StallAlert.model_validate_json(record.value or b"") for record in reader.records]


def _read_alerts(setup: WorkerSetup, open_expected: frozenset[str]) -> list[StallAlert]:
    """Every alert on the topic, once each open stall has its alert and none came for 3 s."""

    def all_open_alerted(reader: TopicReader) -> bool:
        stalled = {a.episode_id for a in _alerts_in(reader) if a.kind is AlertKind.STALLED}
        return open_expected <= stalled

    with TopicReader(setup.bootstrap_servers, setup.alerts_topic) as reader:
        reader.read_until(all_open_alerted, timeout_s=60)
        quiet = 0.0
        while quiet < 3.0:
            quiet = 0.0 if reader.poll(0.5) else quiet + 0.5
        return _alerts_in(reader)


def _rollups(worker: WorkerProcess) -> dict[str, dict[str, dict[str, int]]]:
    return _without_zeros({d: worker.page(f"/gemba/rollups/{d}/") or {} for d in DIMENSIONS})


def _seed() -> int:
    given = os.environ.get("KILL_RECOVERY_SEED")
    return int(given) if given else secrets.randbelow(2**32)


@pytest.fixture(scope="module")
def killed(
    kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KilledRun]:
    began = time.monotonic()
    seed = _seed()
    stream = realistic_touches(DEALS, seed=STREAM_SEED)
    messages, total = stream.messages, len(stream.messages)
    points = _kill_points(random.Random(seed), total)
    expected = stream.expected_value_streams(default_policy())
    state = tmp_path_factory.mktemp("kill-recovery")
    setup = KillSetup(kafka_settings.bootstrap_servers, state / "gemba")
    setup.create_touches_topic()
    open_expected = _open_stalls(stream, setup.partitions)
    worker = WorkerProcess(setup, state / "worker.log")
    publisher = Alongside(worker, messages)
    kills: list[tuple[int, int]] = []
    timeline: list[str] = []

    def mark(what: str) -> None:
        timeline.append(f"{time.monotonic() - began:.0f} s {what}")

    try:
        mark("pure fold done")
        worker.start()
        publisher.thread.start()
        for point in points:
            read = worker.wait_past(point, CATCH_UP_S).consumed
            kills.append((read, publisher.sent))
            worker.kill()
            mark(f"SIGKILL at {read:,} read, {publisher.sent:,} published")
            worker.start(timeout_s=CATCH_UP_S)
        publisher.thread.join(timeout=CATCH_UP_S)
        assert not publisher.thread.is_alive(), f"still publishing; seed {seed}"
        assert publisher.failure is None, f"{publisher.failure!r}; seed {seed}"
        mark("all published")
        counts = worker.wait_until_consumed(total, timeout_s=CATCH_UP_S)
        mark("all read")
        wait_for(lambda: _archive_settled(worker, total), timeout_s=CATCH_UP_S)
        mark("all archived")
        value_streams = _latest_value_streams(setup, expected)
        mark("value streams read")
        rollups = _rollups(worker)
        alerts = _read_alerts(setup, open_expected)
        open_page = worker.page("/gemba/alerts/") or {"open": []}
        ids_on_topic = {alert.alert_id for alert in alerts}
        with contextlib.suppress(TimeoutError):  # the test on the archive's alerts says what
            wait_for(
                lambda: (
                    True
                    if {r[0] for r in setup.query_archive("SELECT alert_id FROM alerts") or []}
                    == ids_on_topic
                    else None
                ),
                timeout_s=60,
            )
        mark("alerts read")
    finally:
        worker.stop()
    yield KilledRun(
        setup=setup, stream=stream, seed=seed, kills=tuple(kills), counts=counts,
        expected=expected, value_streams=value_streams,
        expected_rollups=_pure_rollups(stream), rollups=rollups, alerts=alerts,
        open_expected=open_expected,
        open_in_worker=frozenset(alert["episode_id"] for alert in open_page["open"]),
        seconds=time.monotonic() - began, timeline=tuple(timeline),
    )  # fmt: skip


@pytest.fixture
def archive(killed: KilledRun) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_archive(killed.setup.archive, read_only=True)
    yield connection
    connection.close()


def test_the_worker_was_killed_several_times_while_events_were_still_arriving(
    killed: KilledRun,
) -> None:
    total = len(killed.stream.messages)
    print(f"{killed.context}; {killed.seconds:.0f} s in all:", *killed.timeline, sep="\n  ")

    assert len(killed.stream.events) >= 100_000
    assert len(killed.kills) >= 3, killed.context
    assert all(read < total and sent < total for read, sent in killed.kills), killed.context


def test_every_message_is_read_once_and_has_an_outcome(killed: KilledRun) -> None:
    sent, poison = len(killed.stream.messages), len(killed.stream.poison)

    assert killed.counts == Counts(sent, sent - poison, poison), killed.context


def test_the_archive_holds_every_event_exactly_once(
    killed: KilledRun, archive: duckdb.DuckDBPyConnection
) -> None:
    stream = killed.stream
    ids = [event_id for (event_id,) in archive.execute("SELECT event_id FROM events").fetchall()]
    twice = [event_id for event_id, n in Counter(ids).items() if n > 1]
    [(offsets,)] = archive.execute(
        "SELECT sum(next_offset) FROM offsets WHERE topic = ?", [killed.setup.touches_topic]
    ).fetchall()

    assert not twice, f"{len(twice)} events archived twice, e.g. {twice[:5]}; {killed.context}"
    assert len(ids) == len(stream.events), killed.context
    assert set(ids) == {event.event_id for event in stream.events}, killed.context
    assert archive.execute("SELECT count(*) FROM duplicates").fetchall() == [(stream.duplicates,)]
    assert offsets == len(stream.messages), killed.context
    assert archive.execute("SELECT count(*) FROM offset_gaps").fetchall() == [(0,)]
    assert verify_archive(archive).intact, killed.context


def test_every_value_stream_the_worker_published_equals_the_pure_fold(
    killed: KilledRun,
) -> None:
    got, expected = killed.value_streams, killed.expected
    wrong = sorted(
        k.decode() for k in expected.keys() | got.keys() if got.get(k) != expected.get(k)
    )
    streaming = content_hash({k.decode(): v or b"" for k, v in got.items()})

    assert not wrong, f"{len(wrong)} deals differ, e.g. {wrong[:5]}; {killed.context}"
    assert streaming == content_hash({k.decode(): v for k, v in expected.items()})


def test_the_archive_replays_to_the_same_content_hash_and_value_streams(
    killed: KilledRun, archive: duckdb.DuckDBPyConnection
) -> None:
    documents = {
        deal_id.encode(): document.encode()
        for deal_id, document in archive.execute(
            "SELECT deal_id, value_stream FROM vs_deals"
        ).fetchall()
    }
    replayed = replay(archived_events(archive), default_policy())
    streaming = content_hash({k.decode(): v or b"" for k, v in killed.value_streams.items()})

    assert documents == killed.expected, killed.context
    assert replayed.content_hash == streaming, killed.context


def test_the_rollups_equal_the_sum_of_the_pure_contributions(killed: KilledRun) -> None:
    for dimension in DIMENSIONS:
        got, expected = killed.rollups[dimension], killed.expected_rollups[dimension]
        wrong = sorted(k for k in got.keys() | expected.keys() if got.get(k) != expected.get(k))
        assert not wrong, f"{dimension}: {len(wrong)} buckets differ, e.g. {wrong[:3]}; " + (
            killed.context
        )


def test_no_stall_episode_is_alerted_twice(killed: KilledRun) -> None:
    sent = Counter((a.kind.value, a.deal_id, a.episode_id) for a in killed.alerts)
    repeated = {alert: n for alert, n in sent.items() if n > 1}
    starts = Counter(a.episode_id for a in killed.alerts if a.kind is AlertKind.STALLED)

    assert killed.alerts, killed.context
    assert not repeated, f"alerted more than once: {repeated}; {killed.context}"
    assert all(n == 1 for n in starts.values()), killed.context


def test_every_stall_open_at_the_end_was_alerted_and_is_open_in_the_worker(
    killed: KilledRun,
) -> None:
    alerted = {a.episode_id for a in killed.alerts if a.kind is AlertKind.STALLED}
    missing = killed.open_expected - alerted

    assert killed.open_expected, "the stream should leave some deals stalled"
    assert not missing, f"{len(missing)} open stalls never alerted; {killed.context}"
    assert killed.open_in_worker == killed.open_expected, killed.context


def test_the_archive_keeps_each_alert_once(
    killed: KilledRun, archive: duckdb.DuckDBPyConnection
) -> None:
    [(rows, ids)] = archive.execute(
        "SELECT count(*), count(DISTINCT alert_id) FROM alerts"
    ).fetchall()

    assert rows == ids == len({alert.alert_id for alert in killed.alerts}), killed.context
