"""The simulator: deterministic, valid events, and the planted patterns found in them."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from events.codec import decode, encode
from events.models import (
    CallLogged,
    CallOutcome,
    CampaignResponded,
    DealLost,
    DealOpened,
    DealWon,
    Direction,
    EmailLogged,
    Event,
    MeetingKind,
    MeetingLogged,
    MeetingOutcome,
    QuoteSent,
    StageChanged,
)
from streams.simulator import GroundTruth, SimulationConfig, ground_truth, history_lines
from streams.simulator.groundtruth import EARLY_DISCOVERY_DAYS, STAGES, STALL_THRESHOLD_DAYS

SMALL = SimulationConfig(seed=11, accounts=160, reps=6, campaigns=6, deals=600, months=6)


@dataclass(frozen=True)
class Deal:
    """One deal's events, in order, and what they say about it."""

    events: Sequence[Event]

    @property
    def opened(self) -> DealOpened:
        first = self.events[0]
        assert isinstance(first, DealOpened)
        return first

    @property
    def result(self) -> DealWon | DealLost | None:
        last = self.events[-1]
        return last if isinstance(last, DealWon | DealLost) else None

    def stage_at_end(self) -> tuple[str, datetime]:
        stage, entered = "Prospecting", self.opened.occurred_at
        for event in self.events:
            if isinstance(event, StageChanged):
                stage, entered = event.to_stage, event.occurred_at
        return stage, entered


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return list(history_lines(SMALL))


@pytest.fixture(scope="module")
def events(lines: list[bytes]) -> list[Event]:
    return [decode(line) for line in lines]


@pytest.fixture(scope="module")
def deals(events: list[Event]) -> dict[str, Deal]:
    by_deal: defaultdict[str, list[Event]] = defaultdict(list)
    for event in events:
        if event.deal_id is not None:
            by_deal[event.deal_id].append(event)
    return {deal_id: Deal(found) for deal_id, found in by_deal.items()}


@pytest.fixture(scope="module")
def truth() -> GroundTruth:
    return ground_truth(SMALL)


def _is_regression(event: Event) -> bool:
    return (
        isinstance(event, StageChanged)
        and event.from_stage is not None
        and STAGES.index(event.to_stage) < STAGES.index(event.from_stage)
    )


def _value_added_moments(deal: Deal, *, strict: bool) -> list[datetime]:
    """When value-added touches started, by the default policy's rules.

    Strict leaves out what a policy might not count (inbound calls, quotes sent
    before Proposal); not strict counts every touch that could be value-added.
    """
    moments, stage, held_discoveries = [], "Prospecting", 0
    for event in deal.events:
        match event:
            case StageChanged():
                stage = event.to_stage
            case CallLogged(outcome=CallOutcome.CONNECTED):
                if not strict or event.direction is Direction.OUTBOUND:
                    moments.append(event.occurred_at)
            case MeetingLogged(outcome=MeetingOutcome.HELD) if event.kind != MeetingKind.INTERNAL:
                held_discoveries += event.kind == MeetingKind.DISCOVERY
                repeated = event.kind == MeetingKind.DISCOVERY and held_discoveries > 1
                if not (strict and repeated):
                    moments.append(event.started_at)
            case EmailLogged(replies_to_customer=True):
                moments.append(event.occurred_at)
            case QuoteSent() if event.version == 1 or event.requested_by_customer:
                if not (strict and stage in {"Prospecting", "Qualification"}):
                    moments.append(event.occurred_at)
    return moments


def _stalled_at_end(deal: Deal, end: datetime, *, strict: bool) -> bool:
    stage, entered = deal.stage_at_end()
    clock_starts = max([entered, *_value_added_moments(deal, strict=strict)])
    return end - clock_starts > timedelta(days=STALL_THRESHOLD_DAYS[stage])


# Determinism and validity


def test_the_same_seed_gives_byte_identical_history(lines: list[bytes]) -> None:
    assert list(history_lines(SMALL)) == lines


def test_different_seeds_give_different_histories(lines: list[bytes]) -> None:
    other = SimulationConfig(seed=12, accounts=160, reps=6, campaigns=6, deals=600, months=6)
    assert list(history_lines(other))[:100] != lines[:100]


def test_every_line_decodes_and_is_already_in_the_codecs_canonical_form(
    lines: list[bytes], events: list[Event]
) -> None:
    assert [encode(event) for event in events] == lines


