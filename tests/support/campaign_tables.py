"""What the campaign roll-ups must show: the pure campaign table over a whole history."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from events import CampaignResponded, EventBase
from projections import events_by_deal
from projections.campaigns.attribution import AttributionModel
from projections.campaigns.journeys import Journey, deal_facts_from_events, link_responses
from projections.campaigns.report import CampaignRow, campaign_table
from projections.campaigns.rollup import TALLIED_MODELS, CampaignTally
from projections.errors import DealNotOpened
from projections.policy.model import Policy

__all__ = ["campaigns_page", "history_journeys", "table_tallies"]


def history_journeys(events: Sequence[EventBase], policy: Policy) -> tuple[Journey, ...]:
    """Every opened deal's journey, linked over the whole history (not account by account)."""
    deals = []
    for deal_events in events_by_deal(events).values():
        try:
            deals.append(deal_facts_from_events(deal_events, policy))
        except DealNotOpened:
            continue
    responses = [event for event in events if isinstance(event, CampaignResponded)]
    return link_responses(deals, responses, policy.attribution.lookback)


def table_tallies(events: Sequence[EventBase], policy: Policy) -> tuple[CampaignTally, ...]:
    """`campaign_table` over the history under each rule-based model, one tally per campaign."""
    journeys = history_journeys(events, policy)
    responses = [event for event in events if isinstance(event, CampaignResponded)]
    half_life = policy.attribution.time_decay_half_life
    rows: defaultdict[str, dict[AttributionModel, CampaignRow]] = defaultdict(dict)
    for model in TALLIED_MODELS:
        for row in campaign_table(journeys, model, responses=responses, half_life=half_life):
            rows[row.campaign_id][model] = row
    return tuple(CampaignTally.from_rows(rows[campaign_id]) for campaign_id in sorted(rows))


def campaigns_page(events: Sequence[EventBase], policy: Policy) -> dict[str, Any]:
    """The worker's `/gemba/campaigns/` page as it must read for these events."""
    tallies = table_tallies(events, policy)
    campaigns = {tally.campaign_id: tally.to_document() for tally in tallies}
    return {"policy_version": policy.version, "campaigns": campaigns}
