"""Campaign-to-revenue: linking responses to deals, and splitting won revenue over campaigns."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.models import CampaignResponded, ResponseKind
from projections.campaigns.attribution import (
    DATA_DRIVEN,
    AttributionModel,
    Milestones,
    credit,
    fit_markov,
    fit_shapley,
    milestones,
    split_cents,
)
from projections.campaigns.flow import FlowLayer, FlowLink, FlowNode, campaign_flow
from projections.campaigns.journeys import (
    DealFacts,
    Journey,
    deal_facts_from_events,
    link_responses,
)
from projections.campaigns.report import campaign_table, compare_models, credits_by_deal
from projections.campaigns.shapley import ShapleyModel
from projections.categories import DealStatus
from projections.deal.totals import Totals, Waste
from projections.errors import AttributionError, TooManyCampaigns
from projections.policy.model import default_policy
from tests.support.deal_builders import DealScript

M = AttributionModel
OPEN_DAY = datetime(2026, 3, 1, 9, tzinfo=UTC)
CLOSE_DAY = OPEN_DAY + timedelta(days=30)
LOOKBACK = timedelta(days=90)
examples = settings(max_examples=120, deadline=None)


def day(offset: float) -> datetime:
    """A moment `offset` days after the deal opens (negative: before it)."""
    return OPEN_DAY + timedelta(days=offset)


def response(
    event_id: str, campaign: str, at: datetime, account: str = "acct-1"
) -> CampaignResponded:
    return CampaignResponded(
        event_id=event_id,
        occurred_at=at,
        account_id=account,
        campaign_id=campaign,
        kind=ResponseKind.WEBINAR,
    )


def won(
    revenue: str = "1000.00",
    closed: datetime = CLOSE_DAY,
    qualified: datetime | None = None,
    deal_id: str = "deal-1",
    account: str = "acct-1",
) -> DealFacts:
    return DealFacts(
        deal_id=deal_id,
        account_id=account,
        opened_at=OPEN_DAY,
        status=DealStatus.WON,
        closed_at=closed,
        qualified_at=qualified,
        amount=Decimal(revenue),
        revenue=Decimal(revenue),
    )


def lost(deal_id: str, closed: datetime = CLOSE_DAY, account: str = "acct-1") -> DealFacts:
    return DealFacts(
        deal_id=deal_id,
        account_id=account,
        opened_at=OPEN_DAY,
        status=DealStatus.LOST,
        closed_at=closed,
        amount=Decimal("500.00"),
    )


def open_deal(deal_id: str, account: str = "acct-1", amount: str = "700.00") -> DealFacts:
    return DealFacts(
        deal_id=deal_id, account_id=account, opened_at=OPEN_DAY, amount=Decimal(amount)
    )


def journey(deal: DealFacts, *touches: tuple[str, float]) -> Journey:
    """A deal's journey: (campaign, day) touches, given event ids r01, r02, ... in order."""
    return Journey(
        deal,
        tuple(
            response(f"{deal.deal_id}-r{number:02d}", campaign, day(at), deal.account_id)
            for number, (campaign, at) in enumerate(touches, 1)
        ),
    )


def money(**amounts: str) -> dict[str, Decimal]:
    return {campaign: Decimal(amount) for campaign, amount in amounts.items()}


# Three touches: A 10 days before the open, B 2 days before it (the lead-creation touch:
# the last one at or before the open), C 5 days after it; never qualified, so the
# opportunity-creation touch is B as well; C is the closed-won touch. Revenue 1000.00.
ABC = journey(won(), ("A", -10), ("B", -2), ("C", 5))


def test_the_milestones_of_a_journey_are_found_by_time() -> None:
    assert milestones(ABC) == Milestones(
        first=0, lead_creation=1, opportunity_creation=1, closed_won=2
    )
    qualified = journey(won(qualified=day(5)), ("A", -10), ("B", -2), ("C", 5), ("D", 9))
    assert milestones(qualified).opportunity_creation == 2  # C, at the qualification itself


def test_lead_creation_falls_back_to_the_first_touch_when_none_came_before_the_open() -> None:
    late = journey(won(), ("A", 3), ("B", 4))
    assert milestones(late) == Milestones(0, 0, 0, 1)


def test_first_and_last_touch_give_everything_to_one_campaign() -> None:
    assert credit(ABC, M.FIRST_TOUCH) == money(A="1000.00", B="0.00", C="0.00")
    assert credit(ABC, "last_touch") == money(A="0.00", B="0.00", C="1000.00")


