"""Fold one deal's events into its value stream: where every minute of its life went."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from events.models import (
    CallLogged,
    DealLost,
    DealOpened,
    DealWon,
    EmailLogged,
    EventBase,
    MeetingLogged,
    QuoteSent,
    StageChanged,
    TouchEvent,
)
from projections.categories import DealStatus, TouchClass
from projections.deal.event_set import canonical_events
from projections.deal.measure import TimeSets, measure_totals, time_sets
from projections.deal.stages import StageVisit, stage_history
from projections.deal.stall import StallEpisode, stall_episodes
from projections.deal.totals import Totals
from projections.deal.touch_rules import TouchMemo, classify_touches
from projections.deal.touches import Touch
from projections.deal.waiting import ball_in_our_court
from projections.errors import DealNotOpened, NotOneDeal, ProjectionError
from projections.intervals import Span, utc
from projections.policy.model import Policy

__all__ = [
    "DealFacts",
    "DealValueStream",
    "StageValueStream",
    "deal_value_stream",
    "fold_deal_facts",
    "sorted_deal_facts",
]


class StageValueStream(BaseModel):
    """One stage of a deal, all its visits together: time in stage and where it went."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: str
    visits: int
    totals: Totals


class DealValueStream(BaseModel):
    """A deal's value stream under one policy, as of a watermark; a pure function of its events.

    `as_of` is the watermark; an open deal's lead time runs up to it. `totals`
    hold the whole deal; `stages` the same split per stage (they add up to it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    deal_id: str
    policy_version: str
    status: DealStatus
    stage: str
    owner_id: str
    segment: str | None
    product: str | None
    amount: Decimal | None
    currency: str
    opened_at: datetime
    closed_at: datetime | None
    as_of: datetime
    stage_history: tuple[StageVisit, ...]
    touches: tuple[Touch, ...]
    stalls: tuple[StallEpisode, ...]
    totals: Totals
    stages: tuple[StageValueStream, ...]
    last_value_added_id: str | None
    last_value_added_at: datetime | None

    @property
    def lead_time(self) -> timedelta:
        """Close time (or the watermark, if open) minus open time."""
        return self.totals.lead_time

    @property
    def is_stalled(self) -> bool:
        """Whether the deal is open and in a stall episode at the watermark."""
        return bool(self.stalls) and self.stalls[-1].ended_at is None

    def for_stage(self, stage: str) -> Totals:
        """The totals of one stage; empty totals for a stage the deal never entered."""
        return next((each.totals for each in self.stages if each.stage == stage), Totals())


@dataclass(frozen=True, slots=True)
class DealFacts:
    """The events of one deal as of the watermark, sorted into what the fold needs."""

    deal_id: str
    as_of: datetime
    opened: DealOpened
    close: DealWon | DealLost | None
    changes: tuple[StageChanged, ...]
    touches: tuple[TouchEvent, ...]


def _deal_facts(events: Iterable[EventBase], watermark: datetime | None) -> DealFacts:
    facts = canonical_events(event for event in events if event.deal_id is not None)
    deal_ids = {event.deal_id for event in facts}
    if len(deal_ids) != 1:
        raise NotOneDeal(
            f"expected the events of one deal, got deal ids {sorted(map(str, deal_ids))}"
        )
    return sorted_deal_facts(str(deal_ids.pop()), facts, watermark)


def sorted_deal_facts(
    deal_id: str, facts: Sequence[EventBase], watermark: datetime | None
) -> DealFacts:
    """The facts of one deal as of the watermark (default: its latest event), sorted into
    what the fold needs; `facts` must be canonical (`canonical_events`: no duplicate id,
    sorted by `event_order`), all of the deal, and at least one."""
    if watermark is not None and watermark.utcoffset() is None:
        raise ProjectionError("the watermark must be timezone-aware, like event times")
    as_of = utc(watermark or facts[-1].occurred_at)
    if facts[-1].occurred_at > as_of:
        facts = tuple(event for event in facts if event.occurred_at <= as_of)
    opened: DealOpened | None = None
    close: DealWon | DealLost | None = None
    changes: list[StageChanged] = []
    touches: list[TouchEvent] = []
    for event in facts:
        if isinstance(event, CallLogged | EmailLogged | MeetingLogged | QuoteSent):
            touches.append(event)
        elif isinstance(event, StageChanged):
            changes.append(event)
        elif isinstance(event, DealOpened):
            opened = opened or event
        elif isinstance(event, DealWon | DealLost):
            close = close or event
    if opened is None:
        raise DealNotOpened(f"deal {deal_id} has no deal_opened event as of {as_of.isoformat()}")
    return DealFacts(
        deal_id=deal_id,
        as_of=as_of,
        opened=opened,
        close=close,
        changes=tuple(changes),
        touches=tuple(touches),
    )


def _life(facts: DealFacts) -> Span:
    """From the open to the close (never before the open), or to the watermark.

    SQL twin: projections.archive.fold_sql.rules.deal_life_sql.
    """
    opened_at = utc(facts.opened.occurred_at)
    if facts.close is None:
        return Span(opened_at, facts.as_of)
    return Span(opened_at, max(utc(facts.close.occurred_at), opened_at))


def _stage_streams(
    visits: Sequence[StageVisit],
    touches: Sequence[Touch],
    sets: TimeSets,
    end: datetime,
    policy: Policy,
) -> tuple[StageValueStream, ...]:
    """The totals of each stage the deal visited (all its visits together), in flow order.

    SQL twin: projections.archive.fold_sql.merge.stage_totals_sql.
    """
    names = list(dict.fromkeys(visit.stage for visit in visits))
    names.sort(key=lambda name: (policy.stages.rank(name) is None, policy.stages.rank(name) or 0))
    streams = []
    for name in names:
        mine = [visit for visit in visits if visit.stage == name]
        totals = measure_totals(
            sets,
            [visit.window(end) for visit in mine],
            [touch for touch in touches if touch.stage == name],
            regressions=sum(visit.regression for visit in mine),
        )
        streams.append(StageValueStream(stage=name, visits=len(mine), totals=totals))
    return tuple(streams)


def _status(close: DealWon | DealLost | None) -> DealStatus:
    if close is None:
        return DealStatus.OPEN
    return DealStatus.WON if isinstance(close, DealWon) else DealStatus.LOST


def deal_value_stream(
    events: Iterable[EventBase],
    policy: Policy,
    watermark: datetime | None = None,
    *,
    learned_thresholds: Mapping[str, timedelta] | None = None,
) -> DealValueStream:
    """Fold one deal's events into its value stream under `policy`, as of `watermark`.

    The watermark defaults to the latest event time among the events; events
    after it are not yet known and are left out. Raises NotOneDeal if the
    events (those with a deal_id) belong to several deals, and DealNotOpened if
    none of them opened the deal.

    SQL twin: projections.archive.replay_sql.sql_replay (every deal at once; deal_summary_sql).
    """
    return fold_deal_facts(_deal_facts(events, watermark), policy, learned_thresholds)


def fold_deal_facts(
    facts: DealFacts,
    policy: Policy,
    learned_thresholds: Mapping[str, timedelta] | None = None,
    memo: TouchMemo | None = None,
) -> DealValueStream:
    """The value stream of one deal's facts (see `deal_value_stream`, which sorts them first);
    `memo` (one per deal and policy) lets the touch classification reuse what it built."""
    life = _life(facts)
    status = _status(facts.close)
    visits = stage_history(
        facts.opened, facts.changes, life, status is DealStatus.OPEN, policy.stages
    )
    touches = classify_touches(facts.touches, life, visits, policy, memo)
    value_added = [t for t in touches if t.touch_class is TouchClass.VALUE_ADDED]
    segment = facts.opened.segment
    stalls = stall_episodes(
        visits,
        [touch.started_at for touch in value_added],
        life.end,
        lambda stage: policy.stall.threshold(stage, segment, learned_thresholds),
    )
    sets = time_sets(touches, life, policy, ball_in_our_court(touches, life.end), stalls)
    last = max(value_added, key=lambda t: (t.started_at, t.event_id), default=None)
    won = facts.close if isinstance(facts.close, DealWon) else None
    return DealValueStream(
        deal_id=facts.deal_id,
        policy_version=policy.version,
        status=status,
        stage=_closed_name(status, policy) or visits[-1].stage,
        owner_id=facts.opened.owner_id,
        segment=segment,
        product=facts.opened.product,
        amount=won.amount if won else facts.opened.amount,
        currency=won.currency if won else facts.opened.currency,
        opened_at=life.start,
        closed_at=None if facts.close is None else life.end,
        as_of=facts.as_of,
        stage_history=visits,
        touches=touches,
        stalls=stalls,
        totals=measure_totals(
            sets, [life], touches, regressions=sum(visit.regression for visit in visits)
        ),
        stages=_stage_streams(visits, touches, sets, life.end, policy),
        last_value_added_id=last.event_id if last else None,
        last_value_added_at=last.started_at if last else None,
    )


def _closed_name(status: DealStatus, policy: Policy) -> str | None:
    if status is DealStatus.WON:
        return policy.stages.won
    return policy.stages.lost if status is DealStatus.LOST else None
