"""Measure a deal's life: merge touches by precedence, then split any window into classes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from projections.categories import TouchClass, WasteCategory
from projections.deal.stall import StallEpisode
from projections.deal.totals import Totals, TouchCounts, Waste
from projections.deal.touches import Touch
from projections.intervals import Span, SpanSet
from projections.policy.model import Policy

__all__ = ["TimeSets", "measure_totals", "time_sets"]


@dataclass(frozen=True, slots=True)
class TimeSets:
    """A deal's life cut into disjoint sets of instants, one per class and waste category.

    value_added, necessary_non_value_added, the wastes and wait partition the
    life exactly; waiting_on_us and inventory are parts of wait.
    """

    value_added: SpanSet
    necessary_non_value_added: SpanSet
    wastes: Mapping[WasteCategory, SpanSet]
    wait: SpanSet
    waiting_on_us: SpanSet
    inventory: SpanSet


def time_sets(
    touches: Sequence[Touch],
    life: Span,
    policy: Policy,
    ball_in_our_court: SpanSet,
    stalls: Sequence[StallEpisode],
) -> TimeSets:
    """Merge overlapping touches: each instant goes to the first class (then waste) in the policy.

    With the default precedence an instant in which any value-added work
    happened is value-added, else necessary, else waste; an instant no touch
    covers is wait.

    SQL twin: projections.archive.fold_sql.merge.precedence_merge_sql.
    """
    covered = SpanSet()
    by_class: dict[TouchClass, SpanSet] = {}
    wastes: dict[WasteCategory, SpanSet] = {}
    for touch_class in policy.merge.classes:
        if touch_class is TouchClass.WASTE:
            for category in policy.merge.wastes:
                wastes[category] = SpanSet.of(t.span for t in touches if t.waste is category)
                wastes[category] -= covered
                covered |= wastes[category]
        else:
            mine = SpanSet.of(t.span for t in touches if t.touch_class is touch_class)
            by_class[touch_class] = mine - covered
            covered |= by_class[touch_class]
    wait = SpanSet.of([life]) - covered
    stalled = SpanSet.of(Span(stall.started_at, stall.ended_at or life.end) for stall in stalls)
    return TimeSets(
        value_added=by_class[TouchClass.VALUE_ADDED],
        necessary_non_value_added=by_class[TouchClass.NECESSARY_NON_VALUE_ADDED],
        wastes=wastes,
        wait=wait,
        waiting_on_us=ball_in_our_court & wait,
        inventory=stalled & wait,
    )


def measure_totals(
    sets: TimeSets, windows: Sequence[Span], touches: Sequence[Touch], regressions: int
) -> Totals:
    """The totals of the life inside `windows`, with the given touches and regressions.

    SQL twin: projections.archive.fold_sql.merge.stage_totals_sql (a deal's totals: their sum).
    """
    window = SpanSet.of(windows)
    counts = Counter(touch.kind for touch in touches)
    return Totals(
        deals=1,
        lead_time=window.length,
        value_added=sets.value_added.overlap(window),
        necessary_non_value_added=sets.necessary_non_value_added.overlap(window),
        waste=Waste.of({category: part.overlap(window) for category, part in sets.wastes.items()}),
        wait=sets.wait.overlap(window),
        waiting_on_us=sets.waiting_on_us.overlap(window),
        inventory=sets.inventory.overlap(window),
        rework=regressions + sum(touch.is_rework for touch in touches),
        touches=TouchCounts.model_validate(counts),
    )
