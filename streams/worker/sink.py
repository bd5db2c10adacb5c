"""The history sink: every message of `touches`, its dead letters and alerts, into DuckDB once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import faust
import structlog
from faust.types import EventT

from events import EventBase
from projections.archive import (
    ArchiveBatch,
    ArchiveBusy,
    ArchiveStore,
    BatchOutcome,
    HistoryError,
    HistoryWriter,
    LogRecord,
    open_archive,
)
from projections.deal.value_stream import DealValueStream
from streams.settings import Settings
from streams.worker.alerts import alerts_topic
from streams.worker.batching import raw_topic
from streams.worker.keyed import Taken, delivered_record, read_back_record
from streams.worker.missed import MissedRecordReader
from streams.worker.pipeline import ValueStreamPipeline

__all__ = ["HistorySink", "attach_history_sink"]

log = structlog.get_logger("gemba.history")
SINK_BATCH_MAX = 20_000
"""Messages in one transaction at most; while history pours in, each deal is refolded
once per batch, so big batches catch up fastest."""
SINK_TIMER_S = 0.2
SINK_QUIET_S = 0.5
SINK_MAX_AGE_S = 5.0
REFOLD_DEALS = 500
"""Deals refolded into the value-stream tables per transaction, once the stream is quiet."""
REFOLD_MAX_LAG_S = 30.0
"""Under a steady stream that is never quiet, refold at least this often anyway."""
RETRY_S = 0.5
RETRY_MAX_S = 30.0
IDLE_CLOSE_S = 2.0
"""The sink lets go of the archive (its writer lock) after this long with nothing to write."""
BUSY_WARN_S = 10.0
"""Another process holding the file this long is no longer a reader's short query: warn."""

Kind = Literal["events", "dead_letters", "alerts"]


@dataclass
class _Taken:
    """A message read and not yet archived: acked once its batch commits (a record read back
    from Kafka, which Faust never delivered, has nothing to ack)."""

    kind: Kind
    stream: faust.StreamT[bytes] | None
    event: EventT[bytes] | None
    record: LogRecord | None = None
    from_fold: bool = False
    """Taken from the fold pipeline, which decoded it: `fact` is its event (None: not one)."""
    fact: EventBase | None = None

    def log_record(self) -> LogRecord:
        if self.record is not None:
            return self.record
        assert self.event is not None
        return delivered_record(self.event.message)


@dataclass
class SinkCounts:
    """What the sink did since the worker started (for its web page and logs)."""

    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    not_events: int = 0
    dead_letters: int = 0
    alerts: int = 0
    skipped: int = 0
    failures: int = 0
    deals_refolded: int = 0

    def add(self, outcome: BatchOutcome) -> None:
        self.batches += 1
        self.stored += outcome.stored
        self.duplicates += outcome.duplicates
        self.not_events += outcome.not_events
        self.dead_letters += outcome.dead_letters
        self.alerts += outcome.alerts
        self.skipped += outcome.already_archived


