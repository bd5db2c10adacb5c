"""Exact arithmetic on time: half-open spans and sets of them, so no minute counts twice."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "EPOCH",
    "MICROSECOND",
    "ZERO",
    "Span",
    "SpanSet",
    "epoch_us",
    "percentile",
    "utc",
]

ZERO = timedelta(0)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def epoch_us(moment: datetime) -> int:
    """Microseconds since the epoch: exact, as the archive and the SQL fold hold times."""
    return (moment - EPOCH) // MICROSECOND


def percentile(times: Iterable[timedelta], percent: int) -> timedelta:
    """The nearest-rank percentile: the smallest of `times` at or above `percent` % of them.

    Exact, never interpolated: the result is one of the times (there must be at least
    one). The one percentile of durations in the core: learned stall thresholds
    (`projections.deal.stall.learned_stall_threshold`) and when a won deal slipped
    (`projections.deal.alerts.stall_alert_quality`).
    """
    ordered = sorted(times)
    rank = -(-percent * len(ordered) // 100)
    return ordered[max(rank, 1) - 1]


def utc(moment: datetime) -> datetime:
    """The same instant in UTC, so that results read the same whatever offset events carried."""
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """The time from `start` up to, not including, `end`."""

    start: datetime
    end: datetime

    @property
    def length(self) -> timedelta:
        """How long the span lasts (zero when it is empty)."""
        return max(self.end - self.start, ZERO)

    def clip(self, window: Span) -> Span:
        """The part of this span inside `window`; empty (start == end) when they do not meet."""
        start, end = max(self.start, window.start), min(self.end, window.end)
        return Span(start, max(start, end))


def _end(span: Span) -> datetime:
    return span.end


def _bounds(span: Span) -> tuple[datetime, datetime]:
    return (span.start, span.end)


@dataclass(frozen=True, slots=True)
class SpanSet:
    """A set of instants as sorted, disjoint, non-empty spans; set operations are exact."""

    spans: tuple[Span, ...] = ()

    @classmethod
    def of(cls, spans: Iterable[Span]) -> SpanSet:
        """The union of any spans, overlapping or not; empty spans are dropped."""
        merged: list[Span] = []
        for span in sorted((span for span in spans if span.end > span.start), key=_bounds):
            if merged and span.start <= merged[-1].end:
                last = merged[-1]
                merged[-1] = Span(last.start, max(last.end, span.end))
            else:
                merged.append(span)
        return cls(tuple(merged))

    @property
    def length(self) -> timedelta:
        """Total time covered."""
        return sum((span.length for span in self.spans), ZERO)

    def overlap(self, other: SpanSet) -> timedelta:
        """How long the two sets share: `(self & other).length`, without building the set."""
        mine, theirs = self.spans, other.spans
        if not mine or not theirs:
            return ZERO
        # Skip my spans that end before the other set starts.
        i = bisect_right(mine, theirs[0].start, key=_end)
        total, j = ZERO, 0
        while i < len(mine) and j < len(theirs):
            a, b = mine[i], theirs[j]
            start = a.start if a.start > b.start else b.start
            end = a.end if a.end < b.end else b.end
            if end > start:
                total += end - start
            if a.end <= b.end:
                i += 1
            else:
                j += 1
        return total

    def __or__(self, other: SpanSet) -> SpanSet:
        return SpanSet.of((*self.spans, *other.spans))

    def __and__(self, other: SpanSet) -> SpanSet:
        common: list[Span] = []
        mine, theirs = list(self.spans), list(other.spans)
        i = j = 0
        while i < len(mine) and j < len(theirs):
            start = max(mine[i].start, theirs[j].start)
            end = min(mine[i].end, theirs[j].end)
            if end > start:
                common.append(Span(start, end))
            if mine[i].end <= theirs[j].end:
                i += 1
            else:
                j += 1
        return SpanSet(tuple(common))

    def __sub__(self, other: SpanSet) -> SpanSet:
        left: list[Span] = []
        cuts = other.spans
        first = 0
        for span in self.spans:
            while first < len(cuts) and cuts[first].end <= span.start:
                first += 1
            start, k = span.start, first
            while k < len(cuts) and cuts[k].start < span.end:
                if cuts[k].start > start:
                    left.append(Span(start, cuts[k].start))
                start = max(start, cuts[k].end)
                k += 1
            if span.end > start:
                left.append(Span(start, span.end))
        return SpanSet(tuple(left))
