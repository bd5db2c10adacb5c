"""Stall alerts: which deal-stalled and deal-unstalled alerts a deal's value stream calls for."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from projections.categories import DealStatus, TouchClass
from projections.deal.measure import measure_totals, time_sets
from projections.deal.stall import StallEpisode, learned_stall_threshold, stall_episodes
from projections.deal.totals import Waste
from projections.deal.touches import Touch
from projections.deal.value_stream import DealValueStream
from projections.errors import ProjectionError
from projections.intervals import ZERO, Span, SpanSet, percentile, utc
from projections.policy.model import Policy

__all__ = [
    "AlertKind",
    "AlertLedger",
    "ClosedDeal",
    "EpisodeEnd",
    "StageAlertQuality",
    "StallAlert",
    "StallCheck",
    "StallThresholds",
    "StallWaste",
    "ThresholdBasis",
    "ThresholdChoice",
    "check_stalls",
    "deal_stall_episodes",
    "episode_id",
    "live_watermark",
    "stall_alert_quality",
    "won_stage_times",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AlertKind(StrEnum):
    """An episode's two alerts: once when it starts, once when it ends."""

    STALLED = "deal-stalled"
    UNSTALLED = "deal-unstalled"


class ThresholdChoice(StrEnum):
    """Where a stage's stall threshold came from."""

    FIXED = "fixed"
    """The policy's threshold for the stage."""
    SEGMENT = "segment"
    """The policy's override for the deal's segment."""
    LEARNED = "learned"
    """A percentile of time in stage among won deals (enough of them)."""


class ThresholdBasis(_Frozen):
    """How a threshold was chosen: fixed, a segment's override, or learned from n won deals."""

    choice: ThresholdChoice
    segment: str | None = None
    won_deals: int | None = None

    def describe(self) -> str:
        """A short phrase for people: 'fixed', 'segment Enterprise', 'learned from 42 won deals'."""
        if self.choice is ThresholdChoice.SEGMENT:
            return f"segment {self.segment}"
        if self.choice is ThresholdChoice.LEARNED:
            return f"learned from {self.won_deals} won deals"
        return "fixed"


class EpisodeEnd(StrEnum):
    """What ended a stall episode."""

    VALUE_ADDED_TOUCH = "value_added_touch"
    STAGE_CHANGED = "stage_changed"
    DEAL_WON = "deal_won"
    DEAL_LOST = "deal_lost"
    WITHDRAWN = "withdrawn"
    """Events that arrived late show the deal was not stalled after all."""


class StallWaste(_Frozen):
    """Waste accrued while stalled: the stall itself (inventory) plus process-time waste in it."""

    inventory: timedelta = ZERO
    process: Waste = Waste()

    @property
    def total(self) -> timedelta:
        """Inventory plus process-time waste (disjoint: inventory is wait, the rest is not)."""
        return self.inventory + self.process.total


class StallAlert(_Frozen):
    """One alert of a stall episode, deterministic in content: replaying the log gives it again.

    `occurred_at` is the moment the alert speaks of, in event time: the threshold
    crossing (`stalled_at`) for a deal-stalled alert, the episode's end for a
    deal-unstalled one; `time_stalled` and `waste_while_stalled` run from
    `stalled_at` up to it (so both are zero at the start). `silent_since` is when
    the deal's clock started: its last value-added touch or its stage entry,
    whichever was later. `last_value_added_*` is the latest value-added touch at or
    before `occurred_at` (for an episode ended by a touch, that touch).
    """

    alert_id: str
    episode_id: str
    kind: AlertKind
    deal_id: str
    account_id: str
    owner_id: str
    segment: str | None
    stage: str
    threshold: timedelta
    threshold_basis: ThresholdBasis
    silent_since: datetime
    stalled_at: datetime
    occurred_at: datetime
    time_stalled: timedelta
    ended_by: EpisodeEnd | None = None
    last_value_added_id: str | None
    last_value_added_at: datetime | None
    waste_while_stalled: StallWaste = StallWaste()
    policy_version: str


