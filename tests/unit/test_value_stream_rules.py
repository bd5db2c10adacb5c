"""Each default touch rule of DOMAIN.md (1-8), one behaviour per test."""

from __future__ import annotations

from datetime import timedelta

from events.models import CallOutcome, Direction, MeetingKind, MeetingOutcome
from projections import DealValueStream, Touch, TouchClass, WasteCategory, deal_value_stream
from projections import default_policy as policy
from tests.support.deal_builders import DealScript, march

VA = TouchClass.VALUE_ADDED
NNVA = TouchClass.NECESSARY_NON_VALUE_ADDED
WASTE = TouchClass.WASTE


def minutes(count: float) -> timedelta:
    return timedelta(minutes=count)


def deal(stage: str = "Discovery") -> DealScript:
    """A deal opened on 2 March at 09:00 in `stage`."""
    return DealScript().opened(march(2, 9), stage=stage)


def fold(script: DealScript) -> DealValueStream:
    return deal_value_stream(script.won(march(30, 9)).events, policy())


def verdicts(stream: DealValueStream) -> list[tuple[TouchClass | None, WasteCategory | None]]:
    return [(touch.touch_class, touch.waste) for touch in stream.touches]


def only_touch(stream: DealValueStream) -> Touch:
    [touch] = stream.touches
    return touch


# Rule 1: no-shows


def test_a_no_show_meeting_is_waste_for_its_scheduled_duration() -> None:
    stream = fold(
        deal().meeting(march(3, 10), march(3, 10, 40), MeetingKind.DEMO, MeetingOutcome.NO_SHOW)
    )
    assert verdicts(stream) == [(WASTE, WasteCategory.NO_SHOW)]
    assert stream.totals.waste.no_show == minutes(40)


def test_a_rescheduled_meeting_is_a_no_show_whatever_its_kind() -> None:
    stream = fold(
        deal()
        .meeting(march(3, 10), march(3, 11), MeetingKind.INTERNAL, MeetingOutcome.RESCHEDULED)
        .meeting(march(4, 10), march(4, 11), MeetingKind.DISCOVERY, MeetingOutcome.RESCHEDULED)
    )
    assert verdicts(stream) == [(WASTE, WasteCategory.NO_SHOW)] * 2


# Rule 2: internal meetings


def test_internal_meetings_past_the_allowance_per_stage_are_over_processing() -> None:
    script = deal()
    for day in (3, 4, 5):
        script.meeting(march(day, 15), march(day, 15, 30), MeetingKind.INTERNAL)
    stream = fold(script)
    assert verdicts(stream) == [(NNVA, None), (NNVA, None), (WASTE, WasteCategory.OVER_PROCESSING)]
    assert stream.totals.necessary_non_value_added == minutes(60)
    assert stream.totals.waste.over_processing == minutes(30)


def test_the_internal_meeting_allowance_is_counted_per_stage() -> None:
    script = deal()
    script.meeting(march(3, 15), march(3, 16), MeetingKind.INTERNAL)
    script.meeting(march(4, 15), march(4, 16), MeetingKind.INTERNAL)
    script.stage(march(5, 9), "Proposal")
    script.meeting(march(6, 15), march(6, 16), MeetingKind.INTERNAL)
    assert verdicts(fold(script)) == [(NNVA, None)] * 3


# Rule 3: held customer meetings


def test_a_held_customer_meeting_is_value_added() -> None:
    stream = fold(
        deal()
        .meeting(march(3, 10), march(3, 11), MeetingKind.DISCOVERY)
        .meeting(march(4, 10), march(4, 10, 30), MeetingKind.DEMO)
        .meeting(march(5, 10), march(5, 10, 15), MeetingKind.NEGOTIATION)
    )
    assert verdicts(stream) == [(VA, None)] * 3
    assert stream.totals.value_added == minutes(105)


def test_a_second_held_discovery_meeting_is_rework_even_in_another_stage() -> None:
    stream = fold(
        deal()
        .meeting(march(3, 10), march(3, 11), MeetingKind.DISCOVERY)
        .stage(march(4, 9), "Proposal")
        .meeting(march(5, 10), march(5, 11), MeetingKind.DISCOVERY)
        .meeting(march(6, 10), march(6, 11), MeetingKind.DEMO)
        .meeting(march(7, 10), march(7, 11), MeetingKind.DEMO)
    )
    assert verdicts(stream) == [(VA, None), (WASTE, WasteCategory.REWORK), (VA, None), (VA, None)]
    assert stream.totals.rework == 1
    assert stream.for_stage("Proposal").rework == 1


# Rule 4: calls


def test_a_connected_call_is_value_added_for_its_own_duration() -> None:
    stream = fold(deal().call(march(3, 14), minutes=12.5))
    assert only_touch(stream).touch_class is VA
    assert stream.totals.value_added == minutes(12.5)


def test_a_call_not_answered_or_sent_to_voicemail_is_chasing_for_its_own_duration() -> None:
    stream = fold(
        deal()
        .call(march(3, 10), minutes=1, outcome=CallOutcome.NO_ANSWER)
        .call(march(3, 11), minutes=2, outcome=CallOutcome.VOICEMAIL)
    )
    assert verdicts(stream) == [(WASTE, WasteCategory.CHASING)] * 2
    assert stream.totals.waste.chasing == minutes(3)