@dataclass
class HistorySink:
    """Batches the messages of its agents and appends them to the archive, one transaction each.

    The archive's offsets are the source of truth: a message at an offset the archive
    already holds (replayed after a crash between commit and ack) is acked and skipped.
    Messages are acked only after their batch committed. The deals a batch touches are
    marked in it and refolded into the value-stream tables once the stream is quiet (at
    least every REFOLD_MAX_LAG_S), so history catching up refolds each deal once, not once
    per batch. The archive stays open (the writer lock held) while there is work, and is let
    go after IDLE_CLOSE_S of quiet; readers (`gemba query`, the dashboard) read its last
    commit at any time and never make the sink wait.
    """

    path: Path
    writer: HistoryWriter
    reader: MissedRecordReader | None = None
    """Reads back offsets Faust skipped (streams/worker/missed.py); None: gaps are only logged."""
    counts: SinkCounts = field(default_factory=SinkCounts)
    _next: dict[tuple[str, int], int] | None = None
    """Next offset per (topic, partition) the archive holds (committed), once read."""
    _taken: dict[tuple[str, int], int] = field(default_factory=dict)
    """Next offset per (topic, partition) taken into a batch (pending or archived)."""
    _to_refold: int = 0
    _last_refold: float = field(default_factory=time.monotonic)
    _pending: list[_Taken] = field(default_factory=list)
    _streams: list[DealValueStream] = field(default_factory=list)
    """Value streams the fold gave with the pending records, stored with them."""
    _first_pending: float = 0.0
    _last_taken: float = 0.0
    _retry_at: float = 0.0
    _retry_s: float = RETRY_S
    _trouble_since: float | None = None
    _flushing: bool = False
    _loading: asyncio.Lock = field(default_factory=asyncio.Lock)
    _drained: asyncio.Event = field(default_factory=asyncio.Event)
    _executor: ThreadPoolExecutor | None = None
    _flush_task: asyncio.Future[None] | None = None
    _store: ArchiveStore | None = None
    _last_written: float = 0.0
    last_error: str | None = None

    async def take(self, kind: Kind, stream: faust.StreamT[bytes], event: EventT[bytes]) -> None:
        """Keep one message of an archive agent (dead letters, alerts) for the next batch, or
        ack it if the archive holds it already."""
        await self._take(_Taken(kind, stream, event), event.message)

    async def take_batch(
        self,
        stream: faust.StreamT[bytes],
        taken: Sequence[Taken],
        value_streams: Sequence[DealValueStream],
    ) -> None:
        """The fold's batch of `touches` (streams.worker.keyed): each record as the fold took it
        and decoded it, and the value streams it folded, archived in the sink's next
        transaction (nothing decoded or folded again) and acked once that commits.

        The fold read back any offset Faust skipped, but not what another worker folded
        before this one took the partition over (its counters came with the partition):
        the sink reads those back itself, since this archive never received them (the writer
        then decodes and folds that batch on its own)."""
        for each in taken:
            item = _Taken(
                "events", stream if each.event else None, each.event, each.record,
                from_fold=True, fact=each.fact,
            )  # fmt: skip
            await self._take(item, each.record)
        self._streams += value_streams

    async def _take(self, item: _Taken, message: Any) -> None:
        while len(self._pending) >= 2 * SINK_BATCH_MAX:  # the archive is behind: wait for it
            self._drained.clear()
            await self._drained.wait()
        held = await self._held_offsets()
        key = (message.topic, message.partition)
        if message.offset < held.get(key, 0):
            self.counts.skipped += 1  # archived already: done with
            if item.stream is not None and item.event is not None:
                await item.stream.ack(item.event)
            return
        if message.offset < self._taken.get(key, 0):
            return  # a copy of a pending message (a rebalance re-read it): acked with it
        expected = self._taken.get(key, held.get(key, 0))
        if message.offset > expected and self.reader is not None:
            missed = await self.reader.read(*key, expected, message.offset - 1)
            kind = item.kind
            self._pending += [_Taken(kind, None, None, read_back_record(m)) for m in missed]
        self._taken[key] = message.offset + 1
        now = time.monotonic()
        if not self._pending:
            self._first_pending = now
        self._last_taken = now
        self._pending.append(item)
        if len(self._pending) >= SINK_BATCH_MAX and not self._flushing:
            # Archived beside the fold's next batch, not in its way.
            self._flush_task = asyncio.ensure_future(self.flush())

    def flush_if_due(self) -> None:
        """Start archiving what has gathered once the stream goes quiet or the batch grows old;
        when nothing is pending, refold the deals the last batches touched.

        Called by a timer; the work runs as its own task, so a long one does not hold the
        timer up (the next tick finds it still running and leaves it be).
        """
        now = time.monotonic()
        if self._flushing or now < self._retry_at:
            return
        quiet = now - self._last_taken >= SINK_QUIET_S
        if self._pending and (quiet or now - self._first_pending >= SINK_MAX_AGE_S):
            self._flush_task = asyncio.ensure_future(self.flush())
        elif self._to_refold and (quiet or now - self._last_refold >= REFOLD_MAX_LAG_S):
            self._flush_task = asyncio.ensure_future(self.refold())
        elif (
            self._store is not None
            and not self._pending
            and (now - self._last_written >= IDLE_CLOSE_S)
        ):
            self._flush_task = asyncio.ensure_future(self._let_go())

    async def _let_go(self) -> None:
        """Close the archive while nothing is to be written (another writer may take it)."""
        if self._flushing:
            return
        self._flushing = True
        try:
            await self._run(self._close_store)
        finally:
            self._flushing = False

    def _close_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.close()

    async def refold(self) -> None:
        """Refold a chunk of the deals marked by archived batches into the value-stream tables."""
        if self._flushing:
            return
        self._flushing = True
        try:
            outcome = await self._run(self._refold_chunk)
        except ArchiveBusy:
            self._retry_at = time.monotonic() + RETRY_S
            return
        except Exception:
            log.exception("history_refold_failed")
            self._retry_at = time.monotonic() + RETRY_MAX_S
            return
        finally:
            self._flushing = False
        self._last_refold = time.monotonic()
        self._to_refold = outcome.deals_to_refresh
        self.counts.deals_refolded += outcome.deals_refreshed
        if outcome.failed_deals:
            log.error("history_value_stream_failed", deals=list(outcome.failed_deals))

    async def flush(self) -> None:
        """Append the pending messages in one transaction, then ack them; retry later on failure."""
        if self._flushing or not self._pending:
            return
        self._flushing = True
        taken, self._pending = self._pending, []
        streams, self._streams = self._streams, []
        try:
            outcome = await self._run(self._write, _batch(taken, streams))
        except Exception as exc:
            self._streams = streams + self._streams
            self._failed(taken, exc)
            return
        finally:
            self._flushing = False
        for item in taken:
            if item.stream is not None and item.event is not None:
                await item.stream.ack(item.event)
        self._archived(outcome, len(taken))

    def _failed(self, taken: list[_Taken], exc: Exception) -> None:
        """Keep the batch, in order, ahead of what came meanwhile; try again after a pause.

        Nothing of it is acked, so the worker commits no offset past what the archive holds.
        """
        self._pending = taken + self._pending
        self._first_pending = time.monotonic() - SINK_MAX_AGE_S
        self._retry_at = time.monotonic() + self._trouble(exc, messages=len(taken))

    def _trouble(self, exc: Exception, **context: Any) -> float:
        """Say why the archive could not be written (log and `last_error`); the pause before
        the next try, doubling up to RETRY_MAX_S while the trouble lasts.

        A busy file is usually a reader's short query (info); held longer than BUSY_WARN_S,
        or any other failure (a directory that cannot be made, a full disk), it is a
        problem for someone to fix (warning, error).
        """
        now = time.monotonic()
        if self._trouble_since is None:
            self._trouble_since = now
        pause, self._retry_s = self._retry_s, min(self._retry_s * 2, RETRY_MAX_S)
        known = isinstance(exc, HistoryError | OSError)
        self.last_error = str(exc) if known else f"{exc.__class__.__name__}: {exc}"
        if isinstance(exc, ArchiveBusy):
            held_s = round(now - self._trouble_since, 1)
            say = log.warning if held_s >= BUSY_WARN_S else log.info
            say("history_archive_busy", reason=self.last_error, held_for_s=held_s,
                retry_in_s=pause, **context)  # fmt: skip
            return pause
        self.counts.failures += 1
        log.error(
            "history_archive_failed", path=str(self.path), reason=self.last_error,
            retry_in_s=pause, exc_info=not known, **context,
        )  # fmt: skip
        return pause

    def _recovered(self) -> None:
        if self._trouble_since is not None:
            down_s = round(time.monotonic() - self._trouble_since, 1)
            log.info("history_archive_writable_again", path=str(self.path), after_s=down_s)
        self._retry_s, self.last_error, self._trouble_since = RETRY_S, None, None

    def _archived(self, outcome: BatchOutcome, messages: int) -> None:
        self._recovered()
        self._drained.set()
        self.counts.add(outcome)
        self._to_refold = outcome.deals_to_refresh
        if self._next is not None:
            self._next.update(outcome.next_offsets)
        for gap in outcome.gaps:
            log.warning(
                "history_offsets_never_received", topic=gap.topic, partition=gap.partition,
                first=gap.first, last=gap.last,
            )  # fmt: skip
        log.debug(
            "history_batch_archived", messages=messages, stored=outcome.stored,
            duplicates=outcome.duplicates, deals_to_refold=outcome.deals_to_refresh,
        )  # fmt: skip

    def _write(self, batch: ArchiveBatch) -> BatchOutcome:
        """In the sink's thread: append in one commit (the archive opened if it is not)."""
        with self._open() as store:
            return self.writer.append(store, batch, refresh=False)

    def _refold_chunk(self) -> BatchOutcome:
        with self._open() as store:
            return self.writer.refresh(store, REFOLD_DEALS)

    def _read_offsets(self) -> tuple[dict[tuple[str, int], int], int]:
        with self._open() as store:
            held = {key: head.next_offset for key, head in store.heads().items()}
            return held, store.count("dirty_deals")

    @contextmanager
    def _open(self) -> Iterator[ArchiveStore]:
        """The archive, opened once and kept while there is work; closed after a failure
        (it is opened afresh next time)."""
        if self._store is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise HistoryError(
                    f"cannot make the archive's directory {self.path.parent} ({exc.strerror}): "
                    "make it, or set GEMBA_DUCKDB_PATH to a writable place"
                ) from None
            self._store = open_archive(self.path)
        try:
            yield self._store
        except BaseException:
            self._close_store()
            raise
        self._last_written = time.monotonic()

    async def _held_offsets(self) -> dict[tuple[str, int], int]:
        """The archive's next offsets, read once when the first message arrives.

        Until the archive can be opened the sink takes nothing (and acks nothing): it
        says why and tries again, with a growing pause.
        """
        if self._next is not None:
            return self._next
        async with self._loading:
            while self._next is None:
                try:
                    held, self._to_refold = await self._run(self._read_offsets)
                except Exception as exc:
                    await asyncio.sleep(self._trouble(exc))
                    continue
                self._recovered()
                log.info("history_sink_started", path=str(self.path), partitions=len(held))
                self._next = held
        return self._next

    async def _run(self, work: Any, *args: Any) -> Any:
        if self._executor is None:  # one thread: writes are serial, the writer's cache is its own
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    def summary(self) -> dict[str, Any]:
        """The sink's state for its web page: counts, pending messages, offsets held."""
        offsets = {f"{t}[{p}]": n for (t, p), n in sorted((self._next or {}).items())}
        return {
            "path": str(self.path),
            "pending": len(self._pending),
            "deals_to_refold": self._to_refold,
            "last_error": self.last_error,
            "next_offsets": offsets,
            **vars(self.counts),
        }


