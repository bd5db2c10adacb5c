"""The worker's bridge to the pure core: a deal's fold in, value-stream JSON and roll-up
contribution out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from events import EventBase
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

    def fold_events(
        self, events: list[EventBase], watermark: datetime | None = None
    ) -> FoldedDeal | None:
        """The deal's value stream (the batch fold of `events`) as JSON bytes and its roll-up
        contribution, as of `watermark` if given; None until the deal is opened."""
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
