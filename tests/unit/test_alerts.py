"""Stall alerts from the pure core: thresholds, the boundary, episodes opening and closing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.future import DEFAULT_FUTURE_SKEW
from events.models import CallOutcome, Event
from projections.categories import DealStatus
from projections.deal.alerts import (
    AlertKind,
    AlertLedger,
    ClosedDeal,
    EpisodeEnd,
    StallAlert,
    StallThresholds,
    ThresholdChoice,
    check_stalls,
    episode_id,
    live_watermark,
    stall_alert_quality,
)
from projections.deal.value_stream import DealValueStream, deal_value_stream
from projections.errors import ProjectionError
from projections.policy.model import Policy, default_policy
from projections.portfolio.aggregate import learned_stall_thresholds
from tests.support.deal_builders import DealScript, deal_events, march

DAY = timedelta(days=1)
TICK = timedelta(microseconds=1)
OPENED = march(2, 9)


def policy_with(**stall: object) -> Policy:
    base = default_policy()
    return base.model_copy(update={"stall": base.stall.model_copy(update=stall)})


def stream_of(
    events: list[Event], as_of: datetime | None = None, policy: Policy | None = None
) -> DealValueStream:
    return deal_value_stream(events, policy or default_policy(), as_of)


def thresholds(policy: Policy | None = None) -> StallThresholds:
    return StallThresholds(policy or default_policy())


def silent_deal() -> DealScript:
    return DealScript().opened(OPENED)


# The boundary -----------------------------------------------------------------------------


def test_a_deal_exactly_at_its_threshold_is_not_stalled_yet() -> None:
    check = check_stalls(stream_of(silent_deal().events, OPENED + 14 * DAY), "acct-1", thresholds())

    assert check.alerts == ()
    assert not check.stalled
    assert check.due_at == OPENED + 14 * DAY


def test_a_deal_one_instant_past_its_threshold_gets_one_stalled_alert_at_the_crossing() -> None:
    check = check_stalls(
        stream_of(silent_deal().events, OPENED + 14 * DAY + TICK), "acct-1", thresholds()
    )

    [alert] = check.alerts
    assert alert.kind is AlertKind.STALLED
    assert alert.stalled_at == alert.occurred_at == OPENED + 14 * DAY
    assert alert.silent_since == OPENED
    assert alert.threshold == 14 * DAY
    assert alert.threshold_basis.choice is ThresholdChoice.FIXED
    assert alert.time_stalled == timedelta(0)
    assert (alert.deal_id, alert.account_id, alert.owner_id) == ("deal-1", "acct-1", "rep-1")
    assert alert.stage == "Prospecting"
    assert alert.policy_version == default_policy().version
    assert check.stalled
    assert check.due_at is None


def test_the_clock_runs_from_the_last_value_added_touch_when_it_is_later_than_the_stage_entry() -> (
    None
):
    script = silent_deal().call(march(5, 10), 20)
    check = check_stalls(stream_of(script.events, march(19, 10)), "acct-1", thresholds())

    assert check.alerts == ()
    assert check.due_at == march(19, 10)


def test_a_failed_call_does_not_restart_the_clock() -> None:
    script = silent_deal().call(march(5, 10), 1, CallOutcome.NO_ANSWER)
    check = check_stalls(stream_of(script.events, march(5, 11)), "acct-1", thresholds())

    assert check.due_at == OPENED + 14 * DAY


# Episodes opening and closing ---------------------------------------------------------------


def test_a_value_added_touch_closes_the_episode_with_its_time_and_waste() -> None:
    script = silent_deal().call(march(20, 10), 3, CallOutcome.NO_ANSWER).call(march(22, 9), 20)
    first = check_stalls(stream_of(script.events, march(17, 0)), "acct-1", thresholds())
    later = check_stalls(
        stream_of(script.events, march(23, 0)), "acct-1", thresholds(), first.ledger
    )

    [ended] = later.alerts
    assert ended.kind is AlertKind.UNSTALLED
    assert ended.episode_id == first.alerts[0].episode_id
    assert ended.alert_id != first.alerts[0].alert_id
    assert ended.ended_by is EpisodeEnd.VALUE_ADDED_TOUCH
    assert ended.occurred_at == march(22, 9)
    assert ended.time_stalled == march(22, 9) - march(16, 9)
    assert ended.last_value_added_id == "deal-1-e003"
    assert ended.last_value_added_at == march(22, 9)
    assert ended.waste_while_stalled.process.chasing == timedelta(minutes=3)
    assert ended.waste_while_stalled.inventory == ended.time_stalled - timedelta(minutes=3)
    assert ended.waste_while_stalled.total == ended.time_stalled
    assert not later.stalled
    assert later.due_at == march(22, 9) + 14 * DAY


def test_an_episode_is_alerted_once_when_it_starts_and_once_when_it_ends() -> None:
    script = silent_deal()
    ledger = AlertLedger()
    seen: list[StallAlert] = []
    for day in (10, 17, 18, 25):
        check = check_stalls(
            stream_of(script.events, march(day, 0)), "acct-1", thresholds(), ledger
        )
        seen += check.alerts
        ledger = check.ledger
    script.call(march(26, 9), 20)
    for day in (27, 28):
        check = check_stalls(
            stream_of(script.events, march(day, 0)), "acct-1", thresholds(), ledger
        )
        seen += check.alerts
        ledger = check.ledger

    assert [alert.kind for alert in seen] == [AlertKind.STALLED, AlertKind.UNSTALLED]
    assert ledger.open == {}
    assert ledger.closed == (seen[0].episode_id,)


def test_an_episode_seen_whole_at_once_gives_both_alerts_in_order() -> None:
    script = silent_deal().call(march(20, 10), 20)
    check = check_stalls(stream_of(script.events, march(21, 0)), "acct-1", thresholds())

    assert [alert.kind for alert in check.alerts] == [AlertKind.STALLED, AlertKind.UNSTALLED]
    assert check.ledger.open == {}


def test_closing_the_deal_ends_the_episode_and_records_the_outcome() -> None:
    script = silent_deal().lost(march(20, 9))
    check = check_stalls(stream_of(script.events), "acct-1", thresholds())

    assert [alert.ended_by for alert in check.alerts] == [None, EpisodeEnd.DEAL_LOST]
    assert check.due_at is None
    assert check.outcome == ClosedDeal(
        deal_id="deal-1",
        status=DealStatus.LOST,
        lead_time=march(20, 9) - OPENED,
        stalls={"Prospecting": 1},
    )


def test_a_stage_change_ends_the_episode_and_restarts_the_clock() -> None:
    script = silent_deal().stage(march(18, 9), "Qualification")
    check = check_stalls(stream_of(script.events, march(19, 0)), "acct-1", thresholds())

    assert check.alerts[-1].ended_by is EpisodeEnd.STAGE_CHANGED
    assert check.due_at == march(18, 9) + 10 * DAY


def test_an_alerted_episode_that_late_events_disprove_is_withdrawn() -> None:
    stalled = check_stalls(stream_of(silent_deal().events, march(17, 0)), "acct-1", thresholds())
    late = silent_deal().call(march(10, 9), 20)  # arrived after the alert, happened before
    check = check_stalls(
        stream_of(late.events, march(17, 0)), "acct-1", thresholds(), stalled.ledger
    )

    [withdrawn] = check.alerts
    assert withdrawn.kind is AlertKind.UNSTALLED
    assert withdrawn.ended_by is EpisodeEnd.WITHDRAWN
    assert withdrawn.episode_id == stalled.alerts[0].episode_id
    assert check.ledger.open == {}


def test_a_stage_without_a_threshold_never_stalls() -> None:
    script = DealScript().opened(OPENED, stage="Legal review")
    check = check_stalls(stream_of(script.events, march(30, 0)), "acct-1", thresholds())

    assert check.alerts == ()
    assert check.due_at is None


def test_alert_ids_are_the_same_for_the_same_episode_and_differ_between_episodes() -> None:
    first = check_stalls(stream_of(silent_deal().events, march(17, 0)), "acct-1", thresholds())
    again = check_stalls(stream_of(silent_deal().events, march(20, 0)), "acct-1", thresholds())

    assert first.alerts == again.alerts
    assert episode_id("deal-1", "Prospecting", OPENED) == first.alerts[0].episode_id
    assert episode_id("deal-2", "Prospecting", OPENED) != first.alerts[0].episode_id
    assert episode_id("deal-1", "Prospecting", OPENED + TICK) != first.alerts[0].episode_id


def test_a_stream_folded_under_another_policy_is_refused() -> None:
    other = policy_with(learn_percentile=50)
    with pytest.raises(ProjectionError, match="same policy"):
        check_stalls(stream_of(silent_deal().events, march(3, 0)), "acct-1", thresholds(other))


# Thresholds ---------------------------------------------------------------------------------


def test_a_segment_override_wins_and_says_so() -> None:
    policy = policy_with(segments={"Enterprise": {"Prospecting": 30.0}})
    script = DealScript().opened(OPENED, segment="Enterprise")
    check = check_stalls(
        stream_of(script.events, march(2, 10), policy), "acct-1", thresholds(policy)
    )

    assert check.due_at == OPENED + 30 * DAY
    chosen = StallThresholds(policy).threshold("Prospecting", "Enterprise")
    assert chosen is not None
    assert chosen[1].choice is ThresholdChoice.SEGMENT
    assert chosen[1].describe() == "segment Enterprise"


def won_deals(count: int, days_in_prospecting: list[int], policy: Policy) -> list[DealValueStream]:
    streams = []
    for n in range(count):
        days = days_in_prospecting[n % len(days_in_prospecting)]
        script = DealScript(deal_id=f"won-{n}").opened(OPENED)
        script.stage(OPENED + days * DAY, "Qualification").won(OPENED + (days + 1) * DAY)
        streams.append(stream_of(script.events, policy=policy))
    return streams


LEARNING = policy_with(learn_from_history=True)


def test_learned_thresholds_with_too_little_history_fall_back_to_the_fixed_ones() -> None:
    learned = StallThresholds.from_history(LEARNING, won_deals(29, [3], LEARNING))

    assert learned.learned == {}
    chosen = learned.threshold("Prospecting", None)
    assert chosen is not None
    assert chosen[0] == 14 * DAY
    assert chosen[1].choice is ThresholdChoice.FIXED


def test_thirty_won_deals_teach_the_eightieth_percentile_of_time_in_stage() -> None:
    history = won_deals(30, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], LEARNING)
    learned = StallThresholds.from_history(LEARNING, history)

    chosen = learned.threshold("Prospecting", None)
    assert chosen is not None
    threshold, basis = chosen
    assert threshold == 8 * DAY
    assert basis.choice is ThresholdChoice.LEARNED
    assert basis.won_deals == 30
    assert basis.describe() == "learned from 30 won deals"
    assert learned.learned == learned_stall_thresholds(LEARNING, history)
    fallback = learned.threshold("Discovery", None)
    assert fallback is not None
    assert fallback[1].choice is ThresholdChoice.FIXED


def test_a_policy_that_does_not_learn_ignores_history() -> None:
    history = won_deals(40, [2], default_policy())

    assert StallThresholds.from_history(default_policy(), history).learned == {}


def test_learned_thresholds_decide_when_a_deal_stalls() -> None:
    learned = StallThresholds.from_history(LEARNING, won_deals(30, [2], LEARNING))
    script = silent_deal()
    check = check_stalls(stream_of(script.events, march(5, 0), LEARNING), "acct-1", learned)

    [alert] = check.alerts
    assert alert.stalled_at == OPENED + 2 * DAY
    assert alert.threshold_basis.won_deals == 30


# Alert quality ------------------------------------------------------------------------------


def test_precision_per_stage_counts_the_alerts_whose_deal_was_lost_or_slipped() -> None:
    quick = [
        ClosedDeal(deal_id=f"w{n}", status=DealStatus.WON, lead_time=10 * DAY) for n in range(8)
    ]
    deals = [
        *quick,
        ClosedDeal(deal_id="ok", status=DealStatus.WON, lead_time=10 * DAY, stalls={"Proposal": 1}),
        ClosedDeal(
            deal_id="slow", status=DealStatus.WON, lead_time=90 * DAY, stalls={"Proposal": 2}
        ),
        ClosedDeal(
            deal_id="gone",
            status=DealStatus.LOST,
            lead_time=20 * DAY,
            stalls={"Proposal": 1, "Prospecting": 1},
        ),
    ]

    report = {quality.stage: quality for quality in stall_alert_quality(deals, default_policy())}

    assert list(report) == ["Prospecting", "Proposal"]
    assert (report["Proposal"].alerts, report["Proposal"].lost, report["Proposal"].slipped) == (
        4,
        1,
        2,
    )
    assert report["Proposal"].precision == 0.75
    assert report["Prospecting"].precision == 1.0


def test_quality_without_closed_deals_is_empty() -> None:
    assert stall_alert_quality([], default_policy()) == ()


# The clock silence is measured to ---------------------------------------------------------

JUNE_1 = datetime(2026, 6, 1, 9, tzinfo=UTC)
DECEMBER_4 = datetime(2026, 12, 4, 16, tzinfo=UTC)


def test_in_live_operation_a_deal_silent_since_june_is_stalled_in_december() -> None:
    events = DealScript().opened(JUNE_1).events
    now = live_watermark(DECEMBER_4, stream_of(events).as_of, DEFAULT_FUTURE_SKEW)
    check = check_stalls(stream_of(events, now), "acct-1", thresholds())

    assert now == DECEMBER_4
    assert check.stalled
    [alert] = check.alerts
    assert (alert.kind, alert.stalled_at) == (AlertKind.STALLED, JUNE_1 + 14 * DAY)


def test_in_a_replay_the_same_deal_is_judged_at_its_latest_event_and_is_not_stalled() -> None:
    check = check_stalls(stream_of(DealScript().opened(JUNE_1).events), "acct-1", thresholds())

    assert not check.stalled
    assert check.alerts == ()
    assert check.due_at == JUNE_1 + 14 * DAY


def test_the_live_clock_follows_an_event_dated_ahead_of_the_wall_clock_up_to_the_skew() -> None:
    skew = timedelta(hours=2)
    assert live_watermark(DECEMBER_4, DECEMBER_4 + timedelta(hours=1), skew) == (
        DECEMBER_4 + timedelta(hours=1)
    )
    assert live_watermark(DECEMBER_4, DECEMBER_4 + 3 * DAY, skew) == DECEMBER_4 + skew
    assert live_watermark(DECEMBER_4, DECEMBER_4 + 3 * DAY, None) == DECEMBER_4 + 3 * DAY
    assert live_watermark(DECEMBER_4, None, skew) == DECEMBER_4


MOMENTS = st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))


@given(
    MOMENTS,
    st.none() | MOMENTS,
    st.none() | st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
)
def test_the_live_clock_is_never_behind_the_wall_clock_nor_past_the_skew_nor_behind_an_event(
    wall: datetime, latest: datetime | None, skew: timedelta | None
) -> None:
    now = live_watermark(wall, latest, skew)
    assert now >= wall
    if skew is not None:
        assert now <= wall + skew
    if latest is not None and (skew is None or latest <= wall + skew):
        assert now >= latest


# Properties ---------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(deal_events(), st.integers(min_value=1, max_value=40 * 86_400))
def test_no_later_look_finds_a_crossing_before_the_due_time(
    events: list[Event], seconds_later: int
) -> None:
    policy = default_policy()
    stream = deal_value_stream(events, policy)
    first = check_stalls(stream, "acct", thresholds())
    later_stream = deal_value_stream(
        events, policy, stream.as_of + timedelta(seconds=seconds_later)
    )
    later = check_stalls(later_stream, "acct", thresholds(), first.ledger)

    starts = [a.stalled_at for a in later.alerts if a.kind is AlertKind.STALLED]
    if first.due_at is not None:
        assert all(start >= first.due_at for start in starts)
    elif not first.stalled:
        assert starts == []


@settings(max_examples=100, deadline=None)
@given(deal_events(), st.integers(min_value=0, max_value=60 * 86_400))
def test_checking_twice_alerts_nothing_new(events: list[Event], seconds_later: int) -> None:
    policy = default_policy()
    stream = deal_value_stream(events, policy)
    at = deal_value_stream(events, policy, stream.as_of + timedelta(seconds=seconds_later))
    first = check_stalls(at, "acct", thresholds())
    again = check_stalls(at, "acct", thresholds(), first.ledger)

    assert again.alerts == ()
    assert again.ledger == first.ledger
    opened = {a.episode_id for a in first.alerts if a.kind is AlertKind.STALLED}
    ended = {a.episode_id for a in first.alerts if a.kind is AlertKind.UNSTALLED}
    assert ended <= opened
    assert set(first.ledger.open) == opened - ended
