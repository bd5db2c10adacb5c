"""Publishing facts to Kafka: the only module of events/ that talks to a broker."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from events.codec import LineRefused, decode_jsonl, encode
from events.errors import EventRejected, PublishError
from events.future import FutureLimit
from events.models import EventBase
from events.pseudonyms import Pseudonymiser

__all__ = [
    "LOG_TOPIC_CONFIG",
    "EventPublisher",
    "KafkaEventPublisher",
    "PublishReport",
    "check_reachable",
    "ensure_topic",
    "publish_jsonl",
]

LOG_TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
"""The event log is the system of record: nothing on it expires."""


class EventPublisher(Protocol):
    """Somewhere events can be appended; there is no update or delete."""

    def publish(self, event: EventBase) -> None:
        """Append one event (asynchronously; `flush` confirms)."""

    def publish_encoded(self, key: str, value: bytes) -> None:
        """Append an already-encoded, already-validated event."""

    def flush(self) -> None:
        """Wait until everything published so far is acknowledged, or raise PublishError."""

    def close(self) -> None:
        """Flush and release the connection."""


def check_reachable(bootstrap_servers: str, timeout_s: float = 3.0) -> None:
    """Fail fast, with what to do, when no bootstrap server accepts a connection."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            socket.create_connection(
                (host.strip("[]") or "127.0.0.1", int(port)), timeout_s
            ).close()
        except (OSError, ValueError):
            continue
        return
    raise PublishError(_unreachable(bootstrap_servers, ConnectionRefusedError()))


def ensure_topic(
    bootstrap_servers: str,
    topic: str,
    partitions: int,
    config: Mapping[str, str] = LOG_TOPIC_CONFIG,
    client_options: Mapping[str, Any] | None = None,
    replication_factor: int = 1,
) -> bool:
    """Create `topic` with infinite retention unless it exists; True if it was created.

    `replication_factor` copies of each partition: 1 suits a single broker only; on a
    cluster, 3 (with the brokers' min.insync.replicas at 2) keeps every acknowledged event
    while one broker is down.
    """
    check_reachable(bootstrap_servers)
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, **(client_options or {}))
    except KafkaError as exc:
        raise PublishError(_unreachable(bootstrap_servers, exc)) from None
    try:
        admin.create_topics(
            [NewTopic(topic, partitions, replication_factor, topic_configs=dict(config))]
        )
    except TopicAlreadyExistsError:
        return False
    finally:
        admin.close()
    return True


def _unreachable(bootstrap_servers: str, exc: Exception) -> str:
    return (
        f"cannot reach Kafka at {bootstrap_servers} ({exc.__class__.__name__}). "
        "Start the local broker with `gemba broker start`, or set KAFKA_BOOTSTRAP_SERVERS."
    )


class KafkaEventPublisher:
    """Publishes events keyed by deal (or account), idempotently, acknowledged by all ISRs.

    This is the door every event goes through on its way to Kafka (`gemba produce`,
    `gemba ingest`, the importers, the simulator): with a `pseudonymiser`, each
    event's contact id is replaced by its pseudonym here, before anything is sent.
    `client_options` are passed to the Kafka client (TLS and SASL settings).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        client_options: Mapping[str, Any] | None = None,
        pseudonymiser: Pseudonymiser | None = None,
    ) -> None:
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self.pseudonymiser = pseudonymiser
        self.sent = 0
        self._failures: list[BaseException] = []
        options: dict[str, Any] = {
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 5,
            "batch_size": 256 * 1024,
            "compression_type": None,
            "max_in_flight_requests_per_connection": 5,
        }
        options.update(client_options or {})
        check_reachable(bootstrap_servers)
        try:
            self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers, **options)
        except KafkaError as exc:
            raise PublishError(_unreachable(bootstrap_servers, exc)) from None

    def publish(self, event: EventBase) -> None:
        """Append one event; its key keeps a deal's events in one partition, in order."""
        if self.pseudonymiser is not None:
            event = self.pseudonymiser.event(event)
        self._send(event.partition_key, encode(event))

    def publish_encoded(self, key: str, value: bytes) -> None:
        """Append pre-encoded bytes under `key` (pseudonymised first, if asked to)."""
        if self.pseudonymiser is not None:
            value = self.pseudonymiser.encoded(value)
        self._send(key, value)

    def _send(self, key: str, value: bytes) -> None:
        try:
            future = self._producer.send(self.topic, key=key.encode(), value=value)
        except KafkaError as exc:
            # A topic this producer has not sent to yet needs its partitions first: with
            # the broker away, the client gives up after max_block_ms with its own error.
            raise PublishError(_unreachable(self.bootstrap_servers, exc)) from exc
        future.add_errback(self._failures.append)
        self.sent += 1

    def flush(self) -> None:
        """Block until every send is acknowledged; raise PublishError if any failed."""
        self._producer.flush()
        if self._failures:
            first, count = self._failures[0], len(self._failures)
            self._failures.clear()
            raise PublishError(f"{count} event(s) were not acknowledged by Kafka: {first!r}")

    def close(self) -> None:
        """Flush, then close the producer."""
        try:
            self.flush()
        finally:
            self._producer.close()

    def __enter__(self) -> KafkaEventPublisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass
class PublishReport:
    """What a batch publish did: how many lines went out, and every line refused."""

    published: int = 0
    refused: list[LineRefused] = field(default_factory=list)


def publish_jsonl(
    lines: Iterable[bytes],
    publisher: EventPublisher,
    on_line: Callable[[int], None] | None = None,
    *,
    future: FutureLimit | None = None,
    recorded_at: datetime | None = None,
) -> PublishReport:
    """Validate each JSON line, publish the good ones, collect the refused ones.

    `on_line` is called with each raw line's length, for progress reporting. With
    `future` and `recorded_at` (when the run began), lines dated further ahead than the
    limit are refused as future-dated.
    """
    report = PublishReport()

    def counted() -> Iterator[bytes]:
        for line in lines:
            if on_line is not None:
                on_line(len(line))
            yield line

    for number, outcome in decode_jsonl(counted()):
        if isinstance(outcome, LineRefused):
            report.refused.append(outcome)
            continue
        problem = future.problem(outcome, recorded_at) if future and recorded_at else None
        if problem is not None:
            report.refused.append(LineRefused(number, EventRejected([problem])))
            continue
        publisher.publish(outcome)
        report.published += 1
    publisher.flush()
    return report
