"""The Faust app: topics, tables and the agent that folds touches into deal value streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import faust
import structlog
from faust.types import EventT, TableT, TopicT

from events import EventBase, EventRejected, decode, encode
from projections.rollup import Contribution, add_vectors
from projections.value_stream import DealValueStream
from streams.counts import PipelineCounts
from streams.settings import Settings
from streams.value_streams import FoldedDeal, ValueStreamFolder

__all__ = ["FoldObserver", "ValueStreamPipeline", "create_app"]

log = structlog.get_logger("gemba.worker")
BATCH_MAX = 2000
BATCH_WITHIN_S = 0.5


def _raw_topic(app: faust.App, name: str, **options: Any) -> faust.TopicT:
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
        **options,
    )  # fmt: skip


class FoldObserver(Protocol):
    """Something that reacts to folded deals and to event time moving on (e.g. stall alerts)."""

    async def deal_folded(self, partition: int, stream: DealValueStream) -> None:
        """A deal's value stream changed (called with the deal's event as current event)."""

    async def batch_done(self, watermark: datetime | None) -> None:
        """A batch was taken; `watermark` is the latest event time in it (None if none)."""


@dataclass
class ValueStreamPipeline:
    """The worker's state and what it does with each batch of `touches`.

    Every table is changelog-backed. Writes are idempotent (a deal's events are keyed
    by event_id; counters count each offset once; roll-ups apply the difference
    between a deal's old and new contribution), so the replay that follows a crash
    leaves the state as an uninterrupted run would.
    """

    folder: ValueStreamFolder
    dead_letters: TopicT
    value_streams: TopicT
    deal_events: TableT[Any, Any]  # deal_id -> {event_id: encoded event}
    counters: TableT[Any, Any]  # source partition -> PipelineCounts
    contributions: TableT[Any, Any]  # deal_id -> Contribution
    rollups: TableT[Any, Any]  # "partition|dimension|value|month" -> vector
    observers: list[FoldObserver] = field(default_factory=list)

    @classmethod
    def build(cls, app: faust.App, settings: Settings, folder: ValueStreamFolder) -> Any:
        return cls(
            folder=folder,
            dead_letters=_raw_topic(app, settings.dead_letter_topic, retention=None),
            value_streams=_raw_topic(app, settings.value_streams_topic, compacting=True),
            deal_events=app.Table("deal-events", default=dict),
            counters=app.Table("pipeline-counts", default=dict),
            contributions=app.Table("deal-contributions", default=dict),
            # Per source partition, so that each key's changelog lives in one partition.
            rollups=app.Table("rollups", default=dict),
        )

    async def fold_batch(
        self, stream: faust.StreamT[bytes], batch: Sequence[EventT[bytes]]
    ) -> None:
        """Store, count or dead-letter each message, then fold every touched deal once."""
        touched: dict[str, EventT[bytes]] = {}
        watermark: datetime | None = None
        for event in batch:
            # Table writes go to the changelog partition of the current event.
            stream._set_current_event(event)  # type: ignore[attr-defined]
            fact = await self._take(event)
            if fact is None:
                continue
            watermark = max(watermark or fact.occurred_at, fact.occurred_at)
            if fact.deal_id is not None:
                touched[fact.deal_id] = event
        for deal_id, last_event in sorted(touched.items()):
            stream._set_current_event(last_event)  # type: ignore[attr-defined]
            await self._refold(deal_id, last_event.message.partition)
        for observer in self.observers:
            await observer.batch_done(watermark)

    async def _take(self, event: EventT[bytes]) -> EventBase | None:
        message = event.message
        counts = PipelineCounts.from_dict(self.counters[str(message.partition)])
        try:
            fact = decode(message.value or b"")
        except EventRejected as exc:
            await self._dead_letter(event, str(exc))
            self.counters[str(message.partition)] = counts.dead_lettered_at(
                message.offset
            ).to_dict()
            return None
        if fact.deal_id is not None:
            stored = dict(self.deal_events[fact.deal_id])
            stored[fact.event_id] = encode(fact).decode()
            self.deal_events[fact.deal_id] = stored
        self.counters[str(message.partition)] = counts.processed_at(message.offset).to_dict()
        return fact

    async def _dead_letter(self, event: EventT[bytes], reason: str) -> None:
        message = event.message
        headers = {
            "reason": reason.encode(),
            "source.topic": message.topic.encode(),
            "source.partition": str(message.partition).encode(),
            "source.offset": str(message.offset).encode(),
        }
        await self.dead_letters.send(key=message.key, value=message.value, headers=headers)
        log.warning(
            "event_dead_lettered", topic=message.topic, partition=message.partition,
            offset=message.offset, reason=reason,
        )  # fmt: skip

    async def _refold(self, deal_id: str, partition: int) -> None:
        try:
            folded = self.deal(deal_id)
        except Exception:
            # The events are stored; the deal's next event folds them again.
            log.exception("value_stream_failed", deal_id=deal_id)
            return
        if folded is not None:
            self._update_rollups(partition, deal_id, folded.contribution)
            await self.value_streams.send(key=deal_id.encode(), value=folded.document)
            for observer in self.observers:
                await observer.deal_folded(partition, folded.stream)

    def _update_rollups(self, partition: int, deal_id: str, new: Contribution) -> None:
        old: Contribution = self.contributions[deal_id]
        for key in sorted({*old, *new}):
            delta = add_vectors(new.get(key, {}), old.get(key, {}), sign=-1)
            if any(delta.values()):
                bucket = f"{partition}|{key}"
                self.rollups[bucket] = add_vectors(self.rollups[bucket], delta)
        self.contributions[deal_id] = new

    def deal(self, deal_id: str) -> FoldedDeal | None:
        """One deal's current value stream; None if unknown or not opened yet."""
        stored = self.deal_events.get(deal_id)
        return self.folder.fold(stored.values()) if stored else None

    def counts(self) -> PipelineCounts:
        """consumed / processed / dead-lettered over this worker's partitions."""
        return PipelineCounts.total(PipelineCounts.from_dict(v) for v in self.counters.values())

    def rollup(self, dimension: str, month: str | None) -> dict[str, dict[str, int]]:
        """Roll-up vectors of one dimension, by value (and month, unless one is given)."""
        sums: dict[str, dict[str, int]] = {}
        for bucket, flat in self.rollups.items():
            _, found, value, bucket_month = bucket.split("|", 3)
            if found == dimension and month in {None, bucket_month}:
                name = value if month else f"{value}|{bucket_month}"
                sums[name] = add_vectors(sums.get(name, {}), flat)
        return sums


def _register_pages(app: faust.App, pipeline: ValueStreamPipeline) -> None:
    @app.page("/gemba/counts/")
    async def counts_page(web: Any, request: Any) -> Any:
        return web.json(pipeline.counts().summary())

    @app.page("/gemba/rollups/{dimension}/")
    async def rollups_page(web: Any, request: Any, dimension: str) -> Any:
        return web.json(pipeline.rollup(dimension, request.query.get("month")))

    @app.page("/gemba/deals/{deal_id}/")
    @app.table_route(table=pipeline.deal_events, match_info="deal_id")
    async def deal_page(web: Any, request: Any, deal_id: str) -> Any:
        folded = pipeline.deal(deal_id)
        if folded is None:
            missing = f"no opened deal {deal_id!r} in the worker's state"
            return web.json({"error": missing}, status=404)
        return web.bytes(folded.document, content_type="application/json")


def create_app(settings: Settings, folder: ValueStreamFolder | None = None) -> faust.App:
    """Build the Faust app from settings; nothing connects until the worker starts."""
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        store=settings.worker_store,
        datadir=str(settings.worker_dir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=True,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=settings.worker_web_port,
    )
    touches = _raw_topic(app, settings.touches_topic)
    pipeline = ValueStreamPipeline.build(
        app, settings, folder or ValueStreamFolder.from_settings(settings)
    )

    @app.agent(touches, name="fold-touches")
    async def fold_touches(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        batches = stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S)  # type: ignore[attr-defined]
        async for batch in batches:
            await pipeline.fold_batch(stream, batch)
            yield None

    _register_pages(app, pipeline)
    app.gemba_pipeline = pipeline  # type: ignore[attr-defined]
    return app
