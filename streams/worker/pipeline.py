"""The fold pipeline: the agent that folds touches into deal value streams, its tables, pages.

`attach_value_stream_pipeline` adds it to the app that `streams.worker.app.build_worker`
builds; the worker's other parts (stall alerts, campaign roll-ups, metrics) receive the
pipeline it returns and plug into it as observers or fact listeners.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

import faust
import structlog
from faust.types import EventT, TableT, TopicT

from events import EventBase, EventRejected, decode, encode
from events.future import FutureLimit
from projections.deal.event_set import preferred_copy
from projections.deal.value_stream import DealValueStream
from projections.intervals import EPOCH
from projections.portfolio.rollup import Contribution, RollupKey, add_vectors
from streams.settings import Settings
from streams.worker.batching import BATCH_TIMER_S, YIELD_EVERY, Batch, raw_topic, send_dead_letter
from streams.worker.counts import PipelineCounts
from streams.worker.deal_store import DealEventStore
from streams.worker.missed import MissedRecordReader
from streams.worker.partitioned import PartitionedTable
from streams.worker.value_streams import FoldedDeal, ValueStreamFolder

__all__ = [
    "FactListener",
    "FoldObserver",
    "ValueStreamPipeline",
    "attach_value_stream_pipeline",
]

log = structlog.get_logger("gemba.worker")
DECODED_DEALS = 20_000
"""Deals whose events are kept decoded in memory (the rest are decoded when refolded)."""


FactListener = Callable[[EventBase], Awaitable[None]]
"""Called with each fact the pipeline takes, before its message is acked (e.g. to forward it)."""


class FoldObserver(Protocol):
    """Something that reacts to folded deals and to event time moving on (e.g. stall alerts)."""

    async def deal_folded(self, partition: int, stream: DealValueStream) -> None:
        """A deal's value stream changed (called with the deal's event as current event)."""

    async def batch_done(self, watermark: datetime | None) -> None:
        """A batch was taken; `watermark` is the latest event time in it (None if none)."""


class _Delivery(NamedTuple):
    """What the pipeline reads of a record, whether Faust delivered it or it was read back."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    recorded_at: datetime | None = None
    """The record's Kafka timestamp; None if it has none."""

    @classmethod
    def of(cls, message: Any) -> _Delivery:
        # Faust's messages carry seconds; records read back (streams.worker.missed), milliseconds.
        milliseconds = getattr(message, "timestamp_ms", None)
        if milliseconds is None and getattr(message, "timestamp", None) is not None:
            milliseconds = round(message.timestamp * 1000)
        recorded_at = (
            EPOCH + timedelta(milliseconds=milliseconds)
            if milliseconds is not None and milliseconds >= 0
            else None
        )
        return cls(
            message.topic, message.partition, message.offset, message.key, message.value,
            recorded_at,
        )  # fmt: skip


