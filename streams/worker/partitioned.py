"""A changelog-backed table that knows each row's partition, so sums count only the held ones."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import EventT, TableT

__all__ = ["PartitionedTable", "held_partitions", "store_in_partition"]


def held_partitions(table: TableT[Any, Any]) -> set[int] | None:
    """The table's changelog partitions assigned to this worker; None before any are."""
    topic = table.changelog_topic.get_topic_name()
    assigned = table.app.assignor.assigned_actives()
    return {tp.partition for tp in assigned if tp.topic == topic} or None


def store_in_partition(table: TableT[Any, Any], partition: int, key: Any, value: Any) -> None:
    """Write a row to the table's local store, in the changelog partition given, with no
    current event (e.g. from a timer); the caller sends the changelog record itself.

    `table.data[key] = value` does for the memory store, which keeps one dict for every
    partition; the RocksDB store keeps one database per partition and picks it by the
    current event's partition, so without one it cannot tell where the row goes (Faust
    asserts there is an event).
    """
    store: Any = table.data
    database_of = getattr(store, "_db_for_partition", None)  # the RocksDB store
    if database_of is None:
        store[key] = value
        return
    database_of(partition).put(store._encode_key(key), store._encode_value(value))


@dataclass
class PartitionedTable:
    """A Faust table, and the changelog partition of each of its rows.

    Faust's memory store keeps every row it has seen, whichever worker now holds its
    partition: rows this worker wrote for a partition it has since handed over (only
    rows restored from a changelog are dropped when their partition leaves), and rows
    of its standby partitions, which follow their changelogs in the background. A sum
    over `table.values()` counts all of them, so that with several workers a roll-up
    counts some deals twice. The partition of each row is noted when it is written
    (the partition of the current event, where Faust writes it) and when recovery
    restores it; `held_values` gives the rows of the partitions this worker holds.
    """

    app: faust.App
    table: TableT[Any, Any]
    _partition_of: dict[Any, int] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, app: faust.App, name: str, **options: Any) -> PartitionedTable:
        partition_of: dict[Any, int] = {}

        async def restored(event: EventT[Any]) -> None:
            partition_of[event.key] = event.message.partition

        table = app.Table(name, on_changelog_event=restored, **options)
        return cls(app, table, partition_of)

    def __getitem__(self, key: Any) -> Any:
        return self.table[key]

    def get(self, key: Any, default: Any = None) -> Any:
        return self.table.get(key, default)

    def __setitem__(self, key: Any, value: Any) -> None:
        """Write a row to the changelog partition of the current event, noting which it is."""
        self.table[key] = value
        event = faust.current_event()
        if event is not None:
            self._partition_of[key] = event.message.partition

    def held_values(self) -> Iterator[Any]:
        """The rows of the partitions this worker holds (every row before any assignment)."""
        held = held_partitions(self.table)
        for key, value in self.table.items():
            partition = self._partition_of.get(key)
            if held is None or partition is None or partition in held:
                yield value
