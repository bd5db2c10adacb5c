"""What an importer yields besides events: rows refused or skipped, and the tally of them all."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

from events.future import FutureLimit
from events.models import EventBase

__all__ = ["ImportItem", "ImportTally", "Refused", "Skipped", "refuse_future_dated"]


@dataclass(frozen=True, slots=True)
class Refused:
    """A row or element that could not become an event: where it is, and why."""

    source: str
    location: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source} {self.location}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A row that is deliberately not an event (a note, an edit that moved no stage)."""

    source: str
    location: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source} {self.location}: {self.reason}"


ImportItem: TypeAlias = EventBase | Refused | Skipped
"""One thing an importer yields, in source order."""


def refuse_future_dated(
    items: Iterable[ImportItem], source: str, future: FutureLimit, recorded_at: datetime
) -> Iterator[ImportItem]:
    """The items, with each event dated further than `future` allows after `recorded_at`
    (when the import ran) refused, where it is named by its event id (ids come from the
    source rows); old data goes in as it is."""
    for item in items:
        if isinstance(item, EventBase) and future.is_future(item, recorded_at):
            where = f"event {item.event_id} (occurred_at {item.occurred_at.isoformat()})"
            yield Refused(source, where, future.reason)
        else:
            yield item


@dataclass
class ImportTally:
    """Counts of what went in and what did not; keeps the first `keep` refusals for display."""

    keep: int = 20
    imported: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    refused_by_reason: Counter[str] = field(default_factory=Counter)
    first_refused: list[Refused] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    def count(self, item: ImportItem) -> None:
        """Add one item to the tally."""
        if isinstance(item, Refused):
            self.refused += 1
            self.refused_by_reason[item.reason] += 1
            if len(self.first_refused) < self.keep:
                self.first_refused.append(item)
        elif isinstance(item, Skipped):
            self.skipped[item.reason] += 1
        else:
            self.imported += 1
            self.by_type[str(getattr(item, "type", type(item).__name__))] += 1

    @property
    def total_skipped(self) -> int:
        """Rows skipped on purpose, every reason together."""
        return sum(self.skipped.values())
