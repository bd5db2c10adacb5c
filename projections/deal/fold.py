"""One deal's fold kept current, one event at a time: the worker's per-deal state."""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from events.codec import decode, encode
from events.models import DealOpened, EventBase
from projections.deal.event_set import preferred_copy
from projections.deal.touch_rules import TouchMemo
from projections.deal.value_stream import (
    DealValueStream,
    fold_deal_facts,
    sorted_deal_facts,
)
from projections.errors import DealNotOpened, NotOneDeal
from projections.intervals import utc
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

    Memory: each event is held compact, as its encoded JSON (`events.encode`) and
    its sort key; the decoded events are kept too while the deal is hot, and
    `compact()` drops them (a cold deal decodes once at its next fold, then is
    hot again). The caller decides which deals stay hot (e.g. the most recently
    folded ones, and the open deals whose stall check is due soon).
    """

    __slots__ = ("_account", "_decoded", "_encoded", "_memo", "_order", "deal_id", "policy")

    def __init__(self, deal_id: str, policy: Policy) -> None:
        self.deal_id = deal_id
        self.policy = policy
        self._order: list[tuple[datetime, str]] = []
        self._encoded: dict[str, bytes] = {}
        self._decoded: dict[str, EventBase] | None = {}
        self._memo: TouchMemo | None = None
        self._account: tuple[bool, tuple[datetime, str], str] | None = None
        """(not a deal_opened event, its sort key, its account): the least of them."""

    @classmethod
    def of(cls, deal_id: str, policy: Policy, events: Iterable[EventBase]) -> DealFold:
        """A fold holding `events` (all of the deal), in any order, duplicates allowed."""
        fold = cls(deal_id, policy)
        for event in events:
            fold.add(event)
        return fold

    def add(self, event: EventBase, encoded: bytes | None = None) -> bool:
        """Take one event of the deal; False when it changes nothing (a copy already held, or
        a conflicting copy that `preferred_copy` does not prefer). Raises NotOneDeal for an
        event of another deal (or of none). `encoded`, if given, must be `encode(event)`
        (the worker has it already)."""
        if event.deal_id != self.deal_id:
            raise NotOneDeal(
                f"an event of deal {event.deal_id!r} was given to the fold of deal "
                f"{self.deal_id!r}: fold each deal's events into its own DealFold"
            )
        if encoded is None:
            # A copy of exact size: orjson's bytes keep the spare room of its write buffer.
            encoded = bytes(memoryview(encode(event)))
        event_id = event.event_id
        held = self._encoded.get(event_id)
        if held is not None:
            if held == encoded or preferred_copy(self._event(event_id), event) is not event:
                return False
            replaced = self._event(event_id)
            self._order.remove(self._key(replaced))
            if self._account and self._account[1] == self._key(replaced):
                self._account = None
                self._recount_account(event_id)
        self._encoded[event_id] = encoded
        if self._decoded is not None:
            self._decoded[event_id] = event
        key = self._key(event)
        self._note_account(event, key)
        if not self._order or self._order[-1] < key:
            self._order.append(key)
        else:
            insort(self._order, key)
        return True

    @staticmethod
    def _key(event: EventBase) -> tuple[datetime, str]:
        # event_order with the time in UTC: equal instants compare equal whatever their offset.
        return (utc(event.occurred_at), event.event_id)

    def _note_account(self, event: EventBase, key: tuple[datetime, str]) -> None:
        candidate = (not isinstance(event, DealOpened), key, event.account_id)
        if self._account is None or candidate < self._account:
            self._account = candidate

    def _recount_account(self, leaving: str) -> None:
        for event_id in self._encoded:
            if event_id != leaving:
                event = self._event(event_id)
                self._note_account(event, self._key(event))

    def _event(self, event_id: str) -> EventBase:
        if self._decoded is None:
            return decode(self._encoded[event_id])
        return self._decoded[event_id]

    def compact(self) -> None:
        """Drop the decoded events (keep only the encoded ones): for a deal that is not hot."""
        self._decoded = None
        self._memo = None

    @property
    def is_hot(self) -> bool:
        """Whether the decoded events are held (a fold needs no decode)."""
        return self._decoded is not None

    def _decoded_events(self) -> dict[str, EventBase]:
        if self._decoded is None:
            self._decoded = {eid: decode(raw) for eid, raw in self._encoded.items()}
        return self._decoded

    @property
    def events(self) -> tuple[EventBase, ...]:
        """The deal's events held, one copy per id, in fold order (event time, then id)."""
        decoded = self._decoded_events()
        return tuple(decoded[event_id] for _, event_id in self._order)

    @property
    def encoded(self) -> tuple[bytes, ...]:
        """The deal's events as `events.encode` gives them, in fold order."""
        return tuple(self._encoded[event_id] for _, event_id in self._order)

    def __len__(self) -> int:
        return len(self._order)

    @property
    def latest_event_time(self) -> datetime | None:
        """The latest event time among the deal's events, in UTC (None before any)."""
        return self._order[-1][0] if self._order else None

    @property
    def is_opened(self) -> bool:
        """Whether the deal_opened event has arrived (a value stream can be folded)."""
        return self._account is not None and not self._account[0]

    @property
    def account_id(self) -> str | None:
        """The account of the deal: its (earliest) deal_opened event's, else its earliest
        event's; None before any event. Known without decoding a compacted deal."""
        return self._account[2] if self._account else None

    @property
    def campaign_ids(self) -> tuple[str, ...]:
        """The campaigns any of the deal's events is attributed to, sorted, each once."""
        return tuple(sorted({e.campaign_id for e in self.events if e.campaign_id is not None}))

    def value_stream(
        self,
        watermark: datetime | None = None,
        *,
        learned_thresholds: Mapping[str, timedelta] | None = None,
    ) -> DealValueStream:
        """The value stream as of `watermark` (default: the deal's latest event), exactly as
        `deal_value_stream` folds the same events. Raises DealNotOpened before the open."""
        if not self._order:
            raise DealNotOpened(f"deal {self.deal_id} has no events yet")
        facts = sorted_deal_facts(self.deal_id, self.events, watermark)
        self._memo = self._memo or TouchMemo()
        return fold_deal_facts(facts, self.policy, learned_thresholds, self._memo)