def test_linear_splits_cents_by_largest_remainder_earlier_touch_first() -> None:
    # 100000 cents / 3 = 33333 1/3 each: 99999 handed out, the one cent left goes to the
    # largest remainder; all three tie at 1/3, so to the earliest response, A's.
    assert credit(ABC, M.LINEAR) == money(A="333.34", B="333.33", C="333.33")
    small = journey(won("100.00"), ("A", -10), ("B", -2), ("C", 5))
    assert credit(small, M.LINEAR) == money(A="33.34", B="33.33", C="33.33")


def test_a_tie_at_the_same_moment_goes_to_the_lower_event_id() -> None:
    # One cent over two responses at the same instant: r-a (campaign Y) sorts before r-b.
    deal = won("0.01")
    same = Journey(deal, (response("r-b", "X", day(1)), response("r-a", "Y", day(1))))
    assert credit(same, M.LINEAR) == money(Y="0.01", X="0.00")


def test_a_campaign_responded_to_twice_gets_both_shares() -> None:
    # A, B, A linear: A 2/3 of 1000.00 = 666.666.. -> 666.67 (largest remainder), B 333.33.
    assert credit(journey(won(), ("A", -10), ("B", -2), ("A", 5)), M.LINEAR) == money(
        A="666.67", B="333.33"
    )


def test_u_shaped_gives_forty_forty_and_twenty_over_the_rest() -> None:
    # A first 40% = 400.00, B lead creation 40% = 400.00, C the only other touch 20% = 200.00.
    assert credit(ABC, M.U_SHAPED) == money(A="400.00", B="400.00", C="200.00")
    # Five touches, lead creation at B: C, D, E share the 20%: 66.666.. each; 20000 cents / 3
    # = 6666 2/3 each: floors leave 2 cents, and the three equal remainders are a tie, so
    # they go to C and D, the earliest responses.
    five = journey(won(), ("A", -20), ("B", -2), ("C", 5), ("D", 12), ("E", 20))
    assert credit(five, M.U_SHAPED) == money(
        A="400.00", B="400.00", C="66.67", D="66.67", E="66.66"
    )


def test_w_shaped_adds_up_the_shares_of_milestones_on_the_same_touch() -> None:
    # Never qualified: opportunity creation = lead creation = B, so B gets 30% + 30% = 600.00;
    # A first touch 30% = 300.00; C the only other touch 10% = 100.00.
    assert credit(ABC, M.W_SHAPED) == money(A="300.00", B="600.00", C="100.00")


def test_w_shaped_spreads_ten_percent_over_the_touches_that_are_no_milestone() -> None:
    # Qualified on day 10: opportunity creation = C (day 5, the last touch by then).
    # A 30%, B 30%, C 30%; D and E share 10%: 50.00 each.
    five = journey(won(qualified=day(10)), ("A", -20), ("B", -2), ("C", 5), ("D", 12), ("E", 20))
    assert credit(five, M.W_SHAPED) == money(
        A="300.00", B="300.00", C="300.00", D="50.00", E="50.00"
    )


def test_full_path_rewards_four_milestones_and_the_rest() -> None:
    # A first, B lead, C opportunity, E closed-won: 22.5% each = 225.00; D the rest 10% = 100.00.
    five = journey(won(qualified=day(10)), ("A", -20), ("B", -2), ("C", 5), ("D", 12), ("E", 20))
    assert credit(five, M.FULL_PATH) == money(
        A="225.00", B="225.00", C="225.00", D="100.00", E="225.00"
    )


def test_without_other_touches_the_rest_goes_to_the_milestones_in_proportion() -> None:
    # ABC under full path: A first 22.5%, B lead + opportunity 45%, C closed-won 22.5%; no
    # other touch, so the 10% rest is shared 1:2:1 -> A 25%, B 50%, C 25%.
    assert credit(ABC, M.FULL_PATH) == money(A="250.00", B="500.00", C="250.00")
    # Two touches under U-shaped: first A 40%, lead creation B 40%, no rest -> 50% each.
    assert credit(journey(won(), ("A", -3), ("B", -1)), M.U_SHAPED) == money(A="500.00", B="500.00")


def test_time_decay_halves_the_weight_every_half_life_before_the_close() -> None:
    # Closed on day 30; touches 14, 7 and 0 days before it: weights 2^-2, 2^-1, 2^0 =
    # 1/4, 1/2, 1 -> 1/7, 2/7, 4/7 of 100000 cents = 14285.71, 28571.43, 57142.86.
    # Floors 14285 + 28571 + 57142 = 99998; the 2 cents left go to the largest
    # remainders .86 (C) and .71 (A).
    decaying = journey(won(), ("A", 16), ("B", 23), ("C", 30))
    assert credit(decaying, M.TIME_DECAY) == money(A="142.86", B="285.71", C="571.43")
    # The same weights with a 14-day half-life and touches 28 and 14 days before the close.
    slower = journey(won(), ("A", 2), ("B", 16), ("C", 30))
    assert credit(slower, M.TIME_DECAY, half_life=timedelta(days=14)) == money(
        A="142.86", B="285.71", C="571.43"
    )


