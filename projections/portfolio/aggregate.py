"""Totals over many deals: by stage, owner, segment or any key; thresholds learned from history."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from datetime import timedelta
from typing import TypeVar

from projections.deal.alerts import StallThresholds
from projections.deal.totals import Totals
from projections.deal.value_stream import DealValueStream
from projections.policy.model import Policy

__all__ = [
    "learned_stall_thresholds",
    "total",
    "totals_by",
    "totals_by_owner",
    "totals_by_segment",
    "totals_by_stage",
]

K = TypeVar("K", bound=Hashable)


def total(streams: Iterable[DealValueStream]) -> Totals:
    """The totals of all the deals together."""
    return sum((stream.totals for stream in streams), Totals())


def totals_by(
    streams: Iterable[DealValueStream], key: Callable[[DealValueStream], K]
) -> dict[K, Totals]:
    """The totals of the deals grouped by `key` (e.g. product)."""
    groups: defaultdict[K, Totals] = defaultdict(Totals)
    for stream in streams:
        groups[key(stream)] += stream.totals
    return dict(groups)


def totals_by_owner(streams: Iterable[DealValueStream]) -> dict[str, Totals]:
    """The totals of each rep's deals."""
    return totals_by(streams, lambda stream: stream.owner_id)


def totals_by_segment(streams: Iterable[DealValueStream]) -> dict[str | None, Totals]:
    """The totals of each customer segment's deals (None: deals without a segment)."""
    return totals_by(streams, lambda stream: stream.segment)


def totals_by_stage(streams: Iterable[DealValueStream]) -> dict[str, Totals]:
    """The totals of each stage over all deals; `deals` counts the deals that entered it."""
    groups: defaultdict[str, Totals] = defaultdict(Totals)
    for stream in streams:
        for stage in stream.stages:
            groups[stage.stage] += stage.totals
    return dict(groups)


def learned_stall_thresholds(
    policy: Policy, history: Iterable[DealValueStream]
) -> dict[str, timedelta]:
    """Stall thresholds learned from won deals, for the stages with enough of them.

    Empty unless the policy learns from history. For each of the policy's
    stages entered by at least `learn_min_won_deals` won deals: the
    `learn_percentile` percentile of their time in that stage (the rule itself:
    `projections.deal.stall.learned_stall_threshold`). Pass the result as
    `learned_thresholds` to the fold; stages missing from it use the policy's.
    """
    return dict(StallThresholds.from_history(policy, history).learned)
