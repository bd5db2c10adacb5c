"""The archive's one writer: batches of records appended in one transaction with their offsets,
and the value-stream tables of the deals they touch refolded."""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from events import EventBase, encode
from events.future import FutureLimit
from projections.archive.chain import ChainHead, partition_heads
from projections.archive.connection import Connection
from projections.archive.facts import fill_facts
from projections.archive.log_tables import (
    append_alerts,
    append_dead_letters,
    count_rows,
    deal_ids_table,
    duplicate_row,
    event_row,
    fresh_records,
    insert_rows,
    save_heads,
    stored_payloads,
)
from projections.archive.opening import transaction
from projections.archive.records import (
    ArchiveBatch,
    BatchOutcome,
    LogRecord,
    OffsetGap,
    archived_event,
    decoded_or_none,
)
from projections.archive.value_stream_rows import VALUE_STREAM_TABLES, value_stream_rows
from projections.deal.value_stream import deal_value_stream
from projections.errors import DealNotOpened
from projections.policy.model import Policy

__all__ = ["DECODED_DEALS", "HistoryWriter"]

DECODED_DEALS = 5_000
"""Deals whose events the writer keeps decoded between batches (the rest are read back)."""


@dataclass
class _EventsAppended:
    new: list[EventBase] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    already_archived: int = 0
    not_events: int = 0