class AlertLedger(_Frozen):
    """The episodes of one deal already alerted: open ones, with their deal-stalled alert, and
    the ids of closed ones (their deal-unstalled alert went out too)."""

    open: dict[str, StallAlert] = Field(default_factory=dict)
    closed: tuple[str, ...] = ()


class ClosedDeal(_Frozen):
    """A closed deal's outcome and its stall episodes per stage: the evidence for alert quality."""

    deal_id: str
    status: DealStatus
    lead_time: timedelta
    stalls: dict[str, int] = Field(default_factory=dict)


class StageAlertQuality(_Frozen):
    """Per stage: stall alerts on closed deals, and how many of those deals were lost or slipped.

    `precision` = (lost + slipped) / alerts: the share of alerts that pointed at a
    deal in real trouble; None without alerts.
    """

    stage: str
    alerts: int
    lost: int
    slipped: int
    precision: float | None


@dataclass(frozen=True)
class StallThresholds:
    """The stall thresholds in force: the policy's, and those learned from won deals.

    `learned` holds only the stages with enough won deals (`won_deals` says how
    many); any other stage falls back to the policy's fixed threshold. A segment's
    override wins over both, as in `StallPolicy.threshold`.
    """

    policy: Policy
    learned: Mapping[str, timedelta] = field(default_factory=dict)
    won_deals: Mapping[str, int] = field(default_factory=dict)
    policy_version: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy_version", self.policy.version)

    @classmethod
    def learn(cls, policy: Policy, samples: Mapping[str, Sequence[timedelta]]) -> StallThresholds:
        """Thresholds learned from each stage's times in stage among won deals: for each
        stage of the policy, `learned_stall_threshold` (the one home of that rule).
        """
        learned: dict[str, timedelta] = {}
        counts: dict[str, int] = {}
        for stage in policy.stages.order:
            times = samples.get(stage, ())
            threshold = learned_stall_threshold(policy.stall, times)
            if threshold is not None:
                learned[stage], counts[stage] = threshold, len(times)
        return cls(policy, learned, counts)

    @classmethod
    def from_won_deals(
        cls, policy: Policy, won_deals: Iterable[Mapping[str, timedelta]]
    ) -> StallThresholds:
        """Thresholds learned from won deals given as their `won_stage_times` (see `learn`)."""
        samples: defaultdict[str, list[timedelta]] = defaultdict(list)
        for times in won_deals:
            for stage, time_in_stage in times.items():
                samples[stage].append(time_in_stage)
        return cls.learn(policy, samples)

    @classmethod
    def from_history(cls, policy: Policy, history: Iterable[DealValueStream]) -> StallThresholds:
        """Thresholds learned from the won deals among `history` (see `learn`)."""
        return cls.from_won_deals(policy, (won_stage_times(stream) for stream in history))

    def threshold(self, stage: str, segment: str | None) -> tuple[timedelta, ThresholdBasis] | None:
        """The threshold for a deal of `segment` in `stage`, and its basis; None: never stalls."""
        overrides = self.policy.stall.segments.get(segment, {}) if segment is not None else {}
        if stage in overrides:
            basis = ThresholdBasis(choice=ThresholdChoice.SEGMENT, segment=segment)
            return timedelta(days=overrides[stage]), basis
        if stage in self.learned:
            basis = ThresholdBasis(
                choice=ThresholdChoice.LEARNED, won_deals=self.won_deals.get(stage)
            )
            return self.learned[stage], basis
        days = self.policy.stall.threshold_days.get(stage)
        if days is None:
            return None
        return timedelta(days=days), ThresholdBasis(choice=ThresholdChoice.FIXED)


