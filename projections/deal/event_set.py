"""A deal's facts as a set: duplicates dropped, sorted by event time then event id."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TypeVar

from events.models import EventBase

__all__ = ["canonical_events", "event_order", "known_at", "preferred_copy"]

E = TypeVar("E", bound=EventBase)


def event_order(event: EventBase) -> tuple[datetime, str]:
    """The fold order: event time, then event id (a total order on a set of events)."""
    return (event.occurred_at, event.event_id)


def known_at(event: EventBase, recorded_at: datetime, as_of: datetime | None) -> bool:
    """Whether the world knew the event at `as_of`: it had occurred and been recorded by then
    (every event, without `as_of`). The as-of rule of replays and of every history question.

    SQL twin: projections.archive.fold_sql.rules.known_at_sql.
    """
    return as_of is None or (event.occurred_at <= as_of and recorded_at <= as_of)


def preferred_copy(held: E, other: E) -> E:
    """Of two events with the same id (the same fact), the one to keep, whatever came first."""
    if held == other:
        return held
    return min(held, other, key=lambda event: (event.occurred_at, event.model_dump_json()))


def canonical_events(events: Iterable[E]) -> tuple[E, ...]:
    """Drop duplicate event ids and sort, so any arrival order gives the same tuple.

    An id seen twice with different content keeps the earlier one (then the
    one whose JSON sorts first), so even a conflicting duplicate cannot make
    the result depend on arrival order.
    """
    by_id: dict[str, E] = {}
    for event in events:
        held = by_id.get(event.event_id)
        by_id[event.event_id] = event if held is None else preferred_copy(held, event)
    return tuple(sorted(by_id.values(), key=event_order))
