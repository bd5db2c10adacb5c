"""The history archive in DuckDB: every event once, hash-chained; value streams in SQL; replay."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import TypeAdapter, ValidationError

from events import Event, EventBase, EventRejected, decode, encode
from events.future import FutureLimit
from projections.archive.replay_sql import (
    FACTS_DDL,
    FACTS_SELECT,
    SqlReplay,
    deal_digest,
    fill_facts,
    streams_hash,
)
from projections.deal.event_set import known_at
from projections.deal.totals import Totals
from projections.deal.value_stream import DealValueStream, deal_value_stream
from projections.errors import DealNotOpened, ProjectionError
from projections.intervals import EPOCH, MICROSECOND, epoch_us
from projections.policy.model import Policy

__all__ = [
    "ARCHIVE_VIEWS",
    "READER_SETTINGS",
    "AlertRow",
    "ArchiveBatch",
    "ArchiveBusy",
    "ArchiveMissing",
    "AuditFinding",
    "AuditReport",
    "BatchOutcome",
    "ChainHead",
    "DealDifference",
    "HistoryError",
    "HistoryWriter",
    "LogRecord",
    "OffsetGap",
    "QueryResult",
    "Replay",
    "ReportChange",
    "StatementRefused",
    "Tampering",
    "ValueStreamReport",
    "archived_events",
    "archived_offsets",
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
    "sql_replay_diff",
    "value_stream_report",
    "verify_archive",
]

DECODED_DEALS = 5_000
"""Deals whose events the writer keeps decoded between batches (the rest are read back)."""


class HistoryError(ProjectionError):
    """Root of the archive's errors."""


class ArchiveMissing(HistoryError):
    """There is no archive file where one was expected."""


class ArchiveBusy(HistoryError):
    """Another process holds the archive file (the sink writing, or a reader): try again."""


class StatementRefused(HistoryError):
    """A statement given to the read-only query is not a query."""


# --- records in ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One Kafka record as the sink received it; `recorded_at` is its Kafka timestamp."""

    topic: str
    partition: int
    offset: int
    recorded_at: datetime
    value: bytes
    key: bytes | None = None
    headers: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class ArchiveBatch:
    """What one transaction appends: records of `touches`, of the dead letters and of alerts."""

    events: Sequence[LogRecord] = ()
    dead_letters: Sequence[LogRecord] = ()
    alerts: Sequence[LogRecord] = ()


@dataclass(frozen=True, slots=True)
class OffsetGap:
    """Offsets of a partition the archive never received (the consumer was ahead of it)."""

    topic: str
    partition: int
    first: int
    last: int


@dataclass(frozen=True)
class BatchOutcome:
    """What a batch changed: rows stored, records skipped, deals refolded (and still to be),
    offsets now held."""

    stored: int = 0
    duplicates: int = 0
    already_archived: int = 0
    not_events: int = 0
    dead_letters: int = 0
    alerts: int = 0
    deals_refreshed: int = 0
    failed_deals: tuple[str, ...] = ()
    gaps: tuple[OffsetGap, ...] = ()
    next_offsets: Mapping[tuple[str, int], int] = field(default_factory=dict)
    deals_to_refresh: int = 0


def recorded_at_from_ms(milliseconds: int) -> datetime:
    """A Kafka record timestamp (ms since the epoch) as a UTC time, the same way everywhere."""
    return EPOCH + timedelta(milliseconds=milliseconds)


# --- schema ----------------------------------------------------------------------------------

TIME_FIELDS: tuple[tuple[str, str], ...] = (
    ("lead_time", "lead_time"),
    ("value_added", "value_added"),
    ("necessary_non_value_added", "necessary_non_value_added"),
    ("waste_rework", "waste.rework"),
    ("waste_chasing", "waste.chasing"),
    ("waste_no_show", "waste.no_show"),
    ("waste_over_processing", "waste.over_processing"),
    ("waste_overproduction", "waste.overproduction"),
    ("wait", "wait"),
    ("waiting_on_us", "waiting_on_us"),
    ("inventory", "inventory"),
)
"""Totals' times as columns (`<name>_us`, exact microseconds), with their Totals path."""

COUNT_FIELDS: tuple[tuple[str, str], ...] = (
    ("deals", "deals"),
    ("rework", "rework"),
    ("touches_call", "touches.call"),
    ("touches_email", "touches.email"),
    ("touches_meeting", "touches.meeting"),
    ("touches_quote", "touches.quote"),
)
PROCESS_WASTES = ("rework", "chasing", "no_show", "over_processing", "overproduction")
WAIT_WASTES = ("waiting_on_us", "inventory")
_TOTALS_DDL = ", ".join(
    [f"{name}_us BIGINT NOT NULL" for name, _ in TIME_FIELDS]
    + [f"{name} INTEGER NOT NULL" for name, _ in COUNT_FIELDS]
)

SCHEMA_VERSION = 2
"""Bumped whenever a table or view changes; a writer opening an older file updates its views
(version 2 added the fold facts that `gemba replay` reads; they are derived for old files)."""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS archive_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    event_id VARCHAR PRIMARY KEY, type VARCHAR NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL, recorded_at TIMESTAMPTZ NOT NULL,
    deal_id VARCHAR, account_id VARCHAR NOT NULL, actor_id VARCHAR, campaign_id VARCHAR,
    payload JSON NOT NULL,
    source_topic VARCHAR NOT NULL, source_partition INTEGER NOT NULL,
    source_offset BIGINT NOT NULL, previous_event_id VARCHAR, chain_hash VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS offsets (
    topic VARCHAR NOT NULL, source_partition INTEGER NOT NULL, next_offset BIGINT NOT NULL,
    chain_length BIGINT, head_event_id VARCHAR, head_hash VARCHAR,
    PRIMARY KEY (topic, source_partition));
