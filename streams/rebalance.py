"""A consumer that reads every message of a partition it gets back after a rebalance.

Two of Faust's (and aiokafka's) ways lost messages when a worker's partitions were
revoked and assigned again, as happens whenever workers join or leave a group while a
backlog is being read (seen in bench/bench_scaleout.py with a pre-filled topic):

1. After every assignment Faust seeks its partitions to their committed offsets, but
   aiokafka seeks only when the committed offset is above zero. A partition the group
   has committed nothing for yet keeps the read position of the previous generation,
   past every message fetched before the rebalance. Seen: a worker was given partition
   1 back with messages 457-3,682 fetched but never taken, and went on reading at 3,683.
2. Those fetched messages are skipped by Faust's stream (they belong to the older
   generation) and acked "so that the lag does not grow", even on a stream whose acks
   are off; with nothing committed for the partition, Faust commits past them. Seen: a
   worker committed offset 3,747 of a partition it had folded none of; the partition's
   next owner started there, and offsets 0-3,746 were never read by anyone.

`make_rebalance_safe(app)` gives the app a consumer that seeks such partitions to their
beginning (the app's `auto_offset_reset` is "earliest"), and refuses acks of messages of
an older generation (or skipped while a rebalance suspends the flow): their offsets are
never marked safe to commit, and the seek fetches them again. Until something is
committed for a rewound partition, it commits nothing that leaves a gap after the
partition's first offset (messages fetched at the old position can still be delivered
around the seek; Faust checks for such a gap only once an offset above zero is committed).
The app's streams iterate in Python, because Faust's compiled iterator writes the
consumer's ack bookkeeping itself, past any consumer subclass. Every write downstream is
idempotent, so a message taken twice is harmless; one never taken is lost.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any, cast

import faust
import structlog
from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP, Message
from faust.types.tuples import ack_lock

__all__ = ["ConsumerAckedStream", "RebalanceSafeConsumer", "make_rebalance_safe"]

log = structlog.get_logger("gemba.worker")


class RebalanceSafeConsumer(Consumer):
    """Faust's aiokafka consumer, rewinding what was never committed and acking only messages
    of the current, flowing generation."""

    refused_acks: int = 0
    """Acks refused so far (their messages are fetched and taken again)."""
    _first_offsets: dict[TP, int] | None = None
    """The first offset of each partition rewound at the last assignment."""

    def ack(self, message: Message) -> bool:
        if self._current(message):
            return bool(super().ack(message))
        with ack_lock:
            if message.acked:
                return False
            message.acked = True  # no longer waited for: it is fetched again
            self._unacked_messages.discard(message)
            self.refused_acks += 1
        log.debug(
            "stale_ack_refused", topic=message.topic, partition=message.partition,
            offset=message.offset, generation=message.generation_id,
        )  # fmt: skip
        return False

    def _current(self, message: Message) -> bool:
        app: Any = self.app
        return bool(
            app.flow_control.is_active() and message.generation_id == app.consumer_generation_id
        )

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        changelogs = self.app.tables.changelog_topics  # recovery places those itself
        uncommitted = [
            tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs
        ]
        self._first_offsets = {}
        if uncommitted:
            thread: Any = self._thread
            client = thread._ensure_consumer()
            await thread.call_thread(client.seek_to_beginning, *uncommitted)
            firsts = await thread.call_thread(client.beginning_offsets, uncommitted)
            self._first_offsets = {TP(tp.topic, tp.partition): n for tp, n in firsts.items()}
            log.info(
                "uncommitted_partitions_rewound",
                partitions=sorted(f"{tp.topic}[{tp.partition}]" for tp in uncommitted),
            )
        return committed

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit for the partition, None while a gap after its first offset
        remains in what was acked and nothing is committed yet."""
        first = (self._first_offsets or {}).get(tp)
        acked = self._acked.get(tp)
        head_gap = first is not None and acked and min(acked) > first
        if head_gap and self._committed_offset[tp] is None:
            return None
        offset: int | None = super()._new_offset(tp)
        return offset


class ConsumerAckedStream(faust.Stream):  # type: ignore[type-arg]
    """Faust's stream, iterated by its Python iterator, which acks through `Consumer.ack`."""

    def __aiter__(self) -> Any:
        iterator = cast(AsyncGenerator[Any, None], self._py_aiter())
        self._active_agens.add(iterator)  # as Stream.__aiter__ does, for its on_stop
        return iterator


def make_rebalance_safe(app: faust.App) -> None:
    """Give the app a RebalanceSafeConsumer and streams that ack through it; call it before
    the app's agents and consumer are made."""
    app.transport.Consumer = RebalanceSafeConsumer  # type: ignore[misc]
    app.conf.Stream = ConsumerAckedStream  # type: ignore[assignment]
