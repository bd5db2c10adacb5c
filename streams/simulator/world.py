"""The simulated market: accounts in segments, reps with habits, campaigns of mixed quality."""

from __future__ import annotations

import random
from bisect import bisect
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from streams.simulator.config import SimulationConfig
from streams.simulator.groundtruth import (
    CHASING_REP_ROLE,
    EARLY_BOOKING_REP_ROLE,
    REWORK_REP_ROLE,
)
from streams.simulator.worktime import epoch_seconds

__all__ = [
    "INDUSTRIES",
    "PRODUCTS",
    "SEGMENTS",
    "Account",
    "Campaign",
    "CampaignProfile",
    "Rep",
    "Segment",
    "World",
    "build_world",
]


@dataclass(frozen=True)
class Segment:
    """A customer segment: how many accounts, how big their deals, how slow they buy."""

    name: str
    share: float
    contacts: int
    deal_weight: float
    median_amount: int
    pace: float


SEGMENTS = (
    Segment("SMB", 0.55, 2, 1.0, 12_000, 0.7),
    Segment("Mid-Market", 0.30, 4, 1.5, 48_000, 1.0),
    Segment("Enterprise", 0.15, 7, 2.5, 190_000, 1.5),
)

INDUSTRIES = (
    "Manufacturing",
    "Software",
    "Healthcare",
    "Financial Services",
    "Retail",
    "Logistics",
    "Education",
    "Energy",
)
PRODUCTS = ("Core", "Analytics", "Platform", "Integrations")

_NAME_STEMS = (
    "Northwind", "Bluepeak", "Ironbridge", "Silverline", "Redwood", "Harbor", "Summit",
    "Clearwater", "Granite", "Lumen", "Oakfield", "Brightstone", "Westgate", "Everfield",
    "Cobalt", "Pinecrest",
)  # fmt: skip


@dataclass(frozen=True)
class Account:
    """A customer account, owned by one rep, with a few contacts."""

    index: int
    account_id: str
    name: str
    segment: Segment
    industry: str
    contact_ids: tuple[str, ...]
    rep_index: int


@dataclass(frozen=True)
class Rep:
    """A sales rep and the habits that shape their deals (a steady rep's by default)."""

    rep_id: str
    role: str = "steady"
    early_discovery_share: float = 0.30
    """Share of deals with a discovery meeting held in the first two weeks."""
    unrequested_revisions: float = 0.30
    """Mean number of quote revisions the customer did not ask for, per quoted deal."""
    regression_share: float = 0.10
    """Share of deals (reaching Discovery) that fall back a stage once."""
    chase_emails: tuple[int, int] = (0, 1)
    """Outbound emails sent without a reply before the customer answers: (fewest, most)."""


_HABITS: dict[str, dict[str, Any]] = {
    EARLY_BOOKING_REP_ROLE: {"early_discovery_share": 0.75},
    REWORK_REP_ROLE: {"unrequested_revisions": 0.66, "regression_share": 0.25},
    CHASING_REP_ROLE: {"chase_emails": (2, 5)},
}
"""What sets the planted reps apart from a steady one."""


@dataclass(frozen=True)
class CampaignProfile:
    """What kind of campaign it is and how good it is at bringing revenue."""

    name: str
    kinds: tuple[str, ...]
    reach: tuple[float, float, float]
    """Share of SMB, Mid-Market and Enterprise accounts it reaches."""
    weekly_responses: float
    """Background responses per reached account per week."""
    pull: float
    """Weight of this campaign when a deal is sourced by one of those reaching its account."""
    win_lift: float
    """Multiplies the win chance of the deals it sources."""
    budget: int
    """Cost in USD for 1,500 deals' worth of market."""


_CAMPAIGN_PROFILES = (
    # name, response kinds, reach (SMB, MM, Ent), weekly responses, pull, win lift, budget
    CampaignProfile(
        "Paid social ads", ("ad_click",), (0.35, 0.05, 0.0), 0.55, 1.0, 0.35, 400_000
    ),
    CampaignProfile(
        "Executive roundtable", ("event_visit",), (0.0, 0.10, 0.35), 0.02, 1.2, 1.6, 300_000
    ),
    CampaignProfile(
        "Webinar series", ("webinar",), (0.25, 0.25, 0.25), 0.05, 0.6, 1.0, 150_000
    ),
    CampaignProfile(
        "Content syndication", ("content_download",), (0.30, 0.30, 0.20), 0.06, 0.5, 0.9, 200_000
    ),
    CampaignProfile(
        "Trade show", ("event_visit", "form_submission"), (0.10, 0.20, 0.30), 0.02, 0.7, 1.1,
        450_000,
    ),
    CampaignProfile(
        "Email nurture", ("email_click", "form_submission"), (0.40, 0.40, 0.40), 0.08, 0.4, 1.0,
        60_000,
    ),
)  # fmt: skip
WEAK_CAMPAIGN, STRONG_CAMPAIGN = 0, 1


