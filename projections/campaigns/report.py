"""Campaign results: reach, pipeline, credited revenue, ROI and value stream, per campaign."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from statistics import median
from types import MappingProxyType

from events.models import CampaignResponded
from projections.campaigns.attribution import (
    DATA_DRIVEN,
    DEFAULT_HALF_LIFE,
    AttributionModel,
    credit,
)
from projections.campaigns.journeys import Journey
from projections.campaigns.markov import MarkovModel, fit_markov
from projections.campaigns.shapley import ShapleyModel, fit_shapley
from projections.categories import DealStatus
from projections.deal.event_set import canonical_events
from projections.deal.totals import Totals
from projections.intervals import ZERO

__all__ = ["CampaignRow", "ModelComparison", "campaign_table", "compare_models", "credits_by_deal"]

NO_COSTS: Mapping[str, Decimal] = MappingProxyType({})
NO_TOTALS: Mapping[str, Totals] = MappingProxyType({})
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class CampaignRow:
    """One campaign's reach and results under one credit model.

    `responses` counts all its responses, linked to a deal or not;
    `linked_responses` those linked to at least one deal. A deal is influenced
    when one of the campaign's responses is linked to it. `pipeline` is the
    expected amount of the influenced deals still open; `revenue` the credit
    the model gives the campaign. `roi` = (revenue - cost) / cost, None without
    a cost (or a cost of 0). `median_days_to_win`: over the influenced won
    deals, days from the campaign's first linked response to the win.
    `value_stream` sums the totals of the influenced deals that have totals;
    `deals_stalled` counts those that spent any time stalled (inventory > 0).
    """

    campaign_id: str
    responses: int = 0
    linked_responses: int = 0
    accounts_reached: int = 0
    deals_influenced: int = 0
    deals_won: int = 0
    pipeline: Decimal = Decimal("0.00")
    revenue: Decimal = Decimal("0.00")
    cost: Decimal | None = None
    roi: float | None = None
    median_days_to_win: float | None = None
    value_stream: Totals = field(default_factory=Totals)
    deals_stalled: int = 0

    @property
    def process_cycle_efficiency(self) -> float | None:
        """Value-added time over lead time of the influenced deals together."""
        return self.value_stream.process_cycle_efficiency

    @property
    def waste_share(self) -> float | None:
        """Share of the influenced deals' lead time that was waste; None for no lead time."""
        lead_time = self.value_stream.lead_time
        return self.value_stream.waste.total / lead_time if lead_time else None


def _fitted(
    journeys: Sequence[Journey],
    models: Iterable[AttributionModel],
    markov: MarkovModel | None,
    shapley: ShapleyModel | None,
) -> tuple[MarkovModel | None, ShapleyModel | None]:
    chosen = set(models)
    if markov is None and AttributionModel.MARKOV in chosen:
        markov = fit_markov(journeys)
    if shapley is None and AttributionModel.SHAPLEY in chosen:
        shapley = fit_shapley(journeys)
    return markov, shapley


def credits_by_deal(
    journeys: Iterable[Journey],
    model: AttributionModel | str,
    *,
    half_life: timedelta = DEFAULT_HALF_LIFE,
    markov: MarkovModel | None = None,
    shapley: ShapleyModel | None = None,
) -> dict[str, dict[str, Decimal]]:
    """The credit of every won deal with responses, by deal id.

    A data-driven model not given is fitted over these journeys.
    """
    journeys = tuple(journeys)
    chosen = AttributionModel(model)
    markov, shapley = _fitted(journeys, [chosen], markov, shapley)
    credits = {
        journey.deal.deal_id: credit(
            journey, chosen, half_life=half_life, markov=markov, shapley=shapley
        )
        for journey in journeys
    }
    return {deal_id: split for deal_id, split in credits.items() if split}


