"""A deal's path through the stages: heavy-tailed durations, regressions, stalls, silence."""

from __future__ import annotations

import math
import random
from bisect import bisect
from dataclasses import dataclass, field

from streams.simulator.draws import lognormal
from streams.simulator.groundtruth import (
    EARLY_DISCOVERY_DAYS,
    EARLY_DISCOVERY_WIN_CHANCE,
    LATE_DISCOVERY_WIN_CHANCE,
    SILENCE_DAYS,
    STAGES,
    STALL_THRESHOLD_DAYS,
)
from streams.simulator.habits import RateLedger
from streams.simulator.worktime import DAY, HOUR, WEEK, working_time, working_time_before
from streams.simulator.world import Rep

__all__ = [
    "DISCOVERY",
    "NEGOTIATION",
    "PROPOSAL",
    "PROSPECTING",
    "QUALIFICATION",
    "Journey",
    "KeyTouch",
    "Span",
    "plan_journey",
]

PROSPECTING, QUALIFICATION, DISCOVERY, PROPOSAL, NEGOTIATION = range(len(STAGES))

STAGE_MEDIAN_DAYS = (4.0, 6.0, 8.0, 9.0, 10.0)
STAGE_SIGMA = 0.8
LONGEST_STAGE = 150 * DAY
LOSS_STAGES_LATE = (0.30, 0.58, 0.78, 0.91)
"""Where deals without an early discovery meeting are lost: cumulative chances of
Prospecting, Qualification, Discovery, Proposal; else Negotiation."""
LOSS_STAGES_EARLY = (0.0, 0.0, 0.45, 0.80)
"""The same for deals with one."""
SILENT_SHARE = 0.15
"""Chance that a deal is picked for planted silence (only some can take it)."""
STALL_SHARE = 0.15
"""Chance of one ordinary stall episode that ends before the end of history."""
_LATE_DISCOVERY = (EARLY_DISCOVERY_DAYS + 1) * DAY
"""A discovery meeting that is not early is held no sooner than this after opening."""
_KEY_KINDS = {DISCOVERY: "discovery", PROPOSAL: "quote", NEGOTIATION: "negotiation"}
_STALL_MARGIN_BEFORE = 8 * DAY
_STALL_MARGIN_AFTER = 4 * DAY


@dataclass(slots=True)
class Span:
    """A stay in one stage: [enter, leave) in epoch seconds."""

    stage: int
    enter: int
    leave: int


@dataclass(slots=True)
class KeyTouch:
    """A touch the journey needs at a fixed time: 'discovery', 'discovery_repeat',
    'quote' (the first version) or 'negotiation'."""

    at: int
    kind: str


@dataclass(slots=True)
class Journey:
    """The planned life of a deal; what falls after the end of history is its future."""

    opened_at: int
    won: bool
    early_discovery: bool
    spans: list[Span] = field(default_factory=list)
    keys: list[KeyTouch] = field(default_factory=list)
    quiet: list[tuple[int, int]] = field(default_factory=list)
    """Windows [start, end) with no value-added touch at all: stalls and planted silence."""
    silent: bool = False

    @property
    def closes_at(self) -> int:
        """When the deal is won or lost."""
        return self.spans[-1].leave

    def pause(self, at: int, length: int) -> None:
        """Insert `length` seconds of nothing at `at`: everything from then on moves later."""
        for span in self.spans:
            span.enter += length if span.enter >= at else 0
            span.leave += length if span.leave >= at else 0
        for key in self.keys:
            key.at += length if key.at >= at else 0
        self.quiet.append((at, at + length))

    def quiet_window_at(self, moment: int) -> tuple[int, int] | None:
        """The quiet window containing `moment`, if any."""
        for start, end in self.quiet:
            if start <= moment < end:
                return start, end
        return None


def _duration(rng: random.Random, stage: int, pace: float) -> int:
    median = STAGE_MEDIAN_DAYS[stage] * pace * DAY
    return min(int(lognormal(rng, median, STAGE_SIGMA)), LONGEST_STAGE)


def _loss_stage(rng: random.Random, early: bool) -> int:
    return bisect(LOSS_STAGES_EARLY if early else LOSS_STAGES_LATE, rng.random())


def _key_time(
    rng: random.Random, journey: Journey, stage: int, enter: int, last: bool
) -> int | None:
    """When the stage's key touch happens, or None when the deal ends before it."""
    if stage == DISCOVERY and (journey.won or not last or rng.random() < 0.5):
        earliest = journey.opened_at + _LATE_DISCOVERY
        return working_time(max(enter + int(rng.uniform(0.3, 3) * DAY), earliest))
    if stage == PROPOSAL and (journey.won or not last or rng.random() < 0.6):
        return working_time(enter + int(rng.uniform(0.3, 3) * DAY))
    if stage == NEGOTIATION and (journey.won or rng.random() < 0.7):
        return working_time(enter + int(rng.uniform(1, 6) * DAY))
    return None


