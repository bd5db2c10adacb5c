"""The value stream at its edges: clipping, watermarks, overlaps, stalls, many deals."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from events.models import CallOutcome, Direction, MeetingKind, MeetingOutcome
from projections import (
    DealNotOpened,
    DealState,
    DealStatus,
    NotOneDeal,
    Policy,
    ProjectionError,
    deal_value_stream,
    deal_value_streams,
    default_policy,
    learned_stall_thresholds,
    total,
    totals_by_owner,
    totals_by_segment,
    totals_by_stage,
)
from tests.support.deal_builders import DealScript, campaign_response, march


def minutes(count: float) -> timedelta:
    return timedelta(minutes=count)


def deal(
    stage: str = "Discovery", segment: str | None = None, deal_id: str = "deal-1"
) -> DealScript:
    return DealScript(deal_id=deal_id).opened(march(2, 9), stage=stage, segment=segment)


def policy_with(**changes: object) -> Policy:
    """The default policy with some top-level sections replaced."""
    return Policy.model_validate({**default_policy().model_dump(), **changes})


# The deal's life: clipping and watermarks


def test_a_touch_straddling_the_open_counts_only_its_minutes_inside_the_life() -> None:
    stream = deal_value_stream(
        deal().call(march(2, 8, 30), minutes=60).won(march(3, 9)).events, default_policy()
    )
    assert stream.totals.value_added == minutes(30)
    assert stream.touches[0].started_at == march(2, 9)


def test_touches_wholly_before_the_open_or_after_the_close_are_not_part_of_the_deal() -> None:
    script = deal().email(march(1, 9)).won(march(3, 9)).call(march(4, 9), minutes=10)
    stream = deal_value_stream(script.events, default_policy())
    assert stream.touches == ()
    assert stream.lead_time == timedelta(days=1)


def test_an_open_deal_is_measured_up_to_the_latest_event() -> None:
    stream = deal_value_stream(deal().email(march(5, 9)).events, default_policy())
    assert stream.status is DealStatus.OPEN
    assert stream.closed_at is None
    assert stream.as_of == march(5, 9)
    assert stream.lead_time == timedelta(days=3)
    assert stream.stage_history[-1].left_at is None


def test_a_watermark_measures_the_deal_as_of_then_leaving_later_events_out() -> None:
    events = deal().email(march(5, 9)).won(march(9, 9)).events
    stream = deal_value_stream(events, default_policy(), watermark=march(6, 9))
    assert stream.status is DealStatus.OPEN
    assert stream.lead_time == timedelta(days=4)
    assert stream.touches[-1].ended_at == march(5, 9, 5)


def test_a_touch_running_past_the_watermark_is_cut_at_the_watermark() -> None:
    events = deal().call(march(3, 9), minutes=60).events
    stream = deal_value_stream(events, default_policy(), watermark=march(3, 9, 20))
    assert stream.totals.value_added == minutes(20)


def test_a_deal_not_opened_as_of_the_watermark_cannot_be_measured() -> None:
    events = deal().email(march(5, 9)).events
    with pytest.raises(DealNotOpened, match="deal-1"):
        deal_value_stream(events[1:], default_policy())
    with pytest.raises(DealNotOpened):
        deal_value_stream(events, default_policy(), watermark=march(1, 9))


def test_a_watermark_without_a_timezone_is_refused() -> None:
    with pytest.raises(ProjectionError, match="timezone-aware"):
        deal_value_stream(deal().events, default_policy(), watermark=datetime(2026, 3, 5))


def test_events_of_two_deals_are_refused() -> None:
    events = deal().events + deal(deal_id="deal-2").events
    with pytest.raises(NotOneDeal, match="deal-2"):
        deal_value_stream(events, default_policy())


def test_a_stage_change_before_the_open_takes_effect_at_the_open() -> None:
    stream = deal_value_stream(
        deal("Prospecting").stage(march(1, 9), "Qualification").won(march(3, 9)).events,
        default_policy(),
    )
    assert stream.for_stage("Prospecting").lead_time == timedelta(0)
    assert stream.for_stage("Qualification").lead_time == timedelta(days=1)


def test_the_first_close_wins_and_a_lost_deal_keeps_its_expected_amount() -> None:
    stream = deal_value_stream(deal().lost(march(4, 9)).won(march(5, 9)).events, default_policy())
    assert (stream.status, stream.stage, stream.closed_at) == (DealStatus.LOST, "Lost", march(4, 9))
    assert stream.amount == Decimal("20000")


# Overlaps


def test_overlapping_touches_count_each_minute_once_value_added_first() -> None:
    stream = deal_value_stream(
        deal()
        .call(march(3, 10), minutes=30)
        .meeting(march(3, 10, 15), march(3, 10, 45), MeetingKind.INTERNAL)
        .call(march(3, 10, 40), minutes=20, outcome=CallOutcome.NO_ANSWER)
        .won(march(4, 9))
        .events,
        default_policy(),
    )
    totals = stream.totals
    assert (totals.value_added, totals.necessary_non_value_added) == (minutes(30), minutes(15))
    assert totals.waste.chasing == minutes(15)
    assert totals.wait == timedelta(days=2) - minutes(60)
    assert sum((touch.process_time for touch in stream.touches), timedelta(0)) == minutes(80)


def test_overlapping_wastes_go_to_the_first_category_in_the_policy() -> None:
    stream = deal_value_stream(
        deal()
        .meeting(march(3, 10), march(3, 10, 30), MeetingKind.DEMO, MeetingOutcome.NO_SHOW)
        .call(march(3, 10, 20), minutes=20, outcome=CallOutcome.NO_ANSWER)
        .won(march(4, 9))
        .events,
        default_policy(),
    )
    assert (stream.totals.waste.no_show, stream.totals.waste.chasing) == (minutes(30), minutes(10))


def test_the_merge_precedence_is_the_policys_and_totals_still_add_up() -> None:
    merge = {
        "classes": ["waste", "necessary_non_value_added", "value_added"],
        "wastes": ["chasing", "rework", "overproduction", "over_processing", "no_show"],
    }
    events = (
        deal()
        .call(march(3, 10), minutes=30)
        .call(march(3, 10, 20), minutes=20, outcome=CallOutcome.NO_ANSWER)
        .won(march(4, 9))
        .events
    )
    stream = deal_value_stream(events, policy_with(merge=merge))
    assert (stream.totals.value_added, stream.totals.waste.chasing) == (minutes(20), minutes(20))
    assert stream.policy_version != default_policy().version


# Stalls


def test_an_open_deal_without_value_added_work_past_its_threshold_is_stalled() -> None:
    stream = deal_value_stream(
        deal("Prospecting")
        .email(march(20, 9))
        .email(march(21, 9), direction=Direction.INBOUND)
        .events,
        default_policy(),
    )
    [stall] = stream.stalls
    assert (stall.stage, stall.started_at, stall.ended_at) == ("Prospecting", march(16, 9), None)
    assert stream.is_stalled
    assert stream.totals.inventory == timedelta(days=5) - minutes(5)


def test_a_value_added_touch_ends_the_stall_and_restarts_the_clock() -> None:
    stream = deal_value_stream(
        deal("Prospecting").call(march(20, 9), minutes=10).won(march(30, 9)).events,
        default_policy(),
    )
    assert [(s.started_at, s.ended_at) for s in stream.stalls] == [(march(16, 9), march(20, 9))]
    assert not stream.is_stalled
    assert stream.totals.inventory == timedelta(days=4)


def test_a_segment_override_changes_the_threshold() -> None:
    stall = {**default_policy().stall.model_dump(), "segments": {"SMB": {"Prospecting": 3.5}}}
    events = deal("Prospecting", segment="SMB").email(march(10, 9)).events
    stream = deal_value_stream(events, policy_with(stall=stall))
    assert stream.stalls[0].started_at == march(5, 21)


def test_thresholds_are_learned_from_won_deals_only_when_enough_exist() -> None:
    stall = {
        **default_policy().stall.model_dump(),
        "learn_from_history": True,
        "learn_min_won_deals": 5,
    }
    policy = policy_with(stall=stall)
    history = [
        deal_value_stream(
            DealScript(deal_id=f"d{days}").opened(march(1, 9)).won(march(1 + days, 9)).events,
            policy,
        )
        for days in range(1, 11)
    ]
    assert learned_stall_thresholds(policy, history) == {"Prospecting": timedelta(days=8)}
    assert learned_stall_thresholds(policy, history[:4]) == {}
    assert learned_stall_thresholds(default_policy(), history) == {}
    learned = learned_stall_thresholds(policy, history)
    stream = deal_value_stream(
        deal("Prospecting").email(march(20, 9)).events, policy, learned_thresholds=learned
    )
    assert stream.stalls[0].started_at == march(10, 9)


# Many deals, incremental state, aggregates


def test_a_mixed_stream_folds_every_opened_deal_to_one_watermark() -> None:
    first = deal(segment="SMB").won(march(4, 9)).events
    second = deal(deal_id="deal-2").email(march(3, 9)).events
    not_opened = DealScript(deal_id="deal-3").email(march(3, 9)).events
    stream = [*second, campaign_response(march(8, 9)), *first, *not_opened]
    streams = deal_value_streams(stream, default_policy())
    assert sorted(streams) == ["deal-1", "deal-2"]
    assert streams["deal-2"].as_of == march(8, 9)
    assert streams["deal-2"] == deal_value_stream(second, default_policy(), march(8, 9))
    assert streams["deal-1"].lead_time == timedelta(days=2)


def test_a_late_event_is_folded_in_as_if_it_had_come_in_order() -> None:
    events = deal().call(march(3, 9), minutes=10).email(march(4, 9)).won(march(5, 9)).events
    state = DealState("deal-1")
    for event in [events[0], events[3], events[2], events[1], events[2]]:
        state = state.apply(event)
    assert state.value_stream(default_policy()) == deal_value_stream(events, default_policy())


def test_deal_state_refuses_another_deals_event() -> None:
    with pytest.raises(NotOneDeal):
        DealState("deal-2").apply(deal().events[0])


def test_aggregates_add_up_deal_totals_by_owner_segment_and_stage() -> None:
    streams = deal_value_streams(
        [
            *deal(segment="SMB").won(march(4, 9)).events,
            *deal(deal_id="deal-2").stage(march(3, 9), "Proposal").lost(march(5, 9)).events,
        ],
        default_policy(),
    )
    everything = total(streams.values())
    assert everything.deals == 2
    assert everything.lead_time == timedelta(days=5)
    assert totals_by_owner(streams.values()) == {"rep-1": everything}
    assert totals_by_segment(streams.values())["SMB"].lead_time == timedelta(days=2)
    by_stage = totals_by_stage(streams.values())
    assert by_stage["Discovery"].deals == 2
    assert by_stage["Discovery"].lead_time == timedelta(days=3)
    assert by_stage["Proposal"].lead_time == timedelta(days=2)