CREATE TABLE IF NOT EXISTS dirty_deals (deal_id VARCHAR PRIMARY KEY);
CREATE TABLE IF NOT EXISTS offset_gaps (
    topic VARCHAR NOT NULL, source_partition INTEGER NOT NULL,
    first_offset BIGINT NOT NULL, last_offset BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS duplicates (
    topic VARCHAR NOT NULL, source_partition INTEGER NOT NULL, source_offset BIGINT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL, event_id VARCHAR NOT NULL, identical BOOLEAN NOT NULL,
    PRIMARY KEY (topic, source_partition, source_offset));
CREATE TABLE IF NOT EXISTS dead_letters (
    source_topic VARCHAR NOT NULL, source_partition INTEGER NOT NULL,
    source_offset BIGINT NOT NULL, reason VARCHAR, key BLOB, value BLOB,
    recorded_at TIMESTAMPTZ NOT NULL, dlq_partition INTEGER NOT NULL, dlq_offset BIGINT NOT NULL,
    PRIMARY KEY (source_topic, source_partition, source_offset));
CREATE TABLE IF NOT EXISTS alerts (
    alert_id VARCHAR PRIMARY KEY, kind VARCHAR, deal_id VARCHAR, stage VARCHAR,
    occurred_at TIMESTAMPTZ, recorded_at TIMESTAMPTZ NOT NULL, payload JSON NOT NULL,
    source_partition INTEGER NOT NULL, source_offset BIGINT NOT NULL);
{FACTS_DDL}
CREATE TABLE IF NOT EXISTS vs_deals (
    deal_id VARCHAR NOT NULL, policy_version VARCHAR NOT NULL, status VARCHAR NOT NULL,
    stage VARCHAR NOT NULL, owner_id VARCHAR NOT NULL, segment VARCHAR, product VARCHAR,
    amount DECIMAL(18, 2), currency VARCHAR NOT NULL, opened_at TIMESTAMPTZ NOT NULL,
    closed_at TIMESTAMPTZ, as_of TIMESTAMPTZ NOT NULL, silent_since TIMESTAMPTZ NOT NULL,
    stall_threshold_us BIGINT, stall_episodes INTEGER NOT NULL,
    last_value_added_at TIMESTAMPTZ, {_TOTALS_DDL}, value_stream JSON NOT NULL);
CREATE TABLE IF NOT EXISTS vs_stages (
    deal_id VARCHAR NOT NULL, stage VARCHAR NOT NULL, stage_rank INTEGER,
    visits INTEGER NOT NULL, first_entered_at TIMESTAMPTZ NOT NULL, {_TOTALS_DDL});
CREATE TABLE IF NOT EXISTS vs_visits (
    deal_id VARCHAR NOT NULL, visit INTEGER NOT NULL, stage VARCHAR NOT NULL,
    entered_at TIMESTAMPTZ NOT NULL, left_at TIMESTAMPTZ, regression BOOLEAN NOT NULL,
    event_id VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS vs_touches (
    deal_id VARCHAR NOT NULL, event_id VARCHAR NOT NULL, kind VARCHAR NOT NULL,
    direction VARCHAR NOT NULL, started_at TIMESTAMPTZ NOT NULL, ended_at TIMESTAMPTZ NOT NULL,
    process_us BIGINT NOT NULL, stage VARCHAR NOT NULL, touch_class VARCHAR, waste VARCHAR,
    rule INTEGER NOT NULL, outcome VARCHAR, meeting_kind VARCHAR);
CREATE TABLE IF NOT EXISTS vs_stalls (
    deal_id VARCHAR NOT NULL, stage VARCHAR NOT NULL, started_at TIMESTAMPTZ NOT NULL,
    ended_at TIMESTAMPTZ, threshold_us BIGINT NOT NULL);
"""

MINUTE = "6e7"
DAY = "8.64e10"


def _minutes(expression: str, alias: str) -> str:
    return f"({expression}) / {MINUTE} AS {alias}_min"


def _sum_columns() -> str:
    times = [_minutes(f"sum({name}_us)", name) for name, _ in TIME_FIELDS]
    waste = " + ".join(f"sum(waste_{name}_us)" for name in PROCESS_WASTES)
    counts = [f"sum({name}) AS {name}" for name, _ in COUNT_FIELDS]
    pce = "sum(value_added_us) / nullif(sum(lead_time_us), 0) AS pce"
    return ", ".join([*times, _minutes(waste, "waste"), *counts, pce])


def _row_columns(prefix: str = "") -> str:
    times = [_minutes(f"{prefix}{name}_us", name) for name, _ in TIME_FIELDS]
    waste = " + ".join(f"{prefix}waste_{name}_us" for name in PROCESS_WASTES)
    counts = [f"{prefix}{name} AS {name}" for name, _ in COUNT_FIELDS if name != "deals"]
    pce = f"{prefix}value_added_us / nullif({prefix}lead_time_us, 0) AS pce"
    return ", ".join([*times, _minutes(waste, "waste"), *counts, pce])


_RAW_TOTALS = ", ".join(
    [f"{name}_us" for name, _ in TIME_FIELDS] + [name for name, _ in COUNT_FIELDS]
)
_UTC_MONTH = "strftime(timezone('UTC', {0}), '%Y-%m')"

VIEWS: dict[str, str] = {
    "deal_campaigns": """
        SELECT DISTINCT deal_id, campaign_id FROM events
        WHERE deal_id IS NOT NULL AND campaign_id IS NOT NULL""",
    "deal_value_streams": f"""
        SELECT deal_id, status, stage, owner_id, segment, product, amount, currency,
               opened_at, closed_at, as_of, policy_version, {_row_columns()},
               touches_call + touches_email + touches_meeting + touches_quote AS touches,
               stall_episodes, value_stream
        FROM vs_deals""",
    "touches": f"""
        SELECT t.deal_id, t.event_id, t.kind, t.direction, t.stage, t.touch_class, t.waste,
               t.rule, t.outcome, t.meeting_kind, t.started_at, t.ended_at,
               t.process_us / {MINUTE} AS minutes, d.owner_id, d.segment, d.product
        FROM vs_touches t JOIN vs_deals d USING (deal_id)""",
    "stage_intervals": f"""
        SELECT v.deal_id, v.visit, v.stage, v.entered_at, v.left_at,
               (epoch_us(coalesce(v.left_at, d.as_of)) - epoch_us(v.entered_at)) / {MINUTE}
                   AS minutes,
               v.regression, v.event_id, d.status, d.owner_id, d.segment, d.product
        FROM vs_visits v JOIN vs_deals d USING (deal_id)""",
    "value_stream_by": f"""
        WITH deals AS (
            SELECT *, {_UTC_MONTH.format("opened_at")} AS opened_month FROM vs_deals),
        buckets AS (
            SELECT 'owner' AS dimension, owner_id AS value, opened_month AS month, {_RAW_TOTALS}
                FROM deals
            UNION ALL SELECT 'segment', coalesce(segment, '-'), opened_month, {_RAW_TOTALS}
                FROM deals
            UNION ALL SELECT 'product', coalesce(product, '-'), opened_month, {_RAW_TOTALS}
                FROM deals
            UNION ALL SELECT 'campaign', c.campaign_id, opened_month, {_RAW_TOTALS}
                FROM deals JOIN deal_campaigns c USING (deal_id)
            UNION ALL SELECT 'stage', stage, {_UTC_MONTH.format("first_entered_at")},
                {_RAW_TOTALS} FROM vs_stages)
        SELECT dimension, value, month, {_sum_columns()}
        FROM buckets GROUP BY dimension, value, month""",
    "pce_by": f"""
        WITH deals AS (
            SELECT *, {_UTC_MONTH.format("opened_at")} AS opened_month FROM vs_deals),
        buckets AS (
            SELECT 'all' AS dimension, 'all' AS value, {_RAW_TOTALS} FROM deals
            UNION ALL SELECT 'owner', owner_id, {_RAW_TOTALS} FROM deals
            UNION ALL SELECT 'segment', coalesce(segment, '-'), {_RAW_TOTALS} FROM deals
            UNION ALL SELECT 'product', coalesce(product, '-'), {_RAW_TOTALS} FROM deals
            UNION ALL SELECT 'month', opened_month, {_RAW_TOTALS} FROM deals
            UNION ALL SELECT 'campaign', c.campaign_id, {_RAW_TOTALS}
                FROM deals JOIN deal_campaigns c USING (deal_id)
            UNION ALL SELECT 'stage', stage, {_RAW_TOTALS} FROM vs_stages)
        SELECT dimension, value, {_sum_columns()} FROM buckets GROUP BY dimension, value""",
    "lead_time_percentiles": f"""
        SELECT status, count(*) AS deals, avg(lead_time_us) / {DAY} AS mean_days,
               quantile_cont(lead_time_us, 0.5) / {DAY} AS p50_days,
               quantile_cont(lead_time_us, 0.8) / {DAY} AS p80_days,
               quantile_cont(lead_time_us, 0.95) / {DAY} AS p95_days,
               min(lead_time_us) / {DAY} AS min_days, max(lead_time_us) / {DAY} AS max_days
        FROM vs_deals WHERE closed_at IS NOT NULL GROUP BY status""",
    "lead_time_distribution": """
        WITH weeks AS (
            SELECT status, lead_time_us // 604800000000 AS week FROM vs_deals
            WHERE closed_at IS NOT NULL)
        SELECT status, week * 7 AS from_days, week * 7 + 7 AS to_days, count(*) AS deals,
               count(*) / sum(count(*)) OVER (PARTITION BY status) AS share
        FROM weeks GROUP BY status, week""",
    "waste_pareto": f"""
        WITH lost AS (
            {
        " UNION ALL ".join(
            f"SELECT '{name}' AS category, 'process time' AS measured_as, "
            f"sum(waste_{name}_us) AS us, count(*) FILTER (WHERE waste_{name}_us > 0) AS deals,"
            f" (SELECT count(*) FROM vs_touches WHERE waste = '{name}') AS touches "
            "FROM vs_deals"
            for name in PROCESS_WASTES
        )
    }
            {
        "".join(
            f" UNION ALL SELECT '{name}', 'wait', sum({name}_us), "
            f"count(*) FILTER (WHERE {name}_us > 0), 0 FROM vs_deals"
            for name in WAIT_WASTES
        )
    })
        SELECT row_number() OVER (ORDER BY us DESC, category) AS rank, category, measured_as,
               us / {MINUTE} AS minutes, deals, touches,
               us / nullif(sum(us) OVER (), 0) AS share,
               sum(us) OVER (ORDER BY us DESC, category ROWS UNBOUNDED PRECEDING)
                   / nullif(sum(us) OVER (), 0) AS cumulative_share
        FROM lost""",
    "flow_days": """
        WITH bounds AS (
            SELECT CAST(timezone('UTC', min(opened_at)) AS DATE) AS first_day,
                   CAST(timezone('UTC', max(coalesce(closed_at, as_of))) AS DATE) AS last_day
            FROM vs_deals)
        SELECT CAST(unnest(generate_series(first_day, last_day, INTERVAL 1 DAY)) AS DATE) AS day
        FROM bounds WHERE first_day IS NOT NULL""",
    "cumulative_flow": """
        WITH positions AS (
            SELECT deal_id, stage, timezone('UTC', entered_at) AS since,
                   timezone('UTC', left_at) AS until FROM vs_visits
            UNION ALL SELECT deal_id, stage, timezone('UTC', closed_at), NULL
                FROM vs_deals WHERE closed_at IS NOT NULL)
        SELECT d.day, p.stage, count(*) AS deals
        FROM flow_days d JOIN positions p
          ON p.since <= d.day + INTERVAL 1 DAY
         AND (p.until IS NULL OR p.until > d.day + INTERVAL 1 DAY)
        GROUP BY d.day, p.stage""",
    "flow_by_month": f"""
        WITH wip AS (
            SELECT d.day, count(p.deal_id) AS open_deals
            FROM flow_days d LEFT JOIN vs_deals p
              ON timezone('UTC', p.opened_at) <= d.day + INTERVAL 1 DAY
             AND (p.closed_at IS NULL OR timezone('UTC', p.closed_at) > d.day + INTERVAL 1 DAY)
            GROUP BY d.day),
        monthly AS (
            SELECT strftime(day, '%Y-%m') AS month, count(*) AS days, avg(open_deals) AS avg_wip
            FROM wip GROUP BY 1),
        closed AS (
            SELECT {_UTC_MONTH.format("closed_at")} AS month, count(*) AS closed,
                   count(*) FILTER (WHERE status = 'won') AS won,
                   count(*) FILTER (WHERE status = 'lost') AS lost,
                   avg(lead_time_us) / {DAY} AS avg_lead_time_days
            FROM vs_deals WHERE closed_at IS NOT NULL GROUP BY 1)
        SELECT month, days, coalesce(closed, 0) AS closed, coalesce(won, 0) AS won,
               coalesce(lost, 0) AS lost, coalesce(closed, 0) / days AS throughput_per_day,
               avg_wip, avg_lead_time_days,
               coalesce(closed, 0) / days * avg_lead_time_days AS littles_law_wip,
               avg_wip / nullif(coalesce(closed, 0) / days * avg_lead_time_days, 0)
                   AS littles_law_ratio
        FROM monthly LEFT JOIN closed USING (month)""",
    "stalled_deals": f"""
        WITH now AS (SELECT max(occurred_at) AS watermark FROM events)
        SELECT d.deal_id, d.owner_id, d.segment, d.stage, d.silent_since,
               (epoch_us(n.watermark) - epoch_us(d.silent_since)) / {DAY} AS silent_days,
               d.stall_threshold_us / {DAY} AS threshold_days, d.last_value_added_at,
               n.watermark AS as_of
        FROM vs_deals d, now n
        WHERE d.status = 'open' AND d.stall_threshold_us IS NOT NULL
          AND epoch_us(n.watermark) - epoch_us(d.silent_since) > d.stall_threshold_us""",
}
ARCHIVE_VIEWS = tuple(VIEWS)
"""Views a user can query directly (tables: events, alerts, dead_letters, duplicates, ...)."""


# --- opening the file ------------------------------------------------------------------------


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


def open_reader(path: Path) -> duckdb.DuckDBPyConnection:
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
        if not _scalar(connection, "SELECT current_setting('lock_configuration')"):
            connection.execute("SET GLOBAL TimeZone = 'UTC'")
            connection.execute("SET GLOBAL lock_configuration = true")
    return connection


def open_archive(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
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
        with _transaction(connection):
            connection.execute(SCHEMA)
            fill_facts(connection)  # an archive written before version 2 has none yet
            for name, body in VIEWS.items():
                connection.execute(f"CREATE OR REPLACE VIEW {name} AS {body}")
            connection.execute("DELETE FROM archive_schema")
            connection.execute("INSERT INTO archive_schema VALUES (?)", [SCHEMA_VERSION])
    return connection


def _connect(
    path: Path, *, read_only: bool, config: Mapping[str, str | bool]
) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only, config=dict(config))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise ArchiveBusy(f"the archive {path} is in use by another process: {exc}") from None
        raise HistoryError(f"cannot open the archive {path}: {exc}") from None


def _schema_version(connection: duckdb.DuckDBPyConnection) -> int | None:
    """The version of the tables and views the file holds (None: a new file)."""
    rows = connection.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'archive_schema'"
    ).fetchall()
    if not rows[0][0]:
        return None
    version = connection.execute("SELECT max(version) FROM archive_schema").fetchall()
    return None if version[0][0] is None else int(version[0][0])


@contextmanager
def _transaction(connection: duckdb.DuckDBPyConnection) -> Iterator[None]:
    connection.begin()
    try:
        yield
    except BaseException:
        connection.rollback()
        raise
    connection.commit()


def archived_offsets(connection: duckdb.DuckDBPyConnection) -> dict[tuple[str, int], int]:
    """The next offset to archive per (topic, partition): everything before it is held."""
    rows = connection.execute("SELECT topic, source_partition, next_offset FROM offsets")
    return {(str(topic), int(p)): int(n) for topic, p, n in rows.fetchall()}


# --- the hash chain --------------------------------------------------------------------------


def genesis_hash(topic: str, partition: int) -> str:
    """The hash a partition's chain starts from."""
    return hashlib.sha256(f"gemba-archive\x1f{topic}\x1f{partition}".encode()).hexdigest()


def chain_link(
    topic: str,
    partition: int,
    offset: int,
    recorded_at: datetime,
    previous_event_id: str | None,
    payload: bytes,
) -> bytes:
    """The bytes an event adds to its partition's chain: where and when it was recorded, the
    event before it, and the canonical event itself."""
    recorded = epoch_us(recorded_at)
    header = f"{topic}\x1f{partition}\x1f{offset}\x1f{recorded}\x1f{previous_event_id or ''}"
    return header.encode() + b"\x1e" + payload


def chain_hash(previous_hash: str, link: bytes) -> str:
    """h_i = sha256(h_(i-1) || link_i), hex."""
    return hashlib.sha256(bytes.fromhex(previous_hash) + link).hexdigest()


@dataclass(slots=True)
class ChainHead:
    """Where a partition's archive stands: next offset to read, and its chain's last link.

    Mutable while a batch is appended; saved to `offsets` in the batch's transaction.
    """

    topic: str
    partition: int
    next_offset: int = 0
    length: int = 0
    event_id: str | None = None
    hash: str | None = None

    def consumed(self, offset: int) -> None:
        """The record at `offset` was read (stored, or not: a duplicate, not an event)."""
        self.next_offset = offset + 1

    def linked(self, event_id: str, hash_: str, offset: int) -> None:
        """The event at `offset` was stored as the chain's new last link."""
        self.length, self.event_id, self.hash = self.length + 1, event_id, hash_
        self.consumed(offset)


def _heads(connection: duckdb.DuckDBPyConnection) -> dict[tuple[str, int], ChainHead]:
    rows = connection.execute(
        "SELECT topic, source_partition, next_offset, chain_length, head_event_id, head_hash "
        "FROM offsets"
    ).fetchall()
    return {
        (str(t), int(p)): ChainHead(str(t), int(p), int(n), int(length or 0), event, hash_)
        for t, p, n, length, event, hash_ in rows
    }


# --- writing ---------------------------------------------------------------------------------


def _insert(
    connection: duckdb.DuckDBPyConnection,
    table: str,
    rows: Sequence[Mapping[str, Any]],
    on_conflict: str = "",
) -> None:
    """Append rows to `table` through one Arrow table, by column name, in the transaction."""
    if not rows:
        return
    name = f"incoming_{table}"
    connection.register(name, pa.Table.from_pylist(list(rows)))
    try:
        connection.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {name} {on_conflict}")
    finally:
        connection.unregister(name)


@contextmanager
def _deal_ids(
    connection: duckdb.DuckDBPyConnection, name: str, deal_ids: Sequence[str]
) -> Iterator[None]:
    """Deal ids as a temporary table `name`, for joins."""
    connection.register(name, pa.table({"deal_id": pa.array(deal_ids, pa.string())}))
    try:
        yield
    finally:
        connection.unregister(name)


@dataclass
class _EventsAppended:
    new: list[EventBase] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    already_archived: int = 0
    not_events: int = 0


class HistoryWriter:
    """The archive's one writer: appends batches, each in one transaction with its offsets.

    Every event is stored once, keyed by event_id; a later copy of a stored id is not
    stored (its offset is recorded as consumed, and the copy listed in `duplicates`).
    A record at an offset the archive already holds changes nothing, so a batch
    appended twice (a crash between the commit and the Kafka ack) is a no-op. The
    value-stream tables of the deals a batch touches are refolded under `policy` from
    all their archived events, each as of its own latest event, exactly as the streaming
    worker folds them (unless `value_streams` is False: then only the log is archived).
    """

    def __init__(
        self,
        policy: Policy,
        decoded_deals: int = DECODED_DEALS,
        *,
        value_streams: bool = True,
        future_limit: FutureLimit | None = None,
    ) -> None:
        self.policy = policy
        self.value_streams = value_streams
        self.future_limit = future_limit
        self._decoded: OrderedDict[str, dict[str, EventBase]] = OrderedDict()
        self._decoded_deals = decoded_deals

    def append(
        self, connection: duckdb.DuckDBPyConnection, batch: ArchiveBatch, *, refresh: bool = True
    ) -> BatchOutcome:
        """Append the batch and move the offsets, all or nothing.

        The deals the batch touches are marked for refolding in the same transaction;
        with `refresh` they are refolded in it too, else `refresh()` does it later
        (the sink does, once the stream is quiet: each deal then refolds once for many
        batches while history pours in).
        """
        with self._writing(connection):
            outcome = self._append(connection, batch)
            return self._refresh(connection, outcome, None) if refresh else outcome

    def refresh(
        self, connection: duckdb.DuckDBPyConnection, limit: int | None = None
    ) -> BatchOutcome:
        """Refold up to `limit` deals marked by earlier batches (None: all), in one transaction."""
        with self._writing(connection):
            return self._refresh(connection, BatchOutcome(), limit)

    @contextmanager
    def _writing(self, connection: duckdb.DuckDBPyConnection) -> Iterator[None]:
        try:
            with _transaction(connection):
                yield
        except BaseException:
            self._decoded.clear()  # it may hold events that were rolled back
            raise

    def _append(self, connection: duckdb.DuckDBPyConnection, batch: ArchiveBatch) -> BatchOutcome:
        heads = _heads(connection)
        gaps: list[OffsetGap] = []
        appended = self._append_events(connection, batch.events, heads, gaps)
        dead = _append_dead_letters(connection, batch.dead_letters, heads, gaps)
        alerts = _append_alerts(connection, batch.alerts, heads, gaps)
        self._remember(appended.new)
        if self.value_streams:
            touched = sorted({e.deal_id for e in appended.new if e.deal_id is not None})
            rows = [{"deal_id": deal_id} for deal_id in touched]
            _insert(connection, "dirty_deals", rows, "ON CONFLICT DO NOTHING")
        _save_heads(connection, heads, gaps)
        return BatchOutcome(
            stored=len(appended.rows),
            duplicates=len(appended.duplicates),
            already_archived=appended.already_archived + dead[1] + alerts[1],
            not_events=appended.not_events,
            dead_letters=dead[0],
            alerts=alerts[0],
            gaps=tuple(gaps),
            next_offsets={key: head.next_offset for key, head in heads.items()},
            deals_to_refresh=_count(connection, "dirty_deals"),
        )

    def _refresh(
        self, connection: duckdb.DuckDBPyConnection, outcome: BatchOutcome, limit: int | None
    ) -> BatchOutcome:
        top = "" if limit is None else f"LIMIT {int(limit)}"
        marked = connection.execute(f"SELECT deal_id FROM dirty_deals ORDER BY deal_id {top}")
        deal_ids = [str(deal_id) for (deal_id,) in marked.fetchall()]
        failed = self._refresh_deals(connection, deal_ids)
        with _deal_ids(connection, "refolded_deals", deal_ids):
            connection.execute(
                "DELETE FROM dirty_deals WHERE deal_id IN (SELECT deal_id FROM refolded_deals)"
            )
        return replace(
            outcome,
            deals_refreshed=len(deal_ids) - len(failed),
            failed_deals=tuple(failed),
            deals_to_refresh=_count(connection, "dirty_deals"),
        )

    def _append_events(
        self,
        connection: duckdb.DuckDBPyConnection,
        records: Sequence[LogRecord],
        heads: dict[tuple[str, int], ChainHead],
        gaps: list[OffsetGap],
    ) -> _EventsAppended:
        appended = _EventsAppended()
        fresh = _fresh(records, heads, gaps)
        appended.already_archived = len(records) - len(fresh)
        decoded = [(record, self._event_or_none(record)) for record in fresh]
        stored = _stored_payloads(connection, {e.event_id for _, e in decoded if e is not None})
        for record, event in decoded:
            key = (record.topic, record.partition)
            head = heads.setdefault(key, ChainHead(*key))
            if event is None:
                appended.not_events += 1
                head.consumed(record.offset)
                continue
            payload = encode(event)
            if event.event_id in stored:
                appended.duplicates.append(
                    _duplicate_row(record, event, payload == stored[event.event_id])
                )
                head.consumed(record.offset)
                continue
            row = _event_row(record, event, payload, head)
            stored[event.event_id] = payload
            head.linked(event.event_id, row["chain_hash"], record.offset)
            appended.rows.append(row)
            appended.new.append(event)
        _insert(connection, "events", appended.rows)
        if appended.rows:
            ids = pa.table({"event_id": pa.array([row["event_id"] for row in appended.rows])})
            connection.register("appended_event_ids", ids)
            try:
                fill_facts(connection, only="appended_event_ids")
            finally:
                connection.unregister("appended_event_ids")
        _insert(connection, "duplicates", appended.duplicates)
        return appended

    def _event_or_none(self, record: LogRecord) -> EventBase | None:
        """The record's event; None for what the worker dead-letters instead (it reaches the
        archive from the dead-letter topic): a bad message, or one dated too far ahead."""
        event = _decoded_or_none(record.value)
        limit = self.future_limit
        if event is not None and limit is not None and limit.is_future(event, record.recorded_at):
            return None
        return event

    def _refresh_deals(
        self, connection: duckdb.DuckDBPyConnection, deal_ids: list[str]
    ) -> list[str]:
        """Refold each deal from all its archived events and replace its rows; the failed ones."""
        if not deal_ids:
            return []
        facts = self._deal_events(connection, deal_ids)
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        failed = []
        for deal_id in deal_ids:
            events = list(facts[deal_id].values())
            try:
                stream = deal_value_stream(events, self.policy)
            except DealNotOpened:
                continue  # its deal_opened event has not arrived yet
            except Exception:
                failed.append(deal_id)  # its rows from before stay; its next event retries
                continue
            for table, table_rows in _value_stream_rows(stream, self.policy).items():
                rows[table] += table_rows
        refreshed = [deal_id for deal_id in deal_ids if deal_id not in failed]
        with _deal_ids(connection, "refreshed_deals", refreshed):
            for table in VALUE_STREAM_TABLES:
                connection.execute(
                    f"DELETE FROM {table} WHERE deal_id IN (SELECT deal_id FROM refreshed_deals)"
                )
        for table in VALUE_STREAM_TABLES:
            _insert(connection, table, rows[table])
        return failed

    def _remember(self, new: list[EventBase]) -> None:
        """Add newly stored events to the deals the writer holds decoded."""
        for event in new:
            held = self._decoded.get(event.deal_id or "")
            if held is not None:
                held[event.event_id] = event

    def _deal_events(
        self, connection: duckdb.DuckDBPyConnection, deal_ids: list[str]
    ) -> dict[str, dict[str, EventBase]]:
        """Each deal's archived events: from the writer's memory, else read back and decoded."""
        facts: dict[str, dict[str, EventBase]] = {}
        missing = [deal_id for deal_id in deal_ids if deal_id not in self._decoded]
        if missing:
            with _deal_ids(connection, "missing_deals", missing):
                rows = connection.execute(
                    "SELECT deal_id, payload FROM events "
                    "WHERE deal_id IN (SELECT deal_id FROM missing_deals)"
                ).fetchall()
            loaded: dict[str, dict[str, EventBase]] = {deal_id: {} for deal_id in missing}
            for deal_id, payload in rows:
                event = _archived(payload)
                loaded[deal_id][event.event_id] = event
            self._decoded.update(loaded)
        for deal_id in deal_ids:
            facts[deal_id] = self._decoded[deal_id]
            self._decoded.move_to_end(deal_id)
        while len(self._decoded) > self._decoded_deals:
            self._decoded.popitem(last=False)
        return facts


def _fresh(
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


_EVENT_JSON: TypeAdapter[Event] = TypeAdapter(Event)


def _archived(payload: str | bytes) -> EventBase:
    """An archived (canonical, validated) payload as an event: straight from JSON when it
    is of the current schema version, else through the codec, which upcasts it."""
    try:
        event: EventBase = _EVENT_JSON.validate_json(payload)
        return event
    except ValidationError:
        return decode(payload)


def _decoded_or_none(value: bytes) -> EventBase | None:
    try:
        return decode(value)
    except EventRejected:
        return None  # the streaming worker dead-letters it; it reaches the archive from there


def _stored_payloads(
    connection: duckdb.DuckDBPyConnection, event_ids: set[str]
) -> dict[str, bytes]:
    if not event_ids:
        return {}
    connection.register("incoming_ids", pa.table({"event_id": sorted(event_ids)}))
    try:
        rows = connection.execute(
            "SELECT event_id, payload FROM events "
            "WHERE event_id IN (SELECT event_id FROM incoming_ids)"
        ).fetchall()
    finally:
        connection.unregister("incoming_ids")
    return {str(event_id): str(payload).encode() for event_id, payload in rows}


def _event_row(
    record: LogRecord, event: EventBase, payload: bytes, head: ChainHead
) -> dict[str, Any]:
    previous = head.hash or genesis_hash(record.topic, record.partition)
    link = chain_link(
        record.topic, record.partition, record.offset, record.recorded_at, head.event_id, payload
    )
    return {
        "event_id": event.event_id,
        "type": str(getattr(event, "type", "")),
        "occurred_at": event.occurred_at,
        "recorded_at": record.recorded_at,
        "deal_id": event.deal_id,
        "account_id": event.account_id,
        "actor_id": event.actor_id,
        "campaign_id": event.campaign_id,
        "payload": payload.decode(),
        "source_topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "previous_event_id": head.event_id,
        "chain_hash": chain_hash(previous, link),
    }


def _duplicate_row(record: LogRecord, event: EventBase, identical: bool) -> dict[str, Any]:
    return {
        "topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "recorded_at": record.recorded_at,
        "event_id": event.event_id,
        "identical": identical,
    }


def _advance(
    records: Sequence[LogRecord], heads: dict[tuple[str, int], ChainHead], gaps: list[OffsetGap]
) -> list[LogRecord]:
    fresh = _fresh(records, heads, gaps)
    for record in fresh:
        key = (record.topic, record.partition)
        heads.setdefault(key, ChainHead(*key)).consumed(record.offset)
    return fresh


def _append_dead_letters(
    connection: duckdb.DuckDBPyConnection,
    records: Sequence[LogRecord],
    heads: dict[tuple[str, int], ChainHead],
    gaps: list[OffsetGap],
) -> tuple[int, int]:
    """Dead letters keyed by the source record they came from: a re-sent one is kept once."""
    fresh = _advance(records, heads, gaps)
    rows: dict[tuple[str, int, int], dict[str, Any]] = {}
    for record in fresh:
        headers = record.headers
        source = (
            headers.get("source.topic", record.topic.encode()).decode(errors="replace"),
            int(headers.get("source.partition", str(record.partition).encode())),
            int(headers.get("source.offset", str(record.offset).encode())),
        )
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
    before = _count(connection, "dead_letters")
    _insert(connection, "dead_letters", list(rows.values()), "ON CONFLICT DO NOTHING")
    return _count(connection, "dead_letters") - before, len(records) - len(fresh)


@dataclass(frozen=True, slots=True)
class AlertRow:
    """The fields of an alert the archive indexes; the whole alert is kept as JSON."""

    alert_id: str
    kind: str | None
    deal_id: str | None
    stage: str | None
    occurred_at: datetime | None

    @classmethod
    def parse(cls, value: bytes) -> AlertRow | None:
        """The alert's fields, or None if the bytes are not an alert."""
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(document, dict) or not isinstance(document.get("alert_id"), str):
            return None
        occurred = document.get("occurred_at")
        return cls(
            alert_id=document["alert_id"],
            kind=document.get("kind"),
            deal_id=document.get("deal_id"),
            stage=document.get("stage"),
            occurred_at=datetime.fromisoformat(occurred) if isinstance(occurred, str) else None,
        )


def _append_alerts(
    connection: duckdb.DuckDBPyConnection,
    records: Sequence[LogRecord],
    heads: dict[tuple[str, int], ChainHead],
    gaps: list[OffsetGap],
) -> tuple[int, int]:
    """Alerts keyed by alert_id: an alert published twice is kept once."""
    fresh = _advance(records, heads, gaps)
    rows: dict[str, dict[str, Any]] = {}
    for record in fresh:
        alert = AlertRow.parse(record.value)
        if alert is None:
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
    before = _count(connection, "alerts")
    _insert(connection, "alerts", list(rows.values()), "ON CONFLICT DO NOTHING")
    return _count(connection, "alerts") - before, len(records) - len(fresh)


def _count(connection: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(_scalar(connection, f"SELECT count(*) FROM {table}"))


def _scalar(connection: duckdb.DuckDBPyConnection, sql: str) -> Any:
    """The one value a query returns (read to the end, so the connection is free again)."""
    return connection.execute(sql).fetchall()[0][0]


def _save_heads(
    connection: duckdb.DuckDBPyConnection,
    heads: Mapping[tuple[str, int], ChainHead],
    gaps: Sequence[OffsetGap],
) -> None:
    rows = [
        {
            "topic": head.topic,
            "source_partition": head.partition,
            "next_offset": head.next_offset,
            "chain_length": head.length if head.hash else None,
            "head_event_id": head.event_id,
            "head_hash": head.hash,
        }
        for head in heads.values()
    ]
    _insert(
        connection,
        "offsets",
        rows,
        "ON CONFLICT DO UPDATE SET next_offset = excluded.next_offset, "
        "chain_length = excluded.chain_length, head_event_id = excluded.head_event_id, "
        "head_hash = excluded.head_hash",
    )
    for gap in gaps:
        connection.execute(
            "INSERT INTO offset_gaps VALUES (?, ?, ?, ?)",
            [gap.topic, gap.partition, gap.first, gap.last],
        )


# --- value-stream rows -----------------------------------------------------------------------

VALUE_STREAM_TABLES = ("vs_deals", "vs_stages", "vs_visits", "vs_touches", "vs_stalls")
"""The value-stream tables, refreshed from the pure fold for each deal a batch touches."""


def _path_value(totals: Totals, path: str) -> Any:
    value: Any = totals
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _totals_row(totals: Totals) -> dict[str, int]:
    row = {f"{name}_us": _path_value(totals, path) // MICROSECOND for name, path in TIME_FIELDS}
    return row | {name: int(_path_value(totals, path)) for name, path in COUNT_FIELDS}


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _value_stream_rows(stream: DealValueStream, policy: Policy) -> dict[str, list[dict[str, Any]]]:
    """A folded deal as rows of the value-stream tables."""
    current = stream.stage_history[-1]
    threshold = policy.stall.threshold(current.stage, stream.segment)
    last_va = stream.last_value_added_at
    deal = {
        "deal_id": stream.deal_id,
        "policy_version": stream.policy_version,
        "status": str(stream.status),
        "stage": stream.stage,
        "owner_id": stream.owner_id,
        "segment": stream.segment,
        "product": stream.product,
        "amount": stream.amount,
        "currency": stream.currency,
        "opened_at": stream.opened_at,
        "closed_at": stream.closed_at,
        "as_of": stream.as_of,
        "silent_since": max(current.entered_at, last_va or current.entered_at),
        "stall_threshold_us": None if threshold is None else threshold // MICROSECOND,
        "stall_episodes": len(stream.stalls),
        "last_value_added_at": last_va,
        **_totals_row(stream.totals),
        "value_stream": stream.model_dump_json(),
    }
    first_entry: dict[str, datetime] = {}
    for visit in stream.stage_history:
        first_entry.setdefault(visit.stage, visit.entered_at)
    return {
        "vs_deals": [deal],
        "vs_stages": [
            {
                "deal_id": stream.deal_id,
                "stage": each.stage,
                "stage_rank": policy.stages.rank(each.stage),
                "visits": each.visits,
                "first_entered_at": first_entry.get(each.stage, stream.opened_at),
                **_totals_row(each.totals),
            }
            for each in stream.stages
        ],
        "vs_visits": [
            {"deal_id": stream.deal_id, "visit": number, **visit.model_dump()}
            for number, visit in enumerate(stream.stage_history)
        ],
        "vs_touches": [
            {
                "deal_id": stream.deal_id,
                "event_id": touch.event_id,
                "kind": touch.kind,
                "direction": str(touch.direction),
                "started_at": touch.started_at,
                "ended_at": touch.ended_at,
                "process_us": touch.process_time // MICROSECOND,
                "stage": touch.stage,
                "touch_class": _text(touch.touch_class),
                "waste": _text(touch.waste),
                "rule": touch.rule,
                "outcome": _text(touch.outcome),
                "meeting_kind": _text(touch.meeting_kind),
            }
            for touch in stream.touches
        ],
        "vs_stalls": [
            {
                "deal_id": stream.deal_id,
                "stage": stall.stage,
                "started_at": stall.started_at,
                "ended_at": stall.ended_at,
                "threshold_us": stall.threshold // MICROSECOND,
            }
            for stall in stream.stalls
        ],
    }


# --- read-only queries -----------------------------------------------------------------------

QUERY_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows of a query."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def read_only_query(connection: duckdb.DuckDBPyConnection, sql: str) -> QueryResult:
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


# --- replay ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    """Every deal's value stream rebuilt from the log under one policy, as of a time.

    Each deal is folded as of its own latest known event, exactly as the streaming
    worker folds it, so the documents equal the `deal-value-streams` topic's.
    """

    policy_version: str
    as_of: datetime | None
    events_read: int
    events_known: int
    streams: Mapping[str, DealValueStream]
    documents: Mapping[str, bytes]

    @property
    def content_hash(self) -> str:
        """The content hash of the rebuilt value streams (see `content_hash`)."""
        return streams_hash((d, deal_digest(stream)) for d, stream in self.streams.items())

    def total(self) -> Totals:
        """All deals' totals together."""
        return sum((stream.totals for stream in self.streams.values()), Totals())

    @property
    def totals(self) -> Totals:
        """All deals' totals together."""
        return self.total()

    @property
    def deals(self) -> int:
        """How many deals were rebuilt."""
        return len(self.streams)

    @property
    def deals_by_status(self) -> dict[str, int]:
        """Deals rebuilt, by status."""
        counts: dict[str, int] = {}
        for stream in self.streams.values():
            counts[str(stream.status)] = counts.get(str(stream.status), 0) + 1
        return dict(sorted(counts.items()))


def content_hash(documents: Mapping[str, bytes]) -> str:
    """The canonical content hash of value-stream documents (DealValueStream JSON by deal id):
    sha256 over each deal's canonical lines (projections.archive.replay_sql.canonical_lines), then
    over the deals' digests in deal-id order; the SQL replay computes the same."""
    return streams_hash(
        (deal_id, deal_digest(DealValueStream.model_validate_json(document)))
        for deal_id, document in documents.items()
    )


def replay(
    records: Iterable[tuple[EventBase, datetime]], policy: Policy, as_of: datetime | None = None
) -> Replay:
    """Fold (event, recorded_at) pairs into every deal's value stream, as the world was at `as_of`.

    Only events that occurred, and were recorded, by `as_of` count; None means all.
    Duplicates and arrival order change nothing.
    """
    if as_of is not None and as_of.utcoffset() is None:
        raise HistoryError("as_of must be timezone-aware, like event times")
    by_deal: dict[str, list[EventBase]] = defaultdict(list)
    read = known = 0
    for event, recorded_at in records:
        read += 1
        if known_at(event, recorded_at, as_of):
            known += 1
            if event.deal_id is not None:
                by_deal[event.deal_id].append(event)
    streams: dict[str, DealValueStream] = {}
    for deal_id in sorted(by_deal):
        try:
            streams[deal_id] = deal_value_stream(by_deal[deal_id], policy)
        except DealNotOpened:
            continue
    documents = {deal_id: s.model_dump_json().encode() for deal_id, s in streams.items()}
    return Replay(policy.version, as_of, read, known, streams, documents)


def archived_events(
    connection: duckdb.DuckDBPyConnection, as_of: datetime | None = None
) -> list[tuple[EventBase, datetime]]:
    """The archived events (decoded) with their recorded_at, as known at `as_of`, in log order."""
    where = "" if as_of is None else "WHERE occurred_at <= $as_of AND recorded_at <= $as_of"
    rows = connection.execute(
        f"SELECT payload, recorded_at FROM events {where} "
        "ORDER BY source_topic, source_partition, source_offset",
        {} if as_of is None else {"as_of": as_of},
    ).fetchall()
    return [(_archived(payload), recorded_at) for payload, recorded_at in rows]


@dataclass(frozen=True)
class DealDifference:
    """How one deal's figures differ between two replays (minutes, PCE, reclassified touches)."""

    deal_id: str
    figures: Mapping[str, tuple[float | None, float | None]]
    touches_reclassified: int


def _figures(totals: Totals) -> dict[str, float | None]:
    figures: dict[str, float | None] = {
        name: _path_value(totals, path).total_seconds() / 60 for name, path in TIME_FIELDS
    }
    figures["waste"] = totals.waste.total.total_seconds() / 60
    figures["rework"] = float(totals.rework)
    figures["pce"] = totals.process_cycle_efficiency
    return figures


def replay_diff(base: Replay, other: Replay) -> list[DealDifference]:
    """The deals whose figures or touch classes differ between two replays, by deal id."""
    differences = []
    for deal_id in sorted(base.streams.keys() | other.streams.keys()):
        before, after = base.streams.get(deal_id), other.streams.get(deal_id)
        old = _figures(before.totals) if before else {}
        new = _figures(after.totals) if after else {}
        changed = {
            name: (old.get(name), new.get(name))
            for name in {*old, *new}
            if old.get(name) != new.get(name)
        }
        classes_before = (
            {t.event_id: (t.touch_class, t.waste) for t in before.touches} if before else {}
        )
        classes_after = (
            {t.event_id: (t.touch_class, t.waste) for t in after.touches} if after else {}
        )
        moved = sum(
            classes_before.get(event_id) != classes_after.get(event_id)
            for event_id in classes_before.keys() | classes_after.keys()
        )
        if changed or moved:
            differences.append(DealDifference(deal_id, changed, moved))
    return differences


_SQL_FIGURES = {
    name: f"w_{name.removeprefix('waste_')}_us" if name.startswith("waste_") else f"{name}_us"
    for name, _ in TIME_FIELDS
}
"""The figures of a deal in `replay_diff`, as columns of the SQL replay's deal table."""


def _row_figures(row: Mapping[str, Any]) -> dict[str, float | None]:
    figures: dict[str, float | None] = {
        name: row[column] / 60_000_000 for name, column in _SQL_FIGURES.items()
    }
    figures["waste"] = sum(row[f"w_{name}_us"] for name in PROCESS_WASTES) / 60_000_000
    figures["rework"] = float(row["rework"])
    lead = row["lead_time_us"]
    figures["pce"] = row["value_added_us"] / lead if lead else None
    return figures


def sql_replay_diff(
    connection: duckdb.DuckDBPyConnection, base: SqlReplay, other: SqlReplay
) -> list[DealDifference]:
    """`replay_diff` for two SQL replays held in `connection` (same archive, same as-of)."""

    def rows(prefix: str) -> dict[str, dict[str, Any]]:
        relation = connection.execute(f"SELECT * FROM {prefix}out")
        names = [column[0] for column in relation.description or ()]
        return {str(r[0]): dict(zip(names, r, strict=True)) for r in relation.fetchall()}

    before, after = rows(base.prefix), rows(other.prefix)
    moved = dict(
        connection.execute(
            f"""SELECT n.deal_id, count(*) FROM {base.prefix}touches a
            FULL JOIN {other.prefix}touches b USING (ord)
            JOIN deal_numbers n ON n.deal_no = coalesce(a.dn, b.dn)
            WHERE a.touch_class IS DISTINCT FROM b.touch_class
               OR a.waste IS DISTINCT FROM b.waste
            GROUP BY n.deal_id"""
        ).fetchall()
    )
    differences = []
    for deal_id in sorted(before.keys() | after.keys()):
        old = _row_figures(before[deal_id]) if deal_id in before else {}
        new = _row_figures(after[deal_id]) if deal_id in after else {}
        changed = {
            name: (old.get(name), new.get(name))
            for name in {*old, *new}
            if old.get(name) != new.get(name)
        }
        if changed or moved.get(deal_id):
            differences.append(DealDifference(deal_id, changed, int(moved.get(deal_id, 0))))
    return differences


# --- audit: verify the chain -----------------------------------------------------------------


class Tampering(StrEnum):
    """What verification found wrong with the archive."""

    CHANGED = "changed"
    REMOVED = "removed"
    INSERTED = "inserted"
    REORDERED = "reordered"
    NOT_ARCHIVED = "not-archived"


@dataclass(frozen=True, slots=True)
class AuditFinding:
    """One thing wrong, naming the event and where it is (or was)."""

    kind: Tampering
    event_id: str | None
    topic: str
    partition: int
    offset: int | None
    detail: str

    def __str__(self) -> str:
        what = self.event_id or "(unknown event)"
        where = f"{self.topic}[{self.partition}]" + (
            f"@{self.offset}" if self.offset is not None else ""
        )
        return f"{self.kind.value}: {what} at {where}: {self.detail}"


@dataclass(frozen=True)
class AuditReport:
    """The outcome of verifying the archive: partitions and events checked, findings."""

    partitions: int
    events: int
    findings: tuple[AuditFinding, ...]

    @property
    def intact(self) -> bool:
        """True when nothing was changed, removed, inserted, reordered or missed."""
        return not self.findings


@dataclass(frozen=True, slots=True)
class _ChainRow:
    event_id: str
    topic: str
    partition: int
    offset: int
    recorded_at: datetime
    previous_event_id: str | None
    payload: bytes
    chain_hash: str | None
    columns: tuple[Any, ...]

    def link(self, offset: int | None = None) -> bytes:
        at = self.offset if offset is None else offset
        return chain_link(
            self.topic, self.partition, at, self.recorded_at, self.previous_event_id, self.payload
        )


_COLUMNS = ("event_id", "type", "occurred_at", "deal_id", "account_id", "actor_id", "campaign_id")


def _columns_disagree(row: _ChainRow) -> str | None:
    """Why the row's indexed columns do not match its recorded event, if they do not."""
    try:
        event = decode(row.payload)
    except EventRejected as exc:
        return f"its payload is no longer a valid event ({exc})"
    recorded = (
        event.event_id,
        str(getattr(event, "type", "")),
        event.occurred_at,
        event.deal_id,
        event.account_id,
        event.actor_id,
        event.campaign_id,
    )
    wrong = [name for name, a, b in zip(_COLUMNS, row.columns, recorded, strict=True) if a != b]
    return f"column(s) {', '.join(wrong)} differ from the recorded event" if wrong else None


def _chain_rows(connection: duckdb.DuckDBPyConnection) -> dict[tuple[str, int], list[_ChainRow]]:
    rows = connection.execute(
        "SELECT event_id, source_topic, source_partition, source_offset, recorded_at, "
        "previous_event_id, payload, chain_hash, type, occurred_at, deal_id, account_id, "
        "actor_id, campaign_id FROM events ORDER BY source_topic, source_partition, source_offset"
    ).fetchall()
    chains: dict[tuple[str, int], list[_ChainRow]] = defaultdict(list)
    for row in rows:
        event_id, topic, partition, offset, recorded, previous, payload, hash_ = row[:8]
        chains[(str(topic), int(partition))].append(
            _ChainRow(
                str(event_id),
                str(topic),
                int(partition),
                int(offset),
                recorded,
                previous,
                str(payload).encode(),
                hash_,
                (event_id, *row[8:]),
            )
        )
    return chains


@dataclass
class _ChainCheck:
    """Verification of one partition's chain, walking it back from its head."""

    topic: str
    partition: int
    rows: list[_ChainRow]
    head: ChainHead | None
    findings: list[AuditFinding] = field(default_factory=list)

    def finding(
        self, kind: Tampering, row: _ChainRow | None, event_id: str | None, detail: str
    ) -> None:
        offset = row.offset if row is not None else None
        self.findings.append(
            AuditFinding(kind, event_id, self.topic, self.partition, offset, detail)
        )

    def run(self) -> list[AuditFinding]:
        walk = self._walk()
        on_chain = {row.event_id for row in walk}
        for row in self.rows:
            if row.event_id not in on_chain:
                detail = "no event of the chain links to it: the sink did not record it"
                self.finding(Tampering.INSERTED, row, row.event_id, detail)
        self._check_links(walk)
        return self.findings

    def _walk(self) -> list[_ChainRow]:
        """The chain from its first event to its head, following each event's link backwards."""
        by_id = {row.event_id: row for row in self.rows}
        position = {row.event_id: index for index, row in enumerate(self.rows)}
        expected = (
            self.head.event_id if self.head else (self.rows[-1].event_id if self.rows else None)
        )
        walk: list[_ChainRow] = []
        seen: set[str] = set()
        below = len(self.rows)  # position in offset order the walk has reached
        while expected is not None and expected not in seen:
            row = by_id.get(expected)
            if row is None:
                row = self._removed(expected, walk, below, seen)
                if row is None:
                    break
            seen.add(row.event_id)
            walk.append(row)
            below = min(below, position[row.event_id])
            expected = row.previous_event_id
        walk.reverse()
        return walk

    def _removed(
        self, event_id: str, walk: list[_ChainRow], below: int, seen: set[str]
    ) -> _ChainRow | None:
        """Report a removed event; go on from the event before it in offset order."""
        after = walk[-1] if walk else None
        before = next(
            (row for row in reversed(self.rows[:below]) if row.event_id not in seen), None
        )
        place = (
            f"between offsets {before.offset if before else '-'} and "
            f"{after.offset if after else '(head)'}"
        )
        self.finding(Tampering.REMOVED, None, event_id, f"the chain names it {place}; it is gone")
        return before

    def _check_links(self, walk: list[_ChainRow]) -> None:
        """Recompute each link from the one before; name what does not hash as recorded."""
        broken: list[tuple[_ChainRow, str]] = []
        for previous, row in zip([None, *walk], walk, strict=False):
            if row.previous_event_id != (previous.event_id if previous else None):
                continue  # a removed event sits between them: reported already
            start = previous.chain_hash if previous else genesis_hash(self.topic, self.partition)
            if start is None:
                continue
            if row.chain_hash != chain_hash(start, row.link()):
                broken.append((row, start))
            elif (wrong := _columns_disagree(row)) is not None:
                self.finding(Tampering.CHANGED, row, row.event_id, wrong)
        offsets = [row.offset for row, _ in broken]
        for row, start in broken:
            moved_from = next(
                (
                    o
                    for o in offsets
                    if o != row.offset and row.chain_hash == chain_hash(start, row.link(o))
                ),
                None,
            )
            if moved_from is not None:
                detail = f"recorded at offset {moved_from}, now at offset {row.offset}"
                self.finding(Tampering.REORDERED, row, row.event_id, detail)
            else:
                detail = "its content differs from what was recorded (hash mismatch)"
                self.finding(Tampering.CHANGED, row, row.event_id, detail)
        self._check_order(walk)

    def _check_order(self, walk: list[_ChainRow]) -> None:
        """Offsets must rise along the chain; name each event out of place not named yet."""
        reported = {f.event_id for f in self.findings if f.kind is Tampering.REORDERED}
        earlier: _ChainRow | None = None
        for row in walk:
            if row.event_id in reported:
                continue
            if earlier is not None and row.offset <= earlier.offset:
                detail = f"the chain puts it after {earlier.event_id} (offset {earlier.offset})"
                self.finding(Tampering.REORDERED, row, row.event_id, detail)
                continue
            earlier = row


def verify_archive(connection: duckdb.DuckDBPyConnection) -> AuditReport:
    """Recompute every partition's hash chain; name each event changed, removed, inserted or
    reordered, and every range of offsets the archive never received."""
    chains = _chain_rows(connection)
    heads = {key: head for key, head in _heads(connection).items() if head.hash is not None}
    findings: list[AuditFinding] = []
    for key in sorted(chains.keys() | heads.keys()):
        check = _ChainCheck(key[0], key[1], chains.get(key, []), heads.get(key))
        findings += check.run()
    for topic, partition, first, last in connection.execute(
        "SELECT * FROM offset_gaps ORDER BY ALL"
    ).fetchall():
        findings.append(
            AuditFinding(
                Tampering.NOT_ARCHIVED,
                None,
                topic,
                partition,
                first,
                f"offsets {first}..{last} were never received by the sink",
            )
        )
    named = {finding.event_id for finding in findings}
    findings += [f for f in _fold_fact_findings(connection) if f.event_id not in named]
    events = sum(len(rows) for rows in chains.values())
    return AuditReport(len(chains.keys() | heads.keys()), events, tuple(findings))


def _fold_fact_findings(connection: duckdb.DuckDBPyConnection) -> list[AuditFinding]:
    """The fold facts (what `gemba replay` reads) must say what the payloads say. (An event
    removed from the log leaves its facts behind: the chain names it, as removed.)"""
    tables = connection.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name IN ('fold_facts', 'deal_numbers')"
    ).fetchall()
    if tables[0][0] < 2:
        return []  # an archive from before version 2, never opened by a writer since
    rows = connection.execute(
        f"""WITH fresh AS ({FACTS_SELECT}),
        differ AS (
            SELECT event_id, 'changed' AS kind FROM (
                (SELECT * FROM fresh EXCEPT SELECT * FROM fold_facts)
                UNION ALL (SELECT * FROM fold_facts EXCEPT SELECT * FROM fresh))
            WHERE event_id IN (SELECT event_id FROM fresh)
              AND event_id IN (SELECT event_id FROM fold_facts)
            UNION
            SELECT event_id, 'removed' FROM fresh
                WHERE event_id NOT IN (SELECT event_id FROM fold_facts)
            UNION
            SELECT event_id, 'inserted' FROM fold_facts
                WHERE event_id NOT IN (SELECT event_id FROM fresh))
        SELECT d.event_id, d.kind, e.source_topic, e.source_partition, e.source_offset
        FROM differ d LEFT JOIN events e USING (event_id) ORDER BY d.event_id"""
    ).fetchall()
    details = {
        "changed": "its fold facts (what gemba replay reads) differ from its payload",
        "removed": "it has no fold facts: gemba replay would leave it out",
        "inserted": "fold facts for an event the log does not hold (or for another deal)",
    }
    findings = [
        AuditFinding(Tampering(kind), event_id, topic or "fold_facts", partition or 0, offset,
                     details[kind])
        for event_id, kind, topic, partition, offset in rows
    ]  # fmt: skip
    for (number,) in connection.execute(
        "SELECT deal_no FROM deal_numbers GROUP BY deal_no HAVING count(*) > 1 ORDER BY 1"
    ).fetchall():
        findings.append(
            AuditFinding(
                Tampering.CHANGED, None, "deal_numbers", 0, None,
                f"deal number {number} is given to more than one deal",
            )
        )  # fmt: skip
    return findings


# --- audit: export ---------------------------------------------------------------------------

EXPORTS: dict[str, str] = {
    "events": "SELECT * FROM events ORDER BY source_topic, source_partition, source_offset",
    "deal_value_streams": "SELECT * FROM vs_deals ORDER BY deal_id",
    "deal_stages": "SELECT * FROM vs_stages ORDER BY deal_id, stage",
    "stage_visits": "SELECT * FROM vs_visits ORDER BY deal_id, visit",
    "touches": "SELECT * FROM vs_touches ORDER BY deal_id, event_id",
    "stalls": "SELECT * FROM vs_stalls ORDER BY deal_id, started_at",
    "dead_letters": "SELECT * FROM dead_letters ORDER BY ALL",
    "alerts": "SELECT * FROM alerts ORDER BY alert_id",
    "duplicates": "SELECT * FROM duplicates ORDER BY ALL",
}


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


EXPORT_BATCH_ROWS = 100_000
"""Rows per Arrow batch (and Parquet row group) while exporting a table."""


def _write_parquet(connection: duckdb.DuckDBPyConnection, query: str, path: Path) -> int:
    """Write the rows of `query` to one Parquet file (zstd) from Python; return the rows.

    DuckDB only reads (a reader's connection may touch no file but the archive);
    pyarrow writes, batch by batch. JSON columns stay JSON (Parquet's JSON logical type).
    """
    relation = connection.sql(query)
    types = zip(relation.columns, relation.types, strict=True)
    json_columns = {name for name, kind in types if str(kind) == "JSON"}
    batches = relation.to_arrow_reader(EXPORT_BATCH_ROWS)
    schema = pa.schema(
        [
            field.with_type(pa.json_(field.type)) if field.name in json_columns else field
            for field in batches.schema
        ]
    )
    rows = 0
    with pq.ParquetWriter(str(path), schema, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch.cast(schema))
            rows += batch.num_rows
    return rows


def export_archive(connection: duckdb.DuckDBPyConnection, directory: Path) -> dict[str, Any]:
    """Write the events and projections as Parquet files, and manifest.json with their hashes.

    The manifest also carries each partition's chain head and the content hash of the
    archived value streams, so a copy can be checked against the archive, and later
    archives against this export.
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, query in EXPORTS.items():
        path = directory / f"{name}.parquet"
        rows = _write_parquet(connection, query, path)
        files[path.name] = {"rows": rows, "sha256": _file_hash(path)}
    documents = {
        str(deal_id): str(document).encode()
        for deal_id, document in connection.execute(
            "SELECT deal_id, value_stream FROM vs_deals"
        ).fetchall()
    }
    versions = connection.execute("SELECT DISTINCT policy_version FROM vs_deals ORDER BY 1")
    manifest = {
        "format": "gemba-archive-export/1",
        "files": files,
        "chains": [
            {
                "topic": head.topic,
                "partition": head.partition,
                "length": head.length,
                "head_event_id": head.event_id,
                "head_hash": head.hash,
                "next_offset": head.next_offset,
            }
            for _, head in sorted(_heads(connection).items())
        ],
        "value_streams": {
            "deals": len(documents),
            "policy_versions": [str(v) for (v,) in versions.fetchall()],
            "content_hash": content_hash(documents),
        },
    }
    (directory / "manifest.json").write_bytes(
        orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    )
    return manifest


# --- the value-stream report -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportChange:
    """One figure in the previous period and in the current one."""

    metric: str
    previous: float | None
    current: float | None


@dataclass(frozen=True)
class ValueStreamReport:
    """What a sales leader reads: PCE overall and per stage, top wastes, stalls, changes."""

    as_of: datetime | None
    policy_versions: tuple[str, ...]
    overall: Mapping[str, Any]
    stages: Sequence[Mapping[str, Any]]
    wastes: Sequence[Mapping[str, Any]]
    stalled: Sequence[Mapping[str, Any]]
    period: timedelta
    changes: list[ReportChange]


def records(
    connection: duckdb.DuckDBPyConnection, sql: str, parameters: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The rows of a query as dicts by column name (parameters bound, never formatted in)."""
    relation = connection.execute(sql, dict(parameters or {}))
    names = [column[0] for column in relation.description or ()]
    return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]


def _waste_examples(
    connection: duckdb.DuckDBPyConnection, line: Mapping[str, Any], count: int
) -> list[dict[str, Any]]:
    if line["measured_as"] == "wait":
        column = f"{line['category']}_us"
        return records(
            connection,
            f"SELECT deal_id, owner_id, stage, {column} / {MINUTE} AS minutes FROM vs_deals "
            f"WHERE {column} > 0 ORDER BY {column} DESC, deal_id LIMIT {int(count)}",
        )
    return records(
        connection,
        "SELECT deal_id, event_id, kind, stage, minutes FROM touches WHERE waste = $waste "
        f"ORDER BY minutes DESC, event_id LIMIT {int(count)}",
        {"waste": line["category"]},
    )


_PERIOD_DEALS = f"""
    SELECT count(*) FILTER (WHERE opened_at > $lo AND opened_at <= $hi) AS deals_opened,
           count(*) FILTER (WHERE status = 'won' AND closed_at > $lo AND closed_at <= $hi)
               AS deals_won,
           count(*) FILTER (WHERE status = 'lost' AND closed_at > $lo AND closed_at <= $hi)
               AS deals_lost,
           median(lead_time_us) FILTER (WHERE closed_at > $lo AND closed_at <= $hi) / {DAY}
               AS median_lead_time_days_of_closed_deals,
           sum(value_added_us) FILTER (WHERE closed_at > $lo AND closed_at <= $hi)
               / nullif(sum(lead_time_us) FILTER (WHERE closed_at > $lo AND closed_at <= $hi), 0)
               AS pce_of_closed_deals
    FROM vs_deals"""
_PERIOD_TOUCHES = f"""
    SELECT sum(process_us) FILTER (WHERE touch_class = 'value_added') / {MINUTE}
               AS value_added_touch_minutes,
           sum(process_us) FILTER (WHERE touch_class = 'waste') / {MINUTE}
               AS waste_touch_minutes,
           (SELECT count(*) FROM vs_stalls WHERE started_at > $lo AND started_at <= $hi)
               AS stall_episodes_started
    FROM vs_touches WHERE started_at > $lo AND started_at <= $hi"""


def _period_figures(
    connection: duckdb.DuckDBPyConnection, lo: datetime, hi: datetime
) -> dict[str, Any]:
    window = {"lo": lo, "hi": hi}
    figures = records(connection, _PERIOD_DEALS, window)[0]
    figures |= records(connection, _PERIOD_TOUCHES, window)[0]
    closed = (figures["deals_won"] or 0) + (figures["deals_lost"] or 0)
    figures["win_rate"] = figures["deals_won"] / closed if closed else None
    return figures


def value_stream_report(
    connection: duckdb.DuckDBPyConnection, period: timedelta = timedelta(days=30), top: int = 5
) -> ValueStreamReport:
    """The value-stream summary from the archive's tables, as of its latest event time."""
    as_of: datetime | None = _scalar(connection, "SELECT max(occurred_at) FROM events")
    overall = records(connection, "SELECT * FROM pce_by WHERE dimension = 'all'")
    stages = records(
        connection,
        "SELECT p.* FROM pce_by p LEFT JOIN (SELECT DISTINCT stage, stage_rank FROM vs_stages) r "
        "ON r.stage = p.value WHERE p.dimension = 'stage' ORDER BY r.stage_rank NULLS LAST, value",
    )
    wastes = records(connection, f"SELECT * FROM waste_pareto ORDER BY rank LIMIT {int(top)}")
    for line in wastes:
        line["examples"] = _waste_examples(connection, line, 3)
    stalled = records(
        connection, f"SELECT * FROM stalled_deals ORDER BY silent_days DESC LIMIT {int(top)}"
    )
    changes: list[ReportChange] = []
    if as_of is not None:
        current = _period_figures(connection, as_of - period, as_of)
        previous = _period_figures(connection, as_of - 2 * period, as_of - period)
        changes = [ReportChange(name, previous[name], current[name]) for name in current]
    versions = connection.execute("SELECT DISTINCT policy_version FROM vs_deals ORDER BY 1")
    return ValueStreamReport(
        as_of=as_of,
        policy_versions=tuple(str(v) for (v,) in versions.fetchall()),
        overall=overall[0] if overall else {},
        stages=stages,
        wastes=wastes,
        stalled=stalled,
        period=period,
        changes=changes,
    )
