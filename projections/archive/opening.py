"""Opening the archive file (the one writer, or a locked-down reader) and asking it queries."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import duckdb

from projections.archive.connection import Connection
from projections.archive.errors import ArchiveMissing, HistoryError, StatementRefused
from projections.archive.snapshot_views import build_views
from projections.archive.store import hold_readers_lock, is_old_format, read_snapshot

if TYPE_CHECKING:
    from projections.archive.writing import ArchiveStore

__all__ = [
    "QUERY_STATEMENTS",
    "READER_SETTINGS",
    "READ_ONLY_REFUSAL",
    "QueryResult",
    "open_archive",
    "open_reader",
    "read_only_query",
    "records",
    "scalar",
    "transaction",
]

READER_SETTINGS: Mapping[str, str | bool] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "python_enable_replacements": False,
}
"""DuckDB settings of every reader: no file but the archive itself (no read_blob, read_csv,
glob, COPY TO, ATTACH, http), no extension installed or loaded, no Python variable scanned
by name. `open_reader` then sets the time zone and locks the configuration, so no statement
can SET them back."""

READ_ONLY_REFUSAL = (
    "the archive is read-only here: a query reads the archive's tables and views only "
    "(no other file, no COPY TO, no ATTACH, no extension, no SET)"
)


def open_reader(path: Path) -> Connection:
    """Open the archive for a reader (query, report, replay, audit, export, dashboard, ...).

    The reader gets the last committed snapshot: an in-memory DuckDB whose tables and
    views, named as ever, read the snapshot's Parquet segments through Arrow, so DuckDB
    itself reaches no file at all. With READER_SETTINGS and the configuration locked, the
    connection reads the archive and nothing else. No writer is waited for and none is
    made to wait. Raises ArchiveMissing when there is no archive; an archive of the old
    format (one DuckDB file) is converted first (ArchiveBusy while a writer holds it).
    """
    if is_old_format(path):
        from projections.archive.conversion import convert_old_archive

        convert_old_archive(path)
    if not path.exists():
        raise ArchiveMissing(
            f"no history archive at {path}: run `gemba worker` (it archives every event) "
            "or set GEMBA_DUCKDB_PATH"
        )
    connection = duckdb.connect(":memory:", config=dict(_READER_CONNECT))
    try:
        hold_readers_lock(path, connection)
        snapshot = read_snapshot(path)
        build_views(connection, snapshot)
        for name, value in READER_SETTINGS.items():
            connection.execute(f"SET {name} = {str(value).lower()}")
        connection.execute("SET lock_configuration = true")
    except BaseException:
        connection.close()
        raise
    return connection


_READER_CONNECT: Mapping[str, str | bool] = {
    name: value for name, value in READER_SETTINGS.items() if name != "enable_external_access"
}
"""Settings given at connect; external access goes off once the segments are registered."""


@overload
def open_archive(path: Path) -> ArchiveStore: ...
@overload
def open_archive(path: Path, *, read_only: Literal[False]) -> ArchiveStore: ...
@overload
def open_archive(path: Path, *, read_only: Literal[True]) -> Connection: ...


def open_archive(path: Path, *, read_only: bool = False) -> ArchiveStore | Connection:
    """Open the archive: for the one writer (an ArchiveStore: catalog and segments, created
    if missing; an archive of the old format is converted first), or with `read_only`,
    as `open_reader` opens it (locked down).

    Raises ArchiveMissing when a reader finds no archive, ArchiveBusy when another writer
    holds it (one writer at a time; readers never wait and are never waited for).
    """
    if read_only:
        return open_reader(path)
    from projections.archive.conversion import convert_old_archive
    from projections.archive.writing import ArchiveStore

    if is_old_format(path):
        convert_old_archive(path)
    return ArchiveStore.open(path)


@contextmanager
def transaction(connection: Connection) -> Iterator[None]:
    """All or nothing: commit when the block ends, roll back when it raises."""
    connection.begin()
    try:
        yield
    except BaseException:
        connection.rollback()
        raise
    connection.commit()


def scalar(connection: Connection, sql: str) -> Any:
    """The one value a query returns (read to the end, so the connection is free again)."""
    return connection.execute(sql).fetchall()[0][0]


QUERY_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows of a query."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def read_only_query(connection: Connection, sql: str) -> QueryResult:
    """Run one query (SELECT, WITH, FROM, SHOW, DESCRIBE, EXPLAIN); refuse anything that writes.

    Writing statements (INSERT, UPDATE, DELETE, CREATE, COPY, ATTACH, SET, INSTALL, ...)
    are refused before DuckDB sees them; give it a connection from `open_reader`, whose
    locked settings refuse what a query could still reach (read_blob, read_csv, glob,
    EXPLAIN ANALYZE COPY ... TO, ...): both raise StatementRefused.
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise StatementRefused(f"not valid SQL: {exc}") from None
    if len(statements) != 1:
        raise StatementRefused(f"give exactly one query, not {len(statements)} statements")
    kind = statements[0].type
    if kind not in QUERY_STATEMENTS:
        name = "INSTALL and LOAD" if kind == duckdb.StatementType.LOAD else kind.name
        raise StatementRefused(
            f"{name} statements are refused: the archive is read-only here; "
            "ask with SELECT (or WITH, FROM, SHOW, DESCRIBE, EXPLAIN)"
        )
    try:
        relation = connection.execute(sql)
        columns = tuple(column[0] for column in relation.description or ())
        return QueryResult(columns, relation.fetchall())
    except duckdb.Error as exc:
        if _reader_refused(exc):
            refusal = f"{READ_ONLY_REFUSAL}; DuckDB said: {_first_line(exc)}"
            raise StatementRefused(refusal) from None
        raise HistoryError(f"query failed: {exc}") from None


def _reader_refused(exc: duckdb.Error) -> bool:
    """Whether DuckDB refused a statement because of READER_SETTINGS or their lock."""
    return isinstance(exc, duckdb.PermissionException) or (
        "configuration has been locked" in str(exc)
    )


def _first_line(exc: duckdb.Error) -> str:
    return str(exc).strip().splitlines()[0]


def records(
    connection: Connection, sql: str, parameters: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The rows of a query as dicts by column name (parameters bound, never formatted in)."""
    relation = connection.execute(sql, dict(parameters or {}))
    names = [column[0] for column in relation.description or ()]
    return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]
