"""Gemba's pure core: fold a deal's events, under a versioned policy, into its value stream."""

from projections.categories import DealStatus, TouchClass, WasteCategory
from projections.deal.event_set import canonical_events
from projections.deal.stages import StageVisit
from projections.deal.stall import StallEpisode
from projections.deal.state import DealState, deal_value_streams, events_by_deal
from projections.deal.totals import Totals, TouchCounts, Waste
from projections.deal.touches import Touch
from projections.deal.value_stream import DealValueStream, StageValueStream, deal_value_stream
from projections.errors import (
    DealNotOpened,
    NotOneDeal,
    PolicyError,
    PolicyProblem,
    ProjectionError,
)
from projections.policy.model import Policy, default_policy, load_policy, parse_policy
from projections.portfolio.aggregate import (
    learned_stall_thresholds,
    total,
    totals_by,
    totals_by_owner,
    totals_by_segment,
    totals_by_stage,
)

__all__ = [
    "DealNotOpened",
    "DealState",
    "DealStatus",
    "DealValueStream",
    "NotOneDeal",
    "Policy",
    "PolicyError",
    "PolicyProblem",
    "ProjectionError",
    "StageValueStream",
    "StageVisit",
    "StallEpisode",
    "Totals",
    "Touch",
    "TouchClass",
    "TouchCounts",
    "Waste",
    "WasteCategory",
    "canonical_events",
    "deal_value_stream",
    "deal_value_streams",
    "default_policy",
    "events_by_deal",
    "learned_stall_thresholds",
    "load_policy",
    "parse_policy",
    "total",
    "totals_by",
    "totals_by_owner",
    "totals_by_segment",
    "totals_by_stage",
]
