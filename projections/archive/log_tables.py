"""The log's tables as the writer appends to them: events (hash-chained), duplicates,
dead letters, alerts, offsets and gaps; each record once, keyed by its offset."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from events import EventBase
from projections.archive.chain import ChainHead, chain_hash, chain_link, genesis_hash
from projections.archive.connection import Connection
from projections.archive.opening import scalar
from projections.archive.records import AlertRow, LogRecord, OffsetGap

__all__ = [
    "append_alerts",
    "append_dead_letters",
    "count_rows",
    "deal_ids_table",
    "duplicate_row",
    "event_row",
    "fresh_records",
    "insert_rows",
    "save_heads",
    "stored_payloads",
]


def insert_rows(
    connection: Connection,
    table: str,
    rows: Sequence[Mapping[str, Any]],
    on_conflict: str = "",
) -> None:
    """Append rows to `table` through one Arrow table, by column name, in the transaction."""
    if not rows:
        return
    name = f"incoming_{table}"
    connection.register(name, pa.Table.from_pylist(list(rows)))
    try:
        connection.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {name} {on_conflict}")
    finally:
        connection.unregister(name)


@contextmanager
def deal_ids_table(connection: Connection, name: str, deal_ids: Sequence[str]) -> Iterator[None]:
    """Deal ids as a temporary table `name`, for joins."""
    connection.register(name, pa.table({"deal_id": pa.array(deal_ids, pa.string())}))
    try:
        yield
    finally:
        connection.unregister(name)


def fresh_records(
    records: Sequence[LogRecord], heads: dict[tuple[str, int], ChainHead], gaps: list[OffsetGap]
) -> list[LogRecord]:
    """The records at offsets not yet archived, in offset order, one per offset; gaps noted."""
    fresh: list[LogRecord] = []
    expected: dict[tuple[str, int], int] = {}
    for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        key = (record.topic, record.partition)
        head = heads.get(key, ChainHead(*key))
        after = expected.get(key, head.next_offset)
        if record.offset < after:
            continue
        if record.offset > after:
            gaps.append(OffsetGap(record.topic, record.partition, after, record.offset - 1))
        expected[key] = record.offset + 1
        fresh.append(record)
    return fresh


def stored_payloads(connection: Connection, event_ids: set[str]) -> dict[str, bytes]:
    """The canonical payloads the archive already holds for these event ids."""
    if not event_ids:
        return {}
    connection.register("incoming_ids", pa.table({"event_id": sorted(event_ids)}))
    try:
        rows = connection.execute(
            "SELECT event_id, payload FROM events "
            "WHERE event_id IN (SELECT event_id FROM incoming_ids)"
        ).fetchall()
    finally:
        connection.unregister("incoming_ids")
    return {str(event_id): str(payload).encode() for event_id, payload in rows}


def event_row(
    record: LogRecord, event: EventBase, payload: bytes, head: ChainHead
) -> dict[str, Any]:
    """The events row of a new event: its columns, where it came from, and its chain link."""
    previous = head.hash or genesis_hash(record.topic, record.partition)
    link = chain_link(
        record.topic, record.partition, record.offset, record.recorded_at, head.event_id, payload
    )
    return {
        "event_id": event.event_id,
        "type": str(getattr(event, "type", "")),
        "occurred_at": event.occurred_at,
        "recorded_at": record.recorded_at,
        "deal_id": event.deal_id,
        "account_id": event.account_id,
        "actor_id": event.actor_id,
        "campaign_id": event.campaign_id,
        "payload": payload.decode(),
        "source_topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "previous_event_id": head.event_id,
        "chain_hash": chain_hash(previous, link),
    }


def duplicate_row(record: LogRecord, event: EventBase, identical: bool) -> dict[str, Any]:
    """The duplicates row of a later copy of a stored event (`identical`: same payload)."""
    return {
        "topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "recorded_at": record.recorded_at,
        "event_id": event.event_id,
        "identical": identical,
    }


def _advance(
    records: Sequence[LogRecord], heads: dict[tuple[str, int], ChainHead], gaps: list[OffsetGap]
) -> list[LogRecord]:
    """The fresh records, each marked consumed on its partition's head."""
    fresh = fresh_records(records, heads, gaps)
    for record in fresh:
        key = (record.topic, record.partition)
        heads.setdefault(key, ChainHead(*key)).consumed(record.offset)
    return fresh


