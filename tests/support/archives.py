"""History archives for tests: event lines written to a real DuckDB file as the sink writes them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

import duckdb

from events import decode
from projections import default_policy
from projections.archive import ArchiveBatch, HistoryWriter, LogRecord, open_archive
from projections.archive.schema import SCHEMA
from projections.archive.store import CATALOG_TABLES, SEGMENT_TABLES, segment_schema

__all__ = ["RECORDED_AFTER", "archive_of", "single_file_of", "tamper"]

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


def tamper(path: Path, *statements: str) -> None:
    """Change the archive behind its writer's back, as someone holding its files could:
    each segment table a statement names is read whole into DuckDB, changed by the
    statements, and written back as one segment listed in the catalog in place of its old
    ones (what the audit must then notice)."""
    with open_archive(path) as store:
        snapshot = store.snapshot()
        scratch = store.scratch
        named = [
            table
            for table in SEGMENT_TABLES
            if any(re.search(rf"\b{table}\b", statement) for statement in statements)
        ]
        for table in named:
            scratch.register("empty_segment", segment_schema(table).empty_table())
            scratch.execute(f"CREATE TABLE {table} AS FROM empty_segment")
            scratch.unregister("empty_segment")
            files = [str(file) for file in snapshot.segments[table]]
            if files:
                scratch.execute(f"INSERT INTO {table} FROM read_parquet($files)", {"files": files})
        for statement in statements:
            scratch.execute(statement)
        for table in named:
            rows = scratch.sql(f"FROM {table}").to_arrow_table()
            retired = tuple(file.name for file in snapshot.segments[table])
            store.commit({table: rows}, lambda _: None, retire=retired)


def single_file_of(path: Path, file: Path, version: int = 2) -> Path:
    """The archive at `path` written to `file` in the old format (one DuckDB file, schema
    `version` 2), as a writer before segments and a catalog left it."""
    with open_archive(path) as store, duckdb.connect(str(file)) as old:
        reader = store.reader()
        old.execute(SCHEMA)
        for table in [*SEGMENT_TABLES, *CATALOG_TABLES]:
            rows = reader.sql(f"FROM {table}").to_arrow_table()
            old.register("rows", rows)
            old.execute(f"INSERT INTO {table} BY NAME FROM rows")
            old.unregister("rows")
        old.execute("INSERT INTO archive_schema VALUES (?)", [version])
        reader.close()
    return file