@dataclass
class _Reach:
    response_ids: set[str] = field(default_factory=set)
    linked_ids: set[str] = field(default_factory=set)
    accounts: set[str] = field(default_factory=set)
    first_touch: dict[str, datetime] = field(default_factory=dict)
    journeys: dict[str, Journey] = field(default_factory=dict)


def _reach(
    journeys: Sequence[Journey], responses: Iterable[CampaignResponded]
) -> dict[str, _Reach]:
    linked = [response for journey in journeys for response in journey.responses]
    reach: defaultdict[str, _Reach] = defaultdict(_Reach)
    for response in canonical_events([*responses, *linked]):
        reach[response.campaign_id].response_ids.add(response.event_id)
        reach[response.campaign_id].accounts.add(response.account_id)
    for journey in journeys:
        for response in journey.responses:
            campaign = reach[response.campaign_id]
            campaign.linked_ids.add(response.event_id)
            campaign.journeys[journey.deal.deal_id] = journey
            campaign.first_touch.setdefault(journey.deal.deal_id, response.occurred_at)
    return reach


def _row(
    campaign_id: str,
    reach: _Reach,
    revenue: Decimal,
    cost: Decimal | None,
    totals_by_deal: Mapping[str, Totals],
) -> CampaignRow:
    deals = [journey.deal for journey in reach.journeys.values()]
    won = [deal for deal in deals if deal.status is DealStatus.WON]
    days = [
        (deal.closed_at - reach.first_touch[deal.deal_id]) / DAY
        for deal in won
        if deal.closed_at is not None
    ]
    totals = [totals_by_deal[deal.deal_id] for deal in deals if deal.deal_id in totals_by_deal]
    return CampaignRow(
        campaign_id=campaign_id,
        responses=len(reach.response_ids),
        linked_responses=len(reach.linked_ids),
        accounts_reached=len(reach.accounts),
        deals_influenced=len(deals),
        deals_won=len(won),
        pipeline=sum(
            (deal.amount or Decimal(0) for deal in deals if deal.status is DealStatus.OPEN),
            Decimal("0.00"),
        ),
        revenue=revenue,
        cost=cost,
        roi=float((revenue - cost) / cost) if cost else None,
        median_days_to_win=median(days) if days else None,
        value_stream=sum(totals, Totals()),
        deals_stalled=sum(1 for each in totals if each.inventory > ZERO),
    )


def campaign_table(
    journeys: Iterable[Journey],
    model: AttributionModel | str,
    *,
    responses: Iterable[CampaignResponded] = (),
    costs: Mapping[str, Decimal] = NO_COSTS,
    totals_by_deal: Mapping[str, Totals] = NO_TOTALS,
    half_life: timedelta = DEFAULT_HALF_LIFE,
    markov: MarkovModel | None = None,
    shapley: ShapleyModel | None = None,
) -> tuple[CampaignRow, ...]:
    """One row per campaign responded to, or with a cost, sorted by revenue (most first), then id.

    `responses` are all the campaign responses, linked or not (without them only
    the linked ones are counted); `totals_by_deal` the deals' value-stream
    totals. A data-driven model not given is fitted over these journeys.
    """
    journeys = tuple(journeys)
    revenue: defaultdict[str, Decimal] = defaultdict(lambda: Decimal("0.00"))
    by_deal = credits_by_deal(journeys, model, half_life=half_life, markov=markov, shapley=shapley)
    for split in by_deal.values():
        for campaign_id, amount in split.items():
            revenue[campaign_id] += amount
    reach = _reach(journeys, responses)
    campaign_ids = sorted({*reach, *costs})
    rows = [
        _row(
            campaign_id,
            reach.get(campaign_id, _Reach()),
            revenue[campaign_id],
            costs.get(campaign_id),
            totals_by_deal,
        )
        for campaign_id in campaign_ids
    ]
    return tuple(sorted(rows, key=lambda row: (-row.revenue, row.campaign_id)))