@dataclass(frozen=True)
class Campaign:
    """A marketing campaign and the accounts it reaches."""

    campaign_id: str
    profile: CampaignProfile
    reach: tuple[int, ...]
    """Indices of the accounts whose contacts may respond to it."""


@dataclass(frozen=True)
class World:
    """Everything fixed before the first deal opens."""

    config: SimulationConfig
    accounts: tuple[Account, ...]
    reps: tuple[Rep, ...]
    campaigns: tuple[Campaign, ...]
    campaigns_at: tuple[tuple[int, ...], ...]
    """For each account, the indices of the campaigns that reach it."""
    pulls_at: tuple[tuple[float, ...], ...]
    """For each account, the cumulative pull of the campaigns that reach it."""
    deal_weights: tuple[float, ...]
    """Cumulative weights for choosing the account of a new deal."""
    start_at: int
    """Where history begins, in epoch seconds."""
    end_at: int
    """Where history ends, in epoch seconds."""

    def pick_account(self, rng: random.Random) -> Account:
        """An account for a new deal, bigger segments more often."""
        point = rng.random() * self.deal_weights[-1]
        return self.accounts[bisect(self.deal_weights, point)]

    @property
    def weak_campaign(self) -> Campaign:
        """The campaign planted with a negative ROI."""
        return self.campaigns[WEAK_CAMPAIGN]

    @property
    def strong_campaign(self) -> Campaign:
        """The campaign with few responses but strong deals."""
        return self.campaigns[STRONG_CAMPAIGN]


def _accounts(config: SimulationConfig, rng: random.Random) -> tuple[Account, ...]:
    owners = [index % config.reps for index in range(config.accounts)]
    rng.shuffle(owners)
    accounts = []
    for index in range(config.accounts):
        segment = rng.choices(SEGMENTS, weights=[s.share for s in SEGMENTS])[0]
        industry = rng.choice(INDUSTRIES)
        account_id = f"acct-{index:04d}"
        stem = _NAME_STEMS[index % len(_NAME_STEMS)]
        name = f"{stem} {industry} {index // len(_NAME_STEMS) + 1}"
        contacts = tuple(f"{account_id}-c{n}" for n in range(1, segment.contacts + 1))
        accounts.append(
            Account(index, account_id, name, segment, industry, contacts, owners[index])
        )
    return tuple(accounts)


def _reps(config: SimulationConfig) -> tuple[Rep, ...]:
    """The planted reps first (rep-01 to rep-03), then steady ones."""
    roles = [*_HABITS, *["steady"] * (config.reps - len(_HABITS))]
    return tuple(
        Rep(f"rep-{number:02d}", role, **_HABITS.get(role, {}))
        for number, role in enumerate(roles, start=1)
    )


def _campaign_profile(index: int) -> CampaignProfile:
    if index < len(_CAMPAIGN_PROFILES):
        return _CAMPAIGN_PROFILES[index]
    like = _CAMPAIGN_PROFILES[2 + index % (len(_CAMPAIGN_PROFILES) - 2)]
    return CampaignProfile(
        f"{like.name} {index + 1}", like.kinds, like.reach, like.weekly_responses,
        like.pull, like.win_lift, like.budget,
    )  # fmt: skip


def _campaigns(
    config: SimulationConfig, accounts: tuple[Account, ...], rng: random.Random
) -> tuple[Campaign, ...]:
    campaigns = []
    for index in range(config.campaigns):
        profile = _campaign_profile(index)
        reach = tuple(
            account.index
            for account in accounts
            if rng.random() < profile.reach[SEGMENTS.index(account.segment)]
        )
        campaigns.append(Campaign(f"camp-{index + 1:02d}", profile, reach))
    return tuple(campaigns)


def build_world(config: SimulationConfig) -> World:
    """The accounts, reps and campaigns of a config; the same config gives the same world."""
    rng = random.Random(f"{config.seed}:world")
    accounts = _accounts(config, rng)
    campaigns = _campaigns(config, accounts, rng)
    campaigns_at: list[list[int]] = [[] for _ in accounts]
    for number, campaign in enumerate(campaigns):
        for index in campaign.reach:
            campaigns_at[index].append(number)
    return World(
        config=config,
        accounts=accounts,
        reps=_reps(config),
        campaigns=campaigns,
        campaigns_at=tuple(tuple(found) for found in campaigns_at),
        pulls_at=tuple(
            tuple(accumulate(campaigns[number].profile.pull for number in found))
            for found in campaigns_at
        ),
        deal_weights=tuple(accumulate(a.segment.deal_weight for a in accounts)),
        start_at=epoch_seconds(config.start),
        end_at=epoch_seconds(config.end),
    )
