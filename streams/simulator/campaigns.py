"""Campaign responses: the ones that lead to a deal, the ones during it, and the background."""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Iterator

from streams.simulator.draws import poisson
from streams.simulator.journey import Journey
from streams.simulator.recorder import Pending, Window, response
from streams.simulator.worktime import DAY, HOUR, WEEK
from streams.simulator.world import Account, Campaign, World

__all__ = [
    "LOOKBACK",
    "during_responses",
    "lead_responses",
    "source_campaign",
    "weekly_responses",
]

LOOKBACK = 75 * DAY
"""How long before a deal opens the responses that led to it can come (inside 90 days)."""
SOURCED_SHARE = 0.55
"""Chance that a deal at a reached account was sourced by one of the campaigns reaching it."""
DURING_SHARE = 0.25
"""Chance of responses while the deal is open."""


def source_campaign(rng: random.Random, world: World, account: Account) -> Campaign | None:
    """The campaign that brought the deal in, if any, weighted by each campaign's pull."""
    reaching = world.campaigns_at[account.index]
    if not reaching or rng.random() >= SOURCED_SHARE:
        return None
    pulls = world.pulls_at[account.index]
    return world.campaigns[reaching[bisect(pulls, rng.random() * pulls[-1])]]


def _kind(rng: random.Random, campaign: Campaign) -> str:
    kinds = campaign.profile.kinds
    return kinds[int(rng.random() * len(kinds))]


def lead_responses(
    rng: random.Random,
    contacts: tuple[str, ...],
    source: Campaign | None,
    opened_at: int,
    epoch_start: int,
) -> list[tuple[int, str, str, str]]:
    """(moment, contact, campaign id, kind) of the responses that brought a deal in, in order.

    They come in the weeks before the deal opens, never before `epoch_start`.
    """
    if source is None:
        return []
    earliest = max(epoch_start, opened_at - LOOKBACK)
    room = max(opened_at - HOUR - earliest, 1)
    responses = [
        (earliest + int(rng.random() * room), contacts[int(rng.random() * len(contacts))])
        for _ in range(1 + int(rng.random() * 3))
    ]
    responses.sort()
    return [(at, contact, source.campaign_id, _kind(rng, source)) for at, contact in responses]


def during_responses(
    rng: random.Random,
    world: World,
    account: Account,
    contacts: tuple[str, ...],
    journey: Journey,
) -> list[tuple[int, str, str, str]]:
    """(moment, contact, campaign id, kind) of responses while the deal is open, in order."""
    reaching = world.campaigns_at[account.index]
    if not reaching or rng.random() >= DURING_SHARE:
        return []
    opened, room = journey.opened_at, max(journey.closes_at - journey.opened_at - 2 * HOUR, 1)
    responses = []
    for _ in range(1 + int(rng.random() * 2)):
        campaign = world.campaigns[reaching[int(rng.random() * len(reaching))]]
        at = opened + HOUR + int(rng.random() * room)
        contact = contacts[int(rng.random() * len(contacts))]
        responses.append((at, contact, campaign.campaign_id, _kind(rng, campaign)))
    responses.sort()
    return responses


def weekly_responses(world: World, week: int, window: Window) -> Iterator[Pending]:
    """Background responses in week `week` of the simulation, at accounts each campaign reaches.

    They come at any hour, weekends too, and do not depend on any deal.
    """
    config = world.config
    rng = random.Random(f"{config.seed}:week:{week}")
    begins = world.start_at + week * WEEK
    lowest, highest = window
    number = 0
    for campaign in world.campaigns:
        reach = campaign.reach
        if not reach:
            continue
        for _ in range(poisson(rng, campaign.profile.weekly_responses * len(reach))):
            number += 1
            at = begins + int(rng.random() * WEEK)
            account = world.accounts[reach[int(rng.random() * len(reach))]]
            contact = account.contact_ids[int(rng.random() * len(account.contact_ids))]
            kind = _kind(rng, campaign)
            if lowest <= at < highest:
                event_id = f"sim-{config.seed}-w{week:04d}-{number:04d}"
                yield response(
                    at, event_id, account.account_id, contact, campaign.campaign_id, kind
                )
