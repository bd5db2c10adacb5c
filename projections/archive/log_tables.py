"""The log's records as the writer appends them: each record once, keyed by its offset;
dead letters keyed by the source record they came from, alerts by alert_id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from projections.archive.chain import ChainHead
from projections.archive.records import AlertRow, LogRecord, OffsetGap

__all__ = ["alert_rows", "dead_letter_rows", "fresh_records"]


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


def _advance(
    records: Sequence[LogRecord], heads: dict[tuple[str, int], ChainHead], gaps: list[OffsetGap]
) -> list[LogRecord]:
    """The fresh records, each marked consumed on its partition's head."""
    fresh = fresh_records(records, heads, gaps)
    for record in fresh:
        key = (record.topic, record.partition)
        heads.setdefault(key, ChainHead(*key)).consumed(record.offset)
    return fresh


def dead_letter_rows(
    records: Sequence[LogRecord],
    heads: dict[tuple[str, int], ChainHead],
    gaps: list[OffsetGap],
    known: set[tuple[str, int, int]],
) -> tuple[list[dict[str, Any]], list[tuple[str, int, int]], int]:
    """New dead-letter rows (a re-sent one, of a source record in `known`, is kept once),
    their source keys, and how many records were archived already."""
    fresh = _advance(records, heads, gaps)
    rows: dict[tuple[str, int, int], dict[str, Any]] = {}
    for record in fresh:
        headers = record.headers
        source = (
            headers.get("source.topic", record.topic.encode()).decode(errors="replace"),
            int(headers.get("source.partition", str(record.partition).encode())),
            int(headers.get("source.offset", str(record.offset).encode())),
        )
        if source in known:
            continue
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
    return list(rows.values()), list(rows), len(records) - len(fresh)


def alert_rows(
    records: Sequence[LogRecord],
    heads: dict[tuple[str, int], ChainHead],
    gaps: list[OffsetGap],
    known: set[str],
) -> tuple[list[dict[str, Any]], list[str], int]:
    """New alert rows (an alert published twice, or already in `known`, is kept once),
    their ids, and how many records were archived already."""
    fresh = _advance(records, heads, gaps)
    rows: dict[str, dict[str, Any]] = {}
    for record in fresh:
        alert = AlertRow.parse(record.value)
        if alert is None or alert.alert_id in known:
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
    return list(rows.values()), list(rows), len(records) - len(fresh)
