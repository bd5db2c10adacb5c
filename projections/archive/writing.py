"""The archive opened by its one writer: the catalog, the segments, and one commit per batch."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from projections.archive.chain import ChainHead, partition_heads
from projections.archive.connection import Connection
from projections.archive.errors import HistoryError
from projections.archive.snapshot_views import build_views
from projections.archive.store import (
    FORMAT_VERSION,
    READERS_LOCK,
    SEGMENTS,
    Snapshot,
    WriterLock,
    catalog_connection,
    catalog_transaction,
    close_quietly,
    delete_retired,
    meta_value,
    read_snapshot,
    remove_orphans,
    segments_dir,
    set_meta,
    write_segment,
)

__all__ = ["ArchiveStore"]


class ArchiveStore:
    """The archive held by its one writer (the sink, a conversion, a test).

    Holds the writer lock while open; `commit` writes a batch's segments and records them
    with the catalog changes in one SQLite transaction. `execute` asks a query of the last
    commit (a fresh reader snapshot, not locked down: for the writer's own tools and tests).
    """

    def __init__(
        self, path: Path, lock: WriterLock, catalog: sqlite3.Connection, scratch: Connection
    ) -> None:
        self.path = path
        self.catalog = catalog
        self.scratch = scratch
        """An in-memory DuckDB of the writer's own, for turning rows into rows (fold facts)."""
        self._lock = lock
        self.deal_numbers: dict[str, int] = dict(
            catalog.execute("SELECT deal_id, deal_no FROM deal_numbers").fetchall()
        )

    @classmethod
    def open(cls, path: Path) -> ArchiveStore:
        """Open (creating if missing) the archive at `path` for writing; ArchiveBusy when
        another writer holds it."""
        try:
            (path / SEGMENTS).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(
                f"cannot make the archive {path} ({exc.strerror}): make its directory, "
                "or set GEMBA_DUCKDB_PATH to a writable place"
            ) from None
        lock = WriterLock(path)
        catalog = scratch = None
        try:
            catalog = catalog_connection(path, read_only=False)
            (path / READERS_LOCK).touch(exist_ok=True)
            with catalog_transaction(catalog):
                set_meta(catalog, "format", FORMAT_VERSION)
            remove_orphans(path, catalog)
            scratch = duckdb.connect(":memory:")
            scratch.execute("SET TimeZone = 'UTC'")
            return cls(path, lock, catalog, scratch)
        except BaseException:
            close_quietly(catalog, scratch)
            lock.release()
            raise

    def snapshot(self) -> Snapshot:
        """The last commit."""
        return read_snapshot(self.path, self.catalog)

    def reader(self) -> Connection:
        """A DuckDB connection over the last commit, with the archive's tables and views."""
        connection = duckdb.connect(":memory:")
        build_views(connection, self.snapshot())
        return connection

    def execute(self, sql: str, parameters: Any = None) -> Connection:
        """Ask a query of the last commit (a fresh snapshot each time)."""
        return self.reader().execute(sql, parameters)

    def heads(self) -> dict[tuple[str, int], ChainHead]:
        """Every partition's chain head, as the catalog holds it."""
        return partition_heads(self.catalog)

    def next_generation(self) -> int:
        """The number the next commit gets (value-stream rows carry it as their version)."""
        return meta_value(self.catalog, "generation") + 1

    def count(self, table: str) -> int:
        """Rows of a catalog table."""
        return int(self.catalog.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def commit(
        self,
        segments: Mapping[str, pa.Table],
        changes: Callable[[sqlite3.Connection], None],
        retire: tuple[str, ...] = (),
    ) -> int:
        """Write the segments, then in one catalog transaction list them, make `changes` and
        retire the named segment files; the generation committed. All or nothing: on failure
        the files written are removed and the catalog is as it was."""
        catalog = self.catalog
        generation = self.next_generation()
        seq = meta_value(catalog, "next_segment", 1)
        written: list[tuple[int, str, str, int]] = []
        try:
            for table, rows in segments.items():
                if rows.num_rows:
                    written.append((seq, table, write_segment(self.path, table, seq, rows),
                                    rows.num_rows))  # fmt: skip
                    seq += 1
            with catalog_transaction(catalog):
                catalog.executemany("INSERT INTO segments VALUES (?, ?, ?, ?)", written)
                for file in retire:
                    catalog.execute("DELETE FROM segments WHERE file = ?", [file])
                    catalog.execute("INSERT INTO retired VALUES (?)", [file])
                changes(catalog)
                set_meta(catalog, "generation", generation)
                set_meta(catalog, "next_segment", seq)
        except BaseException:
            for _, _, file, _ in written:
                (segments_dir(self.path) / file).unlink(missing_ok=True)
            raise
        delete_retired(self.path, catalog)
        return generation

    def compact(self, table: str) -> int:
        """Merge the table's segments into one (rows in the same order); the old files are
        retired, deleted once no reader holds readers.lock. How many were merged."""
        files = self.snapshot().segments[table]
        if len(files) < 2:
            return 0
        listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
        rows = self.scratch.sql(f"SELECT * FROM read_parquet([{listed}])").to_arrow_table()
        self.commit({table: rows}, lambda _: None, retire=tuple(f.name for f in files))
        return len(files)

    def close(self) -> None:
        close_quietly(self.scratch, self.catalog)
        self._lock.release()

    def __enter__(self) -> ArchiveStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
