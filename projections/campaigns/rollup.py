"""Campaign results kept current by account: what one account adds to each campaign's tally.

Campaign responses and deals meet at the account (a deal links to the
responses of its account, see projections.campaigns.journeys), and every figure of
`campaign_table` except the data-driven credit is a sum over accounts: a
response, a deal and its credit each belong to one account. So a stream that
keeps each account's events can recompute one account at a time, keep what
it contributes to every campaign, and apply the difference between its old
and new contribution to the campaign totals; the totals then equal
`campaign_table` over all journeys, for every rule-based model, to the cent.

The data-driven models (Markov, Shapley) weigh campaigns by a fit over all
closed journeys: one new journey can move every campaign's credit, so they do
not add up by account and are not tallied here (the history archive and the
command line compute them).

A contribution is a mapping campaign id -> vector of whole numbers (counts,
and money in cents), so contributions add and subtract exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from events.models import CampaignResponded, DealLost, DealOpened, DealWon, EventBase, StageChanged
from projections.campaigns.attribution import RULE_BASED, AttributionModel, credit
from projections.campaigns.journeys import (
    DealFacts,
    Journey,
    deal_facts_from_events,
    link_responses,
)
from projections.campaigns.report import CampaignRow
from projections.categories import DealStatus
from projections.deal.event_set import canonical_events
from projections.errors import AttributionError, DealNotOpened
from projections.policy.model import Policy
from projections.portfolio.rollup import add_vectors

__all__ = [
    "COUNTS",
    "TALLIED_MODELS",
    "AccountContribution",
    "AccountJourneys",
    "CampaignRollups",
    "CampaignTally",
    "CampaignVector",
    "account_contribution",
    "account_journeys",
]

TALLIED_MODELS = tuple(model for model in AttributionModel if model in RULE_BASED)
"""The credit models a stream can tally by account: every rule-based one, in model order."""

COUNTS = ("responses", "linked_responses", "accounts_reached", "deals_influenced", "deals_won")
"""The counted fields of a campaign's vector; `pipeline` and `revenue.<model>` are cents."""
PIPELINE = "pipeline"
REVENUE = "revenue."
CENTS = Decimal(100)
CENT = Decimal("0.01")
ZERO_MONEY = Decimal("0.00")

CampaignVector = dict[str, int]
"""A campaign's figures as whole numbers: COUNTS, `pipeline` and `revenue.<model>` in cents."""
AccountContribution = dict[str, CampaignVector]
"""What one account adds to each campaign it responded to, by campaign id."""


@dataclass(frozen=True, slots=True)
class AccountJourneys:
    """One account's opened deals with their linked responses, and all of its responses."""

    account_id: str
    journeys: tuple[Journey, ...]
    responses: tuple[CampaignResponded, ...]


def account_journeys(events: Iterable[EventBase], policy: Policy) -> AccountJourneys:
    """Fold one account's deal and response events into its journeys (see link_responses).

    Other events are ignored, and so is a deal whose deal_opened event has not
    come yet: it has no facts to link. Responses link within the policy's
    lookback. Events of more than one account are refused.
    """
    facts = canonical_events(
        event
        for event in events
        if isinstance(event, CampaignResponded | DealOpened | StageChanged | DealWon | DealLost)
    )
    accounts = sorted({event.account_id for event in facts})
    if len(accounts) > 1:
        raise AttributionError(f"expected the events of one account, got accounts {accounts}")
    responses = tuple(event for event in facts if isinstance(event, CampaignResponded))
    deals = _opened_deals(facts, policy)
    journeys = link_responses(deals, responses, policy.attribution.lookback)
    return AccountJourneys(accounts[0] if accounts else "", journeys, responses)


def _opened_deals(facts: Iterable[EventBase], policy: Policy) -> list[DealFacts]:
    by_deal: defaultdict[str, list[EventBase]] = defaultdict(list)
    for event in facts:
        if event.deal_id is not None and not isinstance(event, CampaignResponded):
            by_deal[event.deal_id].append(event)
    deals = []
    for deal_events in by_deal.values():
        try:
            deals.append(deal_facts_from_events(deal_events, policy))
        except DealNotOpened:
            continue  # its deal_opened event has not arrived yet
    return deals


def account_contribution(events: Iterable[EventBase], policy: Policy) -> AccountContribution:
    """What one account adds to each campaign its contacts responded to.

    Per campaign: `responses` (all of them, linked to a deal or not),
    `linked_responses` (linked to at least one deal), `accounts_reached` (1),
    `deals_influenced` (deals with a linked response of the campaign),
    `deals_won` (those won), `pipeline` (the amount of those still open) and
    `revenue.<model>` (the credit of the won ones under each rule-based model,
    time decay with the policy's half-life): the definitions of CampaignRow.
    """
    account = account_journeys(events, policy)
    contribution: AccountContribution = {}
    for response in account.responses:
        vector = contribution.setdefault(response.campaign_id, _empty_vector())
        vector["responses"] += 1
        vector["accounts_reached"] = 1
    linked = {response.event_id: response for j in account.journeys for response in j.responses}
    for response in linked.values():
        contribution[response.campaign_id]["linked_responses"] += 1
    for journey in account.journeys:
        _add_journey(contribution, journey, policy)
    return contribution


