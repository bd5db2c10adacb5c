"""The archive's one writer: each batch of records, with the value streams the worker folded
from it, committed as segments with its offsets in one catalog transaction."""

from __future__ import annotations

import hashlib
import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from events import EventBase, encode
from events.future import FutureLimit
from projections.archive.chain import ChainHead, chain_hash, chain_link, genesis_hash
from projections.archive.facts import FACTS_SELECT
from projections.archive.log_tables import alert_rows, dead_letter_rows, fresh_records
from projections.archive.records import (
    ArchiveBatch,
    BatchOutcome,
    LogRecord,
    OffsetGap,
    archived_event,
    decoded_or_none,
)
from projections.archive.store import fetch_in_chunks, segment_schema
from projections.archive.value_stream_rows import VALUE_STREAM_TABLES, value_stream_rows
from projections.archive.writing import ArchiveStore
from projections.deal.value_stream import DealValueStream, deal_value_stream
from projections.errors import DealNotOpened
from projections.policy.model import Policy

__all__ = ["DECODED_DEALS", "HistoryWriter"]

DECODED_DEALS = 5_000
"""Deals whose events the refold path keeps decoded between calls (the rest are read back)."""

_EVENT_COLUMNS = segment_schema("events").names
_DUPLICATE_COLUMNS = segment_schema("duplicates").names


@dataclass
class _Appended:
    """What a batch adds: rows per segment table and the catalog rows beside them."""

    columns: dict[str, list[Any]] = field(
        default_factory=lambda: {name: [] for name in _EVENT_COLUMNS}
    )
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    index: list[tuple[str, bytes]] = field(default_factory=list)
    new: list[EventBase] = field(default_factory=list)
    already_archived: int = 0
    not_events: int = 0