def test_events_are_ordered_by_time_then_event_id_and_ids_are_unique(events: list[Event]) -> None:
    keys = [(event.occurred_at, event.event_id) for event in events]
    assert keys == sorted(keys)
    assert len({event.event_id for event in events}) == len(events)
    assert all(event.event_id.startswith(f"sim-{SMALL.seed}-") for event in events)


def test_history_lies_between_its_start_and_end(events: list[Event]) -> None:
    assert SMALL.start <= events[0].occurred_at
    assert events[-1].occurred_at < SMALL.end
    assert all(event.occurred_at.utcoffset() == timedelta(0) for event in events)


def test_every_deal_opens_first_and_nothing_follows_its_close(deals: dict[str, Deal]) -> None:
    assert len(deals) == SMALL.deals
    for deal in deals.values():
        assert isinstance(deal.events[0], DealOpened)
        assert not any(isinstance(e, DealWon | DealLost) for e in deal.events[:-1])


def test_deal_events_carry_account_rep_and_contact_where_a_customer_is_involved(
    deals: dict[str, Deal],
) -> None:
    for deal in deals.values():
        owner = deal.opened.owner_id
        for event in deal.events:
            assert event.account_id == deal.opened.account_id
            assert event.actor_id == owner
            internal = isinstance(event, MeetingLogged) and event.kind is MeetingKind.INTERNAL
            with_customer = CallLogged | EmailLogged | MeetingLogged | QuoteSent | DealOpened
            assert (event.contact_id is not None) == (
                isinstance(event, with_customer) and not internal
            )


# Real shape


def test_touches_of_every_kind_and_outcome_appear(events: list[Event]) -> None:
    calls = Counter((e.direction, e.outcome) for e in events if isinstance(e, CallLogged))
    meetings = Counter((e.kind, e.outcome) for e in events if isinstance(e, MeetingLogged))
    assert {outcome for _, outcome in calls} == set(CallOutcome)
    assert {outcome for (direction, outcome) in calls if direction is Direction.INBOUND} == {
        CallOutcome.CONNECTED
    }
    assert {kind for kind, _ in meetings} == set(MeetingKind)
    assert {outcome for _, outcome in meetings} == set(MeetingOutcome)
    quotes = [e for e in events if isinstance(e, QuoteSent)]
    assert any(q.requested_by_customer for q in quotes)
    assert any(q.version > 1 and not q.requested_by_customer for q in quotes)


def test_a_reply_to_the_customer_always_follows_an_inbound_email(deals: dict[str, Deal]) -> None:
    replies = 0
    for deal in deals.values():
        waiting = False
        for event in deal.events:
            if isinstance(event, EmailLogged) and event.direction is Direction.INBOUND:
                waiting = True
            elif isinstance(event, EmailLogged) and event.replies_to_customer:
                assert waiting
                replies += 1
    assert replies > SMALL.deals