def won_stage_times(stream: DealValueStream) -> dict[str, timedelta]:
    """A won deal's time in each stage it entered (what thresholds are learned from); else {}."""
    if stream.status is not DealStatus.WON:
        return {}
    return {visited.stage: visited.totals.lead_time for visited in stream.stages}


@dataclass(frozen=True, slots=True)
class StallCheck:
    """What one look at a deal's value stream gives.

    `alerts`: the alerts to emit now, in event-time order; `ledger`: the alerted
    episodes after emitting them; `due_at`: when the deal crosses its threshold
    if nothing happens (stalled for any watermark strictly after it), None when it
    is stalled already, closed, or in a stage without threshold; `stalled`: in a
    stall episode as of the stream's watermark; `outcome`: for a closed deal, its
    stall episodes per stage and how it ended.
    """

    alerts: tuple[StallAlert, ...]
    ledger: AlertLedger
    due_at: datetime | None
    stalled: bool
    outcome: ClosedDeal | None


def live_watermark(
    wall_clock: datetime, latest_event: datetime | None, future_skew: timedelta | None
) -> datetime:
    """The moment a deal's silence is measured to in live operation.

    The wall clock, however old the latest event time the deal's partition carries
    (a deal silent since June is silent in December, whatever its partition saw
    since, and after any restart). An event may be dated up to `future_skew` ahead
    of the wall clock (later ones are refused as future-dated), and the clock never
    runs behind the latest event: then it is that event's time, but never more than
    `future_skew` past the wall clock. So it is
    `max(wall_clock, min(latest_event, wall_clock + future_skew))`; with
    `future_skew` None (no limit), `max(wall_clock, latest_event)`. Replays measure
    to event time instead: the latest event time, never the wall clock.
    """
    if latest_event is None or latest_event <= wall_clock:
        return wall_clock
    if future_skew is None:
        return latest_event
    return min(latest_event, wall_clock + future_skew)


def episode_id(deal_id: str, stage: str, silent_since: datetime) -> str:
    """The identity of an episode: the deal, the stage and when its silence began.

    Not the crossing time: a threshold that changes (learned ones do) moves the
    crossing, but it is still the same silence, hence the same episode.
    """
    text = f"{deal_id}|{stage}|{utc(silent_since).isoformat()}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _value_added_starts(stream: DealValueStream) -> list[datetime]:
    return [t.started_at for t in stream.touches if t.touch_class is TouchClass.VALUE_ADDED]


def _threshold_for(
    thresholds: StallThresholds, segment: str | None
) -> Callable[[str], timedelta | None]:
    def threshold(stage: str) -> timedelta | None:
        found = thresholds.threshold(stage, segment)
        return None if found is None else found[0]

    return threshold


def deal_stall_episodes(
    stream: DealValueStream, thresholds: StallThresholds
) -> tuple[StallEpisode, ...]:
    """The deal's stall episodes as of its stream's watermark, under `thresholds`.

    Like `stream.stalls`, but with learned thresholds when the policy learns.
    """
    return stall_episodes(
        stream.stage_history,
        _value_added_starts(stream),
        stream.closed_at or stream.as_of,
        _threshold_for(thresholds, stream.segment),
    )


def _next_crossing(
    stream: DealValueStream, thresholds: StallThresholds, stalled: bool
) -> datetime | None:
    if stream.status is not DealStatus.OPEN or stalled:
        return None
    visit = stream.stage_history[-1]
    found = thresholds.threshold(visit.stage, stream.segment)
    if found is None:
        return None
    stops = [s for s in _value_added_starts(stream) if visit.entered_at <= s < stream.as_of]
    return max(stops, default=visit.entered_at) + found[0]


def _last_value_added(touches: Sequence[Touch], moment: datetime) -> Touch | None:
    done = [
        touch
        for touch in touches
        if touch.touch_class is TouchClass.VALUE_ADDED and touch.started_at <= moment
    ]
    return max(done, key=lambda touch: (touch.started_at, touch.event_id), default=None)


