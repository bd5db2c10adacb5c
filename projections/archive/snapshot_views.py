"""A snapshot of the archive as DuckDB tables and views, named as the single file named them."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds

from projections.archive.connection import Connection
from projections.archive.schema import SCHEMA_VERSION, VIEWS
from projections.archive.store import (
    JSON_COLUMNS,
    SEGMENT_TABLES,
    VERSIONED_TABLES,
    Snapshot,
    segment_schema,
)

__all__ = ["build_views"]


def build_views(connection: Connection, snapshot: Snapshot) -> None:
    """The archive's tables and views over a snapshot, named as the single file named them."""
    connection.execute("SET TimeZone = 'UTC'")
    for table in SEGMENT_TABLES:
        files = [str(file) for file in snapshot.segments[table]]
        source = f"{table}_segments"
        connection.register(
            source, ds.dataset(files, schema=segment_schema(table), format="parquet")
        )
        casts = ", ".join(f"CAST({c} AS JSON) AS {c}" for c in JSON_COLUMNS.get(table, ()))
        columns = f"* REPLACE ({casts})" if casts else "*"
        if table == "vs_deals":
            body = (
                f"SELECT {columns.replace('*', '* EXCLUDE (version)', 1)} FROM {source} "
                "QUALIFY version = max(version) OVER (PARTITION BY deal_id)"
            )
        elif table in VERSIONED_TABLES:
            body = (
                f"SELECT t.* EXCLUDE (version) FROM {source} t SEMI JOIN "
                "(SELECT deal_id, max(version) AS version FROM vs_deals_segments GROUP BY deal_id)"
                " latest ON t.deal_id = latest.deal_id AND t.version = latest.version"
            )
        else:
            body = f"SELECT {columns} FROM {source}"
        connection.execute(f"CREATE TEMP VIEW {table} AS {body}")
    for name, rows in snapshot.tables.items():
        connection.register(name, rows)
    connection.register("archive_schema", pa.table({"version": pa.array([SCHEMA_VERSION])}))
    for name, body in VIEWS.items():
        connection.execute(f"CREATE TEMP VIEW {name} AS {body}")