@dataclass
class ValueStreamPipeline:
    """The worker's state and what it does with each message of `touches`.

    Messages are taken one by one (stored, counted or dead-lettered) and folded in
    batches: each touched deal once per batch (streams.worker.batching.Batch says when one is
    due: by size, quiet or age, and larger while the worker is catching up).

    Every table is changelog-backed. Writes are idempotent (a deal's events are keyed
    by event_id; counters count each offset once; roll-ups apply the difference
    between a deal's old and new contribution), so the replay that follows a crash
    leaves the state as an uninterrupted run would.
    """

    folder: ValueStreamFolder
    dead_letters: TopicT
    value_streams: TopicT
    store: DealEventStore  # each deal's encoded events, one changelog record per event
    counters: TableT[Any, Any]  # source partition -> PipelineCounts
    contributions: PartitionedTable  # deal_id -> Contribution
    observers: list[FoldObserver] = field(default_factory=list)
    reader: MissedRecordReader | None = None
    """Reads back offsets Faust skipped (see streams/worker/missed.py); None: they stay missing."""
    fact_listeners: list[FactListener] = field(default_factory=list)
    source_topic: str = "touches"
    future_limit: FutureLimit | None = None
    """Events dated further than this after their record's timestamp are dead-lettered."""
    _batch: Batch = field(default_factory=Batch)
    _watermark: datetime | None = None
    latest_event_time: datetime | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _decoded: OrderedDict[str, dict[str, EventBase]] = field(default_factory=OrderedDict)
    _counts: dict[int, PipelineCounts] = field(default_factory=dict)
    _count_events: dict[int, EventT[bytes]] = field(default_factory=dict)
    _rollups: dict[RollupKey, dict[str, int]] | None = None

    @classmethod
    def build(
        cls, app: faust.App, settings: Settings, folder: ValueStreamFolder
    ) -> ValueStreamPipeline:
        pipeline = cls(
            folder=folder,
            dead_letters=raw_topic(app, settings.dead_letter_topic, retention=None),
            value_streams=raw_topic(app, settings.value_streams_topic, compacting=True),
            store=DealEventStore.build(app),
            counters=app.Table("pipeline-counts", default=dict),
            contributions=PartitionedTable.build(app, "deal-contributions", default=dict),
            reader=MissedRecordReader.from_settings(settings),
            source_topic=settings.touches_topic,
            future_limit=settings.future_limit,
        )
        app.on_partitions_revoked.connect(pipeline._partitions_revoked)
        app.on_partitions_assigned.connect(pipeline._forget_sums)
        app.on_rebalance_complete.connect(pipeline._forget_sums)  # sent once recovered
        return pipeline

    async def _partitions_revoked(self, *args: Any, **kwargs: Any) -> None:
        """Give back what was taken and not folded: Kafka redelivers it to the partition's new
        owner (or to this worker again), and folding it here would write to changelog
        partitions this worker no longer owns. In-memory sums are rebuilt from the tables."""
        async with self._lock:
            self._batch.close()
            self._counts.clear()
            self._count_events.clear()
            self._decoded.clear()
            self._watermark = None
            self._rollups = None

    async def _forget_sums(self, *args: Any, **kwargs: Any) -> None:
        self._rollups = None

    async def take(self, stream: faust.StreamT[bytes], event: EventT[bytes]) -> None:
        """Store, count or dead-letter one message; fold once enough have gathered."""
        async with self._lock:
            # Table writes go to the changelog partition of the current event.
            stream._set_current_event(event)  # type: ignore[attr-defined]
            for missed in await self._missed_before(event.message):
                await self._take_fact(event, missed)
            await self._take_fact(event, _Delivery.of(event.message))
            self._batch.add(event)
            if self._batch.full:
                await self._flush(stream)

    async def flush_if_due(self, stream: faust.StreamT[bytes]) -> None:
        """Fold what has gathered once the stream goes quiet or the batch grows old.

        Called by a timer, so quiet periods are not held back; while messages pour in
        (catching up on history) batches grow, and each deal is folded fewer times.
        """
        async with self._lock:
            if self._batch.due:
                await self._flush(stream)

    async def _flush(self, stream: faust.StreamT[bytes]) -> None:
        """Fold every touched deal once, tell the observers, then ack the messages.

        Acking only after the fold means a crash replays the unfolded messages: the
        pipeline is at-least-once end to end, and every write is idempotent.
        """
        pending, touched = self._batch.close()
        for done, (deal_id, last_event) in enumerate(sorted(touched.items()), 1):
            stream._set_current_event(last_event)  # type: ignore[attr-defined]
            await self._refold(deal_id, last_event.message.partition)
            if done % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        self._save_counts(stream)
        for observer in self.observers:
            await observer.batch_done(self._watermark)
        for event in pending:
            await stream.ack(event)
        self._watermark = None

    async def _missed_before(self, message: Any) -> list[_Delivery]:
        """The records of the message's partition Faust skipped since the last one counted
        (since the partition's first record, when none was ever counted: a rebalance can
        start a partition's first reader past records it never delivered)."""
        counts = self._partition_counts(message.partition)
        expected = counts.last_offset + 1  # 0 when none was (the reader starts past retention)
        if self.reader is None or message.offset <= expected:
            return []
        missed = await self.reader.read(
            message.topic, message.partition, expected, message.offset - 1
        )
        return [_Delivery.of(record) for record in missed]

    async def _take_fact(self, event: EventT[bytes], delivery: _Delivery) -> EventBase | None:
        """Take one record (the event's own, or one read back before it) and note its fact."""
        fact = await self._take(event, delivery)
        if fact is not None:
            self._watermark = max(self._watermark or fact.occurred_at, fact.occurred_at)
            self.latest_event_time = max(
                self.latest_event_time or fact.occurred_at, fact.occurred_at
            )
            if fact.deal_id is not None:
                self._batch.touch(fact.deal_id, event)
        return fact

    async def _take(self, event: EventT[bytes], message: _Delivery) -> EventBase | None:
        counts = self._partition_counts(message.partition)
        self._count_events[message.partition] = event
        try:
            fact = decode(message.value or b"")
            if self.future_limit is not None and message.recorded_at is not None:
                self.future_limit.check(fact, message.recorded_at)
        except EventRejected as exc:
            await send_dead_letter(self.dead_letters, message, str(exc))
            self._counts[message.partition] = counts.dead_lettered_at(message.offset)
            return None
        deal_id = fact.deal_id
        if deal_id is not None:
            held = self.store.events_of(deal_id).get(fact.event_id)
            if held is not None:
                # The same fact again: keep the copy the pure fold would keep, so that
                # even a conflicting duplicate cannot make state depend on arrival order.
                fact = preferred_copy(decode(held), fact)
            encoded = encode(fact).decode()
            if encoded != held:
                self.store.put(deal_id, fact.event_id, encoded)
            if deal_id in self._decoded:
                self._decoded[deal_id][fact.event_id] = fact
        self._counts[message.partition] = counts.processed_at(message.offset)
        for listener in self.fact_listeners:
            await listener(fact)
        return fact

    def _partition_counts(self, partition: int) -> PipelineCounts:
        if partition not in self._counts:
            self._counts[partition] = PipelineCounts.from_dict(self.counters[str(partition)])
        return self._counts[partition]

    def _save_counts(self, stream: faust.StreamT[bytes]) -> None:
        """Write each partition's counters once per batch, to that partition's changelog."""
        for partition, event in self._count_events.items():
            stream._set_current_event(event)  # type: ignore[attr-defined]
            self.counters[str(partition)] = self._counts[partition].to_dict()
        self._count_events = {}

    async def _refold(self, deal_id: str, partition: int) -> None:
        try:
            folded = self.deal(deal_id)
        except Exception:
            # The events are stored; the deal's next event folds them again.
            log.exception("value_stream_failed", deal_id=deal_id)
            return
        if folded is not None:
            if folded.stream.closed_at is not None:
                # A closed deal rarely hears more: decode it again if it does.
                self._decoded.pop(deal_id, None)
            self._update_rollups(deal_id, folded.contribution)
            await self.value_streams.send(key=deal_id.encode(), value=folded.document)
            for observer in self.observers:
                await observer.deal_folded(partition, folded.stream)

    def _update_rollups(self, deal_id: str, new: Contribution) -> None:
        """Keep the deal's contribution (durable) and apply the change to the roll-ups."""
        rollups = self._all_rollups()
        old: Contribution = self.contributions[deal_id]
        for key in {*old, *new}:
            rollups[key] = add_vectors(rollups.get(key, {}), new.get(key, {}))
            rollups[key] = add_vectors(rollups[key], old.get(key, {}), sign=-1)
        self.contributions[deal_id] = new

    def _all_rollups(self) -> dict[RollupKey, dict[str, int]]:
        """Roll-ups live in memory, summed once from the durable per-deal contributions
        of this worker's partitions (after recovery) and then kept current by differences."""
        if self._rollups is not None:
            return self._rollups
        rollups: dict[RollupKey, dict[str, int]] = {}
        for contribution in self.contributions.held_values():
            for key, flat in contribution.items():
                rollups[key] = add_vectors(rollups.get(key, {}), flat)
        if not self.contributions.app.in_recovery:  # while recovering, the table is filling
            self._rollups = rollups
        return rollups

    def deal(self, deal_id: str, *, now: bool = False) -> FoldedDeal | None:
        """One deal's value stream as of its own latest event (what is published), or with
        `now`, as of the latest event time the worker has seen (an open deal's "now")."""
        facts = self.deal_facts(deal_id)
        watermark = self.latest_event_time if now else None
        return self.folder.fold_events(facts, watermark) if facts else None

    def deal_facts(self, deal_id: str) -> list[EventBase]:
        """The deal's stored events, decoded (kept decoded for the most recent deals)."""
        stored = self.store.events_of(deal_id)
        decoded = self._decoded.get(deal_id)
        if decoded is None or len(decoded) != len(stored):
            decoded = {event_id: decode(raw) for event_id, raw in stored.items()}
        self._decoded[deal_id] = decoded
        self._decoded.move_to_end(deal_id)
        while len(self._decoded) > DECODED_DEALS:
            self._decoded.popitem(last=False)
        return list(decoded.values())

    def counts_by_partition(self) -> dict[str, PipelineCounts]:
        """Counters per source partition this worker holds, including the batch not yet folded.

        Faust's memory store keeps what this worker wrote for a partition it has handed
        over, so the table alone would count partitions another worker now reads."""
        held = self._held_partitions()
        saved = {
            k: PipelineCounts.from_dict(v)
            for k, v in self.counters.items()
            if held is None or int(k) in held
        }
        return saved | {str(k): v for k, v in self._counts.items() if held is None or k in held}

    def _held_partitions(self) -> set[int] | None:
        """The partitions of `touches` assigned to this worker; None before any assignment."""
        assigned = self.counters.app.assignor.assigned_actives()
        held = {tp.partition for tp in assigned if tp.topic == self.source_topic}
        return held or None

    def counts(self) -> PipelineCounts:
        """consumed / processed / dead-lettered over this worker's partitions."""
        return PipelineCounts.total(self.counts_by_partition().values())

    def rollup(self, dimension: str, month: str | None) -> dict[str, dict[str, int]]:
        """Roll-up vectors of one dimension, by value (and month, unless one is given)."""
        sums: dict[str, dict[str, int]] = {}
        for key, flat in self._all_rollups().items():
            found, value, bucket_month = key.split("|", 2)
            if found == dimension and month in {None, bucket_month}:
                name = value if month else f"{value}|{bucket_month}"
                sums[name] = add_vectors(sums.get(name, {}), flat)
        return sums


