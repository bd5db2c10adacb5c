"""Campaign roll-ups by account: what each account adds, summed, is the campaign table.

The pure part (projections.campaigns.rollup) is checked against `campaign_table` over
simulated histories; the worker's part (streams.worker.campaigns) over fake tables, topics
and a fake stream: replays, late responses, bad messages and restarts.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import EventBase, decode, encode
from events.models import CampaignResponded, ResponseKind
from projections.campaigns.attribution import AttributionModel
from projections.campaigns.report import CampaignRow
from projections.campaigns.rollup import (
    TALLIED_MODELS,
    CampaignRollups,
    CampaignTally,
    account_contribution,
    account_journeys,
)
from projections.categories import DealStatus
from projections.errors import AttributionError
from projections.policy.model import default_policy
from streams.simulator import SimulationConfig, history_records
from streams.worker.campaigns import AccountForwarder, CampaignPipeline
from streams.worker.deal_store import DealEventStore
from streams.worker.keyed import KeyedMachine, delivered_record
from tests.support import campaign_tables as tables
from tests.support.deal_builders import DealScript
from tests.support.fakes import FakeApp, FakeCounters, FakeStream, FakeTopic

POLICY = default_policy()
OPENED = datetime(2026, 3, 2, 9, tzinfo=UTC)
DAY = timedelta(days=1)


def at(days: float) -> datetime:
    """A moment `days` after the first deal opens (negative: before)."""
    return OPENED + days * DAY


def response(
    event_id: str, campaign: str, when: datetime, account: str = "acct-1"
) -> CampaignResponded:
    return CampaignResponded(
        event_id=event_id,
        occurred_at=when,
        account_id=account,
        campaign_id=campaign,
        kind=ResponseKind.WEBINAR,
    )


def won_deal(deal_id: str = "deal-1", account: str = "acct-1", amount: str = "24000") -> list[Any]:
    script = DealScript(deal_id=deal_id, account_id=account).opened(at(0))
    return script.stage(at(3), "Discovery").won(at(20), amount).events


def open_deal(deal_id: str = "deal-2", account: str = "acct-1") -> list[Any]:
    return DealScript(deal_id=deal_id, account_id=account).opened(at(30)).events


@cache
def simulated(seed: int, accounts: int = 60) -> tuple[EventBase, ...]:
    """Four months of simulated history: 60 deals, their touches and campaign responses."""
    config = SimulationConfig(seed=seed, deals=60, accounts=accounts, months=4)
    return tuple(decode(record.line) for record in history_records(config))


def by_account(events: Iterable[EventBase]) -> dict[str, list[EventBase]]:
    grouped: defaultdict[str, list[EventBase]] = defaultdict(list)
    for event in events:
        grouped[event.account_id].append(event)
    return grouped


def busiest_winning_account(events: Iterable[EventBase]) -> list[EventBase]:
    """The events of the busiest account with a won deal credited to several responses."""

    def credited(held: list[EventBase]) -> bool:
        journeys = account_journeys(held, POLICY).journeys
        return any(j.deal.status is DealStatus.WON and len(j.responses) > 1 for j in journeys)

    return max(filter(credited, by_account(events).values()), key=len)


def table_tallies(events: Sequence[EventBase]) -> tuple[CampaignTally, ...]:
    return tables.table_tallies(events, POLICY)


# The pure part: one account's contribution.


@pytest.mark.parametrize(("seed", "accounts"), [(3, 60), (11, 400)])
def test_account_contributions_sum_to_the_campaign_table_under_every_rule_based_model(
    seed: int, accounts: int
) -> None:
    events = simulated(seed, accounts)
    contributions = [account_contribution(held, POLICY) for held in by_account(events).values()]

    tallies = CampaignRollups.summed(contributions).tallies()

    assert tallies == table_tallies(events)
    assert any(tally.revenue[AttributionModel.LINEAR] > 0 for tally in tallies)
    assert any(tally.pipeline > 0 for tally in tallies)


def test_a_response_linked_to_no_deal_still_reaches_the_account() -> None:
    events = [*won_deal(), response("r-1", "spring", at(-200)), response("r-2", "autumn", at(5))]

    contribution = account_contribution(events, POLICY)

    assert contribution["spring"]["responses"] == 1
    assert contribution["spring"]["accounts_reached"] == 1
    assert contribution["spring"]["linked_responses"] == 0
    assert contribution["spring"]["deals_influenced"] == 0
    assert contribution["autumn"]["linked_responses"] == 1
    assert contribution["autumn"]["revenue.linear"] == 2_400_000


def test_pipeline_counts_the_open_influenced_deals_in_cents_and_revenue_the_won_ones() -> None:
    events = [*won_deal(), *open_deal(), response("r-1", "spring", at(1))]

    spring = account_contribution(events, POLICY)["spring"]

    assert spring["deals_influenced"] == 2
    assert spring["deals_won"] == 1
    assert spring["pipeline"] == 2_000_000
    assert {spring[f"revenue.{model}"] for model in TALLIED_MODELS} == {2_400_000}


def test_a_deal_not_yet_opened_influences_nothing() -> None:
    stage_only = DealScript(deal_id="deal-9").stage(at(2), "Discovery").events
    events = [*stage_only, response("r-1", "spring", at(1))]

    assert account_journeys(events, POLICY).journeys == ()
    assert account_contribution(events, POLICY)["spring"]["deals_influenced"] == 0


def test_events_of_two_accounts_are_refused() -> None:
    events = [response("r-1", "spring", at(1)), response("r-2", "spring", at(1), "acct-2")]

    with pytest.raises(AttributionError, match="one account"):
        account_contribution(events, POLICY)


@settings(max_examples=30, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(0, 5))
def test_arrival_order_and_duplicates_do_not_change_a_contribution(
    rng: random.Random, copies: int
) -> None:
    events = busiest_winning_account(simulated(3))
    shuffled = [*events, *rng.choices(events, k=copies)]
    rng.shuffle(shuffled)

    assert account_contribution(shuffled, POLICY) == account_contribution(events, POLICY)


def test_a_late_response_replaces_the_accounts_old_contribution() -> None:
    first = [*won_deal(), response("r-1", "spring", at(1))]
    other = [*won_deal("deal-7", "acct-2"), response("r-9", "spring", at(2), "acct-2")]
    late = response("r-2", "autumn", at(10))
    rollups = CampaignRollups.summed([account_contribution(other, POLICY)])
    before = account_contribution(first, POLICY)
    rollups.replace({}, before)

    rollups.replace(before, account_contribution([*first, late], POLICY))

    assert rollups.tallies() == table_tallies([*first, *other, late])
    assert rollups.totals["autumn"]["revenue.last_touch"] == 2_400_000
    assert rollups.totals["spring"]["revenue.last_touch"] == 2_400_000  # acct-2's deal only


def test_a_campaign_no_account_responds_to_any_more_leaves_the_totals() -> None:
    contribution = account_contribution([response("r-1", "spring", at(1))], POLICY)
    rollups = CampaignRollups.summed([contribution])

    rollups.replace(contribution, {})

    assert rollups.tallies() == ()


def test_a_tally_document_gives_money_as_strings_with_two_decimals() -> None:
    contribution = account_contribution([*won_deal(), response("r-1", "spring", at(1))], POLICY)

    [tally] = CampaignRollups.summed([contribution]).tallies()
    document = tally.to_document()

    assert document["pipeline"] == "0.00"
    assert document["revenue"] == dict.fromkeys(TALLIED_MODELS, "24000.00")
    assert document["responses"] == document["deals_won"] == 1


def test_tallies_from_rows_need_a_row_for_every_rule_based_model() -> None:
    with pytest.raises(AttributionError, match="each of"):
        CampaignTally.from_rows({AttributionModel.LINEAR: CampaignRow("spring")})


# The worker's part, over fakes.


class FakeTable(dict[str, Any]):
    """A Faust table as the pipeline uses it: a dict whose writes are kept (the changelog)."""

    def __init__(self) -> None:
        super().__init__()
        self.changelog: list[tuple[str, Any]] = []

    def __setitem__(self, key: str, value: Any) -> None:
        self.changelog.append((key, value))
        super().__setitem__(key, value)

    def held_values(self) -> Iterator[Any]:
        return iter(self.values())


def message(value: bytes, offset: int) -> Any:
    return SimpleNamespace(
        message=SimpleNamespace(
            value=value, key=b"k", topic="touches-by-account", partition=0, offset=offset,
            timestamp=0.0,
        )
    )  # fmt: skip


@dataclass
class Worker:
    """A campaign pipeline over fakes; the tables survive a restart (their changelogs)."""

    log: FakeTable = field(default_factory=FakeTable)
    contributions: FakeTable = field(default_factory=FakeTable)
    dead_letters: FakeTopic = field(default_factory=FakeTopic)
    stream: FakeStream = field(default_factory=FakeStream)
    pipeline: CampaignPipeline = field(init=False)

    def __post_init__(self) -> None:
        app: Any = FakeApp()
        self.pipeline = CampaignPipeline(
            app=app,
            policy=POLICY,
            contributions=self.contributions,  # type: ignore[arg-type]
        )
        self.pipeline.machine = KeyedMachine(
            app=app,
            part=self.pipeline,
            store=DealEventStore(app, self.log),  # type: ignore[arg-type]
            counters=FakeCounters(),  # type: ignore[arg-type]
            dead_letters=self.dead_letters,  # type: ignore[arg-type]
            source_topic="touches-by-account",
        )

    def batch(self, *values: bytes) -> None:
        """Take the messages, then recompute the touched accounts (one batch)."""
        asyncio.run(self._batch(values))

    async def _batch(self, values: Sequence[bytes]) -> None:
        stream: Any = self.stream
        for offset, value in enumerate(values):
            await self.pipeline.take(stream, message(value, offset))
        await self.pipeline._flush(stream)

    def restart(self) -> Worker:
        return Worker(self.log, self.contributions, self.dead_letters)

    def page(self) -> dict[str, Any]:
        return self.pipeline.summary()


def encoded(events: Iterable[EventBase]) -> list[bytes]:
    return [encode(event) for event in events]


def expected_page(events: Sequence[EventBase]) -> dict[str, Any]:
    return tables.campaigns_page(events, POLICY)


def test_the_forwarder_sends_deal_and_response_facts_keyed_by_account_and_nothing_else() -> None:
    topic = FakeTopic()
    forward = AccountForwarder(topic)  # type: ignore[arg-type]
    call = DealScript().opened(at(0)).call(at(1), 10).events
    facts = [*call, response("r-1", "spring", at(1), "acct-9")]

    taken = [(fact, message(encode(fact), offset).message) for offset, fact in enumerate(facts)]
    for fact, record in taken:
        asyncio.run(forward(fact, delivered_record(record)))

    assert [(key, value) for key, value, _ in topic.sent] == [
        (b"acct-1", encode(facts[0])),
        (b"acct-9", encode(facts[2])),
    ]


def test_the_worker_page_equals_the_campaign_table_and_acks_after_the_batch() -> None:
    events = simulated(3)
    worker = Worker()

    worker.batch(*encoded(events))

    assert worker.page() == expected_page(events)
    assert len(worker.stream.acked) == len(events)


def test_a_replayed_batch_changes_nothing_and_writes_nothing() -> None:
    events = simulated(3)
    worker = Worker()
    worker.batch(*encoded(events))
    writes = len(worker.log.changelog) + len(worker.contributions.changelog)

    worker.batch(*encoded(reversed(events)))

    assert worker.page() == expected_page(events)
    assert len(worker.log.changelog) + len(worker.contributions.changelog) == writes


def test_a_late_response_updates_the_page_and_a_restart_rebuilds_it_from_the_tables() -> None:
    events = [*won_deal(), response("r-1", "spring", at(1))]
    late = response("r-2", "autumn", at(10))
    worker = Worker()
    worker.batch(*encoded(events))

    worker.batch(encode(late))
    restarted = worker.restart()

    assert worker.page() == expected_page([*events, late])
    assert restarted.page() == worker.page()


def test_a_message_that_does_not_decode_is_dead_lettered_and_acked() -> None:
    worker = Worker()

    worker.batch(b"{not json", encode(response("r-1", "spring", at(1))))

    [(_, value, headers)] = worker.dead_letters.sent
    assert value == b"{not json"
    assert b"not valid JSON" in headers["reason"]
    assert headers["source.offset"] == b"0"
    assert len(worker.stream.acked) == 2
    assert worker.page()["campaigns"]["spring"]["responses"] == 1


def test_money_on_the_page_is_a_string_with_two_decimals() -> None:
    worker = Worker()

    worker.batch(*encoded([*won_deal(amount="1234.5"), response("r-1", "spring", at(1))]))

    revenue = worker.page()["campaigns"]["spring"]["revenue"]
    assert revenue == dict.fromkeys(TALLIED_MODELS, "1234.50")
    assert all(Decimal(amount) == Decimal("1234.5") for amount in revenue.values())
