"""Opening the archive file (the one writer, or a locked-down reader) and asking it queries."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from projections.archive.connection import Connection
from projections.archive.errors import ArchiveBusy, ArchiveMissing, HistoryError, StatementRefused
from projections.archive.facts import fill_facts
from projections.archive.schema import SCHEMA, SCHEMA_VERSION, VIEWS

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

_READERS_OPENING = threading.Lock()
"""Held while a reader opens the file and, if it is the first, sets and locks the settings."""

READ_ONLY_REFUSAL = (
    "the archive is read-only here: a query reads the archive's tables and views only "
    "(no other file, no COPY TO, no ATTACH, no extension, no SET)"
)


def open_reader(path: Path) -> Connection:
    """Open the archive for a reader (query, report, replay, audit, export, dashboard, ...).

    Read-only, with READER_SETTINGS and the configuration locked: the connection reads
    the archive and nothing else. Raises ArchiveMissing when there is no file,
    ArchiveBusy when another process holds it (the sink writing a batch).
    """
    if not path.exists():
        raise ArchiveMissing(
            f"no history archive at {path}: run `gemba worker` (it archives every event) "
            "or set GEMBA_DUCKDB_PATH"
        )
    # DuckDB shares one database instance among the connections of a process to one file:
    # the first reader sets the time zone for all and locks it; later ones find it locked.
    # Readers on several threads (the dashboard's) take turns at that check.
    with _READERS_OPENING:
        connection = _connect(path, read_only=True, config=READER_SETTINGS)
        if not scalar(connection, "SELECT current_setting('lock_configuration')"):
            connection.execute("SET GLOBAL TimeZone = 'UTC'")
            connection.execute("SET GLOBAL lock_configuration = true")
    return connection


def open_archive(path: Path, *, read_only: bool = False) -> Connection:
    """Open the archive: for the one writer, creating schema and views; with `read_only`,
    as `open_reader` opens it (locked down).

    Raises ArchiveMissing when a reader finds no file, ArchiveBusy when another
    process holds it (DuckDB allows one writing process, or readers, at a time).
    """
    if read_only:
        return open_reader(path)
    connection = _connect(path, read_only=False, config={})
    connection.execute("SET TimeZone = 'UTC'")
    if _schema_version(connection) != SCHEMA_VERSION:
        with transaction(connection):
            connection.execute(SCHEMA)
            fill_facts(connection)  # an archive written before version 2 has none yet
            for name, body in VIEWS.items():
                connection.execute(f"CREATE OR REPLACE VIEW {name} AS {body}")
            connection.execute("DELETE FROM archive_schema")
            connection.execute("INSERT INTO archive_schema VALUES (?)", [SCHEMA_VERSION])
    return connection


def _connect(path: Path, *, read_only: bool, config: Mapping[str, str | bool]) -> Connection:
    try:
        return duckdb.connect(str(path), read_only=read_only, config=dict(config))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise ArchiveBusy(f"the archive {path} is in use by another process: {exc}") from None
        raise HistoryError(f"cannot open the archive {path}: {exc}") from None


def _schema_version(connection: Connection) -> int | None:
    """The version of the tables and views the file holds (None: a new file)."""
    rows = connection.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'archive_schema'"
    ).fetchall()
    if not rows[0][0]:
        return None
    version = connection.execute("SELECT max(version) FROM archive_schema").fetchall()
    return None if version[0][0] is None else int(version[0][0])


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
