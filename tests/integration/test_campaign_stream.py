"""Campaign roll-ups from a real worker process on the real broker: the page is the pure table.

One worker reads a small realistic history (shuffled deals, duplicates, poison),
regroups its deal and response events by account and tallies them per campaign; its
`/gemba/campaigns/` page must equal `campaign_table` over the same events under every
rule-based model, to the cent. A late response then moves the credit, and a SIGKILL
followed by a restart (tables recovered from their changelogs) changes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
import pytest

from events import CampaignResponded, EventBase, ResponseKind, encode
from projections import default_policy
from projections.categories import DealStatus
from streams.settings import Settings
from tests.support.campaign_tables import campaigns_page, history_journeys
from tests.support.worker_harness import (
    Counts,
    TopicReader,
    TouchStream,
    WorkerProcess,
    WorkerSetup,
    publish,
    realistic_touches,
    running_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

DEALS = 60
ACCOUNTS = 60
"""A small market, so that most deals share their account with campaign responses."""
FORWARDED_TYPES = {"deal_opened", "stage_changed", "deal_won", "deal_lost", "campaign_response"}


@dataclass(frozen=True)
class CampaignRun:
    """What one worker showed at each step: history read, a late response, a restart."""

    setup: WorkerSetup
    counts: Counts
    history_page: dict[str, Any]
    late_page: dict[str, Any]
    restarted_page: dict[str, Any]
    by_account: dict[str, set[bytes]]
    starts: int


@pytest.fixture(scope="module")
def stream() -> TouchStream:
    return realistic_touches(DEALS, seed=7, accounts=ACCOUNTS)


def late_response(events: tuple[EventBase, ...]) -> CampaignResponded:
    """A response of a new campaign an hour before a credited won deal closed."""
    credited = next(
        journey
        for journey in history_journeys(events, default_policy())
        if journey.deal.status is DealStatus.WON and journey.responses
    )
    closed_at = credited.deal.closed_at
    assert closed_at is not None
    return CampaignResponded(
        event_id="late-response-1",
        occurred_at=closed_at - timedelta(hours=1),
        account_id=credited.deal.account_id,
        campaign_id="camp-late",
        kind=ResponseKind.WEBINAR,
    )


def settled_page(worker: WorkerProcess, expected: dict[str, Any], timeout_s: float) -> Any:
    """The campaigns page once it equals `expected`, else the last one read (for the diff)."""
    last: list[Any] = [None]

    def matches() -> Any:
        body = worker.get("/gemba/campaigns/")
        last[0] = None if body is None else orjson.loads(body)
        return last[0] if last[0] == expected else None

    with contextlib.suppress(TimeoutError):
        wait_for(matches, timeout_s, interval_s=0.3)
    return last[0]


def read_by_account(setup: WorkerSetup, count: int) -> dict[str, set[bytes]]:
    """Event ids on the by-account topic, by message key (account)."""
    with TopicReader(setup.bootstrap_servers, f"{setup.touches_topic}-by-account") as reader:
        reader.read_until(lambda r: len(r.records) >= count, timeout_s=20)
        keys: dict[str, set[bytes]] = {}
        for record in reader.records:
            event_id = orjson.loads(record.value or b"{}")["event_id"]
            keys.setdefault(event_id, set()).add(record.key or b"")
        return keys


@pytest.fixture(scope="module")
def run(
    kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory, stream: TouchStream
) -> Iterator[CampaignRun]:
    """A worker that read the history, then a late response (twice), then was killed."""
    state = tmp_path_factory.mktemp("campaigns")
    setup = WorkerSetup.fresh(kafka_settings, state / "gemba")
    setup.create_touches_topic()
    publish(setup.bootstrap_servers, setup.touches_topic, stream.messages)
    late = late_response(stream.events)
    late_message = (late.account_id.encode(), encode(late))
    policy = default_policy()
    with running_worker(setup, state / "worker.log") as worker:
        counts = worker.wait_until_consumed(len(stream.messages), timeout_s=60)
        history_page = settled_page(worker, campaigns_page(stream.events, policy), 30)
        publish(setup.bootstrap_servers, setup.touches_topic, [late_message, late_message])
        expected_late = campaigns_page([*stream.events, late], policy)
        late_page = settled_page(worker, expected_late, 20)
        worker.kill()
        worker.start()
        restarted_page = settled_page(worker, expected_late, 30)
    forwarded = sum(1 for event in stream.events if event_type(event) in FORWARDED_TYPES)
    by_account = read_by_account(setup, forwarded + 1)
    yield CampaignRun(
        setup, counts, history_page, late_page, restarted_page, by_account, worker.starts
    )


def event_type(event: EventBase) -> str:
    return str(event.model_dump()["type"])


def differences(got: Any, expected: dict[str, Any]) -> dict[str, Any]:
    """Per campaign, what the page says where it differs (for a readable assertion)."""
    if not isinstance(got, dict):
        return {"page": got}
    wrong: dict[str, Any] = {}
    if got.get("policy_version") != expected["policy_version"]:
        wrong["policy_version"] = got.get("policy_version")
    campaigns, wanted = got.get("campaigns", {}), expected["campaigns"]
    for campaign_id in sorted({*campaigns, *wanted}):
        if campaigns.get(campaign_id) != wanted.get(campaign_id):
            wrong[campaign_id] = {
                "page": campaigns.get(campaign_id),
                "table": wanted.get(campaign_id),
            }
    return wrong


def test_the_history_holds_won_deals_credited_to_campaigns(stream: TouchStream) -> None:
    journeys = history_journeys(stream.events, default_policy())
    won = [j for j in journeys if j.responses and j.deal.status is DealStatus.WON]

    assert len(won) >= 5
    assert len(stream.reordered_deals) >= DEALS // 5
    assert stream.duplicates > 0


def test_the_campaign_page_equals_the_campaign_table_under_every_rule_based_model(
    run: CampaignRun, stream: TouchStream
) -> None:
    expected = campaigns_page(stream.events, default_policy())

    assert run.counts.settled
    assert not differences(run.history_page, expected), differences(run.history_page, expected)
    assert len(expected["campaigns"]) >= 4


def test_a_late_response_moves_the_credit_and_its_duplicate_changes_nothing(
    run: CampaignRun, stream: TouchStream
) -> None:
    late = late_response(stream.events)
    expected = campaigns_page([*stream.events, late], default_policy())

    assert not differences(run.late_page, expected), differences(run.late_page, expected)
    assert run.late_page["campaigns"]["camp-late"]["revenue"]["last_touch"] != "0.00"
    assert run.late_page["campaigns"]["camp-late"]["responses"] == 1


def test_a_killed_and_restarted_worker_serves_the_same_page_from_its_recovered_tables(
    run: CampaignRun,
) -> None:
    assert run.starts == 2
    assert run.restarted_page == run.late_page


def test_deal_and_response_events_are_forwarded_keyed_by_account_and_nothing_else(
    run: CampaignRun, stream: TouchStream
) -> None:
    forwarded = {
        event.event_id: {event.account_id.encode()}
        for event in stream.events
        if event_type(event) in FORWARDED_TYPES
    }
    forwarded["late-response-1"] = {late_response(stream.events).account_id.encode()}

    assert run.by_account == forwarded
