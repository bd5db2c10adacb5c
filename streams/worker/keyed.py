"""The worker's keyed machine: each message taken once and decoded once, its fact kept under its
key, every touched key refreshed once per batch, and the messages acked after.

Two parts run on it: the deals' value streams (`streams.worker.pipeline`, on `touches`) and
the accounts' campaign tallies (`streams.worker.campaigns`, on `touches-by-account`). The
machine does what both need alike: the current event for table writes, offsets Faust skipped
read back, decoding and the future-dated check (a bad record goes to the dead-letter topic
with its reason), each fact kept once per key and event id (one changelog record per
event), counters per partition (consumed = processed + dead-lettered, each offset once),
batches (streams.worker.batching.Batch), and a rebalance giving back what was not refreshed.
What a part does with a key's facts is its own (`KeyedPart`).

Delivery is at least once end to end: a batch's messages are acked only after every key it
touched was refreshed and its records were handed on (to the history sink, which acks them
once archived); a crash replays them, and every write is idempotent.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import faust
import structlog
from faust.types import EventT, TableT, TopicT

from events import EventBase, EventRejected, decode
from events.future import FutureLimit
from projections.archive import LogRecord, recorded_at_from_ms
from projections.deal.event_set import preferred_copy
from projections.intervals import EPOCH
from streams.worker.batching import YIELD_EVERY, Batch, send_dead_letter
from streams.worker.counts import PipelineCounts
from streams.worker.deal_store import DealEventStore
from streams.worker.missed import MissedRecord, MissedRecordReader

__all__ = [
    "FactHolder",
    "FactSet",
    "Handoff",
    "KeyedMachine",
    "KeyedPart",
    "Taken",
    "delivered_record",
    "read_back_record",
    "record_time",
    "run_machine",
]

log = structlog.get_logger("gemba.worker")
HELD_KEYS = 100_000
"""Keys whose facts a machine keeps decoded in memory by default."""


def delivered_record(message: Any) -> LogRecord:
    """A Faust message as the worker takes it (its Kafka timestamp as `recorded_at`)."""
    headers: Any = getattr(message, "headers", None) or {}
    pairs: Iterable[tuple[Any, Any]] = headers.items() if isinstance(headers, dict) else headers
    timestamp = getattr(message, "timestamp", None)
    return LogRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        recorded_at=recorded_at_from_ms(round(timestamp * 1000) if timestamp is not None else -1),
        value=message.value or b"",
        key=message.key,
        headers={str(k): bytes(v) for k, v in pairs if v is not None},
    )


def record_time(record: LogRecord) -> datetime | None:
    """The record's Kafka timestamp; None for a record that carries none (Kafka's -1)."""
    return record.recorded_at if record.recorded_at >= EPOCH else None


def read_back_record(missed: MissedRecord) -> LogRecord:
    """A record Faust never delivered, read back by offset (streams.worker.missed)."""
    return LogRecord(
        topic=missed.topic,
        partition=missed.partition,
        offset=missed.offset,
        recorded_at=recorded_at_from_ms(missed.timestamp_ms),
        value=missed.value,
        key=missed.key,
        headers=dict(missed.headers),
    )


@dataclass(frozen=True, slots=True)
class Taken:
    """One record of a batch: as the archive keeps it, its fact (None: dead-lettered), and the
    Faust event that delivered it (None for a record read back by offset: nothing to ack)."""

    record: LogRecord
    fact: EventBase | None
    event: EventT[bytes] | None


class FactSet:
    """A key's facts, once per event id; a second copy of an id keeps the copy the pure fold
    keeps (`preferred_copy`), so that state never depends on arrival order."""

    __slots__ = ("facts",)

    def __init__(self, facts: Iterable[EventBase] = ()) -> None:
        self.facts: dict[str, EventBase] = {}
        for fact in facts:
            self.add(fact)

    def add(self, fact: EventBase, encoded: bytes | None = None) -> bool:
        """Keep the fact; whether what is held changed."""
        held = self.facts.get(fact.event_id)
        if held is not None:
            fact = preferred_copy(held, fact)
            if fact is held or fact == held:
                return False
        self.facts[fact.event_id] = fact
        return True

    def __iter__(self) -> Iterator[EventBase]:
        return iter(self.facts.values())

    def __len__(self) -> int:
        return len(self.facts)


class FactHolder(Protocol):
    """A key's facts in memory: what a machine adds to (FactSet, or a deal's DealFold)."""

    def add(self, fact: EventBase, encoded: bytes | None = None) -> bool:
        """Keep the fact (`encoded`: the bytes it was decoded from); whether what is held
        changed."""


H = TypeVar("H", bound=FactHolder)


class KeyedPart(Protocol[H]):
    """What a keyed machine does with its keys' facts."""

    def key_of(self, fact: EventBase) -> str | None:
        """The key a fact is kept under; None: counted, not kept."""

    def holder(self, key: str, facts: Iterable[EventBase]) -> H:
        """A key's holder, filled with its stored facts (after a start or a rebalance)."""

    async def refresh(self, key: str, holder: H, partition: int) -> None:
        """The key's facts changed in this batch: update what is derived from them."""

    async def batch_done(self, taken: Sequence[Taken]) -> None:
        """Every touched key of the batch was refreshed (before its messages are handed on)."""

    def forget(self) -> None:
        """Partitions moved: drop what is summed in memory (it is rebuilt from the tables)."""


