"""The export: the events and projections as Parquet files, with a manifest of their hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from projections.archive.chain import partition_heads
from projections.archive.connection import Connection
from projections.archive.replay import content_hash

__all__ = ["EXPORTS", "EXPORT_BATCH_ROWS", "export_archive"]

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


def _write_parquet(connection: Connection, query: str, path: Path) -> int:
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


def export_archive(connection: Connection, directory: Path) -> dict[str, Any]:
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
            for _, head in sorted(partition_heads(connection).items())
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
