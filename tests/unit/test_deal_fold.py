"""DealFold, the fold kept current one event at a time, is the batch fold: for any arrival order,
duplicates (identical or conflicting), late events, watermark and learned thresholds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import encode
from events.models import DealOpened, Direction, Event, EventBase
from projections import DealNotOpened, DealValueStream, default_policy
from projections.deal.alerts import StallThresholds, check_stalls
from projections.deal.event_set import canonical_events
from projections.deal.fold import DealFold
from projections.deal.value_stream import deal_value_stream
from projections.errors import NotOneDeal
from tests.support.deal_builders import STAGES, DealScript, deal_events, march

examples = settings(max_examples=150, deadline=None)
POLICY = default_policy()


def batch(
    events: list[EventBase], watermark: object = None, learned: object = None
) -> DealValueStream | None:
    try:
        return deal_value_stream(events, POLICY, watermark, learned_thresholds=learned)  # type: ignore[arg-type]
    except DealNotOpened:
        return None


def incremental(
    fold: DealFold, watermark: object = None, learned: object = None
) -> DealValueStream | None:
    try:
        return fold.value_stream(watermark, learned_thresholds=learned)  # type: ignore[arg-type]
    except DealNotOpened:
        return None


@st.composite
def arrivals(draw: st.DrawFn) -> list[Event]:
    """A deal's events in any order, with identical copies and conflicting copies (the same
    event id, another time or content) mixed in anywhere."""
    events = draw(deal_events())
    arrival = list(draw(st.permutations(events)))
    for _ in range(draw(st.integers(0, 4))):
        copy = draw(st.sampled_from(events))
        if draw(st.booleans()):
            shift = timedelta(seconds=draw(st.integers(-5 * 86_400, 5 * 86_400)))
            copy = copy.model_copy(update={"occurred_at": copy.occurred_at + shift})
        arrival.insert(draw(st.integers(0, len(arrival))), copy)
    return arrival


learned_thresholds = st.none() | st.dictionaries(
    st.sampled_from(STAGES), st.integers(0, 20 * 86_400).map(lambda s: timedelta(seconds=s))
)


@examples
@given(arrivals(), learned_thresholds, st.data())
def test_after_every_event_the_fold_equals_the_batch_fold_of_the_events_so_far(
    arrival: list[Event], learned: dict[str, timedelta] | None, data: st.DataObject
) -> None:
    fold = DealFold("deal-1", POLICY)
    for seen, event in enumerate(arrival, 1):
        if data.draw(st.booleans(), label="compact before this event"):
            fold.compact()  # a cold deal: only its encoded events are held
        fold.add(event)
        expected = batch(arrival[:seen], learned=learned)
        assert incremental(fold, learned=learned) == expected
    assert fold.events == canonical_events(arrival)


@examples
@given(arrivals(), st.lists(st.integers(-3 * 86_400, 90 * 86_400), max_size=4), learned_thresholds)
def test_at_any_watermark_the_fold_equals_the_batch_fold_and_its_json_is_byte_identical(
    arrival: list[Event], offsets: list[int], learned: dict[str, timedelta] | None
) -> None:
    fold = DealFold.of("deal-1", POLICY, arrival)
    latest = max(event.occurred_at for event in arrival)
    for offset in offsets:
        watermark = latest + timedelta(seconds=offset)
        expected = batch(arrival, watermark, learned)
        got = incremental(fold, watermark, learned)
        assert got == expected
        if expected is not None and got is not None:
            assert got.model_dump_json() == expected.model_dump_json()


def test_a_fold_before_the_open_raises_deal_not_opened_as_the_batch_fold_does() -> None:
    script = DealScript().opened(march(2, 9)).call(march(3, 9), 30)
    fold = DealFold("deal-1", POLICY)
    with pytest.raises(DealNotOpened):
        fold.value_stream()
    fold.add(script.events[1])
    assert not fold.is_opened
    with pytest.raises(DealNotOpened):
        fold.value_stream()
    fold.add(script.events[0])
    assert fold.is_opened
    assert fold.value_stream() == deal_value_stream(script.events, POLICY)


def test_an_event_of_another_deal_is_refused_and_not_kept() -> None:
    fold = DealFold("deal-1", POLICY)
    stranger = DealScript(deal_id="deal-2").opened(march(2, 9)).events[0]
    with pytest.raises(NotOneDeal, match="deal-2"):
        fold.add(stranger)
    assert fold.events == ()


def test_a_copy_already_held_changes_nothing() -> None:
    script = DealScript().opened(march(2, 9)).call(march(3, 9), 30)
    fold = DealFold.of("deal-1", POLICY, script.events)
    assert fold.add(script.events[1].model_copy()) is False
    assert len(fold) == 2


def test_account_and_campaigns_come_from_the_deals_events() -> None:
    script = DealScript(account_id="acct-9").opened(march(2, 9))
    fold = DealFold.of("deal-1", POLICY, script.events)
    tagged = script.call(march(3, 9), 30).events[-1].model_copy(update={"campaign_id": "c-7"})
    fold.add(tagged)
    assert fold.account_id == "acct-9"
    assert fold.campaign_ids == ("c-7",)


def test_a_compacted_fold_holds_its_events_encoded_and_decodes_them_at_its_next_fold() -> None:
    script = DealScript().opened(march(2, 9)).call(march(3, 9), 30)
    fold = DealFold.of("deal-1", POLICY, script.events)
    fold.compact()
    assert not fold.is_hot
    assert fold.value_stream() == deal_value_stream(script.events, POLICY)
    assert fold.is_hot
    assert fold.encoded == tuple(encode(event) for event in script.events)


@settings(max_examples=100, deadline=None)
@given(arrivals(), st.integers(0, 60 * 86_400), learned_thresholds, st.booleans())
def test_a_stall_check_at_a_later_watermark_reads_the_fold_and_alerts_as_the_batch_fold_does(
    arrival: list[Event], seconds: int, learned: dict[str, timedelta] | None, cold: bool
) -> None:
    fold = DealFold.of("deal-1", POLICY, arrival)
    if cold:
        fold.compact()
    watermark = max(event.occurred_at for event in arrival) + timedelta(seconds=seconds)
    expected = batch(arrival, watermark)
    assert fold.is_opened == any(isinstance(event, DealOpened) for event in arrival)
    if expected is None:
        return
    thresholds = StallThresholds(POLICY, learned or {}, dict.fromkeys(learned or {}, 30))
    first = check_stalls(expected, "acct-deal-1", thresholds)
    assert check_stalls(fold.value_stream(watermark), str(fold.account_id), thresholds) == first
    later = watermark + timedelta(days=3)
    assert check_stalls(
        fold.value_stream(later), str(fold.account_id), thresholds, first.ledger
    ) == check_stalls(batch(arrival, later), "acct-deal-1", thresholds, first.ledger)  # type: ignore[arg-type]


def test_the_account_is_the_deal_opened_events_even_when_an_earlier_event_names_another() -> None:
    opened = DealScript(account_id="acct-open").opened(march(5, 9)).events[0]
    earlier = DealScript(account_id="acct-other").opened(march(1, 9)).call(march(2, 9), 5)
    fold = DealFold("deal-1", POLICY)
    fold.add(earlier.events[1])
    assert (fold.account_id, fold.is_opened) == ("acct-other", False)
    fold.compact()
    fold.add(opened)
    assert (fold.account_id, fold.is_opened) == ("acct-open", True)


def test_a_late_event_that_changes_an_earlier_touchs_verdict_is_folded_as_the_batch_fold_does() -> (
    None
):
    script = DealScript().opened(march(2, 9))
    for day in (3, 4, 5, 6):
        script.email(march(day, 9))  # a row of outbound emails: the later ones are chasing
    script.stage(march(9, 9), "Qualification")
    fold = DealFold.of("deal-1", POLICY, script.events)
    chasing = [t.waste for t in fold.value_stream().touches]
    late = script.email(march(4, 12), Direction.INBOUND).events[-1]  # the customer answered
    fold.add(late)
    stream = fold.value_stream()
    assert stream == deal_value_stream(script.events, POLICY)
    assert [t.waste for t in stream.touches] != chasing