class HistoryWriter:
    """The archive's one writer: appends batches, each in one transaction with its offsets.

    Every event is stored once, keyed by event_id; a later copy of a stored id is not
    stored (its offset is recorded as consumed, and the copy listed in `duplicates`).
    A record at an offset the archive already holds changes nothing, so a batch
    appended twice (a crash between the commit and the Kafka ack) is a no-op. The
    value-stream tables of the deals a batch touches are refolded under `policy` from
    all their archived events, each as of its own latest event, exactly as the streaming
    worker folds them (unless `value_streams` is False: then only the log is archived).
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

    def append(
        self, connection: Connection, batch: ArchiveBatch, *, refresh: bool = True
    ) -> BatchOutcome:
        """Append the batch and move the offsets, all or nothing.

        The deals the batch touches are marked for refolding in the same transaction;
        with `refresh` they are refolded in it too, else `refresh()` does it later
        (the sink does, once the stream is quiet: each deal then refolds once for many
        batches while history pours in).
        """
        with self._writing(connection):
            outcome = self._append(connection, batch)
            return self._refresh(connection, outcome, None) if refresh else outcome

    def refresh(self, connection: Connection, limit: int | None = None) -> BatchOutcome:
        """Refold up to `limit` deals marked by earlier batches (None: all), in one transaction."""
        with self._writing(connection):
            return self._refresh(connection, BatchOutcome(), limit)

    @contextmanager
    def _writing(self, connection: Connection) -> Iterator[None]:
        try:
            with transaction(connection):
                yield
        except BaseException:
            self._decoded.clear()  # it may hold events that were rolled back
            raise

    def _append(self, connection: Connection, batch: ArchiveBatch) -> BatchOutcome:
        heads = partition_heads(connection)
        gaps: list[OffsetGap] = []
        appended = self._append_events(connection, batch.events, heads, gaps)
        dead = append_dead_letters(connection, batch.dead_letters, heads, gaps)
        alerts = append_alerts(connection, batch.alerts, heads, gaps)
        self._remember(appended.new)
        if self.value_streams:
            touched = sorted({e.deal_id for e in appended.new if e.deal_id is not None})
            rows = [{"deal_id": deal_id} for deal_id in touched]
            insert_rows(connection, "dirty_deals", rows, "ON CONFLICT DO NOTHING")
        save_heads(connection, heads, gaps)
        return BatchOutcome(
            stored=len(appended.rows),
            duplicates=len(appended.duplicates),
            already_archived=appended.already_archived + dead[1] + alerts[1],
            not_events=appended.not_events,
            dead_letters=dead[0],
            alerts=alerts[0],
            gaps=tuple(gaps),
            next_offsets={key: head.next_offset for key, head in heads.items()},
            deals_to_refresh=count_rows(connection, "dirty_deals"),
        )

    def _refresh(
        self, connection: Connection, outcome: BatchOutcome, limit: int | None
    ) -> BatchOutcome:
        top = "" if limit is None else f"LIMIT {int(limit)}"
        marked = connection.execute(f"SELECT deal_id FROM dirty_deals ORDER BY deal_id {top}")
        deal_ids = [str(deal_id) for (deal_id,) in marked.fetchall()]
        failed = self._refresh_deals(connection, deal_ids)
        with deal_ids_table(connection, "refolded_deals", deal_ids):
            connection.execute(
                "DELETE FROM dirty_deals WHERE deal_id IN (SELECT deal_id FROM refolded_deals)"
            )
        return replace(
            outcome,
            deals_refreshed=len(deal_ids) - len(failed),
            failed_deals=tuple(failed),
            deals_to_refresh=count_rows(connection, "dirty_deals"),
        )

    def _append_events(
        self,
        connection: Connection,
        records: Sequence[LogRecord],
        heads: dict[tuple[str, int], ChainHead],
        gaps: list[OffsetGap],
    ) -> _EventsAppended:
        appended = _EventsAppended()
        fresh = fresh_records(records, heads, gaps)
        appended.already_archived = len(records) - len(fresh)
        decoded = [(record, self._event_or_none(record)) for record in fresh]
        stored = stored_payloads(connection, {e.event_id for _, e in decoded if e is not None})
        for record, event in decoded:
            key = (record.topic, record.partition)
            head = heads.setdefault(key, ChainHead(*key))
            if event is None:
                appended.not_events += 1
                head.consumed(record.offset)
                continue
            payload = encode(event)
            if event.event_id in stored:
                appended.duplicates.append(
                    duplicate_row(record, event, payload == stored[event.event_id])
                )
                head.consumed(record.offset)
                continue
            row = event_row(record, event, payload, head)
            stored[event.event_id] = payload
            head.linked(event.event_id, row["chain_hash"], record.offset)
            appended.rows.append(row)
            appended.new.append(event)
        insert_rows(connection, "events", appended.rows)
        if appended.rows:
            ids = pa.table({"event_id": pa.array([row["event_id"] for row in appended.rows])})
            connection.register("appended_event_ids", ids)
            try:
                fill_facts(connection, only="appended_event_ids")
            finally:
                connection.unregister("appended_event_ids")
        insert_rows(connection, "duplicates", appended.duplicates)
        return appended

    def _event_or_none(self, record: LogRecord) -> EventBase | None:
        """The record's event; None for what the worker dead-letters instead (it reaches the
        archive from the dead-letter topic): a bad message, or one dated too far ahead."""
        event = decoded_or_none(record.value)
        limit = self.future_limit
        if event is not None and limit is not None and limit.is_future(event, record.recorded_at):
            return None
        return event

    def _refresh_deals(self, connection: Connection, deal_ids: list[str]) -> list[str]:
        """Refold each deal from all its archived events and replace its rows; the failed ones."""
        if not deal_ids:
            return []
        facts = self._deal_events(connection, deal_ids)
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        failed = []
        for deal_id in deal_ids:
            events = list(facts[deal_id].values())
            try:
                stream = deal_value_stream(events, self.policy)
            except DealNotOpened:
                continue  # its deal_opened event has not arrived yet
            except Exception:
                failed.append(deal_id)  # its rows from before stay; its next event retries
                continue
            for table, table_rows in value_stream_rows(stream, self.policy).items():
                rows[table] += table_rows
        refreshed = [deal_id for deal_id in deal_ids if deal_id not in failed]
        with deal_ids_table(connection, "refreshed_deals", refreshed):
            for table in VALUE_STREAM_TABLES:
                connection.execute(
                    f"DELETE FROM {table} WHERE deal_id IN (SELECT deal_id FROM refreshed_deals)"
                )
        for table in VALUE_STREAM_TABLES:
            insert_rows(connection, table, rows[table])
        return failed

    def _remember(self, new: list[EventBase]) -> None:
        """Add newly stored events to the deals the writer holds decoded."""
        for event in new:
            held = self._decoded.get(event.deal_id or "")
            if held is not None:
                held[event.event_id] = event

    def _deal_events(
        self, connection: Connection, deal_ids: list[str]
    ) -> dict[str, dict[str, EventBase]]:
        """Each deal's archived events: from the writer's memory, else read back and decoded."""
        facts: dict[str, dict[str, EventBase]] = {}
        missing = [deal_id for deal_id in deal_ids if deal_id not in self._decoded]
        if missing:
            with deal_ids_table(connection, "missing_deals", missing):
                rows = connection.execute(
                    "SELECT deal_id, payload FROM events "
                    "WHERE deal_id IN (SELECT deal_id FROM missing_deals)"
                ).fetchall()
            loaded: dict[str, dict[str, EventBase]] = {deal_id: {} for deal_id in missing}
            for deal_id, payload in rows:
                event = archived_event(payload)
                loaded[deal_id][event.event_id] = event
            self._decoded.update(loaded)
        for deal_id in deal_ids:
            facts[deal_id] = self._decoded[deal_id]
            self._decoded.move_to_end(deal_id)
        while len(self._decoded) > self._decoded_deals:
            self._decoded.popitem(last=False)
        return facts
