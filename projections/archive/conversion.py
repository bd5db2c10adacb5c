"""An archive of the old format (one DuckDB file, schema versions 1 and 2) converted to
segments and a catalog on first open; the old file is kept beside it."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import duckdb
import pyarrow as pa
import structlog

from projections.archive.errors import ArchiveBusy, HistoryError
from projections.archive.facts import fill_facts
from projections.archive.schema import SCHEMA
from projections.archive.store import CATALOG_TABLES, SEGMENT_TABLES, VERSIONED_TABLES
from projections.archive.writing import ArchiveStore

__all__ = ["convert_old_archive", "old_archive_backup"]

log = structlog.get_logger("gemba.history")


def old_archive_backup(path: Path) -> Path:
    """Where the old file is kept once converted."""
    return path.with_name(f"{path.name}.old-format")


def convert_old_archive(path: Path) -> None:
    """Convert the single DuckDB file at `path` into an archive directory at `path`.

    Built beside it first (`<path>.converting`), then the old file is moved to
    `<path>.old-format` and the new archive renamed into place. ArchiveBusy while another
    process holds the old file; HistoryError if it is not an archive.
    """
    building = path.with_name(f"{path.name}.converting")
    shutil.rmtree(building, ignore_errors=True)
    try:
        old = duckdb.connect(str(path))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise ArchiveBusy(f"the archive {path} is in use by another process: {exc}") from None
        raise HistoryError(f"cannot open the old archive {path} to convert it: {exc}") from None
    except duckdb.Error as exc:
        raise HistoryError(
            f"{path} is a file but not a history archive ({exc}): move it away, "
            "or set GEMBA_DUCKDB_PATH to the archive"
        ) from None
    try:
        old.execute("SET TimeZone = 'UTC'")
        old.execute(SCHEMA)  # version 1 had no fold facts: add the tables, then derive them
        fill_facts(old)
        with ArchiveStore.open(building) as store:
            _copy(old, store)
    finally:
        old.close()
    path.rename(old_archive_backup(path))
    building.rename(path)
    log.warning("history_archive_converted", path=str(path), old=str(old_archive_backup(path)))


def _copy(old: duckdb.DuckDBPyConnection, store: ArchiveStore) -> None:
    segments: dict[str, pa.Table] = {}
    for table in SEGMENT_TABLES:
        version = ", 1 AS version" if table in VERSIONED_TABLES else ""
        segments[table] = old.sql(f"SELECT *{version} FROM {table}").to_arrow_table()
    rows = {name: old.execute(sql).fetchall() for name, sql in CATALOG_TABLES.items()}
    index = [
        (str(event_id), hashlib.blake2b(str(payload).encode(), digest_size=16).digest())
        for event_id, payload in old.execute("SELECT event_id, payload FROM events").fetchall()
    ]
    dead = old.execute(
        "SELECT source_topic, source_partition, source_offset FROM dead_letters"
    ).fetchall()
    alerts = old.execute("SELECT alert_id FROM alerts").fetchall()

    def changes(catalog: sqlite3.Connection) -> None:
        catalog.executemany("INSERT INTO offsets VALUES (?, ?, ?, ?, ?, ?)", rows["offsets"])
        catalog.executemany("INSERT INTO offset_gaps VALUES (?, ?, ?, ?)", rows["offset_gaps"])
        catalog.executemany("INSERT INTO deal_numbers VALUES (?, ?)", rows["deal_numbers"])
        catalog.executemany("INSERT INTO dirty_deals VALUES (?)", rows["dirty_deals"])
        catalog.executemany("INSERT INTO event_index VALUES (?, ?)", index)
        catalog.executemany("INSERT INTO dead_letter_keys VALUES (?, ?, ?)", dead)
        catalog.executemany("INSERT INTO alert_ids VALUES (?)", alerts)

    store.commit(segments, changes)
