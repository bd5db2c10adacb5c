"""The patterns planted on purpose, so that later features can be checked against them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "CHASING_REP_ROLE",
    "EARLY_BOOKING_REP_ROLE",
    "EARLY_DISCOVERY_DAYS",
    "EARLY_DISCOVERY_WIN_CHANCE",
    "EARLY_DISCOVERY_WIN_RATE",
    "LATE_DISCOVERY_WIN_CHANCE",
    "LATE_DISCOVERY_WIN_RATE",
    "NEGATIVE_ROI_COST_FACTOR",
    "REWORK_FACTOR",
    "REWORK_REP_ROLE",
    "SILENCE_DAYS",
    "STAGES",
    "STALL_THRESHOLD_DAYS",
    "GroundTruth",
]

STAGES = ("Prospecting", "Qualification", "Discovery", "Proposal", "Negotiation")
"""The open stages, in order; a deal then ends Won or Lost."""

EARLY_DISCOVERY_DAYS = 14
"""(1) Deals with a discovery meeting held within this many days of opening..."""
EARLY_DISCOVERY_WIN_RATE = 0.45
"""...win about this share of their closed deals in history..."""
LATE_DISCOVERY_WIN_RATE = 0.20
"""...against about this share for every other deal."""
EARLY_DISCOVERY_WIN_CHANCE = 0.50
"""The chance of winning given to an early-discovery deal (before campaign effects); higher
than the rate seen because lost deals close sooner than won ones and history cuts some off."""
LATE_DISCOVERY_WIN_CHANCE = 0.27
"""The same for every other deal."""

REWORK_REP_ROLE = "re-quoter"
"""(2) The rep with this role sends unrequested quote revisions and regresses stages..."""
REWORK_FACTOR = 2.2
"""...about this many times as often per deal as the other reps."""
CHASING_REP_ROLE = "chaser"
"""Sends long runs of outbound emails before the customer replies (waste: chasing)."""
EARLY_BOOKING_REP_ROLE = "early booker"
"""Books discovery meetings in the first two weeks far more often than the others."""

NEGATIVE_ROI_COST_FACTOR = 1.5
"""(3) The weak campaign costs at least this multiple of all revenue won in history at
every account it can reach, so its ROI is negative under any attribution model."""

STALL_THRESHOLD_DAYS: Mapping[str, int] = {
    "Prospecting": 14,
    "Qualification": 10,
    "Discovery": 10,
    "Proposal": 14,
    "Negotiation": 21,
}
"""The default policy's stall thresholds, per stage."""

SILENCE_DAYS = (42, 63)
"""(4) Silent deals hear nothing of value for this many days (at least twice the longest
threshold) before the end of history, and are still open at its end."""


@dataclass(frozen=True)
class GroundTruth:
    """What a given simulation planted: ids and targets a feature should rediscover."""

    history_start: datetime
    history_end: datetime
    early_booking_rep_id: str
    rework_rep_id: str
    chasing_rep_id: str
    negative_roi_campaign_id: str
    strong_campaign_id: str
    campaign_costs: Mapping[str, int]
    """Cost of each campaign in whole USD, by campaign id."""
    campaign_names: Mapping[str, str]
    silent_deal_ids: frozenset[str]
    """Open at the end of history and stalled there; every other open deal is not stalled."""
    early_discovery_days: int = EARLY_DISCOVERY_DAYS
    early_discovery_win_rate: float = EARLY_DISCOVERY_WIN_RATE
    late_discovery_win_rate: float = LATE_DISCOVERY_WIN_RATE
    rework_factor: float = REWORK_FACTOR
