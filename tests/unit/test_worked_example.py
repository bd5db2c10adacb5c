"""The worked example of DOMAIN.md, reproduced exactly under the default policy."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from events.models import CallOutcome, Direction, MeetingKind, MeetingOutcome
from projections import (
    DealStatus,
    DealValueStream,
    TouchClass,
    WasteCategory,
    deal_value_stream,
    default_policy,
)
from tests.support.deal_builders import DealScript, march


def minutes(count: int) -> timedelta:
    return timedelta(minutes=count)


def worked_example() -> DealScript:
    """One deal, all times UTC, March 2026: the table in DOMAIN.md, line by line."""
    return (
        DealScript()
        .opened(march(2, 9))
        .call(march(2, 10), minutes=1, outcome=CallOutcome.NO_ANSWER)
        .call(march(2, 14), minutes=20)
        .stage(march(3, 9), "Qualification")
        .email(march(3, 9, 30))
        .email(march(4, 8), direction=Direction.INBOUND)
        .email(march(4, 16), reply=True)
        .stage(march(5, 9), "Discovery")
        .meeting(march(5, 10), march(5, 11), MeetingKind.DISCOVERY)
        .meeting(march(6, 15), march(6, 15, 30), MeetingKind.INTERNAL)
        .stage(march(9, 9), "Proposal")
        .quote(march(9, 10), version=1)
        .quote(march(10, 11), version=2)
        .stage(march(11, 9), "Negotiation")
        .meeting(march(12, 14), march(12, 14, 30), MeetingKind.NEGOTIATION, MeetingOutcome.NO_SHOW)
        .meeting(march(16, 10), march(16, 10, 45), MeetingKind.NEGOTIATION)
        .won(march(16, 12), amount="24000")
    )


@pytest.fixture(scope="module")
def deal() -> DealValueStream:
    return deal_value_stream(worked_example().events, default_policy())


def test_lead_time_is_fourteen_days_three_hours(deal: DealValueStream) -> None:
    assert deal.lead_time == minutes(20_340)


def test_time_splits_into_va_nnva_waste_and_wait(deal: DealValueStream) -> None:
    totals = deal.totals
    assert totals.value_added == minutes(175)
    assert totals.necessary_non_value_added == minutes(35)
    assert totals.waste.total == minutes(61)
    assert totals.wait == minutes(20_069)


def test_waiting_on_us_is_the_eight_hours_before_the_reply(deal: DealValueStream) -> None:
    assert deal.totals.waiting_on_us == minutes(480)
    assert deal.totals.waiting_on_customer == minutes(20_069 - 480)


def test_waste_by_category(deal: DealValueStream) -> None:
    waste = deal.totals.waste
    assert (waste.chasing, waste.rework, waste.no_show) == (minutes(1), minutes(30), minutes(30))
    assert waste.over_processing == waste.overproduction == timedelta(0)


def test_process_cycle_efficiency_is_0_86_percent(deal: DealValueStream) -> None:
    assert deal.totals.process_cycle_efficiency == pytest.approx(175 / 20_340)
    assert round(100 * (deal.totals.process_cycle_efficiency or 0), 2) == 0.86


PER_STAGE = {
    # stage: (lead, VA, NNVA, waste, wait) in minutes, as in DOMAIN.md
    "Prospecting": (1_440, 20, 0, 1, 1_419),
    "Qualification": (2_880, 5, 5, 0, 2_870),
    "Discovery": (5_760, 60, 30, 0, 5_670),
    "Proposal": (2_880, 45, 0, 30, 2_805),
    "Negotiation": (7_380, 45, 0, 30, 7_305),
}


@pytest.mark.parametrize("stage", PER_STAGE)
def test_per_stage_table(deal: DealValueStream, stage: str) -> None:
    totals = deal.for_stage(stage)
    measured = (
        totals.lead_time,
        totals.value_added,
        totals.necessary_non_value_added,
        totals.waste.total,
        totals.wait,
    )
    assert measured == tuple(minutes(count) for count in PER_STAGE[stage])


def test_stages_are_listed_in_flow_order(deal: DealValueStream) -> None:
    assert [stage.stage for stage in deal.stages] == [
        "Prospecting",
        "Qualification",
        "Discovery",
        "Proposal",
        "Negotiation",
    ]


def test_rework_is_the_one_unrequested_quote_revision(deal: DealValueStream) -> None:
    assert deal.totals.rework == 1
    assert deal.for_stage("Proposal").rework == 1
    [rework] = [touch for touch in deal.touches if touch.is_rework]
    assert (rework.kind, rework.process_time) == ("quote", minutes(30))


def test_each_touch_is_classified_as_in_the_table(deal: DealValueStream) -> None:
    va, nnva, waste = TouchClass
    expected = [
        (waste, WasteCategory.CHASING, 1),
        (va, None, 20),
        (nnva, None, 5),
        (None, None, 0),
        (va, None, 5),
        (va, None, 60),
        (nnva, None, 30),
        (va, None, 45),
        (waste, WasteCategory.REWORK, 30),
        (waste, WasteCategory.NO_SHOW, 30),
        (va, None, 45),
    ]
    actual = [
        (touch.touch_class, touch.waste, touch.process_time // minutes(1)) for touch in deal.touches
    ]
    assert actual == expected


def test_the_deal_is_won_with_its_amount_and_stamped_with_the_policy(
    deal: DealValueStream,
) -> None:
    assert deal.status is DealStatus.WON
    assert deal.stage == "Won"
    assert deal.amount == Decimal("24000")
    assert deal.closed_at == march(16, 12)
    assert deal.policy_version == default_policy().version


def test_last_value_added_touch_is_the_held_negotiation_meeting(deal: DealValueStream) -> None:
    assert deal.last_value_added_at == march(16, 10)
    assert deal.last_value_added_id == worked_example().events[-2].event_id


def test_stage_history_has_entry_and_exit_times(deal: DealValueStream) -> None:
    history = [(visit.stage, visit.entered_at, visit.left_at) for visit in deal.stage_history]
    assert history == [
        ("Prospecting", march(2, 9), march(3, 9)),
        ("Qualification", march(3, 9), march(5, 9)),
        ("Discovery", march(5, 9), march(9, 9)),
        ("Proposal", march(9, 9), march(11, 9)),
        ("Negotiation", march(11, 9), march(16, 12)),
    ]
    assert not any(visit.regression for visit in deal.stage_history)


def test_the_deal_never_stalled(deal: DealValueStream) -> None:
    assert deal.stalls == ()
    assert deal.totals.inventory == timedelta(0)