def test_one_response_gets_all_the_revenue_under_every_model() -> None:
    single = journey(won("1234.56"), ("A", 3))
    markov, shapley = fit_markov([single]), fit_shapley([single])
    for model in M:
        assert credit(single, model, markov=markov, shapley=shapley) == money(A="1234.56")


def test_deals_not_won_and_won_deals_without_responses_get_no_credit() -> None:
    assert credit(journey(lost("deal-2"), ("A", 1)), M.LINEAR) == {}
    assert credit(journey(open_deal("deal-3"), ("A", 1)), M.LINEAR) == {}
    assert credit(Journey(won()), M.LINEAR) == {}  # unattributed revenue


def test_the_data_driven_models_need_to_be_fitted_first() -> None:
    with pytest.raises(AttributionError, match="fit_markov"):
        credit(ABC, M.MARKOV)
    with pytest.raises(AttributionError, match="fit_shapley"):
        credit(ABC, M.SHAPLEY)


def test_an_unknown_model_name_is_refused_with_the_known_names() -> None:
    with pytest.raises(AttributionError, match=r"unknown attribution model 'lineal'.*linear"):
        credit(ABC, "lineal")


def test_split_cents_refuses_fractions_of_a_cent_and_no_weight() -> None:
    with pytest.raises(AttributionError, match="whole number of cents"):
        split_cents(Decimal("1.005"), [("A", Fraction(1))])
    with pytest.raises(AttributionError, match="all be zero"):
        split_cents(Decimal("1.00"), [("A", Fraction(0))])


# Markov


def test_markov_removal_effects_on_three_journeys_computed_by_hand() -> None:
    # Paths: A > B > won, A > lost, B > won.
    # Moves: start > A 2/3, start > B 1/3; A > B 1/2, A > null 1/2; B > conversion 1.
    # P(conversion) = 2/3 * 1/2 * 1 + 1/3 * 1 = 2/3.
    # Without A (moves into A go to null): only start > B > conversion = 1/3;
    #   RE_A = 1 - (1/3) / (2/3) = 1/2.
    # Without B: every conversion passes through B: 0; RE_B = 1 - 0 = 1.
    journeys = [
        journey(won(deal_id="d1"), ("A", 1), ("B", 2)),
        journey(lost("d2"), ("A", 1)),
        journey(won(deal_id="d3"), ("B", 1)),
    ]
    model = fit_markov(journeys)
    assert model.conversion_probability == Fraction(2, 3)
    assert model.removal_effects == {"A": Fraction(1, 2), "B": Fraction(1)}
    # d1 splits 1000.00 as 1/2 : 1 -> A 1/3 = 333.33, B 2/3 = 666.67.
    assert credit(journeys[0], M.MARKOV, markov=model) == money(A="333.33", B="666.67")
    assert credit(journeys[2], M.MARKOV, markov=model) == money(B="1000.00")


def test_markov_handles_journeys_that_come_back_to_a_campaign() -> None:
    # Paths: A > B > A > won (A, A in a row would count once), B > lost.
    # Moves: start > A 1/2, start > B 1/2; A > B 1/2, A > conversion 1/2;
    #        B > A 1/2, B > null 1/2.
    # Conversion from A: x_A = 1/2 + 1/2 x_B, from B: x_B = 1/2 x_A -> x_A = 2/3, x_B = 1/3.
    # P(conversion) = 1/2 * 2/3 + 1/2 * 1/3 = 1/2.
    # Without A: nothing converts: RE_A = 1. Without B: x_A = 1/2, P = 1/2 * 1/2 = 1/4,
    #   RE_B = 1 - (1/4) / (1/2) = 1/2.
    journeys = [
        journey(won("900.00", deal_id="d1"), ("A", 1), ("B", 2), ("A", 3), ("A", 4)),
        journey(lost("d2"), ("B", 1)),
    ]
    assert journeys[0].path == ("A", "B", "A")
    model = fit_markov(journeys)
    assert model.conversion_probability == Fraction(1, 2)
    assert model.removal_effects == {"A": Fraction(1), "B": Fraction(1, 2)}
    # 900.00 split 1 : 1/2 -> A 600.00, B 300.00.
    assert credit(journeys[0], M.MARKOV, markov=model) == money(A="600.00", B="300.00")


def test_markov_leaves_out_open_deals_and_falls_back_to_linear_without_effects() -> None:
    only_open = [journey(open_deal("d1"), ("A", 1))]
    assert fit_markov(only_open).removal_effects == {}
    unseen = journey(won(), ("A", 1), ("B", 2))
    assert credit(unseen, M.MARKOV, markov=fit_markov(only_open)) == money(A="500.00", B="500.00")


