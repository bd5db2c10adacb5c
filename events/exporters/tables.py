"""Writing the event log as a table (CSV or Parquet): one row per event, payload as JSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from events.codec import encode
from events.exporters.csv_cells import neutralise_row
from events.exporters.xes import activity
from events.models import EventBase

__all__ = ["EVENT_COLUMNS", "write_csv", "write_parquet"]

EVENT_COLUMNS = (
    "event_id", "type", "activity", "occurred_at", "occurred_at_local", "recorded_at",
    "deal_id", "account_id", "contact_id", "actor_id", "campaign_id", "payload",
)  # fmt: skip
"""Columns of the table: times in UTC, plus the time as recorded with its own offset."""

_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("type", pa.string()),
        ("activity", pa.string()),
        ("occurred_at", pa.timestamp("us", tz="UTC")),
        ("occurred_at_local", pa.string()),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
        ("deal_id", pa.string()),
        ("account_id", pa.string()),
        ("contact_id", pa.string()),
        ("actor_id", pa.string()),
        ("campaign_id", pa.string()),
        ("payload", pa.string()),
    ]
)
_BATCH = 50_000


def _row(event: EventBase, recorded_at: datetime) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "type": str(getattr(event, "type", "")),
        "activity": activity(event),
        "occurred_at": event.occurred_at.astimezone(UTC),
        "occurred_at_local": event.occurred_at.isoformat(),
        "recorded_at": recorded_at.astimezone(UTC),
        "deal_id": event.deal_id,
        "account_id": event.account_id,
        "contact_id": event.contact_id,
        "actor_id": event.actor_id,
        "campaign_id": event.campaign_id,
        "payload": encode(event).decode(),
    }


def write_csv(
    records: Iterable[tuple[EventBase, datetime]], sink: IO[bytes], *, raw: bool = False
) -> int:
    """Write a header and one row per event (times ISO 8601); return the rows written.

    Cells a spreadsheet would run as formulas get a ' in front (`neutralise_cell`),
    unless `raw`: then every cell is written as it is.
    """
    text = io.TextIOWrapper(sink, encoding="utf-8", newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(EVENT_COLUMNS)
    rows = 0
    for event, recorded_at in records:
        row = _row(event, recorded_at)
        row["occurred_at"] = row["occurred_at"].isoformat()
        row["recorded_at"] = row["recorded_at"].isoformat()
        cells = [row[column] for column in EVENT_COLUMNS]
        writer.writerow(cells if raw else neutralise_row(cells))
        rows += 1
    text.flush()
    text.detach()
    return rows


def write_parquet(records: Iterable[tuple[EventBase, datetime]], path: Path) -> int:
    """Write one Parquet file (zstd), in row groups of 50,000; return the rows written."""
    rows = 0
    batch: list[dict[str, Any]] = []
    with pq.ParquetWriter(str(path), _SCHEMA, compression="zstd") as writer:
        for event, recorded_at in records:
            batch.append(_row(event, recorded_at))
            if len(batch) >= _BATCH:
                writer.write_table(pa.Table.from_pylist(batch, schema=_SCHEMA))
                rows += len(batch)
                batch = []
        if batch or rows == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=_SCHEMA))
            rows += len(batch)
    return rows