def test_deals_are_won_lost_or_still_open_with_amounts_by_segment(deals: dict[str, Deal]) -> None:
    results = Counter(type(deal.result).__name__ for deal in deals.values())
    assert results["DealWon"] > 0.1 * SMALL.deals
    assert results["DealLost"] > 0.3 * SMALL.deals
    assert results["NoneType"] > 0.05 * SMALL.deals
    won: defaultdict[str, list[Decimal]] = defaultdict(list)
    for deal in deals.values():
        if isinstance(deal.result, DealWon):
            won[str(deal.opened.segment)].append(deal.result.amount)
    median = {segment: sorted(amounts)[len(amounts) // 2] for segment, amounts in won.items()}
    assert median["SMB"] < median["Mid-Market"] < median["Enterprise"]
    assert all(deal.result.reason for deal in deals.values() if isinstance(deal.result, DealLost))


def test_lead_times_are_heavy_tailed_and_some_deals_regress(deals: dict[str, Deal]) -> None:
    lead_days = sorted(
        (deal.result.occurred_at - deal.opened.occurred_at).days
        for deal in deals.values()
        if deal.result is not None
    )
    median = lead_days[len(lead_days) // 2]
    assert sum(lead_days) / len(lead_days) > median
    assert lead_days[-1] > 4 * median
    assert sum(any(map(_is_regression, deal.events)) for deal in deals.values()) > 20


def test_campaign_responses_come_before_and_during_deals(
    events: list[Event], deals: dict[str, Deal]
) -> None:
    responses = [e for e in events if isinstance(e, CampaignResponded)]
    assert {r.campaign_id for r in responses} == {f"camp-{n:02d}" for n in range(1, 7)}
    assert all(r.deal_id is None and r.actor_id is None for r in responses)
    opened_at = defaultdict(list)
    for deal in deals.values():
        opened_at[deal.opened.account_id].append(deal.opened.occurred_at)
    before = during = 0
    for response in responses:
        for moment in opened_at[response.account_id]:
            ahead = moment - response.occurred_at
            before += timedelta(0) < ahead <= timedelta(days=90)
            during += ahead <= timedelta(0)
    assert before > 200
    assert during > 200


# The planted patterns, measured from the events


def test_deals_with_an_early_held_discovery_meeting_win_clearly_more_often(
    deals: dict[str, Deal], truth: GroundTruth
) -> None:
    outcomes: dict[bool, Counter[bool]] = {True: Counter(), False: Counter()}
    for deal in deals.values():
        if deal.result is None:
            continue
        early = any(
            isinstance(e, MeetingLogged)
            and e.kind is MeetingKind.DISCOVERY
            and e.outcome is MeetingOutcome.HELD
            and e.started_at - deal.opened.occurred_at <= timedelta(days=EARLY_DISCOVERY_DAYS)
            for e in deal.events
        )
        outcomes[early][isinstance(deal.result, DealWon)] += 1
    early_rate, late_rate = (c[True] / (c[True] + c[False]) for c in outcomes.values())
    assert early_rate == pytest.approx(truth.early_discovery_win_rate, abs=0.08)
    assert late_rate == pytest.approx(truth.late_discovery_win_rate, abs=0.06)
    assert early_rate - late_rate > 0.15


def test_one_reps_rework_per_deal_is_about_double_the_others(
    deals: dict[str, Deal], truth: GroundTruth
) -> None:
    rework: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    for deal in deals.values():
        unasked = sum(
            isinstance(e, QuoteSent) and e.version > 1 and not e.requested_by_customer
            for e in deal.events
        )
        tally = rework[deal.opened.owner_id]
        tally[0] += unasked + sum(map(_is_regression, deal.events))
        tally[1] += 1
    heavy, heavy_deals = rework.pop(truth.rework_rep_id)
    others = sum(r for r, _ in rework.values()) / sum(n for _, n in rework.values())
    assert heavy / heavy_deals / others == pytest.approx(truth.rework_factor, abs=0.6)
    assert all(r / n < heavy / heavy_deals for r, n in rework.values())


def test_one_campaign_costs_more_than_all_revenue_won_at_the_accounts_it_reached(
    events: list[Event], deals: dict[str, Deal], truth: GroundTruth
) -> None:
    won_at: Counter[str] = Counter()
    for deal in deals.values():
        if isinstance(deal.result, DealWon):
            won_at[deal.opened.account_id] += int(deal.result.amount)
    reached: defaultdict[str, set[str]] = defaultdict(set)
    responses: Counter[str] = Counter()
    for event in events:
        if isinstance(event, CampaignResponded):
            reached[event.campaign_id].add(event.account_id)
            responses[event.campaign_id] += 1
    revenue = {c: sum(won_at[a] for a in accounts) for c, accounts in reached.items()}
    weak, strong = truth.negative_roi_campaign_id, truth.strong_campaign_id
    assert truth.campaign_costs[weak] > revenue[weak] > 0
    assert all(truth.campaign_costs[c] < revenue[c] for c in revenue if c != weak)
    assert responses[weak] == max(responses.values())
    assert responses[strong] < responses[weak] / 2
    assert revenue[strong] / responses[strong] > 10 * revenue[weak] / responses[weak]


def test_the_silent_deals_are_open_and_stalled_at_the_end_of_history(
    deals: dict[str, Deal], truth: GroundTruth
) -> None:
    assert len(truth.silent_deal_ids) >= 5
    for deal_id in truth.silent_deal_ids:
        deal = deals[deal_id]
        assert deal.result is None
        assert _stalled_at_end(deal, SMALL.end, strict=False)


def test_no_other_open_deal_is_stalled_at_the_end_of_history(
    deals: dict[str, Deal], truth: GroundTruth
) -> None:
    open_deals = {deal_id for deal_id, deal in deals.items() if deal.result is None}
    stalled = {d for d in open_deals if _stalled_at_end(deals[d], SMALL.end, strict=True)}
    assert stalled == truth.silent_deal_ids


def test_ground_truth_names_the_reps_by_their_habits(truth: GroundTruth) -> None:
    assert (truth.early_booking_rep_id, truth.rework_rep_id, truth.chasing_rep_id) == (
        "rep-01",
        "rep-02",
        "rep-03",
    )
    assert set(truth.campaign_costs) == set(truth.campaign_names)
    assert truth.history_end == SMALL.end
