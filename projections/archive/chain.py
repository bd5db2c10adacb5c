"""The hash chain: each partition's events linked by sha256, and where each chain stands."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from projections.archive.connection import Connection
from projections.intervals import epoch_us

__all__ = [
    "ChainHead",
    "archived_offsets",
    "chain_hash",
    "chain_link",
    "genesis_hash",
    "partition_heads",
]


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


class Queryable(Protocol):
    """A connection that answers SQL with rows: the archive's DuckDB or its SQLite catalog."""

    def execute(self, sql: str, /) -> Any: ...


def partition_heads(connection: Queryable) -> dict[tuple[str, int], ChainHead]:
    """Every partition's chain head, as the `offsets` table holds it (in the catalog, or in
    an archive file of the old format)."""
    rows = connection.execute(
        "SELECT topic, source_partition, next_offset, chain_length, head_event_id, head_hash "
        "FROM offsets"
    ).fetchall()
    return {
        (str(t), int(p)): ChainHead(str(t), int(p), int(n), int(length or 0), event, hash_)
        for t, p, n, length, event, hash_ in rows
    }


def archived_offsets(connection: Connection) -> dict[tuple[str, int], int]:
    """The next offset to archive per (topic, partition): everything before it is held."""
    rows = connection.execute("SELECT topic, source_partition, next_offset FROM offsets")
    return {(str(topic), int(p)): int(n) for topic, p, n in rows.fetchall()}
