"""Campaigns over history: journeys as known at a time, costs from a file, the CLI's figures."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from events import EventBase, decode
from events.models import CampaignResponded
from projections import deal_value_stream, default_policy
from projections.campaigns.attribution import AttributionModel
from projections.campaigns.history import campaign_history
from projections.campaigns.journeys import deal_facts_from_events, link_responses
from projections.campaigns.report import campaign_table
from projections.deal.state import events_by_deal
from projections.errors import DealNotOpened
from streams.cli.campaigns import load_costs
from streams.errors import GembaError
from streams.simulator import SimulationConfig, ground_truth, history_lines

CONFIG = SimulationConfig(seed=5, deals=80, accounts=40)


@pytest.fixture(scope="module")
def history() -> list[EventBase]:
    return [decode(line) for line in history_lines(CONFIG)]


def _recorded(
    events: list[EventBase], delay: timedelta = timedelta(0)
) -> list[tuple[EventBase, datetime]]:
    return [(event, event.occurred_at + delay) for event in events]


def test_the_history_links_every_opened_deal_as_the_pure_core_does(
    history: list[EventBase],
) -> None:
    policy = default_policy()
    built = campaign_history(_recorded(history), policy)
    deals = [deal_facts_from_events(events, policy) for events in events_by_deal(history).values()]
    responses = [e for e in history if isinstance(e, CampaignResponded)]

    expected = link_responses(deals, responses, policy.attribution.lookback)

    totals = {
        deal_id: deal_value_stream(events, policy).totals
        for deal_id, events in events_by_deal(history).items()
    }
    assert built.journeys == expected
    assert built.totals_by_deal == totals
    assert built.table("linear") == campaign_table(
        expected, "linear", responses=responses, totals_by_deal=totals
    )


def test_every_model_credits_all_won_revenue_that_has_a_campaign_on_its_journey(
    history: list[EventBase],
) -> None:
    built = campaign_history(_recorded(history), default_policy())
    attributed = sum(
        (j.deal.revenue for j in built.journeys if j.deal.revenue is not None and j.responses),
        Decimal(0),
    )

    for model in AttributionModel:
        assert sum(row.revenue for row in built.table(model)) == attributed, model


def test_arrival_order_and_duplicates_change_nothing(history: list[EventBase]) -> None:
    shuffled = [*history, *history[:50]]
    random.Random(3).shuffle(shuffled)

    once = campaign_history(_recorded(history), default_policy())
    again = campaign_history(_recorded(shuffled), default_policy())

    assert again.table("markov") == once.table("markov")
    assert again.flow() == once.flow()


def test_as_of_leaves_out_what_happened_or_was_recorded_later(history: list[EventBase]) -> None:
    cut = datetime(2026, 8, 1, tzinfo=UTC)
    late = timedelta(days=3)

    known = campaign_history(_recorded(history, late), default_policy(), cut)
    by_hand = [e for e in history if e.occurred_at + late <= cut]

    assert known.events_known == len(by_hand)
    assert known.responses == tuple(e for e in by_hand if isinstance(e, CampaignResponded))
    assert {j.deal.deal_id for j in known.journeys} <= {e.deal_id for e in by_hand}


def test_the_simulated_money_losing_campaign_has_a_negative_roi_under_every_model(
    history: list[EventBase],
) -> None:
    truth = ground_truth(CONFIG)
    costs = {campaign: Decimal(cost) for campaign, cost in truth.campaign_costs.items()}
    built = campaign_history(_recorded(history), default_policy())

    for model in AttributionModel:
        row = next(
            r for r in built.table(model, costs) if r.campaign_id == truth.negative_roi_campaign_id
        )
        assert row.roi is not None and row.roi < 0, model


def test_costs_are_read_from_a_csv_file(tmp_path: Path) -> None:
    path = tmp_path / "costs.csv"
    path.write_text("campaign_id,name,cost\ncamp-01,Ads,1200\ncamp-02,Webinar,99.5\n")

    assert load_costs(path) == {"camp-01": Decimal("1200.00"), "camp-02": Decimal("99.50")}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("campaign_id,cost\ncamp-01,\n", "needs a campaign_id and a cost"),
        ("campaign_id,cost\ncamp-01,lots\n", "is not a number"),
        ("campaign_id,cost\ncamp-01,-5\n", "must be zero or more"),
    ],
)
def test_a_bad_costs_file_names_the_line_and_the_reason(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = tmp_path / "costs.csv"
    path.write_text(text)

    with pytest.raises(GembaError, match=rf"costs.csv:2: .*{reason}"):
        load_costs(path)


# --- a deal with touches but no deal_opened (a CRM that logs a call before the deal) ----------

EARLY_CALL = (
    b'{"type": "call", "event_id": "early-call-1", "occurred_at": "2026-03-02T10:00:00Z",'
    b' "account_id": "acct-early", "deal_id": "deal-early", "direction": "outbound",'
    b' "outcome": "connected", "duration_seconds": 60}'
)
EARLY_EMAIL = (
    b'{"type": "email", "event_id": "early-mail-1", "occurred_at": "2026-03-02T11:00:00Z",'
    b' "account_id": "acct-early", "deal_id": "deal-early", "direction": "outbound"}'
)


def test_a_deal_with_touches_but_no_deal_opened_has_no_facts_yet() -> None:
    with pytest.raises(DealNotOpened, match="deal-early"):
        deal_facts_from_events([decode(EARLY_CALL), decode(EARLY_EMAIL)], default_policy())


def test_a_deal_with_touches_but_no_deal_opened_is_counted_as_not_opened_not_dropped(
    history: list[EventBase],
) -> None:
    early = [decode(EARLY_CALL), decode(EARLY_EMAIL), decode(EARLY_CALL)]
    without = campaign_history(_recorded(history), default_policy())

    built = campaign_history(_recorded([*history, *early]), default_policy())

    assert dict(built.not_opened) == {"deal-early": 2}
    assert built.journeys == without.journeys
    assert built.table("linear") == without.table("linear")
    assert without.not_opened == {}


def test_the_dashboard_campaign_document_lists_the_deals_not_opened(
    history: list[EventBase], tmp_path: Path
) -> None:
    from streams.dashboard.derived import campaign_documents
    from streams.settings import Settings
    from tests.support.archives import archive_of

    lines = [*history_lines(CONFIG), EARLY_CALL, EARLY_EMAIL]
    archive = archive_of(tmp_path / "gemba.duckdb", lines)
    settings = Settings(duckdb_path=archive, state_dir=tmp_path)

    _, document = campaign_documents(settings, default_policy())

    assert document["not_opened"] == [{"deal_id": "deal-early", "events": 2}]
    assert document["deals"] == len(campaign_history(_recorded(history), default_policy()).journeys)
