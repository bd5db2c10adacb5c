"""One deal's timeline (its visits, classified touches, the gaps between them), and finding
deals by id."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

from projections.archive.connection import Connection
from projections.archive.opening import records
from projections.archive.schema import MINUTE_US

__all__ = ["DealTimeline", "TimelineGap", "deal_timeline", "find_deals"]


@dataclass(frozen=True, slots=True)
class TimelineGap:
    """A stretch of the deal's life in which no one worked on it (wait)."""

    started_at: datetime
    ended_at: datetime
    stage: str

    @property
    def minutes(self) -> float:
        """Its length in minutes."""
        return (self.ended_at - self.started_at).total_seconds() / 60


@dataclass(frozen=True, slots=True)
class DealTimeline:
    """A deal's life: its figures, stage visits, classified touches and the gaps between them.

    The gaps are the parts of its life no touch covers; they add up to its wait.
    """

    deal: Mapping[str, Any]
    visits: tuple[Mapping[str, Any], ...]
    touches: tuple[Mapping[str, Any], ...]
    gaps: tuple[TimelineGap, ...]
    stalls: tuple[Mapping[str, Any], ...]


_DEAL_COLUMNS = (
    "deal_id, status, stage, owner_id, segment, product, amount, currency, opened_at, "
    "closed_at, as_of, policy_version, lead_time_min, value_added_min, "
    "necessary_non_value_added_min, waste_min, wait_min, waiting_on_us_min, inventory_min, "
    "rework, pce, touches, stall_episodes"
)


def _stage_at(visits: Sequence[Mapping[str, Any]], moment: datetime) -> str:
    stage = str(visits[0]["stage"]) if visits else ""
    for visit in visits:
        if visit["entered_at"] <= moment:
            stage = str(visit["stage"])
    return stage


def _gaps(
    start: datetime,
    end: datetime,
    touches: Sequence[Mapping[str, Any]],
    visits: Sequence[Mapping[str, Any]],
) -> tuple[TimelineGap, ...]:
    """The parts of [start, end) that no touch with process time covers, split at stage entries."""
    gaps: list[TimelineGap] = []
    cursor = start
    spans = sorted(
        (max(t["started_at"], start), min(t["ended_at"], end))
        for t in touches
        if t["ended_at"] > t["started_at"]
    )
    for begin, finish in [*spans, (end, end)]:
        if begin > cursor:
            gaps.extend(_split_at_stages(cursor, begin, visits))
        cursor = max(cursor, finish)
    return tuple(gaps)


def _split_at_stages(
    start: datetime, end: datetime, visits: Sequence[Mapping[str, Any]]
) -> list[TimelineGap]:
    cuts = sorted({v["entered_at"] for v in visits if start < v["entered_at"] < end})
    bounds = [start, *cuts, end]
    return [
        TimelineGap(begin, finish, _stage_at(visits, begin)) for begin, finish in pairwise(bounds)
    ]


def deal_timeline(connection: Connection, deal_id: str) -> DealTimeline | None:
    """One deal's timeline, or None when the archive holds no value stream for it."""
    deals = records(
        connection,
        f"SELECT {_DEAL_COLUMNS} FROM deal_value_streams WHERE deal_id = $deal",
        {"deal": deal_id},
    )
    if not deals:
        return None
    deal = deals[0]
    visits = records(
        connection,
        "SELECT visit, stage, entered_at, left_at, regression, event_id FROM vs_visits "
        "WHERE deal_id = $deal ORDER BY visit",
        {"deal": deal_id},
    )
    touches = records(
        connection,
        "SELECT event_id, kind, direction, stage, touch_class, waste, rule, outcome, "
        f"meeting_kind, started_at, ended_at, process_us / {MINUTE_US} AS minutes "
        "FROM vs_touches WHERE deal_id = $deal ORDER BY started_at, event_id",
        {"deal": deal_id},
    )
    stalls = records(
        connection,
        f"SELECT stage, started_at, ended_at, threshold_us / {MINUTE_US} AS threshold_min "
        "FROM vs_stalls WHERE deal_id = $deal ORDER BY started_at",
        {"deal": deal_id},
    )
    end = deal["closed_at"] or deal["as_of"]
    gaps = _gaps(deal["opened_at"], max(end, deal["opened_at"]), touches, visits)
    return DealTimeline(deal, tuple(visits), tuple(touches), gaps, tuple(stalls))


def find_deals(connection: Connection, text: str, limit: int = 20) -> list[dict[str, Any]]:
    """Deals whose id contains `text` (any case), stalled and open ones first."""
    return records(
        connection,
        "SELECT deal_id, status, stage, owner_id FROM vs_deals "
        "WHERE contains(lower(deal_id), lower($text)) "
        "ORDER BY status <> 'open', deal_id LIMIT $limit",
        {"text": text, "limit": max(1, min(int(limit), 200))},
    )