# Shapley


def test_shapley_values_on_a_small_game_computed_by_hand() -> None:
    # Won journeys by set: {A}, {A, B}, {B, C}, {A, B, C}; one lost {C} (it counts for no v).
    # In the game over {A, B, C}: v({}) = 0, v(A) = 1, v(B) = 0, v(C) = 0, v(AB) = 2,
    # v(AC) = 1, v(BC) = 1, v(ABC) = 4. Shapley value of A, over the orders of joining:
    #   alone 1/3 * (v(A) - 0) = 1/3; after B 1/6 * (v(AB) - v(B)) = 2/6;
    #   after C 1/6 * (v(AC) - v(C)) = 1/6; last 1/3 * (v(ABC) - v(BC)) = 3/3
    #   -> 1/3 + 1/3 + 1/6 + 1 = 11/6.
    # Likewise B: 0 + 1/6 * 1 + 1/6 * 1 + 1/3 * 3 = 4/3; C: 0 + 0 + 1/6 * 1 + 1/3 * 2 = 5/6.
    # They add up to v(ABC) = 4. Revenue 1200.00 -> 11/24, 8/24, 5/24 = 550, 400, 250.
    journeys = [
        journey(won(deal_id="d1"), ("A", 1)),
        journey(won(deal_id="d2"), ("A", 1), ("B", 2)),
        journey(won(deal_id="d3"), ("C", 1), ("B", 2)),
        journey(won("1200.00", deal_id="d4"), ("A", 1), ("C", 2), ("B", 3), ("A", 4)),
        journey(lost("d5"), ("C", 1)),
    ]
    model = fit_shapley(journeys)
    assert model.worth({"A", "B"}) == 2
    assert model.weights(["A", "B", "C"]) == {
        "A": Fraction(11, 6),
        "B": Fraction(4, 3),
        "C": Fraction(5, 6),
    }
    assert credit(journeys[3], M.SHAPLEY, shapley=model) == money(
        A="550.00", C="250.00", B="400.00"
    )
    # In the game over {A, B}: A = 1/2 (1 - 0) + 1/2 (2 - 0) = 3/2, B = 1/2 * 0 + 1/2 * 1 = 1/2.
    assert credit(journeys[1], M.SHAPLEY, shapley=model) == money(A="750.00", B="250.00")


def test_shapley_refuses_a_journey_with_more_than_sixteen_campaigns() -> None:
    many = journey(won(), *((f"c{number}", number / 10) for number in range(17)))
    with pytest.raises(TooManyCampaigns, match="17 distinct campaigns"):
        credit(many, M.SHAPLEY, shapley=fit_shapley([many]))


def test_shapley_falls_back_to_linear_when_no_coalition_has_a_win() -> None:
    assert credit(ABC, M.SHAPLEY, shapley=ShapleyModel()) == credit(ABC, M.LINEAR)


# Linking


def test_a_response_exactly_the_lookback_before_the_open_counts_one_second_earlier_does_not() -> (
    None
):
    edge = response("r-edge", "A", OPEN_DAY - LOOKBACK)
    early = response("r-early", "B", OPEN_DAY - LOOKBACK - timedelta(seconds=1))
    [linked] = link_responses([won()], [edge, early], LOOKBACK)
    assert linked.responses == (edge,)


def test_responses_after_the_close_or_of_another_account_are_not_linked() -> None:
    at_close = response("r-close", "A", day(30))
    after = response("r-after", "B", day(30) + timedelta(seconds=1))
    elsewhere = response("r-other", "C", day(5), account="acct-2")
    [linked] = link_responses([won()], [after, elsewhere, at_close], LOOKBACK)
    assert linked.responses == (at_close,)


def test_an_open_deal_links_every_later_response_of_its_account() -> None:
    much_later = response("r-late", "A", day(400))
    [linked] = link_responses([open_deal("d1")], [much_later], LOOKBACK)
    assert linked.responses == (much_later,)


def test_a_response_may_belong_to_several_deals_of_its_account() -> None:
    shared = response("r-1", "A", day(-5))
    journeys = link_responses([won(deal_id="d2"), lost("d1")], [shared], LOOKBACK)
    assert [j.deal.deal_id for j in journeys] == ["d1", "d2"]
    assert all(j.responses == (shared,) for j in journeys)


def test_linked_responses_are_sorted_and_a_duplicate_counts_once() -> None:
    first = response("r-2", "A", day(1))
    second = response("r-1", "B", day(2).astimezone(timezone(timedelta(hours=-5))))
    [linked] = link_responses([won()], [second, first, second], LOOKBACK)
    assert linked.responses == (first, second)


