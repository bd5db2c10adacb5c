"""One deal's fold kept current, one event at a time: the worker's per-deal state."""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from events.models import DealOpened, EventBase
from projections.deal.event_set import event_order, preferred_copy
from projections.deal.value_stream import (
    DealValueStream,
    fold_deal_facts,
    sorted_deal_facts,
)
from projections.errors import DealNotOpened, NotOneDeal
from projections.policy.model import Policy

__all__ = ["DealFold"]


class DealFold:
    """One deal's events under one policy, taken one at a time, folded on demand.

    `add` keeps the events as `canonical_events` would (one copy per event id, the
    one `preferred_copy` keeps, sorted by `event_order`): an event after the
    deal's latest is appended, an earlier one is inserted in place.
    `value_stream(watermark)` is exactly `deal_value_stream(events, policy,
    watermark)` of every event added so far; like it, it raises DealNotOpened
    until the deal_opened event has arrived (`is_opened` says whether it has).
    """

    __slots__ = ("_by_id", "_events", "deal_id", "policy")

    def __init__(self, deal_id: str, policy: Policy) -> None:
        self.deal_id = deal_id
        self.policy = policy
        self._events: list[EventBase] = []
        self._by_id: dict[str, EventBase] = {}

    @classmethod
    def of(cls, deal_id: str, policy: Policy, events: Iterable[EventBase]) -> DealFold:
        """A fold holding `events` (all of the deal), in any order, duplicates allowed."""
        fold = cls(deal_id, policy)
        for event in events:
            fold.add(event)
        return fold

    def add(self, event: EventBase) -> bool:
        """Take one event of the deal; False when it changes nothing (a copy already held, or
        a conflicting copy that `preferred_copy` does not prefer). Raises NotOneDeal for an
        event of another deal (or of none)."""
        if event.deal_id != self.deal_id:
            raise NotOneDeal(
                f"an event of deal {event.deal_id!r} was given to the fold of deal "
                f"{self.deal_id!r}: fold each deal's events into its own DealFold"
            )
        held = self._by_id.get(event.event_id)
        if held is not None:
            if held is event or preferred_copy(held, event) is held:
                return False
            self._events.remove(held)
        self._by_id[event.event_id] = event
        if not self._events or event_order(self._events[-1]) < event_order(event):
            self._events.append(event)
        else:
            insort(self._events, event, key=event_order)
        return True

    @property
    def events(self) -> tuple[EventBase, ...]:
        """The deal's events held, one copy per id, in fold order (event time, then id)."""
        return tuple(self._events)

    def __len__(self) -> int:
        return len(self._events)

    @property
    def latest_event_time(self) -> datetime | None:
        """The latest event time among the deal's events (None before any)."""
        return self._events[-1].occurred_at if self._events else None

    @property
    def is_opened(self) -> bool:
        """Whether the deal_opened event has arrived (a value stream can be folded)."""
        return any(isinstance(event, DealOpened) for event in self._events)

    @property
    def account_id(self) -> str | None:
        """The account of the deal: its deal_opened event's, else its earliest event's."""
        opened = next((e for e in self._events if isinstance(e, DealOpened)), None)
        first = opened or next(iter(self._events), None)
        return first.account_id if first else None

    @property
    def campaign_ids(self) -> tuple[str, ...]:
        """The campaigns any of the deal's events is attributed to, sorted, each once."""
        return tuple(sorted({e.campaign_id for e in self._events if e.campaign_id is not None}))

    def value_stream(
        self,
        watermark: datetime | None = None,
        *,
        learned_thresholds: Mapping[str, timedelta] | None = None,
    ) -> DealValueStream:
        """The value stream as of `watermark` (default: the deal's latest event), exactly as
        `deal_value_stream` folds the same events. Raises DealNotOpened before the open."""
        if not self._events:
            raise DealNotOpened(f"deal {self.deal_id} has no events yet")
        facts = sorted_deal_facts(self.deal_id, self._events, watermark)
        return fold_deal_facts(facts, self.policy, learned_thresholds)
