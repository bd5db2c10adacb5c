"""Batches of messages an agent folds together, and dead letters: shared by the worker's agents."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faust.types import AppT, EventT, TopicT

__all__ = ["BATCH_TIMER_S", "YIELD_EVERY", "Batch", "DeadLetter", "raw_topic", "send_dead_letter"]

log = structlog.get_logger("gemba.worker")


def raw_topic(app: AppT, name: str, **options: Any) -> TopicT:
    """A topic of the worker whose keys and values are bytes as they are on Kafka: each
    agent decodes (and encodes) the records itself."""
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
        **options,
    )  # fmt: skip


BATCH_MAX = 5000
BATCH_TIMER_S = 0.1
BATCH_QUIET_S = 0.2
BATCH_MAX_AGE_S = 2.0
CATCH_UP_LAG_S = 5.0
"""Messages written to Kafka longer ago than this mean the agent is catching up (history)."""
CATCH_UP_BATCH_MAX = 50_000
CATCH_UP_MAX_AGE_S = 15.0
"""While catching up, batches grow this large (or old): history is in event-time order,
so a batch touches nearly as many deals as it holds events when it is small, and each
deal refolded once per batch made the fold cost grow with the lag it was meant to cut."""
YIELD_EVERY = 200
"""A long flush gives the event loop a turn this often (web pages, timers, heartbeats)."""


@dataclass
class Batch:
    """The messages taken since the last flush (acked after it) and the keys they touched.

    A batch is due when it is full (BATCH_MAX messages), when the stream has been
    quiet for BATCH_QUIET_S, or when it is BATCH_MAX_AGE_S old; while the agent is
    catching up (its messages were written over CATCH_UP_LAG_S ago) it may grow to
    CATCH_UP_BATCH_MAX messages or CATCH_UP_MAX_AGE_S.
    """

    pending: list[EventT[bytes]] = field(default_factory=list)
    touched: dict[str, EventT[bytes]] = field(default_factory=dict)
    """Each key (deal, account) touched, with the last message that touched it."""
    _last_taken: float = 0.0
    _first_taken: float = 0.0
    _catching_up: bool = False

    def add(self, event: EventT[bytes]) -> None:
        """One more message to ack after the flush."""
        self._last_taken = time.monotonic()
        if not self.pending:
            self._first_taken = self._last_taken
        self.pending.append(event)
        self._catching_up = time.time() - event.message.timestamp > CATCH_UP_LAG_S

    def touch(self, key: str, event: EventT[bytes]) -> None:
        """The message changed `key`: refold it at the flush."""
        self.touched[key] = event

    def _limits(self) -> tuple[int, float]:
        if self._catching_up:
            return CATCH_UP_BATCH_MAX, CATCH_UP_MAX_AGE_S
        return BATCH_MAX, BATCH_MAX_AGE_S

    @property
    def full(self) -> bool:
        """Whether the batch must be flushed before taking more."""
        return len(self.pending) >= self._limits()[0]

    @property
    def due(self) -> bool:
        """Whether a timer should flush it: the stream went quiet, or the batch grew old."""
        now = time.monotonic()
        quiet = now - self._last_taken >= BATCH_QUIET_S
        old = now - self._first_taken >= self._limits()[1]
        return bool(self.pending) and (quiet or old)

    def close(self) -> tuple[list[EventT[bytes]], dict[str, EventT[bytes]]]:
        """The messages and touched keys, leaving the batch empty for the next one."""
        closed = self.pending, self.touched
        self.pending, self.touched = [], {}
        return closed


DEAD_LETTER_SLACK = 64
"""Bytes kept free below the producer's request limit, beyond the record's estimated size."""
KEPT_KEY_BYTES = 1024
"""A key too large to send even with an empty value keeps this many of its first bytes."""


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter as it is sent: key, value and headers, cut to the producer's limit."""

    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    @property
    def size(self) -> int:
        """The record's size as the producer estimates it against its request limit."""
        headers = list(self.headers.items())
        estimated: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(
            self.key, self.value, headers
        )
        return estimated

    @property
    def truncated(self) -> str | None:
        """What was cut to fit ("value", or "key,value"); None for a whole dead letter."""
        cut = self.headers.get("truncated")
        return None if cut is None else cut.decode()

    @classmethod
    def of(cls, message: Any, reason: str, limit: int) -> DeadLetter:
        """The dead letter of `message`, whole if it fits in `limit` bytes, cut if not.

        A cut dead letter keeps the first bytes of the value (of the key too, if the key
        alone leaves no room) and says so in headers: `truncated` names what was cut, and
        `original.size` / `original.sha256` (`original.key.*` for a key) describe the bytes
        as they were on the source topic, so the original can be found and checked there.
        """
        headers = {
            "reason": reason.encode(),
            "source.topic": message.topic.encode(),
            "source.partition": str(message.partition).encode(),
            "source.offset": str(message.offset).encode(),
        }
        whole = cls(message.key, message.value, headers)
        if whole.size + DEAD_LETTER_SLACK <= limit:
            return whole
        key, value = message.key, message.value or b""
        cut = {**headers, "truncated": b"value", **_described("original", value)}
        if cls(key, b"", cut).size + DEAD_LETTER_SLACK > limit and key is not None:
            cut |= {"truncated": b"key,value", **_described("original.key", key)}
            key = key[:KEPT_KEY_BYTES]
        room = limit - cls(key, b"", cut).size - DEAD_LETTER_SLACK
        return cls(key, value[: max(room, 0)], cut)


def _described(prefix: str, data: bytes) -> dict[str, bytes]:
    return {
        f"{prefix}.size": str(len(data)).encode(),
        f"{prefix}.sha256": hashlib.sha256(data).hexdigest().encode(),
    }


async def send_dead_letter(topic: TopicT, message: Any, reason: str) -> None:
    """Send a record that could not be taken to the dead-letter topic, with where it came from.

    `message` is anything with topic, partition, offset, key and value (a Faust message or
    a record read back from Kafka); the original bytes go as they were, or cut to fit the
    producer's request limit (see DeadLetter.of): a dead letter is always sendable, so a
    record the broker took can never stop its partition.
    """
    limit = topic.app.conf.producer_max_request_size
    letter = DeadLetter.of(message, reason, limit)
    await topic.send(key=letter.key, value=letter.value, headers=letter.headers)
    log.warning(
        "event_dead_lettered", topic=message.topic, partition=message.partition,
        offset=message.offset, reason=reason, truncated=letter.truncated,
    )  # fmt: skip
