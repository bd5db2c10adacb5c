"""The generator: history up to a date, live events after it, and the planted ground truth."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from operator import attrgetter
from typing import Any, NamedTuple

import orjson

from streams.simulator.campaigns import LOOKBACK, weekly_responses
from streams.simulator.config import SimulationConfig, SimulatorError
from streams.simulator.deals import DealSummary, simulate_deal
from streams.simulator.groundtruth import (
    CHASING_REP_ROLE,
    EARLY_BOOKING_REP_ROLE,
    NEGATIVE_ROI_COST_FACTOR,
    REWORK_REP_ROLE,
    GroundTruth,
)
from streams.simulator.habits import RateLedger
from streams.simulator.leads import Lead, open_lead
from streams.simulator.recorder import DayBuckets, Pending, Window, render
from streams.simulator.worktime import (
    DAY,
    WEEK,
    epoch_seconds,
    iso_formatter,
    to_datetime,
    working_time,
)
from streams.simulator.world import World, build_world

__all__ = [
    "EventStream",
    "SimulatedEvent",
    "ground_truth",
    "history_events",
    "history_lines",
    "history_records",
    "live_events",
    "silent_deal_ids",
]

FOREVER = 2**62
"""An end of time for live windows."""
_BUDGET_DEALS = 1_500
"""Campaign budgets are given for this many deals and scale with the config."""


class SimulatedEvent(NamedTuple):
    """One generated event: when it happened, its JSON line, and its Kafka key (deal or account)."""

    occurred_at: datetime
    line: bytes
    key: str


class _Source(NamedTuple):
    """Something that makes events no earlier than `earliest`: a lead, a deal, or a week of
    campaign responses."""

    earliest: int
    produce: Callable[[DayBuckets], None]


def _history_openings(world: World) -> list[int]:
    """When each history deal opens: spread over history, in office hours, in order."""
    rng = random.Random(f"{world.config.seed}:openings")
    room = world.end_at - 3 * DAY - world.start_at
    raw = sorted(world.start_at + int(rng.random() * room) for _ in range(world.config.deals))
    return [working_time(moment) for moment in raw]


def _live_openings(world: World) -> Iterator[tuple[int, int]]:
    """(deal number, opening) of the deals that open after history, at history's rate, forever."""
    rng = random.Random(f"{world.config.seed}:live-openings")
    per_second = world.config.deals / (world.end_at - world.start_at)
    moment = float(world.end_at)
    for index in itertools.count(world.config.deals):
        moment += rng.expovariate(per_second)
        yield index, working_time(int(moment))


