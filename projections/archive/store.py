"""The archive on disk: immutable Parquet segments and one SQLite catalog, in one directory.

    <archive>/catalog.sqlite3   which segments are live, offsets and chain heads, indexes
    <archive>/segments/         <table>-<seq>.parquet, written to a temporary name, renamed
    <archive>/writer.lock       held (flock, exclusive) by the one writer while it is open
    <archive>/readers.lock      held (flock, shared) by every reader while its snapshot lives

A batch is committed by one SQLite transaction (WAL mode) that lists its new segments
beside the offsets and chain heads it moves: a reader reads the catalog without waiting
(SQLite WAL readers see the last commit, the writer never waits for them), and DuckDB reads
the listed files, which never change. A file that no commit lists (a crash between the
rename and the commit) is removed when the writer next opens the archive. A segment
replaced by compaction is retired and deleted only once no reader holds `readers.lock`.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from projections.archive.errors import ArchiveBusy, ArchiveMissing, HistoryError
from projections.archive.schema import SCHEMA

__all__ = [
    "CATALOG",
    "CATALOG_TABLES",
    "FORMAT_VERSION",
    "JSON_COLUMNS",
    "SEGMENT_TABLES",
    "VERSIONED_TABLES",
    "Snapshot",
    "WriterLock",
    "catalog_connection",
    "hold_readers_lock",
    "is_old_format",
    "read_snapshot",
    "segment_schema",
    "segments_dir",
    "write_segment",
]

FORMAT_VERSION = 3
"""The archive's on-disk format: 3 is the segments and catalog (1 and 2 were one DuckDB file)."""

CATALOG = "catalog.sqlite3"
SEGMENTS = "segments"
WRITER_LOCK = "writer.lock"
READERS_LOCK = "readers.lock"

VERSIONED_TABLES = ("vs_deals", "vs_stages", "vs_visits", "vs_touches", "vs_stalls")
"""Value-stream tables: each stored version of a deal carries `version` (the commit that
stored it); the reader's view of the table keeps each deal's latest version only."""
SEGMENT_TABLES = (
    "events",
    "fold_facts",
    "duplicates",
    "dead_letters",
    "alerts",
    *VERSIONED_TABLES,
)
"""Tables stored as Parquet segments (append-only)."""
CATALOG_TABLES: Mapping[str, str] = {
    "offsets": "SELECT topic, source_partition, next_offset, chain_length, head_event_id, "
    "head_hash FROM offsets",
    "offset_gaps": "SELECT topic, source_partition, first_offset, last_offset FROM offset_gaps",
    "deal_numbers": "SELECT deal_id, deal_no FROM deal_numbers",
    "dirty_deals": "SELECT deal_id FROM dirty_deals",
}
"""Small tables kept in the catalog; a reader sees them as tables of the same names."""
JSON_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "events": ("payload",),
    "alerts": ("payload",),
    "vs_deals": ("value_stream",),
}
"""Columns of JSON type (Parquet stores them as text; the reader's views cast them back)."""