def _early_approach(rng: random.Random, journey: Journey, discovery_at: int) -> int:
    """Prospecting and Qualification squeezed in before an early discovery meeting."""
    opened = journey.opened_at
    room = discovery_at - HOUR - opened
    discovers = working_time_before(opened + int(room * rng.uniform(0.6, 0.95)), discovery_at)
    qualifies = working_time_before(opened + int(room * rng.uniform(0.2, 0.5)), discovers)
    journey.spans += [
        Span(PROSPECTING, opened, qualifies),
        Span(QUALIFICATION, qualifies, discovers),
    ]
    return discovers


def _regress(rng: random.Random, journey: Journey, stage: int, leave: int, pace: float) -> int:
    """Fall back one stage, work there a while, then return; gives the new leave time."""
    back = stage - 1
    returns = working_time(leave + int(lognormal(rng, 4 * DAY * pace, 0.6)))
    if back == DISCOVERY:
        again = working_time(leave + int(rng.uniform(0.3, 2) * DAY))
        journey.keys.append(KeyTouch(again, "discovery_repeat"))
        returns = max(returns, working_time(again + DAY))
    journey.spans.append(Span(back, leave, returns))
    done = working_time(returns + int(_duration(rng, stage, pace) * rng.uniform(0.3, 0.8)))
    journey.spans.append(Span(stage, returns, done))
    return done


def _lay_out(rng: random.Random, journey: Journey, last: int, regress_at: int, pace: float) -> None:
    """Spans and key touches from opening to close, one stage after the other."""
    enter, first = journey.opened_at, PROSPECTING
    discovery_at = 0
    if journey.early_discovery:
        discovery_at = working_time(journey.opened_at + int(rng.uniform(2, 10) * DAY))
        enter, first = _early_approach(rng, journey, discovery_at), DISCOVERY
    for stage in range(first, last + 1):
        final = stage == last
        duration = _duration(rng, stage, pace)
        if final and not journey.won:
            duration = int(duration * rng.uniform(0.3, 1.0))
        leave = working_time(enter + duration)
        if stage == DISCOVERY and journey.early_discovery:
            key: int | None = discovery_at
        else:
            key = _key_time(rng, journey, stage, enter, final)
        if key is not None:
            journey.keys.append(KeyTouch(key, _KEY_KINDS[stage]))
            leave = max(leave, working_time(key + int(rng.uniform(0.5, 3) * DAY)))
        journey.spans.append(Span(stage, enter, leave))
        enter = _regress(rng, journey, stage, leave, pace) if stage == regress_at else leave


def _plant_silence(rng: random.Random, journey: Journey, history_end: int) -> None:
    """Silence the deal from well before the end of history until after it, if it is open then."""
    length = int(rng.uniform(*SILENCE_DAYS) * DAY)
    starts = history_end - length
    weeks = math.ceil((length + rng.uniform(1, 21) * DAY) / WEEK)
    open_then = journey.opened_at + _LATE_DISCOVERY < starts < journey.closes_at
    if open_then:
        journey.pause(starts, weeks * WEEK)
        journey.silent = True


def _stall(rng: random.Random, journey: Journey, history_end: int) -> None:
    """One ordinary stall episode, kept only where it neither spans the end of history,
    nor delays an early discovery meeting, nor touches the planted silence."""
    span = rng.choice(journey.spans)
    starts = span.enter + int((span.leave - span.enter) * rng.uniform(0.2, 0.8))
    threshold = STALL_THRESHOLD_DAYS[STAGES[span.stage]] * DAY
    length = (math.ceil(1.3 * threshold / WEEK) + int(rng.random() * 3)) * WEEK
    spans_end = starts - _STALL_MARGIN_BEFORE < history_end < starts + length + _STALL_MARGIN_AFTER
    early = journey.early_discovery and starts <= journey.opened_at + _LATE_DISCOVERY
    near_silence = any(
        start - 2 * WEEK < starts + length and starts < end + 2 * WEEK
        for start, end in journey.quiet
    )
    if not (spans_end or early or near_silence):
        journey.pause(starts, length)


def plan_journey(
    rng: random.Random,
    opened_at: int,
    *,
    rep: Rep,
    habits: RateLedger,
    pace: float,
    win_lift: float,
    history_end: int,
) -> Journey:
    """Decide how a deal will go: outcome, stages and their times, regressions and stalls."""
    early = rng.random() < rep.early_discovery_share
    cohort, base = (
        ("early", EARLY_DISCOVERY_WIN_CHANCE) if early else ("late", LATE_DISCOVERY_WIN_CHANCE)
    )
    won = habits.take(f"{cohort} discovery", "win", min(0.9, base * win_lift)) > 0
    journey = Journey(opened_at, won=won, early_discovery=early)
    last = NEGOTIATION if journey.won else _loss_stage(rng, early)
    regress_at = -1
    if last >= DISCOVERY and habits.take(rep.rep_id, "regression", rep.regression_share):
        regress_at = DISCOVERY + int(rng.random() * (last - DISCOVERY + 1))
    _lay_out(rng, journey, last, regress_at, pace)
    if rng.random() < SILENT_SHARE:
        _plant_silence(rng, journey, history_end)
    if rng.random() < STALL_SHARE:
        _stall(rng, journey, history_end)
    return journey