def test_an_inbound_call_is_value_added_talk_time() -> None:
    stream = fold(deal().call(march(3, 10), minutes=10, direction=Direction.INBOUND))
    assert only_touch(stream).touch_class is VA
    assert stream.totals.value_added == minutes(10)


# Rule 5: the ball in our court


def test_an_inbound_email_takes_none_of_our_time() -> None:
    stream = fold(deal().email(march(3, 8), direction=Direction.INBOUND))
    touch = only_touch(stream)
    assert (touch.touch_class, touch.process_time) == (None, timedelta(0))
    assert stream.totals.value_added + stream.totals.waste.total == timedelta(0)


def test_after_an_inbound_email_the_wait_until_our_next_outbound_touch_is_on_us() -> None:
    stream = fold(
        deal()
        .email(march(3, 8), direction=Direction.INBOUND)
        .email(march(3, 9), direction=Direction.INBOUND)
        .meeting(march(3, 10), march(3, 10, 30), MeetingKind.INTERNAL)
        .call(march(3, 12), minutes=5)
    )
    # 08:00 to 12:00, less the internal meeting (process time, not wait): it answers no one.
    assert stream.totals.waiting_on_us == minutes(4 * 60 - 30)


def test_after_an_inbound_call_the_ball_is_in_our_court_until_we_answer() -> None:
    stream = fold(
        deal()
        .call(march(3, 8), minutes=10, direction=Direction.INBOUND)
        .quote(march(3, 12), version=1)
    )
    assert stream.totals.waiting_on_us == minutes(4 * 60 - 10)


def test_a_message_never_answered_is_waiting_on_us_until_the_close() -> None:
    stream = fold(deal().email(march(29, 9), direction=Direction.INBOUND))
    assert stream.totals.waiting_on_us == timedelta(days=1)


# Rule 6: outbound emails


def test_an_outbound_email_replying_to_the_customer_is_value_added_standard_time() -> None:
    stream = fold(
        deal().email(march(3, 9), direction=Direction.INBOUND).email(march(3, 10), reply=True)
    )
    assert verdicts(stream)[-1] == (VA, None)
    assert stream.totals.value_added == minutes(5)


def test_outbound_emails_past_the_second_without_a_reply_are_chasing() -> None:
    script = deal()
    for day in (3, 4, 5, 6):
        script.email(march(day, 9))
    stream = fold(script)
    chasing = (WASTE, WasteCategory.CHASING)
    assert verdicts(stream) == [(NNVA, None), (NNVA, None), chasing, chasing]
    assert stream.totals.necessary_non_value_added == minutes(10)
    assert stream.totals.waste.chasing == minutes(10)


def test_a_customer_reply_starts_a_new_row_of_emails() -> None:
    stream = fold(
        deal()
        .email(march(3, 9))
        .email(march(4, 9))
        .email(march(5, 9), direction=Direction.INBOUND)
        .email(march(6, 9))
        .email(march(7, 9))
    )
    assert [verdict for verdict in verdicts(stream) if verdict[0]] == [(NNVA, None)] * 4


# Rule 7: quotes


def test_the_first_version_of_a_quote_is_value_added_for_45_minutes() -> None:
    stream = fold(deal("Proposal").quote(march(3, 10), version=1))
    assert only_touch(stream).touch_class is VA
    assert stream.totals.value_added == minutes(45)


def test_an_unrequested_quote_revision_is_rework_for_30_minutes() -> None:
    stream = fold(deal("Proposal").quote(march(3, 10), version=1).quote(march(4, 10), version=2))
    assert verdicts(stream) == [(VA, None), (WASTE, WasteCategory.REWORK)]
    assert stream.totals.waste.rework == minutes(30)
    assert stream.totals.rework == 1


def test_a_quote_revision_the_customer_asked_for_is_value_added() -> None:
    stream = fold(
        deal("Proposal").quote(march(3, 10), version=1).quote(march(4, 10), 2, requested=True)
    )
    assert verdicts(stream) == [(VA, None), (VA, None)]
    assert stream.totals.value_added == minutes(75)


def test_a_quote_sent_before_the_deal_is_qualified_is_overproduction() -> None:
    stream = fold(
        deal("Prospecting")
        .quote(march(3, 10), version=1)
        .stage(march(4, 9), "Qualification")
        .quote(march(5, 10), version=2, requested=True)
    )
    assert verdicts(stream) == [(WASTE, WasteCategory.OVERPRODUCTION)] * 2
    assert stream.totals.waste.overproduction == minutes(75)
    assert stream.totals.rework == 0


# Rule 8: stage regressions


def test_a_stage_regression_counts_as_rework_but_adds_no_minutes() -> None:
    forward = fold(deal().stage(march(5, 9), "Proposal"))
    back = fold(deal().stage(march(5, 9), "Proposal").stage(march(7, 9), "Discovery"))
    assert (forward.totals.rework, back.totals.rework) == (0, 1)
    assert back.totals.waste == forward.totals.waste
    assert back.totals.wait == forward.totals.wait
    assert [visit.regression for visit in back.stage_history] == [False, False, True]
    assert back.for_stage("Discovery").rework == 1


def test_a_move_to_a_stage_the_policy_does_not_list_is_no_regression() -> None:
    stream = fold(deal().stage(march(5, 9), "Legal review").stage(march(7, 9), "Proposal"))
    assert stream.totals.rework == 0
    assert [stage.stage for stage in stream.stages] == ["Discovery", "Proposal", "Legal review"]