def test_a_deal_given_twice_with_different_facts_is_refused() -> None:
    with pytest.raises(AttributionError, match="given twice"):
        link_responses([won(), won("5.00")], [], LOOKBACK)


def test_a_journey_refuses_a_response_after_the_close() -> None:
    with pytest.raises(AttributionError, match="after deal deal-1 closed"):
        journey(won(), ("A", 31))


def test_deal_facts_refuse_a_won_deal_without_revenue() -> None:
    with pytest.raises(AttributionError, match="revenue"):
        DealFacts("d1", "acct-1", OPEN_DAY, DealStatus.WON, closed_at=day(1))


# Deal facts from events


def test_deal_facts_come_from_the_deals_events() -> None:
    script = (
        DealScript()
        .opened(day(0))
        .stage(day(2), "Qualification")
        .stage(day(5), "Discovery")
        .stage(day(9), "Proposal")
        .stage(day(12), "Discovery")
        .won(day(20), amount="25000")
        .stage(day(25), "Negotiation")  # after the close: ignored
    )
    facts = deal_facts_from_events(script.events, default_policy())
    assert facts == DealFacts(
        deal_id="deal-1",
        account_id="acct-1",
        opened_at=day(0),
        status=DealStatus.WON,
        closed_at=day(20),
        qualified_at=day(5),
        amount=Decimal("20000"),
        revenue=Decimal("25000"),
        opened_stage="Prospecting",
        furthest_stage="Proposal",
        owner_id="rep-1",
        product="Widgets",
    )


def test_a_deal_that_skips_the_opportunity_stage_is_qualified_when_it_passes_it() -> None:
    script = DealScript().opened(day(0)).stage(day(3), "Proposal").lost(day(8))
    facts = deal_facts_from_events(script.events, default_policy())
    assert (facts.qualified_at, facts.status, facts.revenue) == (day(3), DealStatus.LOST, None)
    later = deal_facts_from_events(script.events, default_policy(), opportunity_stage="Negotiation")
    assert later.qualified_at is None


def test_a_deal_opened_past_the_opportunity_stage_is_qualified_when_it_opens() -> None:
    facts = deal_facts_from_events(DealScript().opened(day(0), "Proposal").events, default_policy())
    assert (facts.qualified_at, facts.status, facts.closed_at) == (day(0), DealStatus.OPEN, None)


def test_an_opportunity_stage_the_policy_does_not_know_is_refused() -> None:
    with pytest.raises(AttributionError, match="'Demo' is not one of the policy's stages"):
        deal_facts_from_events(
            DealScript().opened(day(0)).events, default_policy(), opportunity_stage="Demo"
        )


# Campaign table, model comparison, flow


def totals(lead_days: int, value_added_days: int, waste_days: int, stalled: bool) -> Totals:
    wait = timedelta(days=lead_days - value_added_days - waste_days)
    return Totals(
        deals=1,
        lead_time=timedelta(days=lead_days),
        value_added=timedelta(days=value_added_days),
        waste=Waste(rework=timedelta(days=waste_days)),
        wait=wait,
        inventory=timedelta(days=1) if stalled else timedelta(0),
    )


def test_the_campaign_table_counts_reach_pipeline_credit_roi_and_value_stream() -> None:
    # d1 won 1000.00 (A day 1, B day 10; closed day 30), d2 open 700.00 (A day 3),
    # d3 lost (B day 2). A also has an unlinked response at acct-9 (no deal there).
    journeys = [
        journey(won(deal_id="d1"), ("A", 1), ("B", 10)),
        journey(open_deal("d2", account="acct-2"), ("A", 3)),
        journey(lost("d3", account="acct-3"), ("B", 2)),
    ]
    stray = response("r-stray", "A", day(1), account="acct-9")
    rows = campaign_table(
        journeys,
        M.LINEAR,
        responses=[stray, *journeys[0].responses],
        costs={"A": Decimal("250.00"), "Z": Decimal("100.00")},
        totals_by_deal={"d1": totals(30, 3, 6, False), "d2": totals(10, 2, 1, True)},
    )
    assert [row.campaign_id for row in rows] == ["A", "B", "Z"]  # 500.00, 500.00, 0.00
    a, b, z = rows
    assert (a.responses, a.linked_responses, a.accounts_reached) == (3, 2, 3)
    assert (a.deals_influenced, a.deals_won, a.pipeline, a.revenue) == (
        2, 1, Decimal("700.00"), Decimal("500.00"),
    )  # fmt: skip
    assert a.roi == 1.0  # (500 - 250) / 250
    assert a.median_days_to_win == 29.0  # first A touch on d1 on day 1, won on day 30
    assert a.value_stream.lead_time == timedelta(days=40)
    assert a.process_cycle_efficiency == pytest.approx(5 / 40)
    assert a.waste_share == pytest.approx(7 / 40)
    assert a.deals_stalled == 1
    assert (b.deals_influenced, b.pipeline, b.cost, b.roi, b.median_days_to_win) == (
        2, Decimal("0.00"), None, None, 20.0,
    )  # fmt: skip
    assert (z.responses, z.revenue, z.cost, z.roi, z.waste_share) == (
        0, Decimal("0.00"), Decimal("100.00"), -1.0, None,
    )  # fmt: skip