Handoff = Callable[["faust.StreamT[bytes]", Sequence[Taken]], Awaitable[None]]
"""Takes a refreshed batch on and acks its messages when done with them (e.g. archived)."""

FactListener = Callable[[EventBase, LogRecord], Awaitable[None]]
"""Called with each fact taken and its record, before its message is acked (e.g. to forward it)."""


async def ack_now(stream: faust.StreamT[bytes], taken: Sequence[Taken]) -> None:
    """The handoff of a machine with nothing after it: ack the batch at once."""
    for each in taken:
        if each.event is not None:
            await stream.ack(each.event)


@dataclass
class KeyedMachine(Generic[H]):
    """Takes the messages of one topic; keeps each fact under its key; refreshes per batch."""

    app: faust.App
    part: KeyedPart[H]
    store: DealEventStore
    """Each key's encoded facts, one changelog record per event."""
    counters: TableT[Any, Any]
    """Source partition -> PipelineCounts."""
    dead_letters: TopicT
    source_topic: str
    reader: MissedRecordReader | None = None
    """Reads back offsets Faust skipped (streams/worker/missed.py); None: they stay missing."""
    future_limit: FutureLimit | None = None
    """Facts dated further than this after their record's timestamp are dead-lettered."""
    handoff: Handoff = ack_now
    fact_listeners: list[FactListener] = field(default_factory=list)
    max_held: int = HELD_KEYS
    """Keys whose facts are kept decoded in memory, the most recently used (the rest stay in
    the store and are read back when asked for)."""
    latest_event_time: datetime | None = None
    _holders: OrderedDict[str, H] = field(default_factory=OrderedDict)
    _batch: Batch = field(default_factory=Batch)
    _taken: list[Taken] = field(default_factory=list)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _counts: dict[int, PipelineCounts] = field(default_factory=dict)
    _count_events: dict[int, EventT[bytes]] = field(default_factory=dict)

    def follow_rebalances(self) -> None:
        """Connect to the app's rebalance signals (once, when the worker is built)."""
        self.app.on_partitions_revoked.connect(self._partitions_revoked)
        for moved in (self.app.on_partitions_assigned, self.app.on_rebalance_complete):
            moved.connect(self._partitions_moved)

    async def _partitions_revoked(self, *args: Any, **kwargs: Any) -> None:
        """Give back what was taken and not refreshed: Kafka redelivers it to the partition's
        new owner (or to this worker again), and refreshing it here would write to changelog
        partitions this worker no longer owns."""
        async with self._lock:
            self._batch.close()
            self._taken = []
            self._counts.clear()
            self._count_events.clear()
            self._holders.clear()
            self.part.forget()

    async def _partitions_moved(self, *args: Any, **kwargs: Any) -> None:
        self._holders.clear()
        self.part.forget()

    async def take(self, stream: faust.StreamT[bytes], event: EventT[bytes]) -> None:
        """Keep, count or dead-letter one message; refresh once enough have gathered."""
        async with self._lock:
            # Table writes go to the changelog partition of the current event.
            stream._set_current_event(event)  # type: ignore[attr-defined]
            for missed in await self._missed_before(event.message):
                await self._take(event, read_back_record(missed), None)
            await self._take(event, delivered_record(event.message), event)
            self._batch.add(event)
            if self._batch.full:
                await self._flush(stream)

    async def flush_if_due(self, stream: faust.StreamT[bytes]) -> None:
        """Refresh what has gathered once the stream goes quiet or the batch grows old (a timer
        calls it, so quiet periods are not held back)."""
        async with self._lock:
            if self._batch.due:
                await self._flush(stream)

    async def _flush(self, stream: faust.StreamT[bytes]) -> None:
        """Refresh every touched key once, then hand the batch on (which acks it)."""
        _, touched = self._batch.close()
        taken, self._taken = self._taken, []
        for done, (key, last_event) in enumerate(sorted(touched.items()), 1):
            stream._set_current_event(last_event)  # type: ignore[attr-defined]
            await self.part.refresh(key, self.holder_of(key), last_event.message.partition)
            if done % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        self._save_counts(stream)
        await self.part.batch_done(taken)
        await self.handoff(stream, taken)

    async def _missed_before(self, message: Any) -> list[MissedRecord]:
        """The records of the message's partition Faust skipped since the last one counted
        (since the partition's first record, when none was ever counted: a rebalance can
        start a partition's first reader past records it never delivered)."""
        counts = self._partition_counts(message.partition)
        expected = counts.last_offset + 1  # 0 when none was (the reader starts past retention)
        if self.reader is None or message.offset <= expected:
            return []
        return await self.reader.read(
            message.topic, message.partition, expected, message.offset - 1
        )

    async def _take(
        self, event: EventT[bytes], record: LogRecord, own: EventT[bytes] | None
    ) -> None:
        partition = record.partition
        counts = self._partition_counts(partition)
        self._count_events[partition] = event
        try:
            fact = decode(record.value)
            recorded_at = record_time(record)
            if self.future_limit is not None and recorded_at is not None:
                self.future_limit.check(fact, recorded_at)
        except EventRejected as exc:
            await send_dead_letter(self.dead_letters, record, str(exc))
            self._counts[partition] = counts.dead_lettered_at(record.offset)
            self._taken.append(Taken(record, None, own))
            return
        self._keep(fact, record, event)
        self._counts[partition] = counts.processed_at(record.offset)
        self._taken.append(Taken(record, fact, own))
        if self.latest_event_time is None or fact.occurred_at > self.latest_event_time:
            self.latest_event_time = fact.occurred_at
        for listener in self.fact_listeners:
            await listener(fact, record)

    def _keep(self, fact: EventBase, record: LogRecord, event: EventT[bytes]) -> None:
        """Keep the fact under its key (stored once per event id) and mark the key touched."""
        key = self.part.key_of(fact)
        if key is None:
            return
        if self.holder_of(key).add(fact, record.value):
            # The record's own bytes: the fact they decode to is the one kept.
            self.store.put(key, fact.event_id, record.value.decode())
        self._batch.touch(key, event)

    def holder_of(self, key: str) -> H:
        """The key's facts in memory, filled from the store the first time it is asked for."""
        holder = self._holders.get(key)
        if holder is not None:
            self._holders.move_to_end(key)
            return holder
        stored = self.store.events_of(key)
        holder = self.part.holder(key, (decode(raw) for raw in stored.values()))
        self._holders[key] = holder
        while len(self._holders) > self.max_held:
            self._holders.popitem(last=False)
        return holder

    def held(self, key: str) -> H | None:
        """The key's facts, or None if this worker holds none."""
        if key not in self._holders and key not in self.store:
            return None
        return self.holder_of(key)

    def release(self, key: str) -> None:
        """Let the key's facts go from memory (they stay in the store; read back if needed)."""
        self._holders.pop(key, None)

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

    def last_offset(self, partition: int) -> int:
        """The last offset of a partition this machine took (-1: none yet)."""
        counts = self._counts.get(partition)
        if counts is None:
            counts = PipelineCounts.from_dict(self.counters.get(str(partition)) or {})
        return counts.last_offset

    def counts_by_partition(self) -> dict[str, PipelineCounts]:
        """Counters per source partition this worker holds, including the batch not yet done.

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
        """The partitions of the source topic assigned to this worker; None before any."""
        assigned = self.counters.app.assignor.assigned_actives()
        held = {tp.partition for tp in assigned if tp.topic == self.source_topic}
        return held or None

    def counts(self) -> PipelineCounts:
        """consumed / processed / dead-lettered over this worker's partitions."""
        return PipelineCounts.total(self.counts_by_partition().values())


def run_machine(
    app: faust.App, machine: KeyedMachine[Any], topic: TopicT, name: str, timer_s: float
) -> None:
    """The agent that feeds `machine` from `topic`, and the timer that refreshes quiet batches."""
    streams: list[faust.StreamT[bytes]] = []

    @app.agent(topic, name=name)
    async def take_messages(stream: faust.StreamT[bytes]) -> Any:
        # Acks are manual: a message is acked once its batch was refreshed and handed on.
        # (Faust's take_events() pairs buffered values with the stream's *current*
        # event, which can belong to another message: it lost messages here.)
        stream.enable_acks = False
        streams[:] = [stream]
        async for event in stream.events():
            await machine.take(stream, event)
            yield None

    @app.timer(timer_s, name=f"{name}-flush")  # type: ignore[untyped-decorator]
    async def refresh_quiet_batches() -> None:
        for stream in streams:
            await machine.flush_if_due(stream)