class HistoryWriter:
    """The archive's one writer: appends batches, each in one commit with its offsets.

    Every event is stored once, keyed by event_id; a later copy of a stored id is not
    stored (its offset is recorded as consumed, and the copy listed in `duplicates`).
    A record at an offset the archive already holds changes nothing, so a batch
    appended twice (a crash between the commit and the Kafka ack) is a no-op.

    Value streams: a batch that carries the worker's folded `value_streams` has their deals
    marked in its commit and the streams kept; `refresh` (the sink calls it once the stream
    is quiet, or `append(refresh=True)` at once) stores each deal's latest one as it is (no
    second fold), so history catching up stores a deal once, not once per batch. A batch
    without (None) has the deals it touches marked, and `refresh` refolds them under
    `policy` from all their archived events, each as of its own latest event, as the
    streaming worker folds them; so does a deal still marked after a crash (its kept
    stream was lost with the process). With `value_streams` False only the log is archived.
    """

    def __init__(
        self,
        policy: Policy,
        decoded_deals: int = DECODED_DEALS,
        *,
        value_streams: bool = True,
        future_limit: FutureLimit | None = None,
    ) -> None:
        self.policy = policy
        self.value_streams = value_streams
        self.future_limit = future_limit
        self._decoded: OrderedDict[str, dict[str, EventBase]] = OrderedDict()
        self._decoded_deals = decoded_deals
        self._streams: dict[str, DealValueStream] = {}
        """The latest stream the fold handed over per marked deal, until `refresh` stores it."""

    def append(
        self, store: ArchiveStore, batch: ArchiveBatch, *, refresh: bool = True
    ) -> BatchOutcome:
        """Append the batch and move the offsets, all or nothing.

        Without value streams in the batch, the deals it touches are marked for refolding
        in the same commit; with `refresh` they are refolded at once, else `refresh()`
        does it later.
        """
        try:
            outcome = self._append(store, batch)
        except BaseException:
            self._decoded.clear()  # it may hold events that were not committed
            raise
        if refresh and outcome.deals_to_refresh:
            return self.refresh(store, None, outcome)
        return outcome

    def refresh(
        self, store: ArchiveStore, limit: int | None = None, outcome: BatchOutcome | None = None
    ) -> BatchOutcome:
        """Store the value streams of the marked deals, in one commit: every stream the fold
        handed over since the last refresh, and up to `limit` (None: all) deals marked with
        no stream held (a caller without a fold, or streams lost with a crash) refolded
        from their archived events."""
        marked = [str(d) for (d,) in store.catalog.execute(
            "SELECT deal_id FROM dirty_deals ORDER BY deal_id")]  # fmt: skip
        given = [self._streams[deal_id] for deal_id in marked if deal_id in self._streams]
        to_refold = [deal_id for deal_id in marked if deal_id not in self._streams]
        to_refold = to_refold if limit is None else to_refold[: max(int(limit), 0)]
        done = [stream.deal_id for stream in given] + to_refold
        try:
            streams, failed = self._refold(store, to_refold)
            version = store.next_generation()
            segments = self._value_stream_segments(given + streams, version)

            def changes(catalog: sqlite3.Connection) -> None:
                catalog.executemany("DELETE FROM dirty_deals WHERE deal_id = ?",
                                    [[deal_id] for deal_id in done])  # fmt: skip

            if done:
                store.commit(segments, changes)
        except BaseException:
            self._decoded.clear()
            raise
        for stream in given:
            del self._streams[stream.deal_id]
        return replace(
            outcome or BatchOutcome(),
            deals_refreshed=len(done) - len(failed),
            failed_deals=tuple(failed),
            deals_to_refresh=store.count("dirty_deals"),
        )

    def _append(self, store: ArchiveStore, batch: ArchiveBatch) -> BatchOutcome:
        heads = store.heads()
        gaps: list[OffsetGap] = []
        appended = self._append_events(store, batch, heads, gaps)
        dead_rows, dead_keys, dead_skipped = dead_letter_rows(
            batch.dead_letters, heads, gaps, _known_dead_letters(store, batch.dead_letters)
        )
        alerts, alert_ids, alerts_skipped = alert_rows(
            batch.alerts, heads, gaps, _known_alerts(store, batch.alerts)
        )
        already = appended.already_archived + dead_skipped + alerts_skipped
        consumed = len(batch.events) + len(batch.dead_letters) + len(batch.alerts)
        outcome = BatchOutcome(
            stored=len(appended.new),
            duplicates=len(appended.duplicates),
            already_archived=already,
            not_events=appended.not_events,
            dead_letters=len(dead_rows),
            alerts=len(alerts),
            gaps=tuple(gaps),
            next_offsets={key: head.next_offset for key, head in heads.items()},
        )
        if already == consumed and not gaps:  # all archived before: a no-op
            return replace(outcome, deals_to_refresh=store.count("dirty_deals"))
        numbers = self._new_deal_numbers(store, appended.new)
        events = pa.table(appended.columns, schema=segment_schema("events"))
        segments = {
            "events": events,
            "fold_facts": self._fold_facts(store, events, numbers),
            "duplicates": _table("duplicates", appended.duplicates),
            "dead_letters": _table("dead_letters", dead_rows),
            "alerts": _table("alerts", alerts),
        }
        streams = batch.value_streams if self.value_streams else None
        marked: list[str] = []
        if streams is not None:
            marked = sorted({stream.deal_id for stream in streams})
        elif self.value_streams:
            marked = sorted({e.deal_id for e in appended.new if e.deal_id is not None})

        def changes(catalog: sqlite3.Connection) -> None:
            _save_heads(catalog, heads, gaps)
            catalog.executemany("INSERT INTO event_index VALUES (?, ?)", appended.index)
            catalog.executemany("INSERT INTO deal_numbers VALUES (?, ?)", numbers.items())
            catalog.executemany("INSERT INTO dead_letter_keys VALUES (?, ?, ?)", dead_keys)
            catalog.executemany("INSERT INTO alert_ids VALUES (?)", [[a] for a in alert_ids])
            catalog.executemany("INSERT INTO dirty_deals VALUES (?) ON CONFLICT DO NOTHING",
                                [[deal_id] for deal_id in marked])  # fmt: skip

        store.commit(segments, changes)
        store.deal_numbers |= numbers
        self._streams |= {stream.deal_id: stream for stream in streams or ()}
        self._remember(appended.new)
        return replace(outcome, deals_to_refresh=store.count("dirty_deals"))

    def _append_events(
        self,
        store: ArchiveStore,
        batch: ArchiveBatch,
        heads: dict[tuple[str, int], ChainHead],
        gaps: list[OffsetGap],
    ) -> _Appended:
        appended = _Appended()
        fresh = fresh_records(batch.events, heads, gaps)
        appended.already_archived = len(batch.events) - len(fresh)
        given = _given_events(batch)
        decoded = [(record, self._event_of(record, given)) for record in fresh]
        ids = sorted({event.event_id for _, event in decoded if event is not None})
        stored: dict[str, bytes] = dict(
            fetch_in_chunks(
                store.catalog,
                "SELECT event_id, digest FROM event_index WHERE event_id IN ({marks})",
                ids,
            )
        )
        rows: list[tuple[Any, ...]] = []
        for record, event in decoded:
            key = (record.topic, record.partition)
            head = heads.setdefault(key, ChainHead(*key))
            if event is None:
                appended.not_events += 1
                head.consumed(record.offset)
                continue
            payload = encode(event)
            digest = hashlib.blake2b(payload, digest_size=16).digest()
            held = stored.get(event.event_id)
            if held is not None:
                appended.duplicates.append(_duplicate(record, event, held == digest))
                head.consumed(record.offset)
                continue
            stored[event.event_id] = digest
            previous = head.hash or genesis_hash(record.topic, record.partition)
            link = chain_link(record.topic, record.partition, record.offset,
                              record.recorded_at, head.event_id, payload)  # fmt: skip
            hash_ = chain_hash(previous, link)
            rows.append((
                event.event_id, str(getattr(event, "type", "")), event.occurred_at,
                record.recorded_at, event.deal_id, event.account_id, event.actor_id,
                event.campaign_id, payload.decode(), record.topic, record.partition,
                record.offset, head.event_id, hash_,
            ))  # fmt: skip
            head.linked(event.event_id, hash_, record.offset)
            appended.index.append((event.event_id, digest))
            appended.new.append(event)
        if rows:
            appended.columns = dict(zip(_EVENT_COLUMNS, map(list, zip(*rows, strict=True)),
                                        strict=True))  # fmt: skip
        return appended

    def _event_of(
        self, record: LogRecord, given: dict[tuple[str, int, int], EventBase | None] | None
    ) -> EventBase | None:
        """The record's event (decoded by the caller, else here); None for what the worker
        dead-letters instead (it reaches the archive from the dead-letter topic): a bad
        message, or one dated too far ahead."""
        if given is None:
            event = decoded_or_none(record.value)
        else:
            event = given.get((record.topic, record.partition, record.offset))
        limit = self.future_limit
        if event is not None and limit is not None and limit.is_future(event, record.recorded_at):
            return None
        return event

    def _new_deal_numbers(self, store: ArchiveStore, new: Iterable[EventBase]) -> dict[str, int]:
        """Numbers for the deals seen for the first time, in deal_id order after the last."""
        known = store.deal_numbers
        fresh = sorted({e.deal_id for e in new if e.deal_id is not None} - known.keys())
        first = max(known.values(), default=0) + 1
        return {deal_id: first + n for n, deal_id in enumerate(fresh)}

    def _fold_facts(
        self, store: ArchiveStore, events: pa.Table, numbers: dict[str, int]
    ) -> pa.Table:
        """The fold facts of the new events, derived by DuckDB from their payloads."""
        schema = segment_schema("fold_facts")
        if not events.num_rows:
            return schema.empty_table()
        deals = set(events.column("deal_id").drop_null().to_pylist())
        known = store.deal_numbers
        numbered = {d: numbers[d] if d in numbers else known[d] for d in deals}
        scratch = store.scratch
        scratch.register("events", events)
        scratch.register(
            "deal_numbers",
            pa.table(
                {"deal_id": list(numbered), "deal_no": pa.array(numbered.values(), pa.int32())}
            ),
        )
        try:
            facts = scratch.sql(FACTS_SELECT).to_arrow_table()
        finally:
            scratch.unregister("events")
            scratch.unregister("deal_numbers")
        return facts.rename_columns(schema.names).cast(schema)

    def _value_stream_segments(
        self, streams: Sequence[DealValueStream], version: int
    ) -> dict[str, pa.Table]:
        rows: dict[str, list[dict[str, Any]]] = {table: [] for table in VALUE_STREAM_TABLES}
        for stream in streams:
            for table, table_rows in value_stream_rows(stream, self.policy).items():
                rows[table] += table_rows
        return {
            table: _table(table, [{**row, "version": version} for row in table_rows])
            for table, table_rows in rows.items()
        }

    def _refold(
        self, store: ArchiveStore, deal_ids: list[str]
    ) -> tuple[list[DealValueStream], list[str]]:
        """Each deal refolded from all its archived events; the streams, and the failed ones."""
        if not deal_ids:
            return [], []
        facts = self._deal_events(store, deal_ids)
        streams, failed = [], []
        for deal_id in deal_ids:
            try:
                streams.append(deal_value_stream(list(facts[deal_id].values()), self.policy))
            except DealNotOpened:
                continue  # its deal_opened event has not arrived yet
            except Exception:
                failed.append(deal_id)  # its rows from before stay; its next event retries
        return streams, failed

    def _remember(self, new: list[EventBase]) -> None:
        """Add newly stored events to the deals the writer holds decoded."""
        for event in new:
            held = self._decoded.get(event.deal_id or "")
            if held is not None:
                held[event.event_id] = event

    def _deal_events(
        self, store: ArchiveStore, deal_ids: list[str]
    ) -> dict[str, dict[str, EventBase]]:
        """Each deal's archived events: from the writer's memory, else read back and decoded."""
        missing = [deal_id for deal_id in deal_ids if deal_id not in self._decoded]
        if missing:
            files = [str(f) for f in store.snapshot().segments["events"]]
            loaded: dict[str, dict[str, EventBase]] = {deal_id: {} for deal_id in missing}
            if files:
                scratch = store.scratch
                scratch.register(
                    "missing_deals", pa.table({"deal_id": pa.array(missing, pa.string())})
                )
                try:
                    rows = scratch.execute(
                        "SELECT deal_id, payload FROM read_parquet($files) "
                        "WHERE deal_id IN (SELECT deal_id FROM missing_deals)",
                        {"files": files},
                    ).fetchall()
                finally:
                    scratch.unregister("missing_deals")
                for deal_id, payload in rows:
                    event = archived_event(payload)
                    loaded[deal_id][event.event_id] = event
            self._decoded.update(loaded)
        facts: dict[str, dict[str, EventBase]] = {}
        for deal_id in deal_ids:
            facts[deal_id] = self._decoded[deal_id]
            self._decoded.move_to_end(deal_id)
        while len(self._decoded) > self._decoded_deals:
            self._decoded.popitem(last=False)
        return facts