def test_the_campaign_table_fits_a_data_driven_model_it_is_not_given() -> None:
    journeys = [
        journey(won(deal_id="d1"), ("A", 1), ("B", 2)),
        journey(lost("d2"), ("A", 1)),
        journey(won(deal_id="d3"), ("B", 1)),
    ]
    rows = {row.campaign_id: row.revenue for row in campaign_table(journeys, "markov")}
    assert rows == money(B="1666.67", A="333.33")


def test_compare_models_flags_a_campaign_whose_credit_depends_on_the_model() -> None:
    # Four won deals whose first touch is always "intro" and last touch always "close":
    # first-touch puts intro first, last-touch puts it last; "steady" is always in between.
    journeys = [
        journey(won(deal_id=f"d{n}"), ("intro", 1), ("steady", 2), ("close", 3)) for n in range(4)
    ]
    journeys += [journey(won(deal_id=f"x{n}"), (f"solo{n}", 1)) for n in range(3)]
    comparison = {row.campaign_id: row for row in compare_models(journeys)}
    intro = comparison["intro"]
    assert intro.credits[M.FIRST_TOUCH] == Decimal("4000.00")
    assert intro.credits[M.LAST_TOUCH] == Decimal("0.00")
    assert (intro.ranks[M.FIRST_TOUCH], intro.ranks[M.LAST_TOUCH]) == (1, 5)
    assert intro.flagged
    assert any(finding.startswith("markov credits") for finding in intro.findings)
    # 1000.00 under every model, rank 2 (first or last touch) to 4 (the others): no finding.
    assert not comparison["solo0"].flagged


def test_compare_models_ranks_ties_together_and_flags_big_rank_moves() -> None:
    journeys = [journey(won(deal_id=f"d{n}"), ("A", 1), (f"B{n}", 2)) for n in range(4)]
    comparison = {
        row.campaign_id: row
        for row in compare_models(journeys, models=[M.FIRST_TOUCH, M.LAST_TOUCH], rank_shift=1)
    }
    assert comparison["A"].ranks == {M.FIRST_TOUCH: 1, M.LAST_TOUCH: 5}
    assert comparison["B0"].ranks == {M.FIRST_TOUCH: 2, M.LAST_TOUCH: 1}
    assert comparison["A"].findings == (
        "rank moves 4 places: #1 under first_touch, #5 under last_touch",
    )


def test_the_campaign_flow_counts_each_deal_once_per_campaign() -> None:
    def facts(deal_id: str, status: DealStatus, opened: str, furthest: str) -> DealFacts:
        closed = None if status is DealStatus.OPEN else day(9)
        revenue = Decimal("900.00") if status is DealStatus.WON else None
        return DealFacts(
            deal_id, "acct-1", OPEN_DAY, status, closed, None, Decimal("500.00"), revenue,
            opened_stage=opened, furthest_stage=furthest,
        )  # fmt: skip

    journeys = [
        journey(facts("d1", DealStatus.WON, "Prospecting", "Negotiation"), ("A", 1), ("B", 2)),
        journey(facts("d2", DealStatus.LOST, "Prospecting", "Discovery"), ("A", 1)),
        journey(facts("d3", DealStatus.OPEN, "Discovery", "Proposal")),  # no campaign: no flow
    ]
    links = campaign_flow(journeys, default_policy().stages.order)

    def node(layer: FlowLayer, name: str) -> FlowNode:
        return FlowNode(layer, name)

    campaign, opened = FlowLayer.CAMPAIGN, FlowLayer.OPENED
    furthest, outcome = FlowLayer.FURTHEST, FlowLayer.OUTCOME
    assert links == [
        FlowLink(node(campaign, "A"), node(opened, "Prospecting"), 2, Decimal("1400.00")),
        FlowLink(node(campaign, "B"), node(opened, "Prospecting"), 1, Decimal("900.00")),
        FlowLink(node(opened, "Prospecting"), node(furthest, "Discovery"), 1, Decimal("500.00")),
        FlowLink(node(opened, "Prospecting"), node(furthest, "Negotiation"), 2, Decimal("1800.00")),
        FlowLink(node(furthest, "Discovery"), node(outcome, "Lost"), 1, Decimal("500.00")),
        FlowLink(node(furthest, "Negotiation"), node(outcome, "Won"), 2, Decimal("1800.00")),
    ]
    assert str(links[0].source) == "campaign:A"


