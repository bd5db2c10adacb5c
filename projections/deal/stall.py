"""Stalls: episodes in which a deal sat too long without a value-added touch, and the
thresholds a stage learns from won deals."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from projections.deal.stages import StageVisit
from projections.intervals import ZERO, percentile
from projections.policy.model import StallPolicy

__all__ = ["StallEpisode", "learned_stall_threshold", "stall_episodes"]


class StallEpisode(BaseModel):
    """A stretch in which the deal was stalled; `ended_at` is None while it still is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: str
    started_at: datetime
    ended_at: datetime | None
    threshold: timedelta


def _visit_episodes(
    visit: StageVisit, value_added: Sequence[datetime], end: datetime, threshold: timedelta
) -> list[StallEpisode]:
    window = visit.window(end)
    stops = [moment for moment in value_added if window.start <= moment < window.end]
    episodes = []
    clock = window.start
    for index, stop in enumerate([*stops, window.end]):
        crossing = clock + threshold
        if crossing < stop:
            ongoing = index == len(stops) and visit.left_at is None
            episodes.append(
                StallEpisode(
                    stage=visit.stage,
                    started_at=crossing,
                    ended_at=None if ongoing else stop,
                    threshold=threshold,
                )
            )
        clock = stop
    return episodes


def stall_episodes(
    visits: Sequence[StageVisit],
    value_added: Sequence[datetime],
    end: datetime,
    threshold_for: Callable[[str], timedelta | None],
) -> tuple[StallEpisode, ...]:
    """Every stall episode of a deal, from its stage visits and value-added touch starts.

    The clock runs from the later of the stage entry and the last value-added
    touch; an episode starts when it passes the stage's threshold and ends at
    the next value-added touch, at the next stage change (which restarts the
    clock), or at the close. A stage without a threshold never stalls.

    SQL twin: projections.archive.fold_sql.rules.stall_episodes_sql.
    """
    episodes: list[StallEpisode] = []
    for visit in visits:
        threshold = threshold_for(visit.stage)
        if threshold is not None:
            episodes += _visit_episodes(visit, value_added, end, threshold)
    return tuple(episodes)


def learned_stall_threshold(stall: StallPolicy, won_times: Sequence[timedelta]) -> timedelta | None:
    """The threshold a stage learns from the won deals' times in it; None: it learns none.

    DOMAIN (Stalls): a policy that learns from history (`learn_from_history`) takes,
    for a stage entered by at least `learn_min_won_deals` won deals (30), the
    `learn_percentile` percentile (80th, nearest rank) of their times in that stage.
    With fewer deals, with learning off, or where that percentile is zero, the
    stage keeps the policy's threshold (`StallPolicy.threshold` chooses).
    `projections.deal.alerts.StallThresholds.learn` applies this to every stage of
    the policy, for the alerts and for `projections.portfolio.aggregate.learned_stall_thresholds`.
    The SQL replay (`projections.archive.replay_sql`) learns nothing: it folds with
    the policy's fixed and segment thresholds, as the fold does without learned ones.
    """
    if not stall.learn_from_history or len(won_times) < stall.learn_min_won_deals:
        return None
    threshold = percentile(won_times, stall.learn_percentile)
    return threshold if threshold > ZERO else None