def append_dead_letters(
    connection: Connection,
    records: Sequence[LogRecord],
    heads: dict[tuple[str, int], ChainHead],
    gaps: list[OffsetGap],
) -> tuple[int, int]:
    """Dead letters keyed by the source record they came from: a re-sent one is kept once."""
    fresh = _advance(records, heads, gaps)
    rows: dict[tuple[str, int, int], dict[str, Any]] = {}
    for record in fresh:
        headers = record.headers
        source = (
            headers.get("source.topic", record.topic.encode()).decode(errors="replace"),
            int(headers.get("source.partition", str(record.partition).encode())),
            int(headers.get("source.offset", str(record.offset).encode())),
        )
        rows.setdefault(
            source,
            {
                "source_topic": source[0],
                "source_partition": source[1],
                "source_offset": source[2],
                "reason": headers.get("reason", b"").decode(errors="replace") or None,
                "key": record.key,
                "value": record.value,
                "recorded_at": record.recorded_at,
                "dlq_partition": record.partition,
                "dlq_offset": record.offset,
            },
        )
    before = count_rows(connection, "dead_letters")
    insert_rows(connection, "dead_letters", list(rows.values()), "ON CONFLICT DO NOTHING")
    return count_rows(connection, "dead_letters") - before, len(records) - len(fresh)


def append_alerts(
    connection: Connection,
    records: Sequence[LogRecord],
    heads: dict[tuple[str, int], ChainHead],
    gaps: list[OffsetGap],
) -> tuple[int, int]:
    """Alerts keyed by alert_id: an alert published twice is kept once."""
    fresh = _advance(records, heads, gaps)
    rows: dict[str, dict[str, Any]] = {}
    for record in fresh:
        alert = AlertRow.parse(record.value)
        if alert is None:
            continue
        rows.setdefault(
            alert.alert_id,
            {
                "alert_id": alert.alert_id,
                "kind": alert.kind,
                "deal_id": alert.deal_id,
                "stage": alert.stage,
                "occurred_at": alert.occurred_at,
                "recorded_at": record.recorded_at,
                "payload": record.value.decode(),
                "source_partition": record.partition,
                "source_offset": record.offset,
            },
        )
    before = count_rows(connection, "alerts")
    insert_rows(connection, "alerts", list(rows.values()), "ON CONFLICT DO NOTHING")
    return count_rows(connection, "alerts") - before, len(records) - len(fresh)


def count_rows(connection: Connection, table: str) -> int:
    """How many rows `table` holds."""
    return int(scalar(connection, f"SELECT count(*) FROM {table}"))


def save_heads(
    connection: Connection,
    heads: Mapping[tuple[str, int], ChainHead],
    gaps: Sequence[OffsetGap],
) -> None:
    """Save each partition's head to `offsets`, and the gaps noted, in the transaction."""
    rows = [
        {
            "topic": head.topic,
            "source_partition": head.partition,
            "next_offset": head.next_offset,
            "chain_length": head.length if head.hash else None,
            "head_event_id": head.event_id,
            "head_hash": head.hash,
        }
        for head in heads.values()
    ]
    insert_rows(
        connection,
        "offsets",
        rows,
        "ON CONFLICT DO UPDATE SET next_offset = excluded.next_offset, "
        "chain_length = excluded.chain_length, head_event_id = excluded.head_event_id, "
        "head_hash = excluded.head_hash",
    )
    for gap in gaps:
        connection.execute(
            "INSERT INTO offset_gaps VALUES (?, ?, ?, ?)",
            [gap.topic, gap.partition, gap.first, gap.last],
        )
