"""A deal's path through the stages: visits with entry and exit times, and regressions."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from events.models import DealOpened, StageChanged
from projections.intervals import Span, utc
from projections.policy.model import StagePolicy

__all__ = ["StageVisit", "stage_at", "stage_history"]


class StageVisit(BaseModel):
    """One stay of a deal in a stage; `left_at` is None while an open deal is still in it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: str
    entered_at: datetime
    left_at: datetime | None
    regression: bool
    event_id: str

    def window(self, end: datetime) -> Span:
        """The time spent in the stage, up to `end` while the deal is still in it."""
        return Span(self.entered_at, self.left_at or end)


def _is_regression(stages: StagePolicy, before: str, after: str) -> bool:
    was, now = stages.rank(before), stages.rank(after)
    return was is not None and now is not None and now < was


def stage_history(
    opened: DealOpened,
    changes: Sequence[StageChanged],
    life: Span,
    still_open: bool,
    stages: StagePolicy,
) -> tuple[StageVisit, ...]:
    """Fold the stage changes (sorted by event time) into visits covering the deal's life.

    A change before the deal opened takes effect at the open time; a change
    after the deal closed (or after the watermark) is ignored; a change to the
    stage the deal is already in changes nothing.

    SQL twin: projections.archive.fold_sql.rules.stage_visits_sql.
    """
    visits: list[StageVisit] = []
    stage, entered, event_id, regression = opened.stage, life.start, opened.event_id, False
    for change in changes:
        at = max(utc(change.occurred_at), life.start)
        if at > life.end:
            break
        if change.to_stage == stage:
            continue
        visits.append(
            StageVisit(
                stage=stage,
                entered_at=entered,
                left_at=at,
                regression=regression,
                event_id=event_id,
            )
        )
        regression = _is_regression(stages, stage, change.to_stage)
        stage, entered, event_id = change.to_stage, at, change.event_id
    left = None if still_open else life.end
    visits.append(
        StageVisit(
            stage=stage, entered_at=entered, left_at=left, regression=regression, event_id=event_id
        )
    )
    return tuple(visits)


def stage_at(visits: Sequence[StageVisit], at: datetime) -> str:
    """The stage the deal was in at `at` (the latest visit entered by then).

    SQL twin: projections.archive.fold_sql.rules.touch_rule_state_sql (each touch's visit).
    """
    index = bisect_right([visit.entered_at for visit in visits], at)
    return visits[max(index - 1, 0)].stage