# Invariants

CAMPAIGNS = ["alpha", "beta", "gamma", "delta", "epsilon"]
OFFSETS = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]
cents = st.integers(0, 1_000_000_000).map(lambda n: Decimal(n).scaleb(-2).quantize(Decimal("0.01")))


@st.composite
def deal_and_responses(
    draw: st.DrawFn, deal_id: str, status: DealStatus | None = None
) -> tuple[DealFacts, list[CampaignResponded]]:
    """A deal of its own account and responses from before the lookback to after the close."""
    account = f"acct-{deal_id}"
    status = status or draw(st.sampled_from(DealStatus))
    life = timedelta(seconds=draw(st.integers(0, 120 * 86_400)))
    qualified = draw(st.none() | st.integers(0, int(life.total_seconds())))
    revenue = draw(cents) if status is DealStatus.WON else None
    deal = DealFacts(
        deal_id=deal_id,
        account_id=account,
        opened_at=OPEN_DAY,
        status=status,
        closed_at=None if status is DealStatus.OPEN else OPEN_DAY + life,
        qualified_at=None if qualified is None else OPEN_DAY + timedelta(seconds=qualified),
        amount=draw(st.none() | cents),
        revenue=revenue,
    )
    responses = []
    for number in range(draw(st.integers(0, 8))):
        seconds = draw(st.integers(-100 * 86_400, int(life.total_seconds()) + 86_400))
        at = (OPEN_DAY + timedelta(seconds=seconds)).astimezone(draw(st.sampled_from(OFFSETS)))
        campaign = draw(st.sampled_from(CAMPAIGNS))
        responses.append(response(f"{deal_id}-r{number}", campaign, at, account))
    return deal, responses


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[DealFacts], list[CampaignResponded]]:
    """Deals of several accounts, the first one won, and all their responses."""
    deals, responses = [], []
    for number in range(draw(st.integers(1, 6))):
        status = DealStatus.WON if number == 0 else None
        deal, touches = draw(deal_and_responses(f"d{number}", status))
        deals.append(deal)
        responses += touches
    return deals, responses


def every_credit(journeys: Sequence[Journey]) -> dict[M, dict[str, dict[str, Decimal]]]:
    markov, shapley = fit_markov(journeys), fit_shapley(journeys)
    return {model: credits_by_deal(journeys, model, markov=markov, shapley=shapley) for model in M}


@examples
@given(histories())
def test_credits_add_up_to_the_revenue_to_the_cent_under_every_model(
    history: tuple[list[DealFacts], list[CampaignResponded]],
) -> None:
    journeys = link_responses(*history, LOOKBACK)
    for model, by_deal in every_credit(journeys).items():
        for each in journeys:
            split = by_deal.get(each.deal.deal_id, {})
            if each.deal.status is DealStatus.WON and each.responses:
                assert sum(split.values()) == each.deal.revenue, model
                assert all(amount == amount.quantize(Decimal("0.01")) for amount in split.values())
                assert all(amount >= 0 for amount in split.values())
            else:
                assert split == {}


@examples
@given(histories(), st.sampled_from(CAMPAIGNS))
def test_a_campaign_without_linked_responses_gets_nothing(
    history: tuple[list[DealFacts], list[CampaignResponded]], campaign: str
) -> None:
    deals, responses = history
    # Its responses move to an account without deals: nothing of it is linked anymore.
    moved = [
        response(r.event_id, r.campaign_id, r.occurred_at, "acct-nobody")
        if r.campaign_id == campaign
        else r
        for r in responses
    ]
    journeys = link_responses(deals, moved, LOOKBACK)
    for by_deal in every_credit(journeys).values():
        assert all(campaign not in split for split in by_deal.values())
    for model in (M.LINEAR, M.MARKOV):
        for row in campaign_table(journeys, model, responses=moved):
            assert row.revenue == 0 or row.campaign_id != campaign


@examples
@given(histories(), st.sampled_from([*CAMPAIGNS, "newcomer"]), st.integers(1, 86_400 * 30))
def test_a_response_after_the_close_changes_nothing(
    history: tuple[list[DealFacts], list[CampaignResponded]], campaign: str, seconds: int
) -> None:
    deals, responses = history
    before = link_responses(deals, responses, LOOKBACK)
    late = [
        response(f"late-{deal.deal_id}", campaign, deal.closed_at + timedelta(seconds=seconds),
                 deal.account_id)
        for deal in deals
        if deal.closed_at is not None
    ]  # fmt: skip
    after = link_responses(deals, [*responses, *late], LOOKBACK)
    assert after == before
    assert every_credit(after) == every_credit(before)


