"""Campaigns over history: the event log as known at a time, turned into linked journeys."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

from events.models import CampaignResponded, EventBase
from projections.campaigns.attribution import AttributionModel
from projections.campaigns.flow import FlowLink, campaign_flow
from projections.campaigns.journeys import (
    DealFacts,
    Journey,
    deal_facts_from_events,
    link_responses,
)
from projections.campaigns.markov import MarkovModel, fit_markov
from projections.campaigns.report import (
    CampaignRow,
    ModelComparison,
    campaign_table,
    compare_models,
)
from projections.campaigns.shapley import ShapleyModel, fit_shapley
from projections.deal.event_set import known_at
from projections.deal.totals import Totals
from projections.deal.value_stream import deal_value_stream
from projections.errors import DealNotOpened, ProjectionError
from projections.policy.model import Policy

__all__ = ["CampaignHistory", "campaign_history"]


@dataclass(frozen=True)
class CampaignHistory:
    """Every deal's journey (its linked responses), all responses, and the deals' totals.

    `not_opened` counts the known events of each deal that has events but no
    deal_opened yet (say a call a CRM sent before the deal): it has no journey,
    and is listed so that it is never silently dropped. Built once from the log;
    each method answers one question over it. The data-driven models are fitted
    once, over every closed journey, on first use.
    """

    policy: Policy
    as_of: datetime | None
    events_read: int
    events_known: int
    journeys: tuple[Journey, ...]
    responses: tuple[CampaignResponded, ...]
    totals_by_deal: Mapping[str, Totals]
    not_opened: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    _fitted: dict[str, MarkovModel | ShapleyModel] = field(default_factory=dict, repr=False)

    @property
    def markov(self) -> MarkovModel:
        """The Markov chain over every closed journey (fitted on first use)."""
        model = self._fitted.get("markov") or fit_markov(self.journeys)
        self._fitted["markov"] = model
        assert isinstance(model, MarkovModel)
        return model

    @property
    def shapley(self) -> ShapleyModel:
        """The Shapley characteristic function over every closed journey (fitted on first use)."""
        model = self._fitted.get("shapley") or fit_shapley(self.journeys)
        self._fitted["shapley"] = model
        assert isinstance(model, ShapleyModel)
        return model

    def _models(self, model: AttributionModel) -> dict[str, MarkovModel | ShapleyModel]:
        if model is AttributionModel.MARKOV:
            return {"markov": self.markov}
        if model is AttributionModel.SHAPLEY:
            return {"shapley": self.shapley}
        return {}

    def table(
        self, model: AttributionModel | str, costs: Mapping[str, Decimal] = MappingProxyType({})
    ) -> tuple[CampaignRow, ...]:
        """One row per campaign under `model` (see campaign_table)."""
        chosen = AttributionModel(model)
        return campaign_table(
            self.journeys,
            chosen,
            responses=self.responses,
            costs=costs,
            totals_by_deal=self.totals_by_deal,
            half_life=self.policy.attribution.time_decay_half_life,
            **self._models(chosen),  # type: ignore[arg-type]
        )

    def compare(self, rank_shift: int = 3) -> tuple[ModelComparison, ...]:
        """Every campaign's credit and rank under every model, with what stands out."""
        return compare_models(
            self.journeys,
            half_life=self.policy.attribution.time_decay_half_life,
            markov=self.markov,
            shapley=self.shapley,
            rank_shift=rank_shift,
        )

    def flow(self) -> list[FlowLink]:
        """Sankey links: campaign -> opening stage -> furthest stage -> outcome."""
        return campaign_flow(self.journeys, self.policy.stages.order)


def campaign_history(
    records: Iterable[tuple[EventBase, datetime]], policy: Policy, as_of: datetime | None = None
) -> CampaignHistory:
    """Link every deal known at `as_of` to the campaign responses of its account.

    `records` are (event, recorded_at) pairs in any order, duplicates allowed: only
    events that occurred, and were recorded, by `as_of` count (all without it), as
    in a replay. Each deal's value-stream totals run to its own latest known event.
    """
    if as_of is not None and as_of.utcoffset() is None:
        raise ProjectionError("as_of must be timezone-aware, like event times")
    by_deal: defaultdict[str, list[EventBase]] = defaultdict(list)
    responses: list[CampaignResponded] = []
    read = known = 0
    for event, recorded_at in records:
        read += 1
        if not known_at(event, recorded_at, as_of):
            continue
        known += 1
        if isinstance(event, CampaignResponded):
            responses.append(event)
        elif event.deal_id is not None:
            by_deal[event.deal_id].append(event)
    deals: list[DealFacts] = []
    totals: dict[str, Totals] = {}
    not_opened: dict[str, int] = {}
    for deal_id in sorted(by_deal):
        try:
            deals.append(deal_facts_from_events(by_deal[deal_id], policy))
            totals[deal_id] = deal_value_stream(by_deal[deal_id], policy).totals
        except DealNotOpened:
            # not opened as of then: no deal yet, but its events are counted, not dropped
            not_opened[deal_id] = len({event.event_id for event in by_deal[deal_id]})
    journeys = link_responses(deals, responses, policy.attribution.lookback)
    return CampaignHistory(
        policy,
        as_of,
        read,
        known,
        journeys,
        tuple(responses),
        MappingProxyType(totals),
        MappingProxyType(not_opened),
    )
