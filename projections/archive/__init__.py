"""The history archive, read with DuckDB: the only package that imports duckdb.

Every event once, hash-chained per partition; the value streams as tables and SQL views;
replay (in Python, or the whole fold in SQL), audit, export and the value-stream report.
Stored as Parquet segments and a SQLite catalog (`store`; `writing` for the one writer,
`conversion` for an archive of the old single-file format), so readers never wait for
the writer nor it for them. Split by job: `schema` (tables, views), `opening` (open,
read-only snapshots, queries), `records` (what comes in), `chain` and `audit`, `writer`
(with `log_tables`, `value_stream_rows`),
`replay` and `replay_sql` (with `facts`, `canonical` and the SQL rules in `fold_sql`),
`export`, `report`; the dashboard's questions in `dashboard`. Callers import from this
package (or from `projections.archive.dashboard`), never from duckdb.
"""

from projections.archive.audit import AuditFinding, AuditReport, Tampering, verify_archive
from projections.archive.canonical import canonical_lines
from projections.archive.chain import (
    ChainHead,
    archived_offsets,
    chain_hash,
    chain_link,
    genesis_hash,
)
from projections.archive.connection import Connection
from projections.archive.errors import ArchiveBusy, ArchiveMissing, HistoryError, StatementRefused
from projections.archive.export import export_archive
from projections.archive.opening import (
    READER_SETTINGS,
    QueryResult,
    open_archive,
    open_reader,
    read_only_query,
    records,
)
from projections.archive.records import (
    AlertRow,
    ArchiveBatch,
    BatchOutcome,
    LogRecord,
    OffsetGap,
    recorded_at_from_ms,
)
from projections.archive.replay import (
    DealDifference,
    Replay,
    archived_events,
    content_hash,
    replay,
    replay_diff,
    sql_replay_diff,
)
from projections.archive.replay_sql import SqlReplay, sql_replay
from projections.archive.report import ReportChange, ValueStreamReport, value_stream_report
from projections.archive.schema import ARCHIVE_VIEWS, SCHEMA_VERSION
from projections.archive.writer import HistoryWriter
from projections.archive.writing import ArchiveStore

__all__ = [
    "ARCHIVE_VIEWS",
    "READER_SETTINGS",
    "SCHEMA_VERSION",
    "AlertRow",
    "ArchiveBatch",
    "ArchiveBusy",
    "ArchiveMissing",
    "ArchiveStore",
    "AuditFinding",
    "AuditReport",
    "BatchOutcome",
    "ChainHead",
    "Connection",
    "DealDifference",
    "HistoryError",
    "HistoryWriter",
    "LogRecord",
    "OffsetGap",
    "QueryResult",
    "Replay",
    "ReportChange",
    "SqlReplay",
    "StatementRefused",
    "Tampering",
    "ValueStreamReport",
    "archived_events",
    "archived_offsets",
    "canonical_lines",
    "chain_hash",
    "chain_link",
    "content_hash",
    "export_archive",
    "genesis_hash",
    "open_archive",
    "open_reader",
    "read_only_query",
    "recorded_at_from_ms",
    "records",
    "replay",
    "replay_diff",
    "sql_replay",
    "sql_replay_diff",
    "value_stream_report",
    "verify_archive",
]
