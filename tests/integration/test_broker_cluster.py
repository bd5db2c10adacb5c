"""A three-node KRaft cluster (replication 3, min.insync.replicas 2) loses a node mid-stream.

Gemba's own code starts three combined controller+broker nodes on 127.0.0.1 (as the
Strimzi node pool of deploy/k8s runs them), a real `gemba worker` folds a realistic
stream while a producer (acks=all, idempotent) publishes it, and the node that leads
the KRaft quorum, and with it a third of the partitions, is SIGKILLed half-way. Nothing
is lost or counted twice, the value streams equal the pure fold, the same worker process
carries on, and the node, started again, rejoins the in-sync replicas of every partition.

One run, in a module fixture; the tests say one by one what must hold.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient

from events.producer import KafkaEventPublisher
from projections import default_policy
from streams.kafka.broker import (
    CLUSTER_REPLICATION_FACTOR,
    LocalCluster,
    kill_node,
    start_cluster,
    start_node,
    stop_cluster,
)
from streams.settings import Settings
from tests.support.worker_harness import (
    Counts,
    TouchStream,
    WorkerProcess,
    WorkerSetup,
    free_port,
    realistic_touches,
    wait_for,
)

pytestmark = pytest.mark.integration

DEALS = 200
"""8,218 distinct events; 8,636 messages with the copies and the poison."""
NODE_HEAP_MB = 384
CHUNK = 250
LEAD = 1_500
"""The publisher stays at most this many messages ahead of what the worker has read, so
that it is still publishing when the node dies, and after."""
KILL_AT = 1 / 3
"""The node is killed once the worker has read this share of the stream."""
WAIT_S = 120.0


@dataclass
class Publisher:
    """Publishes the stream in a thread, in chunks, a little ahead of the worker."""

    worker: WorkerProcess
    messages: Sequence[tuple[bytes, bytes]]
    sent: int = 0
    failure: BaseException | None = None
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._publish, daemon=True)

    def _ahead(self, start: int) -> bool | None:
        counts = self.worker.counts()
        return True if counts is not None and counts.consumed >= start - LEAD else None

    def _publish(self) -> None:
        setup = self.worker.setup
        try:
            with KafkaEventPublisher(setup.bootstrap_servers, setup.touches_topic) as publisher:
                for start in range(0, len(self.messages), CHUNK):
                    wait_for(lambda start=start: self._ahead(start), timeout_s=WAIT_S)
                    for key, value in self.messages[start : start + CHUNK]:
                        publisher.publish_encoded(key.decode(), value)
                    publisher.flush()
                    self.sent = min(start + CHUNK, len(self.messages))
        except BaseException as exc:  # handed to the test thread
            self.failure = exc


@dataclass(frozen=True)
class NodeLost:
    """What the worker and the cluster did while a node was down and after it came back."""

    stream: TouchStream
    setup: WorkerSetup
    killed: int
    """The KRaft node id killed: the quorum's leader when it was killed."""
    led_touches: frozenset[int]
    """Partitions of touches the killed node led when it was killed."""
    at_kill: tuple[int, int]
    """(messages the worker had read, messages acknowledged by Kafka) at the kill."""
    counts: Counts
    publish_failure: BaseException | None
    worker_alive: bool
    worker_starts: int
    value_streams: dict[bytes, bytes | None]
    expected: dict[bytes, bytes]
    archived: int | None
    archive_rows: tuple[int, int]
    """(events archived, distinct event ids archived)."""
    replicas: dict[str, list[int]]
    """Per topic the worker uses: the number of replicas of each partition."""
    leaders_after_kill: dict[str, list[int]]
    rejoined: dict[str, list[str]] | None
    """Partitions without the restarted node in their ISR at the deadline ({} when none)."""
    timeline: tuple[str, ...]


