"""The Faust app: topics, tables and the agent that folds touches into deal value streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import faust
import structlog
from faust.types import EventT

from events import EventRejected, decode, encode
from streams.counts import PipelineCounts
from streams.settings import Settings
from streams.value_streams import ValueStreamFolder

__all__ = ["create_app"]

log = structlog.get_logger("gemba.worker")
BATCH_MAX = 2000
BATCH_WITHIN_S = 0.5


def _raw_topic(app: faust.App, name: str, **options: Any) -> faust.TopicT:
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
        **options,
    )  # fmt: skip


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
    folder = folder or ValueStreamFolder.from_settings(settings)
    touches = _raw_topic(app, settings.touches_topic)
    dead_letters = _raw_topic(app, settings.dead_letter_topic, retention=None)
    value_streams = _raw_topic(app, settings.value_streams_topic, compacting=True)
    deal_events = app.Table("deal-events", default=dict)
    counters = app.Table("pipeline-counts", default=dict)

    async def dead_letter(event: EventT[bytes], reason: str) -> None:
        message = event.message
        headers = {
            "reason": reason.encode(),
            "source.topic": message.topic.encode(),
            "source.partition": str(message.partition).encode(),
            "source.offset": str(message.offset).encode(),
        }
        await dead_letters.send(key=message.key, value=message.value, headers=headers)
        log.warning(
            "event_dead_lettered", topic=message.topic, partition=message.partition,
            offset=message.offset, reason=reason,
        )  # fmt: skip

    async def fold_batch(stream: faust.StreamT[bytes], batch: Sequence[EventT[bytes]]) -> None:
        touched: set[str] = set()
        for event in batch:
            # Table writes go to the changelog partition of the current event.
            stream._set_current_event(event)  # type: ignore[attr-defined]
            message = event.message
            # A replay after a restart is applied again (every update is idempotent,
            # keyed by event_id) but counted once.
            counts = PipelineCounts.from_dict(counters[str(message.partition)])
            try:
                fact = decode(message.value or b"")
            except EventRejected as exc:
                await dead_letter(event, str(exc))
                counts = counts.dead_lettered_at(message.offset)
            else:
                if fact.deal_id is not None:
                    stored = dict(deal_events[fact.deal_id])
                    stored[fact.event_id] = encode(fact).decode()
                    deal_events[fact.deal_id] = stored
                    touched.add(fact.deal_id)
                counts = counts.processed_at(message.offset)
            counters[str(message.partition)] = counts.to_dict()
        for deal_id in sorted(touched):
            try:
                document = folder.fold(deal_events[deal_id].values())
            except Exception:
                # The events are stored; the next event of this deal folds them again.
                log.exception("value_stream_failed", deal_id=deal_id)
                continue
            if document is not None:
                await value_streams.send(key=deal_id.encode(), value=document)

    @app.agent(touches, name="fold-touches")
    async def fold_touches(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async for batch in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):  # type: ignore[attr-defined]
            await fold_batch(stream, batch)
            yield None

    @app.page("/gemba/counts/")
    async def pipeline_counts(web: Any, request: Any) -> Any:
        totals = PipelineCounts.total(PipelineCounts.from_dict(v) for v in counters.values())
        return web.json(totals.summary())

    @app.page("/gemba/deals/{deal_id}/")
    @app.table_route(table=deal_events, match_info="deal_id")
    async def deal_page(web: Any, request: Any, deal_id: str) -> Any:
        stored = deal_events.get(deal_id)
        document = folder.fold(stored.values()) if stored else None
        if document is None:
            return web.json(
                {"error": f"no opened deal {deal_id!r} in the worker's state"}, status=404
            )
        return web.bytes(document, content_type="application/json")

    app.gemba_counters = counters  # type: ignore[attr-defined]
    app.gemba_deal_events = deal_events  # type: ignore[attr-defined]
    return app