def _empty_vector() -> CampaignVector:
    return dict.fromkeys([*COUNTS, PIPELINE, *(REVENUE + model for model in TALLIED_MODELS)], 0)


def _add_journey(contribution: AccountContribution, journey: Journey, policy: Policy) -> None:
    deal = journey.deal
    for campaign_id in journey.campaigns:
        vector = contribution[campaign_id]
        vector["deals_influenced"] += 1
        vector["deals_won"] += int(deal.status is DealStatus.WON)
        if deal.status is DealStatus.OPEN:
            vector[PIPELINE] += _cents(deal.amount or Decimal(0))
    half_life = policy.attribution.time_decay_half_life
    for model in TALLIED_MODELS:
        for campaign_id, amount in credit(journey, model, half_life=half_life).items():
            contribution[campaign_id][REVENUE + model] += _cents(amount)


def _cents(amount: Decimal) -> int:
    cents = amount * CENTS
    if cents != cents.to_integral_value():
        raise AttributionError(f"{amount} is not a whole number of cents")
    return int(cents)


@dataclass
class CampaignRollups:
    """Every campaign's totals, kept current as account contributions are replaced."""

    totals: dict[str, CampaignVector] = field(default_factory=dict)

    @classmethod
    def summed(cls, contributions: Iterable[Mapping[str, Mapping[str, int]]]) -> CampaignRollups:
        """The totals of these account contributions."""
        rollups = cls()
        for contribution in contributions:
            rollups.replace({}, contribution)
        return rollups

    def replace(
        self, old: Mapping[str, Mapping[str, int]], new: Mapping[str, Mapping[str, int]]
    ) -> None:
        """An account's contribution changed from `old` to `new`: apply the difference."""
        for campaign_id in {*old, *new}:
            vector = add_vectors(self.totals.get(campaign_id, {}), new.get(campaign_id, {}))
            vector = add_vectors(vector, old.get(campaign_id, {}), sign=-1)
            if any(vector.values()):
                self.totals[campaign_id] = vector
            else:
                self.totals.pop(campaign_id, None)  # no account responds to it any more

    def tallies(self) -> tuple[CampaignTally, ...]:
        """Each campaign's tally, sorted by campaign id."""
        return tuple(
            CampaignTally.from_vector(campaign_id, self.totals[campaign_id])
            for campaign_id in sorted(self.totals)
        )


@dataclass(frozen=True, slots=True)
class CampaignTally:
    """One campaign's reach and results, with its revenue credit under every rule-based model."""

    campaign_id: str
    responses: int = 0
    linked_responses: int = 0
    accounts_reached: int = 0
    deals_influenced: int = 0
    deals_won: int = 0
    pipeline: Decimal = ZERO_MONEY
    revenue: Mapping[AttributionModel, Decimal] = field(default_factory=dict)

    @classmethod
    def from_vector(cls, campaign_id: str, vector: Mapping[str, int]) -> CampaignTally:
        """The tally a campaign vector stands for (cents back to money)."""
        return cls(
            campaign_id,
            responses=vector.get("responses", 0),
            linked_responses=vector.get("linked_responses", 0),
            accounts_reached=vector.get("accounts_reached", 0),
            deals_influenced=vector.get("deals_influenced", 0),
            deals_won=vector.get("deals_won", 0),
            pipeline=_money(vector.get(PIPELINE, 0)),
            revenue={model: _money(vector.get(REVENUE + model, 0)) for model in TALLIED_MODELS},
        )

    @classmethod
    def from_rows(cls, rows: Mapping[AttributionModel, CampaignRow]) -> CampaignTally:
        """One campaign's `campaign_table` rows, one per rule-based model, as one tally."""
        if set(rows) != set(TALLIED_MODELS):
            raise AttributionError(f"give a row for each of {', '.join(TALLIED_MODELS)}")
        row = rows[TALLIED_MODELS[0]]
        return cls(
            row.campaign_id,
            responses=row.responses,
            linked_responses=row.linked_responses,
            accounts_reached=row.accounts_reached,
            deals_influenced=row.deals_influenced,
            deals_won=row.deals_won,
            pipeline=row.pipeline.quantize(CENT),
            revenue={model: rows[model].revenue.quantize(CENT) for model in TALLIED_MODELS},
        )

    def to_document(self) -> dict[str, Any]:
        """JSON-ready: counts as numbers, money as strings with two decimals."""
        return {
            **{name: getattr(self, name) for name in COUNTS},
            "pipeline": str(self.pipeline),
            "revenue": {
                str(model): str(self.revenue.get(model, ZERO_MONEY)) for model in TALLIED_MODELS
            },
        }


def _money(cents: int) -> Decimal:
    return (Decimal(cents) / CENTS).quantize(CENT)
