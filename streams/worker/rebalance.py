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
It also times the checks for stuck partitions (Faust's "Stream stopped processing ...", and
its own `commit_stuck` in place of Faust's "Has not committed ...") from the last moment a
partition owed nothing, so that the first data after a quiet spell is not reported as stuck
work; a commit really held back still is, also once every message has been read.
A third way lost changelog records, and could stall a table recovery for good (the
survivor of tests/integration/test_scale_out.py once stayed at "have offset -1" of 1,563
records): when a fetch comes back while the flow is stopped for a rebalance, Faust's
`Consumer.getmany` drops its records and seeks back to the committed offsets, but nothing
is committed for changelogs, so their fetch position stays past the dropped records.
Seen (bench/repro_recovery_stall.py, instrumented): at a take-over, whole changelog
partitions from offset 0 fetched and dropped while recovery was under way. Dropped before
recovery seeks its changelogs, they are read again; dropped between that seek and the flow
resuming (a window of milliseconds), recovery waits for records it will never get. The
consumer seeks such changelog partitions back to the first dropped record, unless their
position moved meanwhile (faust-streaming's recovery hangs, e.g. its issues #74 and #155,
have this shape; this is not their fix, which upstream has not made).
The app's streams iterate in Python, because Faust's compiled iterator writes the
consumer's ack bookkeeping itself, past any consumer subclass. Every write downstream is
idempotent, so a message taken twice is harmless; one never taken is lost.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any, cast

import faust
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP, Message
from faust.types.tuples import ack_lock

__all__ = [
    "ConsumerAckedStream",
    "RebalanceSafeConsumer",
    "fetch_again",
    "make_rebalance_safe",
]

log = structlog.get_logger("gemba.worker")


class RebalanceSafeConsumer(Consumer):
    """Faust's aiokafka consumer, rewinding what was never committed and acking only messages
    of the current, flowing generation."""

    refused_acks: int = 0
    """Acks refused so far (their messages are fetched and taken again)."""
    _first_offsets: dict[TP, int] | None = None
    """The first offset of each partition rewound at the last assignment."""
    _watched: set[TP]
    """Partitions the stuck-work check has seen since the last assignment."""
    _progress: dict[TP, tuple[int | None, float]]
    """Per partition: its committed offset when last checked, and since when it has owed a
    commit without that offset moving (or, if it owes none, the last check)."""
    _reported: dict[TP, float]
    """When each partition's held commit was last reported."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watched, self._progress, self._reported = set(), {}, {}

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

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        records = await super()._getmany(active_partitions, timeout)
        if records and not self.flow_active:  # Faust's getmany drops them: see the module
            dropped = {
                tp: (batch[0].offset, batch[-1].offset + 1)
                for tp, batch in records.items()
                if batch and self._is_changelog_tp(tp)
            }
            if dropped:
                thread: Any = self._thread
                client = thread._ensure_consumer()
                again = await thread.call_thread(fetch_again, client, dropped)
                where = sorted(f"{tp.topic}[{tp.partition}]@{dropped[tp][0]}" for tp in again)
                log.info("changelog_records_fetched_again", partitions=where)
        return records

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
        self._watched, self._progress, self._reported = set(), {}, {}
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

    def verify_event_path(self, now: float, tp: TP) -> None:
        """Faust's checks for a stuck partition, with stuck measured from the last moment the
        partition owed nothing (everything up to its end committed) or its commit moved, not
        from its last commit or message: after a quiet spell, new data is not stuck work.

        The commit check is ours (`_report_held_commit`): Faust's reports a held commit
        only while unread messages wait, so a partition read to its end and never committed
        went unreported."""
        committed = self._committed_offset.get(tp)
        owes = self._owes_commit(tp, committed)
        progress = self._progress.setdefault(tp, (committed, now))
        if not owes or progress[0] != committed:
            self._progress[tp] = (committed, now)
        if not owes or tp not in self._watched:
            monitor: Any = self.app.monitor
            monitor.stream_inbound_time[tp] = now  # the stream check's clock starts here
            self._watched.add(tp)
        thread: Any = self._thread
        thread.tp_last_committed_at[tp] = now  # Faust's commit check: replaced by ours
        super().verify_event_path(now, tp)
        if owes:
            self._report_held_commit(now, tp)

    def _owes_commit(self, tp: TP, committed: int | None) -> bool:
        """Whether messages of the partition this worker reads are not committed yet."""
        if not self.app.topics.acks_enabled_for(tp.topic):  # changelogs: never committed
            return False
        try:
            end = self.highwater(tp)
        except Exception:  # the partition left while we looked, or is not fetched yet
            return False
        return end is not None and (committed or 0) < end

    def _report_held_commit(self, now: float, tp: TP) -> None:
        """Log an error while the partition's commit has not moved for the livelock timeout
        although it owes one (once per timeout)."""
        committed, since = self._progress[tp]
        timeout = float(self.app.conf.broker_commit_livelock_soft_timeout)
        if now - since < timeout or now - self._reported.get(tp, since) < timeout:
            return
        self._reported[tp] = now
        log.error(
            "commit_stuck", topic=tp.topic, partition=tp.partition, committed=committed,
            end=self.highwater(tp), stuck_s=round(now - since, 1),
            what_to_do="an agent holds messages unacked (see the errors before this one, "
            "e.g. the history archive); the worker replays them from the commit after a restart",
        )  # fmt: skip

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


async def fetch_again(
    client: AIOKafkaConsumer, dropped: Mapping[Any, tuple[int, int]]
) -> list[Any]:
    """Seek each partition back to the first of its dropped records, `(first, end)`, if its
    position is still `end` (a seek since, e.g. recovery's own, is left alone); the
    partitions sought back. Runs in the consumer's thread."""
    again = []
    for tp, (first, end) in dropped.items():
        partition = TopicPartition(tp.topic, tp.partition)
        try:
            position = await client.position(partition)
        except Exception:  # no longer assigned: its next owner reads it
            continue
        if position == end:
            client.seek(partition, first)
            again.append(tp)
    return again


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