def _register_pages(app: faust.App, pipeline: ValueStreamPipeline) -> None:
    @app.page("/gemba/counts/")
    async def counts_page(web: Any, request: Any) -> Any:
        by_partition = pipeline.counts_by_partition()
        return web.json(
            pipeline.counts().summary()
            | {
                "partitions": {
                    k: v.summary() | v.to_dict() for k, v in sorted(by_partition.items())
                }
            }
        )

    @app.page("/gemba/rollups/{dimension}/")
    async def rollups_page(web: Any, request: Any, dimension: str) -> Any:
        return web.json(pipeline.rollup(dimension, request.query.get("month")))

    @app.page("/gemba/deals/{deal_id}/")
    @app.table_route(table=pipeline.store.table, match_info="deal_id")
    async def deal_page(web: Any, request: Any, deal_id: str) -> Any:
        folded = pipeline.deal(deal_id, now=True)
        if folded is None:
            missing = f"no opened deal {deal_id!r} in the worker's state"
            return web.json({"error": missing}, status=404)
        return web.bytes(folded.document, content_type="application/json")


def attach_value_stream_pipeline(
    app: faust.App, settings: Settings, folder: ValueStreamFolder
) -> ValueStreamPipeline:
    """Add the fold pipeline to a built app: its tables, the agent on `touches`, the timer
    that folds quiet deals, and its pages (counts, roll-ups, one deal's value stream).

    Call it in `build_worker` before the parts that plug into the pipeline. Nothing
    connects until the worker starts.
    """
    touches = raw_topic(app, settings.touches_topic)
    pipeline = ValueStreamPipeline.build(app, settings, folder)
    streams: list[faust.StreamT[bytes]] = []

    @app.agent(touches, name="fold-touches")
    async def fold_touches(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        # Acks are manual: a message is acked once its deal has been folded.
        # (Faust's take_events() pairs buffered values with the stream's *current*
        # event, which can belong to another message: it lost messages here.)
        stream.enable_acks = False
        streams[:] = [stream]
        async for event in stream.events():
            await pipeline.take(stream, event)
            yield None

    @app.timer(BATCH_TIMER_S)  # type: ignore[untyped-decorator]
    async def fold_quiet_deals() -> None:
        for stream in streams:
            await pipeline.flush_if_due(stream)

    _register_pages(app, pipeline)
    return pipeline