@dataclass(frozen=True, slots=True)
class ModelComparison:
    """A campaign's credit and rank (1 = most credit) under each model, and what stands out."""

    campaign_id: str
    credits: Mapping[AttributionModel, Decimal]
    ranks: Mapping[AttributionModel, int]
    findings: tuple[str, ...] = ()

    @property
    def flagged(self) -> bool:
        """Whether the campaign's credit depends on the model enough to be a finding."""
        return bool(self.findings)


def _ranks(credits: Mapping[str, Decimal]) -> dict[str, int]:
    """Competition ranks: 1 + the number of campaigns with strictly more credit."""
    ordered = sorted(credits.values(), reverse=True)
    return {campaign: ordered.index(amount) + 1 for campaign, amount in credits.items()}


def _findings(
    credits: Mapping[AttributionModel, Decimal],
    ranks: Mapping[AttributionModel, int],
    rank_shift: int,
    credit_gap: Decimal,
) -> tuple[str, ...]:
    findings = []
    best = min(ranks, key=lambda model: (ranks[model], model))
    worst = max(ranks, key=lambda model: (ranks[model], model))
    if ranks[worst] - ranks[best] >= rank_shift:
        findings.append(
            f"rank moves {ranks[worst] - ranks[best]} places: "
            f"#{ranks[best]} under {best}, #{ranks[worst]} under {worst}"
        )
    for driven in sorted(DATA_DRIVEN & credits.keys()):
        gaps = [
            (_gap(credits[driven], credits[rule]), rule)
            for rule in sorted(credits.keys() - DATA_DRIVEN)
        ]
        gap, rule = max(gaps, key=lambda pair: pair[0], default=(Decimal(0), driven))
        if gap > credit_gap:
            findings.append(f"{driven} credits {credits[driven]}, {rule} credits {credits[rule]}")
    return tuple(findings)


def _gap(driven: Decimal, rule: Decimal) -> Decimal:
    """How far the data-driven credit is from the rule-based one, relative to the latter."""
    if rule == 0:
        return Decimal("Infinity") if driven else Decimal(0)
    return abs(driven - rule) / rule


def compare_models(
    journeys: Iterable[Journey],
    *,
    models: Sequence[AttributionModel] = tuple(AttributionModel),
    half_life: timedelta = DEFAULT_HALF_LIFE,
    markov: MarkovModel | None = None,
    shapley: ShapleyModel | None = None,
    rank_shift: int = 3,
    credit_gap: Decimal = Decimal("0.5"),
) -> tuple[ModelComparison, ...]:
    """Every campaign on a journey: its credit and rank under each model, sorted by campaign id.

    A campaign is flagged when its rank moves by `rank_shift` places or more
    between two models, or when its credit under a data-driven model differs
    from its credit under a rule-based one by more than `credit_gap` (50%) of
    the latter (any credit against none counts): credit that depends that much
    on the model is a finding, not a fact. Data-driven models not given are
    fitted over these journeys.
    """
    journeys = tuple(journeys)
    markov, shapley = _fitted(journeys, models, markov, shapley)
    campaign_ids = sorted({campaign for journey in journeys for campaign in journey.campaigns})
    totals: dict[AttributionModel, dict[str, Decimal]] = {}
    for model in dict.fromkeys(AttributionModel(each) for each in models):
        totals[model] = dict.fromkeys(campaign_ids, Decimal("0.00"))
        by_deal = credits_by_deal(
            journeys, model, half_life=half_life, markov=markov, shapley=shapley
        )
        for split in by_deal.values():
            for campaign_id, amount in split.items():
                totals[model][campaign_id] += amount
    ranks = {model: _ranks(credits) for model, credits in totals.items()}
    comparisons = []
    for campaign_id in campaign_ids:
        credits = {model: totals[model][campaign_id] for model in totals}
        places = {model: ranks[model][campaign_id] for model in totals}
        findings = _findings(credits, places, rank_shift, credit_gap)
        comparisons.append(ModelComparison(campaign_id, credits, places, findings))
    return tuple(comparisons)
