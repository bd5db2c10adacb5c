"""Stall alerts as they arrive: a group-less consumer of the alerts topic, fanned out to browsers.

The feed reads `deal-alerts` from its end (what came before is in the archive),
with no consumer group, so it never moves the worker's or anyone's offsets. Each
alert becomes a card (streams.dashboard.documents.alert_card) with a sequence
number; the last few hundred are kept, so a page that reconnects (Server-Sent
Events send `Last-Event-ID`) or opens later gets what it missed since the server
started. Without a broker the dashboard still serves the archive; the feed retries.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from projections.deal.alerts import StallAlert
from streams.dashboard.documents import alert_card, json_bytes
from streams.settings import Settings

__all__ = ["AlertFeed", "FeedItem"]

log = structlog.get_logger(__name__)
KEPT = 500
"""Alerts kept for pages that open or reconnect later."""
QUEUE = 1000
"""Items a slow page may fall behind by before it is dropped (it reconnects and catches up)."""
RETRY_S = (1.0, 10.0)
"""First and longest wait before retrying the broker."""
TOPIC_POLL_S = 2.0


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One message to pages: an alert card (with its sequence number) or the feed's status."""

    event: str
    data: dict[str, Any]
    seq: int | None = None

    def sse(self) -> bytes:
        """The item as one Server-Sent Event."""
        head = f"id: {self.seq}\n" if self.seq is not None else ""
        return f"{head}event: {self.event}\n".encode() + b"data: " + json_bytes(self.data) + b"\n\n"


class AlertFeed:
    """Follows the alerts topic; keeps recent alerts; hands each to every subscribed page."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.alerts_topic
        self.bootstrap = settings.bootstrap_servers
        self.state = "starting"
        self.detail = ""
        self.partitions: tuple[int, ...] = ()
        self.received = 0
        self.rejected = 0
        self._seq = 0
        self._recent: deque[FeedItem] = deque(maxlen=KEPT)
        self._pages: set[asyncio.Queue[FeedItem | None]] = set()

    # --- for pages ---

    def status(self) -> dict[str, Any]:
        """Where the feed stands: following, waiting for the topic, or retrying the broker."""
        return {
            "topic": self.topic,
            "state": self.state,
            "detail": self.detail,
            "partitions": list(self.partitions),
            "received": self.received,
            "rejected": self.rejected,
            "last_seq": self._seq,
        }

    def since(self, seq: int) -> list[FeedItem]:
        """The kept alerts after sequence number `seq`, oldest first."""
        return [item for item in self._recent if item.seq is not None and item.seq > seq]

    def subscribe(self) -> asyncio.Queue[FeedItem | None]:
        """A queue that receives every alert and status change from now on (None: closing)."""
        queue: asyncio.Queue[FeedItem | None] = asyncio.Queue(QUEUE)
        self._pages.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[FeedItem | None]) -> None:
        """Stop handing items to `queue`."""
        self._pages.discard(queue)

    def close(self) -> None:
        """Tell every page's stream to end (the server is stopping)."""
        for queue in list(self._pages):
            self._offer(queue, None)

    def accept(self, value: bytes | None) -> FeedItem | None:
        """Take one record of the topic: a valid alert is kept and handed to every page."""
        try:
            alert = StallAlert.model_validate_json(value or b"")
        except ValidationError as exc:
            self.rejected += 1
            log.warning("dashboard_alert_rejected", topic=self.topic, error=str(exc)[:200])
            return None
        self._seq += 1
        self.received += 1
        item = FeedItem("alert", alert_card(alert, "live"), self._seq)
        self._recent.append(item)
        self._broadcast(item)
        return item

    def _broadcast(self, item: FeedItem) -> None:
        for queue in list(self._pages):
            self._offer(queue, item)

    def _offer(self, queue: asyncio.Queue[FeedItem | None], item: FeedItem | None) -> None:
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            self._pages.discard(queue)  # a page that fell behind: its stream ends, it reconnects
            queue.get_nowait()
            queue.put_nowait(None)

    def _set(self, state: str, detail: str = "") -> None:
        if (state, detail) != (self.state, self.detail):
            self.state, self.detail = state, detail
            self._broadcast(FeedItem("status", self.status()))

    # --- the consumer ---

    async def run(self) -> None:
        """Follow the topic until cancelled, retrying the broker with backoff."""
        delay = RETRY_S[0]
        while True:
            try:
                await self._follow()
            except (KafkaError, OSError) as exc:
                if self.state == "following":
                    delay = RETRY_S[0]
                self._set("retrying", f"{self.bootstrap}: {exc or type(exc).__name__}")
                log.info("dashboard_alerts_retrying", topic=self.topic, error=str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_S[1])

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            client_id="gemba-dashboard",
        )
        try:
            await consumer.start()
            await self._topic_exists(consumer)
            consumer.subscribe([self.topic])  # no group: every partition, from its end
            assigned = await self._assignment(consumer)
            for partition in assigned:
                await consumer.position(partition)  # resolve "end" before saying we follow
            self.partitions = tuple(sorted(tp.partition for tp in assigned))
            self._set("following")
            log.info("dashboard_alerts_following", topic=self.topic, partitions=len(assigned))
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        self.accept(record.value)
        finally:
            await consumer.stop()

    async def _topic_exists(self, consumer: AIOKafkaConsumer) -> None:
        """Wait for the topic (the worker creates it); subscribing first would auto-create it."""
        while self.topic not in await consumer.topics():
            self._set("waiting", f"no topic {self.topic} yet (start a worker: `gemba worker`)")
            await asyncio.sleep(TOPIC_POLL_S)

    async def _assignment(self, consumer: AIOKafkaConsumer) -> set[TopicPartition]:
        while not (assigned := consumer.assignment()):
            await asyncio.sleep(0.1)
        return set(assigned)
