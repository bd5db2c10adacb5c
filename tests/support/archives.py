"""History archives for tests: event lines written to a real DuckDB file as the sink writes them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from events import decode
from projections import default_policy
from projections.archive import ArchiveBatch, HistoryWriter, LogRecord, open_archive

__all__ = ["RECORDED_AFTER", "archive_of"]

RECORDED_AFTER = timedelta(minutes=1)
"""Each event is recorded (its Kafka timestamp) this long after it occurred."""


def archive_of(path: Path, lines: Iterable[bytes], *, value_streams: bool = False) -> Path:
    """An archive at `path` holding `lines` on one partition, in order, recorded a minute
    after each occurred; with `value_streams`, the value-stream tables are filled too."""
    records = [
        LogRecord("touches", 0, offset, decode(line).occurred_at + RECORDED_AFTER, line)
        for offset, line in enumerate(lines)
    ]
    connection = open_archive(path)
    try:
        HistoryWriter(default_policy(), value_streams=value_streams).append(
            connection, ArchiveBatch(events=records)
        )
    finally:
        connection.close()
    return path