def _given_events(batch: ArchiveBatch) -> dict[tuple[str, int, int], EventBase | None] | None:
    """The caller's decoded events by (topic, partition, offset); None: the writer decodes."""
    if batch.decoded is None:
        return None
    return {
        (record.topic, record.partition, record.offset): event
        for record, event in zip(batch.events, batch.decoded, strict=True)
    }


def _duplicate(record: LogRecord, event: EventBase, identical: bool) -> dict[str, Any]:
    """The duplicates row of a later copy of a stored event (`identical`: same payload)."""
    return {
        "topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "recorded_at": record.recorded_at,
        "event_id": event.event_id,
        "identical": identical,
    }


def _table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=segment_schema(name))


def _known_dead_letters(
    store: ArchiveStore, records: Sequence[LogRecord]
) -> set[tuple[str, int, int]]:
    if not records:
        return set()
    rows = store.catalog.execute("SELECT * FROM dead_letter_keys").fetchall()
    return {(str(t), int(p), int(o)) for t, p, o in rows}


def _known_alerts(store: ArchiveStore, records: Sequence[LogRecord]) -> set[str]:
    if not records:
        return set()
    return {str(a) for (a,) in store.catalog.execute("SELECT alert_id FROM alert_ids")}


def _save_heads(
    catalog: sqlite3.Connection,
    heads: dict[tuple[str, int], ChainHead],
    gaps: Sequence[OffsetGap],
) -> None:
    """Save each partition's head, and the gaps noted, in the catalog transaction."""
    catalog.executemany(
        "INSERT INTO offsets VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (topic, source_partition) "
        "DO UPDATE SET next_offset = excluded.next_offset, chain_length = excluded.chain_length,"
        " head_event_id = excluded.head_event_id, head_hash = excluded.head_hash",
        [
            (h.topic, h.partition, h.next_offset, h.length if h.hash else None, h.event_id, h.hash)
            for h in heads.values()
        ],
    )
    catalog.executemany(
        "INSERT INTO offset_gaps VALUES (?, ?, ?, ?)",
        [(g.topic, g.partition, g.first, g.last) for g in gaps],
    )