def _ended_by(stream: DealValueStream, ended_at: datetime) -> EpisodeEnd:
    if stream.closed_at == ended_at and stream.status is not DealStatus.OPEN:
        return EpisodeEnd.DEAL_WON if stream.status is DealStatus.WON else EpisodeEnd.DEAL_LOST
    if ended_at in _value_added_starts(stream):
        return EpisodeEnd.VALUE_ADDED_TOUCH
    return EpisodeEnd.STAGE_CHANGED


@dataclass(frozen=True)
class _Alerting:
    """What every alert of one check shares."""

    stream: DealValueStream
    account_id: str
    thresholds: StallThresholds
    episodes: tuple[StallEpisode, ...]

    def stalled(self, episode: StallEpisode) -> StallAlert:
        silent_since = episode.started_at - episode.threshold
        found = self.thresholds.threshold(episode.stage, self.stream.segment)
        basis = found[1] if found else ThresholdBasis(choice=ThresholdChoice.FIXED)
        last = _last_value_added(self.stream.touches, episode.started_at)
        eid = episode_id(self.stream.deal_id, episode.stage, silent_since)
        return StallAlert(
            alert_id=f"{eid}-stalled",
            episode_id=eid,
            kind=AlertKind.STALLED,
            deal_id=self.stream.deal_id,
            account_id=self.account_id,
            owner_id=self.stream.owner_id,
            segment=self.stream.segment,
            stage=episode.stage,
            threshold=episode.threshold,
            threshold_basis=basis,
            silent_since=silent_since,
            stalled_at=episode.started_at,
            occurred_at=episode.started_at,
            time_stalled=ZERO,
            last_value_added_id=last.event_id if last else None,
            last_value_added_at=last.started_at if last else None,
            policy_version=self.stream.policy_version,
        )

    def unstalled(self, stalled: StallAlert, ended_at: datetime) -> StallAlert:
        last = _last_value_added(self.stream.touches, ended_at)
        return stalled.model_copy(
            update={
                "alert_id": f"{stalled.episode_id}-unstalled",
                "kind": AlertKind.UNSTALLED,
                "occurred_at": ended_at,
                "time_stalled": ended_at - stalled.stalled_at,
                "ended_by": _ended_by(self.stream, ended_at),
                "last_value_added_id": last.event_id if last else None,
                "last_value_added_at": last.started_at if last else None,
                "waste_while_stalled": self.waste_within(Span(stalled.stalled_at, ended_at)),
            }
        )

    def waste_within(self, window: Span) -> StallWaste:
        stream = self.stream
        life = Span(stream.opened_at, stream.closed_at or stream.as_of)
        sets = time_sets(stream.touches, life, self.thresholds.policy, SpanSet(), self.episodes)
        totals = measure_totals(sets, [window], (), regressions=0)
        return StallWaste(inventory=totals.inventory, process=totals.waste)


def _withdrawn(stalled: StallAlert) -> StallAlert:
    return stalled.model_copy(
        update={
            "alert_id": f"{stalled.episode_id}-unstalled",
            "kind": AlertKind.UNSTALLED,
            "occurred_at": stalled.stalled_at,
            "ended_by": EpisodeEnd.WITHDRAWN,
        }
    )


def _outcome(stream: DealValueStream, episodes: Sequence[StallEpisode]) -> ClosedDeal | None:
    if stream.status is DealStatus.OPEN:
        return None
    return ClosedDeal(
        deal_id=stream.deal_id,
        status=stream.status,
        lead_time=stream.lead_time,
        stalls=dict(Counter(episode.stage for episode in episodes)),
    )