class EventStream:
    """The events of [since, until) in event-time order, made deal by deal and week by week.

    Deals and campaign weeks are made in the order of the earliest event they can
    hold, so every event earlier than the next one's start is final and is released.
    """

    def __init__(
        self, config: SimulationConfig, *, since: datetime, until: datetime | None
    ) -> None:
        self.world = build_world(config)
        self.window: Window = (
            epoch_seconds(since),
            FOREVER if until is None else epoch_seconds(until),
        )
        self.deals_done = 0
        self.iso = iso_formatter()
        self._leads: dict[int, Lead] = {}
        self._habits = RateLedger()

    def _lead(self, index: int, opened_at: int, epoch_start: int, out: DayBuckets) -> None:
        self._leads[index] = open_lead(
            self.world, index, opened_at, epoch_start=epoch_start, window=self.window, out=out
        )

    def _deal(self, index: int, out: DayBuckets) -> None:
        lead = self._leads.pop(index)
        simulate_deal(self.world, lead, habits=self._habits, window=self.window, out=out)
        self.deals_done += 1

    def _week(self, week: int, out: DayBuckets) -> None:
        for event in weekly_responses(self.world, week, self.window):
            out[event[0] // DAY].append(event)

    def _sources(self) -> Iterator[_Source]:
        """Leads (up to LOOKBACK ahead), deals as they open, and weeks, by earliest event."""
        world, (since, until) = self.world, self.window
        start, end = world.start_at, world.end_at
        history = list(enumerate(_history_openings(world)))
        leads = (
            _Source(max(since, epoch, opened - LOOKBACK), partial(self._lead, index, opened, epoch))
            for epoch, openings in ((start, history), (end, _live_openings(world)))
            for index, opened in openings
        )
        deals = (
            _Source(max(since, opened), partial(self._deal, index))
            for openings in (history, _live_openings(world))
            for index, opened in openings
        )
        weeks = (
            _Source(max(since, start + week * WEEK), partial(self._week, week))
            for week in itertools.count(max(0, (since - start) // WEEK))
        )
        merged = heapq.merge(leads, deals, weeks, key=attrgetter("earliest"))
        return itertools.takewhile(lambda source: source.earliest < until, merged)

    def batches(self) -> Iterator[list[Pending]]:
        """Recorded events a day at a time, each day in order (see `render`).

        Events wait in a bucket per day until no source still to come can reach
        back into that day; then the day is sorted and released.
        """
        days: DayBuckets = defaultdict(list)
        today = None
        for source in self._sources():
            source.produce(days)
            complete = source.earliest // DAY
            today = complete if today is None else today
            while today < complete:
                batch = days.pop(today, None)
                today += 1
                if batch:
                    batch.sort()
                    yield batch
        for day in sorted(days):
            batch = days[day]
            batch.sort()
            yield batch


def _history(config: SimulationConfig) -> EventStream:
    return EventStream(config, since=config.start, until=config.end)


def history_lines(config: SimulationConfig) -> Iterator[bytes]:
    """Every event of history as a compact JSON line (no newline), ordered by
    (occurred_at, event_id); the same config gives the same bytes."""
    stream = _history(config)
    for batch in stream.batches():
        yield from render(batch, stream.iso)


def _records(stream: EventStream) -> Iterator[SimulatedEvent]:
    for batch in stream.batches():
        for event, line in zip(batch, render(batch, stream.iso), strict=True):
            yield SimulatedEvent(to_datetime(event[0]), line, event[2])


def history_records(config: SimulationConfig) -> Iterator[SimulatedEvent]:
    """Every event of history with its time and Kafka key, in order."""
    return _records(_history(config))


def history_events(config: SimulationConfig) -> Iterator[dict[str, Any]]:
    """Every event of history as a JSON-shaped dict, in order (slower than lines)."""
    return (orjson.loads(line) for line in history_lines(config))


def live_events(
    config: SimulationConfig, *, since: datetime | None = None
) -> Iterator[SimulatedEvent]:
    """Events from `since` (default: the end of history) on, forever, in event-time order.

    Deals open at history's rate; the deals still open at the end of history go
    on (the silent ones wake up or are lost). Pace them with `paced`.
    """
    since = config.end if since is None else since
    if since.tzinfo is None:
        raise SimulatorError("since must be timezone-aware, e.g. 2026-10-31T00:00:00Z")
    if since < config.start:
        raise SimulatorError(
            f"since must not be before the start of history ({config.start:%Y-%m-%d})"
        )
    return _records(EventStream(config, since=since, until=None))


def _campaign_costs(world: World, summaries: list[DealSummary]) -> dict[str, int]:
    """Budgets scaled to the market; the weak campaign's raised above all it could earn."""
    won_at: defaultdict[int, int] = defaultdict(int)
    for deal in summaries:
        if deal.won and deal.closes_at < world.end_at:
            won_at[deal.account_index] += deal.amount
    scale = world.config.deals / _BUDGET_DEALS
    costs = {
        campaign.campaign_id: max(1_000, round(campaign.profile.budget * scale / 1_000) * 1_000)
        for campaign in world.campaigns
    }
    weak = world.weak_campaign
    reachable = sum(won_at[index] for index in weak.reach)
    floor = math.ceil(NEGATIVE_ROI_COST_FACTOR * reachable / 1_000) * 1_000
    costs[weak.campaign_id] = max(costs[weak.campaign_id], floor)
    return costs


def ground_truth(config: SimulationConfig) -> GroundTruth:
    """What `config` planted: rep roles, campaign costs, the silent deals."""
    world, nowhere, habits = build_world(config), (0, 0), RateLedger()
    discarded: DayBuckets = defaultdict(list)
    summaries = []
    for index, opened in enumerate(_history_openings(world)):
        lead = open_lead(
            world, index, opened, epoch_start=world.start_at, window=nowhere, out=discarded
        )
        summaries.append(simulate_deal(world, lead, habits=habits, window=nowhere, out=discarded))
    roles = {rep.role: rep.rep_id for rep in world.reps}
    return GroundTruth(
        history_start=config.start,
        history_end=config.end,
        early_booking_rep_id=roles[EARLY_BOOKING_REP_ROLE],
        rework_rep_id=roles[REWORK_REP_ROLE],
        chasing_rep_id=roles[CHASING_REP_ROLE],
        negative_roi_campaign_id=world.weak_campaign.campaign_id,
        strong_campaign_id=world.strong_campaign.campaign_id,
        campaign_costs=_campaign_costs(world, summaries),
        campaign_names={c.campaign_id: c.profile.name for c in world.campaigns},
        silent_deal_ids=frozenset(deal.deal_id for deal in summaries if deal.silent),
    )


def silent_deal_ids(config: SimulationConfig) -> frozenset[str]:
    """The deals planted to be stalled at the end of history (see GroundTruth)."""
    return ground_truth(config).silent_deal_ids
