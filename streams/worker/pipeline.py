"""The fold pipeline: the deals' part of the keyed machine on `touches`, its tables, its pages.

`attach_value_stream_pipeline` adds it to the app that `streams.worker.app.build_worker`
builds; the worker's other parts (stall alerts, campaign roll-ups, metrics) receive the
pipeline it returns and plug into it as observers or fact listeners.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import faust
import structlog
from faust.types import EventT, TopicT

from events import EventBase
from projections.deal.fold import DealFold
from projections.deal.value_stream import DealValueStream
from projections.portfolio.rollup import Contribution, RollupKey, add_vectors
from streams.settings import Settings
from streams.worker.batching import BATCH_TIMER_S, raw_topic
from streams.worker.counts import PipelineCounts
from streams.worker.deal_store import DealEventStore
from streams.worker.keyed import FactListener, KeyedMachine, Taken, run_machine
from streams.worker.missed import MissedRecordReader
from streams.worker.partitioned import PartitionedTable
from streams.worker.value_streams import FoldedDeal, ValueStreamFolder

__all__ = [
    "FoldObserver",
    "ValueStreamPipeline",
    "attach_value_stream_pipeline",
]

log = structlog.get_logger("gemba.worker")
HELD_DEALS = 20_000
"""Deals whose folds are kept in memory, the most recently touched (the rest are read back
from the store when touched or checked again)."""


class FoldObserver(Protocol):
    """Something that reacts to folded deals and to event time moving on (e.g. stall alerts)."""

    async def deal_folded(self, partition: int, stream: DealValueStream) -> None:
        """A deal's value stream changed (called with the deal's event as current event)."""

    async def batch_done(self, watermark: datetime | None) -> None:
        """A batch was taken; `watermark` is the latest event time in it (None if none)."""


@dataclass
class ValueStreamPipeline:
    """The deals' part of the worker's keyed machine (streams.worker.keyed): each deal's facts,
    its value stream refolded once per batch that touched it, and the roll-ups.

    Every table is changelog-backed and every write idempotent (a deal's events are keyed
    by event_id; counters count each offset once; roll-ups apply the difference between a
    deal's old and new contribution), so the replay that follows a crash leaves the state
    as an uninterrupted run would.
    """

    folder: ValueStreamFolder
    value_streams: TopicT
    contributions: PartitionedTable  # deal_id -> Contribution
    observers: list[FoldObserver] = field(default_factory=list)
    machine: KeyedMachine[DealFold] = field(init=False)
    keep_folded: bool = False
    """Whether the value streams folded are kept for the history sink (`take_folded`)."""
    _folded: list[DealValueStream] = field(default_factory=list)
    _rollups: dict[RollupKey, dict[str, int]] | None = None

    @classmethod
    def build(
        cls, app: faust.App, settings: Settings, folder: ValueStreamFolder
    ) -> ValueStreamPipeline:
        pipeline = cls(
            folder=folder,
            value_streams=raw_topic(app, settings.value_streams_topic, compacting=True),
            contributions=PartitionedTable.build(app, "deal-contributions", default=dict),
        )
        pipeline.machine = KeyedMachine(
            app=app,
            part=pipeline,
            store=DealEventStore.build(app),
            counters=app.Table("pipeline-counts", default=dict),
            dead_letters=raw_topic(app, settings.dead_letter_topic, retention=None),
            source_topic=settings.touches_topic,
            reader=MissedRecordReader.from_settings(settings),
            future_limit=settings.future_limit,
            max_held=HELD_DEALS,
        )
        pipeline.machine.follow_rebalances()
        return pipeline

    # What the rest of the worker reads of the machine.
    @property
    def store(self) -> DealEventStore:
        return self.machine.store

    @property
    def dead_letters(self) -> TopicT:
        return self.machine.dead_letters

    @property
    def source_topic(self) -> str:
        return self.machine.source_topic

    @property
    def fact_listeners(self) -> list[FactListener]:
        return self.machine.fact_listeners

    @property
    def latest_event_time(self) -> datetime | None:
        return self.machine.latest_event_time

    async def take(self, stream: faust.StreamT[bytes], event: EventT[bytes]) -> None:
        await self.machine.take(stream, event)

    async def _flush(self, stream: faust.StreamT[bytes]) -> None:
        await self.machine._flush(stream)

    def counts_by_partition(self) -> dict[str, PipelineCounts]:
        return self.machine.counts_by_partition()

    def counts(self) -> PipelineCounts:
        return self.machine.counts()

    # KeyedPart
    def key_of(self, fact: EventBase) -> str | None:
        return fact.deal_id

    def holder(self, key: str, facts: Iterable[EventBase]) -> DealFold:
        return DealFold.of(key, self.folder.policy, facts)

    async def refresh(self, key: str, holder: DealFold, partition: int) -> None:
        try:
            folded = self.folder.fold_deal(holder)
        except Exception:
            # The events are stored; the deal's next event folds them again.
            log.exception("value_stream_failed", deal_id=key)
            return
        if folded is None:
            return
        if folded.stream.closed_at is not None:
            # A closed deal rarely hears more: its facts are read back if it does.
            self.machine.release(key)
        if self.keep_folded:
            self._folded.append(folded.stream)
        self._update_rollups(key, folded.contribution)
        await self.value_streams.send(key=key.encode(), value=folded.document)
        for observer in self.observers:
            await observer.deal_folded(partition, folded.stream)

    async def batch_done(self, taken: Sequence[Taken]) -> None:
        times = [each.fact.occurred_at for each in taken if each.fact is not None]
        watermark = max(times) if times else None
        for observer in self.observers:
            await observer.batch_done(watermark)

    def forget(self) -> None:
        self._rollups = None
        self._folded = []

    def take_folded(self) -> list[DealValueStream]:
        """The value streams folded since the last call (the history sink stores them)."""
        folded, self._folded = self._folded, []
        return folded

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

    def deal_fold(self, deal_id: str) -> DealFold | None:
        """The deal's fold this worker holds (None for a deal it does not hold)."""
        return self.machine.held(deal_id)

    def deal(self, deal_id: str, *, now: bool = False) -> FoldedDeal | None:
        """One deal's value stream as of its own latest event (what is published), or with
        `now`, as of the latest event time the worker has seen (an open deal's "now")."""
        fold = self.deal_fold(deal_id)
        watermark = self.latest_event_time if now else None
        return None if fold is None else self.folder.fold_deal(fold, watermark)

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
    pipeline = ValueStreamPipeline.build(app, settings, folder)
    run_machine(
        app, pipeline.machine, raw_topic(app, settings.touches_topic), "fold-touches",
        BATCH_TIMER_S,
    )  # fmt: skip
    _register_pages(app, pipeline)
    return pipeline