def check_stalls(
    stream: DealValueStream,
    account_id: str,
    thresholds: StallThresholds,
    ledger: AlertLedger | None = None,
) -> StallCheck:
    """The alerts a deal's value stream (as of its watermark) calls for, given those sent before.

    Every episode as of the stream's watermark gets a deal-stalled alert unless
    `ledger` has it, and, once it has ended, a deal-unstalled alert unless the
    ledger has closed it. An open episode of the ledger that the stream no longer
    shows (late events proved the deal was not stalled) is closed by a
    deal-unstalled alert `withdrawn`. Content derives from the episodes only, so
    the same events give the same alerts whatever watermark they are checked at.
    Raises ProjectionError if the stream was folded under another policy.
    """
    if stream.policy_version != thresholds.policy_version:
        raise ProjectionError(
            f"deal {stream.deal_id} was folded under policy {stream.policy_version}, "
            f"the thresholds belong to {thresholds.policy_version}: fold it under the same policy"
        )
    ledger = ledger or AlertLedger()
    episodes = deal_stall_episodes(stream, thresholds)
    alerting = _Alerting(stream, account_id, thresholds, episodes)
    alerts: list[StallAlert] = []
    still_open: dict[str, StallAlert] = {}
    closed = dict.fromkeys(ledger.closed)
    for episode in episodes:
        stalled = alerting.stalled(episode)
        if stalled.episode_id in closed:
            continue
        if stalled.episode_id in ledger.open:
            stalled = ledger.open[stalled.episode_id]
        else:
            alerts.append(stalled)
        if episode.ended_at is None:
            still_open[stalled.episode_id] = stalled
        else:
            alerts.append(alerting.unstalled(stalled, episode.ended_at))
            closed[stalled.episode_id] = None
    for eid, stalled in ledger.open.items():
        if eid not in still_open and eid not in closed:
            alerts.append(_withdrawn(stalled))
            closed[eid] = None
    alerts.sort(key=lambda a: (a.occurred_at, a.kind is AlertKind.UNSTALLED, a.episode_id))
    stalled_now = bool(episodes) and episodes[-1].ended_at is None
    return StallCheck(
        alerts=tuple(alerts),
        ledger=AlertLedger(open=still_open, closed=tuple(closed)),
        due_at=_next_crossing(stream, thresholds, stalled_now),
        stalled=stalled_now,
        outcome=_outcome(stream, episodes),
    )


def stall_alert_quality(
    deals: Iterable[ClosedDeal], policy: Policy, slip_percentile: int | None = None
) -> tuple[StageAlertQuality, ...]:
    """Per stage, the share of stall alerts on closed deals whose deal was then lost or slipped.

    A won deal *slipped* when its lead time exceeds the `slip_percentile`
    percentile (default: the policy's `learn_percentile`, 80) of the won deals'
    lead times among `deals`. Stages come in the policy's order, others after.
    """
    deals = list(deals)
    won = [deal.lead_time for deal in deals if deal.status is DealStatus.WON]
    percent = slip_percentile or policy.stall.learn_percentile
    slip_after = percentile(won, percent) if won else None
    counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for deal in deals:
        slipped = (
            deal.status is DealStatus.WON and slip_after is not None and deal.lead_time > slip_after
        )
        for stage, alerts in deal.stalls.items():
            counts[stage]["alerts"] += alerts
            counts[stage]["lost"] += alerts if deal.status is DealStatus.LOST else 0
            counts[stage]["slipped"] += alerts if slipped else 0
    order = {stage: rank for rank, stage in enumerate(policy.stages.order)}
    stages = sorted(counts, key=lambda stage: (order.get(stage, len(order)), stage))
    return tuple(_stage_quality(stage, counts[stage]) for stage in stages)


def _stage_quality(stage: str, counts: Counter[str]) -> StageAlertQuality:
    alerts, lost, slipped = counts["alerts"], counts["lost"], counts["slipped"]
    return StageAlertQuality(
        stage=stage,
        alerts=alerts,
        lost=lost,
        slipped=slipped,
        precision=(lost + slipped) / alerts if alerts else None,
    )
