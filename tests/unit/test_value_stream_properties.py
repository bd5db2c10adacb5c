"""Invariants over random deals: time adds up; arrival order and duplicates do not matter."""

from __future__ import annotations

from datetime import timedelta
from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from events.models import Event
from projections import (
    DealNotOpened,
    DealState,
    DealValueStream,
    Totals,
    deal_value_stream,
    deal_value_streams,
    default_policy,
)
from tests.support.deal_builders import deal_events

ZERO = timedelta(0)
examples = settings(max_examples=150, deadline=None)


def fold(events: list[Event]) -> DealValueStream:
    return deal_value_stream(events, default_policy())


def time_adds_up(totals: Totals) -> bool:
    parts = totals.value_added + totals.necessary_non_value_added + totals.waste.total
    return parts + totals.wait == totals.lead_time


@examples
@given(deal_events())
def test_va_nnva_waste_and_wait_add_up_to_the_lead_time_per_deal_and_per_stage(
    events: list[Event],
) -> None:
    stream = fold(events)
    assert time_adds_up(stream.totals)
    assert all(time_adds_up(stage.totals) for stage in stream.stages)
    by_stage = sum((stage.totals for stage in stream.stages), Totals())
    assert by_stage.model_dump(exclude={"deals"}) == stream.totals.model_dump(exclude={"deals"})
    assert ZERO <= stream.totals.waiting_on_us <= stream.totals.wait
    assert ZERO <= stream.totals.inventory <= stream.totals.wait
    assert stream.lead_time == (stream.closed_at or stream.as_of) - stream.opened_at


@examples
@given(deal_events(), st.randoms(use_true_random=False))
def test_any_arrival_order_gives_the_same_value_stream(events: list[Event], random: Random) -> None:
    shuffled = list(events)
    random.shuffle(shuffled)
    assert fold(shuffled) == fold(events)


@examples
@given(deal_events(), st.data())
def test_duplicated_events_change_nothing(events: list[Event], data: st.DataObject) -> None:
    again = data.draw(st.lists(st.sampled_from(events), max_size=10))
    assert fold([*again, *events, *again]) == fold(events)


@examples
@given(deal_events(), st.data())
def test_applying_events_one_by_one_in_any_order_equals_the_batch_fold(
    events: list[Event], data: st.DataObject
) -> None:
    arrival = data.draw(st.permutations(events))
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=5))
    state = DealState("deal-1")
    for event in [*arrival, *repeats]:
        state = state.apply(event)
    assert state.value_stream(default_policy()) == fold(events)


@settings(max_examples=50, deadline=None)
@given(deal_events("deal-a", max_facts=10), deal_events("deal-b", max_facts=10), st.randoms())
def test_a_mixed_stream_folds_each_deal_as_its_own_events_would(
    first: list[Event], second: list[Event], random: Random
) -> None:
    mixed = [*first, *second]
    random.shuffle(mixed)
    streams = deal_value_streams(mixed, default_policy())
    as_of = max(event.occurred_at for event in mixed)
    for deal_id, events in (("deal-a", first), ("deal-b", second)):
        try:
            expected = deal_value_stream(events, default_policy(), as_of)
        except DealNotOpened:
            assert deal_id not in streams
        else:
            assert streams[deal_id] == expected
