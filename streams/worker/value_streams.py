"""The worker's bridge to the pure core: stored deal events in, value-stream JSON out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from events import EventBase, decode
from projections.deal.fold import DealFold
from projections.deal.value_stream import DealValueStream, deal_value_stream
from projections.errors import DealNotOpened
from projections.policy.model import Policy
from projections.portfolio.rollup import Contribution, contributions
from streams.policy_loading import policy_of
from streams.settings import Settings

__all__ = ["FoldedDeal", "ValueStreamFolder"]


@dataclass(frozen=True)
class ValueStreamFolder:
    """Folds a deal's stored events under one policy."""

    policy: Policy

    @classmethod
    def from_settings(cls, settings: Settings) -> ValueStreamFolder:
        """The policy file from settings, or the shipped default."""
        return cls(policy_of(settings))

    def value_stream(self, encoded_events: Iterable[str | bytes]) -> DealValueStream | None:
        """The deal's value stream as of its latest event; None until it has been opened."""
        events = [decode(raw) for raw in encoded_events]
        try:
            return deal_value_stream(events, self.policy)
        except DealNotOpened:
            return None  # its deal_opened event has not arrived yet

    def fold(self, encoded_events: Iterable[str | bytes]) -> FoldedDeal | None:
        """The value stream as JSON bytes and its roll-up contribution; None until opened."""
        return self.fold_events([decode(raw) for raw in encoded_events])

    def fold_events(
        self, events: list[EventBase], watermark: datetime | None = None
    ) -> FoldedDeal | None:
        """Like `fold`, for events already decoded; as of `watermark` if given."""
        if watermark is not None:
            watermark = max([watermark, *(event.occurred_at for event in events)])
        try:
            stream = deal_value_stream(events, self.policy, watermark)
        except DealNotOpened:
            return None  # its deal_opened event has not arrived yet
        campaigns = [e.campaign_id for e in events if e.campaign_id is not None]
        return FoldedDeal(
            stream, stream.model_dump_json().encode(), contributions(stream, campaigns)
        )

    def fold_deal(self, fold: DealFold, watermark: datetime | None = None) -> FoldedDeal | None:
        """Like `fold_events`, from the deal's fold (nothing decoded, events kept in order)."""
        if not fold.is_opened:
            return None  # its deal_opened event has not arrived yet
        latest = fold.latest_event_time
        if watermark is not None and latest is not None:
            watermark = max(watermark, latest)
        stream = fold.value_stream(watermark)
        return FoldedDeal(
            stream, stream.model_dump_json().encode(), contributions(stream, fold.campaign_ids)
        )


@dataclass(frozen=True)
class FoldedDeal:
    """A deal's value stream, serialised, and what it adds to each roll-up."""

    stream: DealValueStream
    document: bytes
    contribution: Contribution