@examples
@given(histories(), st.randoms(use_true_random=False))
def test_the_result_does_not_depend_on_the_order_or_repetition_of_responses(
    history: tuple[list[DealFacts], list[CampaignResponded]], rng: random.Random
) -> None:
    deals, responses = history
    shuffled = [*responses, *responses[: len(responses) // 2]]
    rng.shuffle(shuffled)
    once = link_responses(deals, responses, LOOKBACK)
    again = link_responses(list(reversed(deals)), shuffled, LOOKBACK)
    assert again == once
    assert every_credit(again) == every_credit(once)
    assert compare_models(again) == compare_models(once)


# Data-driven models against their definitions

paths = st.lists(
    st.tuples(st.lists(st.sampled_from("ABCD"), min_size=1, max_size=6), st.booleans()),
    min_size=1,
    max_size=8,
)


def journeys_of(drawn: list[tuple[list[str], bool]]) -> list[Journey]:
    made = []
    for number, (campaigns, converted) in enumerate(drawn):
        deal = won(deal_id=f"d{number}") if converted else lost(f"d{number}")
        made.append(journey(deal, *((c, step) for step, c in enumerate(campaigns))))
    return made


def solve(matrix: list[list[Fraction]], rhs: list[Fraction]) -> list[Fraction]:
    """Gaussian elimination with back substitution, for the test's own check."""
    size = len(rhs)
    rows = [[*row, value] for row, value in zip(matrix, rhs, strict=True)]
    for col in range(size):
        pivot = next(r for r in range(col, size) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(col + 1, size):
            factor = rows[r][col] / rows[col][col]
            rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=True)]
    result = [Fraction(0)] * size
    for r in reversed(range(size)):
        known = sum((rows[r][c] * result[c] for c in range(r + 1, size)), Fraction(0))
        result[r] = (rows[r][size] - known) / rows[r][r]
    return result


def conversion_without(journeys: list[Journey], removed: str | None) -> Fraction:
    """P(conversion) of the chain with moves into `removed` sent to null: the definition."""
    walks = [(["start", *j.path], j.deal.status is DealStatus.WON) for j in journeys]
    states = sorted({state for walk, _ in walks for state in walk})
    moves: dict[str, dict[str, int]] = {state: {} for state in states}
    for walk, converted in walks:
        for here, there in pairwise([*walk, "conversion" if converted else "null"]):
            target = "null" if there == removed else there
            moves[here][target] = moves[here].get(target, 0) + 1
    # x_s = sum over t of P(s > t) x_t + P(s > conversion), i.e. (I - Q) x = b
    matrix = [[Fraction(int(s == t)) for t in states] for s in states]
    rhs = []
    for i, state in enumerate(states):
        leaving = sum(moves[state].values())
        for there, count in moves[state].items():
            if there in states:
                matrix[i][states.index(there)] -= Fraction(count, leaving)
        rhs.append(Fraction(moves[state].get("conversion", 0), leaving))
    return solve(matrix, rhs)[states.index("start")]


@settings(max_examples=80, deadline=None)
@given(paths)
def test_markov_removal_effects_match_redirecting_the_campaign_to_null(
    drawn: list[tuple[list[str], bool]],
) -> None:
    journeys = journeys_of(drawn)
    model = fit_markov(journeys)
    converting = conversion_without(journeys, None)
    assert model.conversion_probability == converting
    for campaign, effect in model.removal_effects.items():
        expected = 1 - conversion_without(journeys, campaign) / converting if converting else 0
        assert effect == expected


@settings(max_examples=80, deadline=None)
@given(paths)
def test_shapley_values_share_each_win_evenly_among_its_campaigns(
    drawn: list[tuple[list[str], bool]],
) -> None:
    # With v(S) = wins of sets within S, the game is a sum of unanimity games: each win
    # of a set T is shared evenly by T's campaigns, in every coalition containing T.
    journeys = journeys_of(drawn)
    model = fit_shapley(journeys)
    for each in journeys:
        players = set(each.campaigns)
        expected = {
            c: sum(
                (
                    Fraction(count, len(t))
                    for t, count in model.wins.items()
                    if c in t and t <= players
                ),
                Fraction(0),
            )
            for c in players
        }
        values = model.weights(each.campaigns)
        assert values == expected
        assert sum(values.values()) == model.worth(players)


def test_every_model_has_a_name_and_two_are_data_driven() -> None:
    assert {str(model) for model in M} >= {"first_touch", "u_shaped", "time_decay", "shapley"}
    assert {M.MARKOV, M.SHAPLEY} == DATA_DRIVEN