CATALOG_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS segments (
    seq INTEGER PRIMARY KEY, table_name TEXT NOT NULL, file TEXT NOT NULL UNIQUE,
    rows INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS retired (file TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL, source_partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    chain_length INTEGER, head_event_id TEXT, head_hash TEXT,
    PRIMARY KEY (topic, source_partition));
CREATE TABLE IF NOT EXISTS offset_gaps (
    topic TEXT NOT NULL, source_partition INTEGER NOT NULL,
    first_offset INTEGER NOT NULL, last_offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deal_numbers (deal_id TEXT PRIMARY KEY, deal_no INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dirty_deals (deal_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS event_index (event_id TEXT PRIMARY KEY, digest BLOB NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letter_keys (
    source_topic TEXT NOT NULL, source_partition INTEGER NOT NULL,
    source_offset INTEGER NOT NULL, PRIMARY KEY (source_topic, source_partition, source_offset))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alert_ids (alert_id TEXT PRIMARY KEY) WITHOUT ROWID;
"""


@cache
def segment_schema(table: str) -> pa.Schema:
    """The Arrow schema of a segment table: its DuckDB columns (plus `version` when the
    table is versioned), so that every segment of a table reads back alike."""
    with duckdb.connect() as connection:
        connection.execute(SCHEMA)
        schema = connection.sql(f"SELECT * FROM {table} LIMIT 0").to_arrow_table().schema
    if table in VERSIONED_TABLES:
        schema = schema.append(pa.field("version", pa.int64(), nullable=False))
    return schema


def segments_dir(path: Path) -> Path:
    return path / SEGMENTS


def is_old_format(path: Path) -> bool:
    """Whether `path` is an archive of the old format: one DuckDB file."""
    return path.is_file()


def catalog_connection(path: Path, *, read_only: bool) -> sqlite3.Connection:
    """The catalog, in WAL mode: readers see the last commit and never make the writer wait."""
    file = path / CATALOG
    if read_only:
        connection = sqlite3.connect(
            f"{file.as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        connection = sqlite3.connect(file, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.executescript(CATALOG_DDL)
    connection.execute("PRAGMA busy_timeout = 5000")
    return connection


@contextmanager
def catalog_transaction(catalog: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """All or nothing on the catalog (BEGIN IMMEDIATE: the one writer)."""
    catalog.execute("BEGIN IMMEDIATE")
    try:
        yield catalog
    except BaseException:
        catalog.execute("ROLLBACK")
        raise
    catalog.execute("COMMIT")


def meta_value(catalog: sqlite3.Connection, key: str, default: int = 0) -> int:
    row = catalog.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return default if row is None else int(row[0])


def set_meta(catalog: sqlite3.Connection, key: str, value: int) -> None:
    catalog.execute(
        "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )


def write_segment(path: Path, table: str, seq: int, rows: pa.Table) -> str:
    """Write `rows` as the table's segment number `seq` (temporary name, then rename); its
    file name, for the catalog. Nothing lists it until the catalog commits it."""
    name = f"{table}-{seq:012d}.parquet"
    final = segments_dir(path) / name
    temporary = final.with_name(f".{name}.tmp")
    pq.write_table(rows.cast(segment_schema(table)), temporary, compression="lz4")
    os.replace(temporary, final)
    return name


def remove_orphans(path: Path, catalog: sqlite3.Connection) -> int:
    """Remove segment files no commit lists (written before a crash, never committed)."""
    listed = {file for (file,) in catalog.execute("SELECT file FROM segments")}
    listed |= {file for (file,) in catalog.execute("SELECT file FROM retired")}
    removed = 0
    for file in segments_dir(path).iterdir():
        if file.name not in listed:
            file.unlink(missing_ok=True)
            removed += 1
    return removed


class WriterLock:
    """The one writer's exclusive lock on an archive (never waited for: ArchiveBusy)."""

    def __init__(self, path: Path) -> None:
        self._file: IO[bytes] | None = open(path / WRITER_LOCK, "ab")  # noqa: SIM115
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            self._file = None
            raise ArchiveBusy(
                f"the archive {path} is in use by another process (another writer holds "
                f"{WRITER_LOCK}): stop it, or point GEMBA_DUCKDB_PATH elsewhere"
            ) from None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file lets go of the lock
            self._file = None


def hold_readers_lock(path: Path, owner: object) -> None:
    """Hold a shared lock on the archive's readers.lock as long as `owner` lives: the
    writer deletes retired segments only when no reader holds it."""
    try:
        file = open(path / READERS_LOCK, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return  # no writer has ever compacted this archive: nothing is ever deleted
    fcntl.flock(file, fcntl.LOCK_SH)
    weakref.finalize(owner, file.close)


def delete_retired(path: Path, catalog: sqlite3.Connection) -> int:
    """Delete retired segments if no reader holds readers.lock now (never waits); how many."""
    retired = [file for (file,) in catalog.execute("SELECT file FROM retired")]
    if not retired:
        return 0
    with open(path / READERS_LOCK, "ab") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # a reader may be reading one of them: try again later
        for file in retired:
            (segments_dir(path) / file).unlink(missing_ok=True)
        with catalog_transaction(catalog):
            catalog.executemany("DELETE FROM retired WHERE file = ?", [[f] for f in retired])
    return len(retired)


@dataclass(frozen=True)
class Snapshot:
    """One committed state of the archive: the live segments per table and the catalog's
    small tables, read in one catalog transaction."""

    path: Path
    generation: int
    segments: Mapping[str, tuple[Path, ...]]
    tables: Mapping[str, pa.Table]


def read_snapshot(path: Path, catalog: sqlite3.Connection | None = None) -> Snapshot:
    """The last committed state (a reader's catalog connection is opened and closed here)."""
    own = catalog is None
    if catalog is None:
        if not (path / CATALOG).exists():
            raise ArchiveMissing(
                f"no history archive at {path}: run `gemba worker` (it archives every event) "
                "or set GEMBA_DUCKDB_PATH"
            )
        catalog = catalog_connection(path, read_only=True)
    try:
        catalog.execute("BEGIN")
        try:
            files: dict[str, list[Path]] = {table: [] for table in SEGMENT_TABLES}
            directory = segments_dir(path)
            for table, file in catalog.execute(
                "SELECT table_name, file FROM segments ORDER BY seq"
            ):
                files[table].append(directory / file)
            tables = {name: _arrow(catalog, sql) for name, sql in CATALOG_TABLES.items()}
            generation = meta_value(catalog, "generation")
        finally:
            catalog.execute("COMMIT")
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot read the archive's catalog {path / CATALOG}: {exc}") from None
    finally:
        if own:
            catalog.close()
    return Snapshot(path, generation, {t: tuple(f) for t, f in files.items()}, tables)


_CATALOG_TYPES: Mapping[str, pa.DataType] = {
    "topic": pa.string(),
    "source_partition": pa.int32(),
    "next_offset": pa.int64(),
    "chain_length": pa.int64(),
    "head_event_id": pa.string(),
    "head_hash": pa.string(),
    "first_offset": pa.int64(),
    "last_offset": pa.int64(),
    "deal_id": pa.string(),
    "deal_no": pa.int32(),
}


def _arrow(catalog: sqlite3.Connection, sql: str) -> pa.Table:
    cursor = catalog.execute(sql)
    names = [column[0] for column in cursor.description]
    rows = cursor.fetchall()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return pa.table(
        {
            name: pa.array(column, _CATALOG_TYPES[name])
            for name, column in zip(names, columns, strict=True)
        }
    )


def fetch_in_chunks(
    catalog: sqlite3.Connection, sql: str, keys: Sequence[Any], size: int = 500
) -> list[tuple[Any, ...]]:
    """Rows of `sql` (with `{marks}` for an IN list) for many keys, a chunk at a time."""
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(keys), size):
        chunk = list(keys[start : start + size])
        marks = ", ".join("?" * len(chunk))
        rows += catalog.execute(sql.format(marks=marks), chunk).fetchall()
    return rows


def close_quietly(*closables: Any) -> None:
    for each in closables:
        with suppress(Exception):
            each.close()
