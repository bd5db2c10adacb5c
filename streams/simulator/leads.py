"""Before a deal opens: which account and people it is with, and the campaign that brought it."""

from __future__ import annotations

import random
from dataclasses import dataclass

from streams.simulator.campaigns import lead_responses, source_campaign
from streams.simulator.recorder import DayBuckets, DealRecorder, Window
from streams.simulator.world import Account, Campaign, World

__all__ = ["Lead", "deal_prefix", "open_lead"]


@dataclass(frozen=True, slots=True)
class Lead:
    """A deal-to-be: fixed up to `LOOKBACK` before it opens, so its responses can come first."""

    index: int
    deal_id: str
    opened_at: int
    account: Account
    contacts: tuple[str, ...]
    """The champion first."""
    source: Campaign | None
    ids_used: int
    """How many of the deal's event ids its lead responses took."""
    rng: random.Random
    """The deal's own random stream; the deal goes on drawing from it when it opens."""


def deal_prefix(seed: int, index: int) -> str:
    """The start of every event id of deal number `index`."""
    return f"sim-{seed}-d{index:05d}-"


def _deal_contacts(rng: random.Random, account: Account) -> tuple[str, ...]:
    """The champion first, then up to two more people at the account."""
    people = account.contact_ids
    first, count = int(rng.random() * len(people)), 1 + int(rng.random() * min(3, len(people)))
    return tuple(people[(first + step) % len(people)] for step in range(count))


def open_lead(
    world: World,
    index: int,
    opened_at: int,
    *,
    epoch_start: int,
    window: Window,
    out: DayBuckets,
) -> Lead:
    """Lead number `index`, keeping its responses inside `window` in `out` by day.

    It draws from the deal's own random stream: the same whichever window is asked for.
    """
    seed = world.config.seed
    rng = random.Random(f"{seed}:deal:{index}")
    account = world.pick_account(rng)
    contacts = _deal_contacts(rng, account)
    source = source_campaign(rng, world, account)
    deal_id = f"deal-{index:05d}"
    record = DealRecorder(
        prefix=deal_prefix(seed, index), account_id=account.account_id, deal_id=deal_id,
        rep_id=world.reps[account.rep_index].rep_id, window=window, out=out,
    )  # fmt: skip
    for at, contact, campaign_id, kind in lead_responses(
        rng, contacts, source, opened_at, epoch_start
    ):
        record.campaign_response(at, contact, campaign_id, kind)
    return Lead(index, deal_id, opened_at, account, contacts, source, record.count, rng)
