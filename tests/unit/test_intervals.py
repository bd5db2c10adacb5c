"""Span sets: exact set arithmetic on time, checked against a minute-by-minute model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from projections.intervals import ZERO, Span, SpanSet

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _minute(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


spans = st.builds(
    lambda start, length: Span(_minute(start), _minute(start + length)),
    st.integers(0, 200),
    st.integers(0, 40),
)
span_sets = st.lists(spans, max_size=12).map(SpanSet.of)


def _minutes(spans: SpanSet) -> set[int]:
    return {
        minute
        for span in spans.spans
        for minute in range(
            (span.start - T0) // timedelta(minutes=1), (span.end - T0) // timedelta(minutes=1)
        )
    }


@given(span_sets, span_sets)
def test_overlap_is_the_length_of_the_intersection(a: SpanSet, b: SpanSet) -> None:
    assert a.overlap(b) == (a & b).length == timedelta(minutes=len(_minutes(a) & _minutes(b)))


@given(span_sets, span_sets)
def test_overlap_is_symmetric(a: SpanSet, b: SpanSet) -> None:
    assert a.overlap(b) == b.overlap(a)


@given(st.lists(spans, max_size=12))
def test_a_set_of_overlapping_spans_counts_each_minute_once(parts: list[Span]) -> None:
    merged = SpanSet.of(parts)
    covered = set().union(*(_minutes(SpanSet((p,))) for p in parts if p.end > p.start))
    assert merged.length == timedelta(minutes=len(covered))
    assert all(a.end < b.start for a, b in zip(merged.spans, merged.spans[1:], strict=False))


def test_an_empty_set_overlaps_nothing() -> None:
    assert SpanSet().overlap(SpanSet.of([Span(_minute(0), _minute(5))])) == ZERO
