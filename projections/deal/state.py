"""Deals as event sets: incremental state per deal, and folding a mixed event stream."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from events.models import DealOpened, EventBase
from projections.deal.event_set import canonical_events
from projections.deal.value_stream import DealValueStream, deal_value_stream
from projections.errors import DealNotOpened, NotOneDeal
from projections.policy.model import Policy

__all__ = ["DealState", "deal_value_streams", "events_by_deal"]


@dataclass(frozen=True, slots=True)
class DealState:
    """One deal's facts so far: a duplicate-free set, kept sorted by event time then id.

    `apply` returns a new state; folding it gives exactly what the batch fold
    of the same events gives, however late or repeated the events arrived.
    """

    deal_id: str
    events: tuple[EventBase, ...] = ()

    @classmethod
    def of(cls, deal_id: str, events: Iterable[EventBase]) -> DealState:
        """The state holding `events` (all of which must belong to the deal)."""
        state = cls(deal_id)
        return state._with(tuple(events))

    def apply(self, event: EventBase) -> DealState:
        """The state with one more event; a duplicate event id changes nothing."""
        return self._with((event,))

    def _with(self, events: tuple[EventBase, ...]) -> DealState:
        strangers = {event.deal_id for event in events} - {self.deal_id}
        if strangers:
            raise NotOneDeal(
                f"events of deal(s) {sorted(map(str, strangers))} given to {self.deal_id}"
            )
        return DealState(self.deal_id, canonical_events((*self.events, *events)))

    @property
    def watermark(self) -> datetime | None:
        """The latest event time seen for this deal."""
        return self.events[-1].occurred_at if self.events else None

    @property
    def is_opened(self) -> bool:
        """Whether the deal_opened event has arrived (a value stream can be folded)."""
        return any(isinstance(event, DealOpened) for event in self.events)

    def value_stream(
        self,
        policy: Policy,
        watermark: datetime | None = None,
        *,
        learned_thresholds: Mapping[str, timedelta] | None = None,
    ) -> DealValueStream:
        """Fold the events held so far (see deal_value_stream); raises DealNotOpened before open."""
        if not self.events:
            raise DealNotOpened(f"deal {self.deal_id} has no events yet")
        return deal_value_stream(
            self.events, policy, watermark, learned_thresholds=learned_thresholds
        )


def events_by_deal(events: Iterable[EventBase]) -> dict[str, list[EventBase]]:
    """Group events by deal_id; events without one belong to no deal stream and are left out."""
    groups: defaultdict[str, list[EventBase]] = defaultdict(list)
    for event in events:
        if event.deal_id is not None:
            groups[event.deal_id].append(event)
    return dict(groups)


def deal_value_streams(
    events: Iterable[EventBase],
    policy: Policy,
    watermark: datetime | None = None,
    *,
    learned_thresholds: Mapping[str, timedelta] | None = None,
) -> dict[str, DealValueStream]:
    """Fold a mixed event stream into the value stream of every opened deal, by deal id.

    One watermark for all deals: by default the latest event time in the whole
    stream (events without a deal count too), so open deals are measured up to
    the same "now". Deals not opened as of the watermark are left out.
    """
    events = list(events)
    if not events:
        return {}
    as_of = watermark or max(event.occurred_at for event in events)
    streams = {}
    for deal_id, deal_events in sorted(events_by_deal(events).items()):
        try:
            streams[deal_id] = deal_value_stream(
                deal_events, policy, as_of, learned_thresholds=learned_thresholds
            )
        except DealNotOpened:
            continue
    return streams