def _partitions(admin: KafkaAdminClient, topics: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each topic's partition metadata (leader, replicas, ISR), by topic name."""
    described = admin.describe_topics(topics)
    return {
        t["name"]: sorted(t["partitions"], key=lambda p: p["partition_index"]) for t in described
    }


def _worker_topics(admin: KafkaAdminClient, setup: WorkerSetup) -> list[str]:
    """Every topic of this worker: its named topics, changelogs and the assignor's topic."""
    return sorted(
        name for name in admin.list_topics() if name.startswith((setup.tag, setup.app_id))
    )


def _quorum_leader(admin: KafkaAdminClient) -> int:
    quorum = admin.describe_metadata_quorum()
    leader: int = quorum["topics"][0]["partitions"][0]["leader_id"]
    return leader


def _missing_from_isr(
    admin: KafkaAdminClient, topics: list[str], node_id: int
) -> dict[str, list[str]] | None:
    """Partitions whose ISR lacks `node_id`; None while some do (for wait_for), {} when none."""
    lacking = {
        topic: [str(p["partition_index"]) for p in partitions if node_id not in p["isr_nodes"]]
        for topic, partitions in _partitions(admin, topics).items()
    }
    lacking = {topic: ids for topic, ids in lacking.items() if ids}
    return None if lacking else {}


def _counts_at_the_end(worker: WorkerProcess, total: int) -> Counts:
    """The counts once the worker has read `total` messages; at the deadline (or the
    worker's death), the last it reported, for the tests to judge."""
    try:
        return worker.wait_until_consumed(total, timeout_s=WAIT_S)
    except (TimeoutError, RuntimeError):
        return worker.counts() or Counts(-1, -1, -1)


def _lose_a_node(cluster: LocalCluster, state: Path) -> NodeLost:
    began = time.monotonic()
    timeline: list[str] = []

    def mark(what: str) -> None:
        timeline.append(f"{time.monotonic() - began:.0f} s {what}")

    stream = realistic_touches(DEALS, seed=11)
    messages, total = stream.messages, len(stream.messages)
    setup = WorkerSetup(
        cluster.bootstrap_servers, state / "gemba", replication=CLUSTER_REPLICATION_FACTOR
    )
    setup.create_touches_topic()
    worker = WorkerProcess(setup, state / "worker.log")
    publisher = Publisher(worker, messages)
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    try:
        worker.start(timeout_s=WAIT_S)
        mark("worker serving")
        publisher.thread.start()
        read = worker.wait_past(int(total * KILL_AT), WAIT_S).consumed
        killed = _quorum_leader(admin)
        touches = _partitions(admin, [setup.touches_topic])[setup.touches_topic]
        led = frozenset(p["partition_index"] for p in touches if p["leader_id"] == killed)
        at_kill = (read, publisher.sent)
        kill_node(cluster, killed)
        mark(f"SIGKILL node {killed} at {read:,} read, {publisher.sent:,} published")
        publisher.thread.join(timeout=WAIT_S)
        mark(f"published {publisher.sent:,}")
        counts = _counts_at_the_end(worker, total)
        mark(f"worker read {counts.consumed:,}")
        expected = stream.expected_value_streams(default_policy())
        value_streams = setup.read_value_streams(expected, timeout_s=60)
        archived = worker.wait_until_archived(total)
        mark("value streams read, archive settled")
        topics = _worker_topics(admin, setup)
        described = _partitions(admin, topics)
        replicas = {t: [len(p["replica_nodes"]) for p in ps] for t, ps in described.items()}
        leaders = {t: [p["leader_id"] for p in ps] for t, ps in described.items()}
        worker_alive, worker_starts = worker.alive, worker.starts
        start_node(cluster, killed, say=lambda _: None)
        mark(f"node {killed} serving again")
        rejoined: dict[str, list[str]] | None = None
        try:
            rejoined = wait_for(lambda: _missing_from_isr(admin, topics, killed), timeout_s=60)
        except TimeoutError:
            rejoined = {
                topic: [str(p["partition_index"]) for p in ps if killed not in p["isr_nodes"]]
                for topic, ps in _partitions(admin, topics).items()
            }
        mark(f"node {killed} missing from ISRs: {rejoined or 'none'}")
        rows = setup.query_archive("SELECT count(*), count(DISTINCT event_id) FROM events")
    finally:
        admin.close()
        worker.stop()
    return NodeLost(
        stream=stream, setup=setup, killed=killed, led_touches=led, at_kill=at_kill,
        counts=counts, publish_failure=publisher.failure, worker_alive=worker_alive,
        worker_starts=worker_starts, value_streams=value_streams, expected=expected,
        archived=archived, archive_rows=rows[0] if rows else (-1, -1), replicas=replicas,
        leaders_after_kill=leaders, rejoined=rejoined, timeline=tuple(timeline),
    )  # fmt: skip


@pytest.fixture(scope="module")
def node_lost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeLost]:
    """Our own three-node cluster (the session's single broker cannot lose a node)."""
    if not Settings().local_broker:
        pytest.skip("kills a node of its own local cluster; KAFKA_BOOTSTRAP_SERVERS is set")
    state = tmp_path_factory.mktemp("cluster")
    base = Settings(broker_dir=state / "cluster", broker_heap_mb=NODE_HEAP_MB)
    ports = [(free_port(), free_port()) for _ in range(CLUSTER_REPLICATION_FACTOR)]
    cluster = start_cluster(base, ports=ports, say=lambda _: None)
    try:
        yield _lose_a_node(cluster, state)
    finally:
        stop_cluster(cluster)