def _batch(taken: list[_Taken], streams: list[DealValueStream]) -> ArchiveBatch:
    """The archive's batch: the records, and, when the fold gave every event record, their
    events and the value streams it folded (the writer then decodes and folds nothing)."""
    records: dict[Kind, list[LogRecord]] = {"events": [], "dead_letters": [], "alerts": []}
    events = [item for item in taken if item.kind == "events"]
    for item in taken:
        records[item.kind].append(item.log_record())
    folded = bool(events) and all(item.from_fold for item in events)
    return ArchiveBatch(
        events=records["events"],
        dead_letters=records["dead_letters"],
        alerts=records["alerts"],
        decoded=[item.fact for item in events] if folded else None,
        value_streams=streams if folded else None,
    )


def _archive_agent(app: faust.App, sink: HistorySink, kind: Kind, topic: faust.TopicT) -> None:
    @app.agent(topic, name=f"archive-{kind.replace('_', '-')}")
    async def archive(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        # Acks are manual: a message is acked once the transaction holding it committed.
        stream.enable_acks = False
        async for event in stream.events():
            await sink.take(kind, stream, event)
            yield None


def attach_history_sink(
    app: faust.App, settings: Settings, pipeline: ValueStreamPipeline
) -> HistorySink | None:
    """Add the history sink to a built app: it takes each batch of `touches` from the fold
    pipeline, once folded (no agent of its own reads `touches`), and has agents on the dead
    letters and the alerts.

    Call it at the end of `build_worker`. Nothing opens until the worker starts; only this
    process may write the file (GEMBA_DUCKDB_PATH, default state_dir/gemba.duckdb).
    GEMBA_HISTORY_SINK=false leaves the worker without it.
    """
    if not settings.history_sink:
        return None
    sink = HistorySink(
        settings.history_db_path,
        HistoryWriter(pipeline.folder.policy, future_limit=settings.future_limit),
        MissedRecordReader.from_settings(settings),
    )
    pipeline.keep_folded = True

    async def archive_batch(stream: faust.StreamT[bytes], taken: Sequence[Taken]) -> None:
        await sink.take_batch(stream, taken, pipeline.take_folded())

    pipeline.machine.handoff = archive_batch
    _archive_agent(app, sink, "dead_letters", raw_topic(app, settings.dead_letter_topic))
    # The alert topic is declared (created) by the worker before it subscribes.
    _archive_agent(app, sink, "alerts", alerts_topic(app, settings))

    @app.timer(SINK_TIMER_S, name="history-sink-flush")  # type: ignore[untyped-decorator]
    async def archive_quiet_batches() -> None:
        sink.flush_if_due()

    @app.page("/gemba/history/")
    async def history_page(web: Any, request: Any) -> Any:
        return web.json(sink.summary())

    return sink
