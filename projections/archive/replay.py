"""Replay in Python: every deal's value stream rebuilt from the log, as of a time; and how
two replays (Python or SQL) differ, deal by deal."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events import EventBase
from projections.archive.canonical import deal_digest, streams_hash
from projections.archive.connection import Connection
from projections.archive.errors import HistoryError
from projections.archive.records import archived_event
from projections.archive.replay_sql import SqlReplay
from projections.archive.schema import PROCESS_WASTES, TIME_FIELDS, totals_value
from projections.deal.event_set import known_at
from projections.deal.totals import Totals
from projections.deal.value_stream import DealValueStream, deal_value_stream
from projections.errors import DealNotOpened
from projections.policy.model import Policy

__all__ = [
    "DealDifference",
    "Replay",
    "archived_events",
    "content_hash",
    "replay",
    "replay_diff",
    "sql_replay_diff",
]


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
    sha256 over each deal's canonical lines (projections.archive.canonical.canonical_lines), then
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
    connection: Connection, as_of: datetime | None = None
) -> list[tuple[EventBase, datetime]]:
    """The archived events (decoded) with their recorded_at, as known at `as_of`, in log order."""
    where = "" if as_of is None else "WHERE occurred_at <= $as_of AND recorded_at <= $as_of"
    rows = connection.execute(
        f"SELECT payload, recorded_at FROM events {where} "
        "ORDER BY source_topic, source_partition, source_offset",
        {} if as_of is None else {"as_of": as_of},
    ).fetchall()
    return [(archived_event(payload), recorded_at) for payload, recorded_at in rows]


@dataclass(frozen=True)
class DealDifference:
    """How one deal's figures differ between two replays (minutes, PCE, reclassified touches)."""

    deal_id: str
    figures: Mapping[str, tuple[float | None, float | None]]
    touches_reclassified: int


def _figures(totals: Totals) -> dict[str, float | None]:
    figures: dict[str, float | None] = {
        name: totals_value(totals, path).total_seconds() / 60 for name, path in TIME_FIELDS
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
    connection: Connection, base: SqlReplay, other: SqlReplay
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