def test_a_node_leading_the_quorum_and_partitions_of_touches_died_mid_stream(
    node_lost: NodeLost,
) -> None:
    read, sent = node_lost.at_kill
    print(*node_lost.timeline, sep="\n  ")

    assert node_lost.led_touches, "the killed node should lead some partitions of touches"
    assert 0 < read < len(node_lost.stream.messages)
    assert 0 < sent < len(node_lost.stream.messages), "publishing should go on after the kill"


def test_every_topic_the_worker_uses_has_three_replicas(node_lost: NodeLost) -> None:
    setup = node_lost.setup
    expected_topics = {setup.touches_topic, setup.dead_letter_topic, setup.value_streams_topic,
                       setup.alerts_topic, f"{setup.app_id}-__assignor-__leader"}  # fmt: skip
    short = {t: n for t, n in node_lost.replicas.items() if set(n) != {CLUSTER_REPLICATION_FACTOR}}

    assert expected_topics <= node_lost.replicas.keys()
    assert any(t.endswith("-changelog") for t in node_lost.replicas)
    assert not short, f"topics with fewer than {CLUSTER_REPLICATION_FACTOR} replicas: {short}"


def test_every_partition_has_a_live_leader_while_the_node_is_down(node_lost: NodeLost) -> None:
    leaderless = {
        topic: leaders
        for topic, leaders in node_lost.leaders_after_kill.items()
        if any(leader in {node_lost.killed, -1} for leader in leaders)
    }

    assert not leaderless


def test_the_producer_delivers_every_event_through_the_failover(node_lost: NodeLost) -> None:
    assert node_lost.publish_failure is None


def test_every_message_is_read_once_and_has_an_outcome(node_lost: NodeLost) -> None:
    sent, poison = len(node_lost.stream.messages), len(node_lost.stream.poison)

    assert node_lost.counts == Counts(sent, sent - poison, poison)


def test_the_archive_holds_every_event_once(node_lost: NodeLost) -> None:
    events = len(node_lost.stream.events)

    assert node_lost.archived == len(node_lost.stream.messages)
    assert node_lost.archive_rows == (events, events)


def test_every_value_stream_equals_the_pure_fold(node_lost: NodeLost) -> None:
    got, expected = node_lost.value_streams, node_lost.expected
    wrong = sorted(
        k.decode() for k in got.keys() | expected.keys() if got.get(k) != expected.get(k)
    )

    assert not wrong, f"{len(wrong)} deals differ, e.g. {wrong[:5]}"


def test_the_worker_carries_on_without_a_restart(node_lost: NodeLost) -> None:
    assert node_lost.worker_alive
    assert node_lost.worker_starts == 1


def test_the_restarted_node_rejoins_the_isr_of_every_partition(node_lost: NodeLost) -> None:
    assert node_lost.rejoined == {}, f"not back in the ISR: {node_lost.rejoined}"
