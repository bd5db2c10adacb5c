"""The dashboard's pure parts: filters, documents, the live alert feed, the derived-view cache."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from projections.archive.dashboard import (
    DashboardQueryError,
    Filters,
    StageBox,
    ValueStreamMap,
)
from projections.deal.alerts import (
    AlertKind,
    StallAlert,
    StallWaste,
    ThresholdBasis,
    ThresholdChoice,
)
from projections.deal.totals import Waste
from streams.dashboard.derived import DerivedView
from streams.dashboard.documents import alert_card, json_bytes, map_document
from streams.dashboard.live import QUEUE, AlertFeed
from streams.settings import Settings

AT = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _alert(kind: AlertKind = AlertKind.STALLED, deal_id: str = "deal-1") -> StallAlert:
    return StallAlert(
        alert_id=f"{deal_id}-{kind}",
        episode_id=f"{deal_id}-e1",
        kind=kind,
        deal_id=deal_id,
        account_id="acme",
        owner_id="rep-ana",
        segment=None,
        stage="Proposal",
        threshold=timedelta(days=14),
        threshold_basis=ThresholdBasis(choice=ThresholdChoice.LEARNED, won_deals=42),
        silent_since=AT - timedelta(days=16),
        stalled_at=AT - timedelta(days=2),
        occurred_at=AT,
        time_stalled=timedelta(days=2),
        last_value_added_id="q-1",
        last_value_added_at=AT - timedelta(days=16),
        waste_while_stalled=StallWaste(
            inventory=timedelta(days=2), process=Waste(chasing=timedelta(minutes=3))
        ),
        policy_version="default-1",
    )


# --- filters ---------------------------------------------------------------------------------


def test_a_month_that_is_not_yyyy_mm_is_refused_with_an_example() -> None:
    with pytest.raises(DashboardQueryError, match="YYYY-MM"):
        Filters(month="2026-13")


def test_filter_values_are_bound_as_parameters_never_written_into_the_sql() -> None:
    sneaky = "x' OR 1=1; DROP TABLE events; --"
    where, parameters = Filters(segment=sneaky, owner=sneaky, deal_ids=frozenset({sneaky})).where(
        "d.opened_at"
    )

    assert sneaky not in where
    assert parameters == {"segment": sneaky, "owner": sneaky, "deal_ids": [sneaky]}


def test_no_filter_selects_everything_and_says_so() -> None:
    where, parameters = Filters().where("d.opened_at")

    assert (where, parameters, Filters().any) == ("TRUE", {}, False)


# --- documents -------------------------------------------------------------------------------


def _box(stage: str, deals: int, va: float, process: float, wait: float) -> StageBox:
    return StageBox(
        stage=stage, deals=deals, visits=deals, lead_time_min=process + wait,
        value_added_min=va, necessary_non_value_added_min=process - va, waste_min=0.0,
        wait_min=wait, waiting_on_us_min=0.0, inventory_min=0.0, rework=0,
        pce=va / (process + wait),
    )  # fmt: skip


def test_the_ladder_follows_an_average_deal_through_every_stage() -> None:
    chart = ValueStreamMap(
        Filters(), (_box("A", 2, 20.0, 40.0, 960.0), _box("B", 1, 10.0, 10.0, 990.0)), 2
    )

    document = map_document(chart, None)

    ladder = document["ladder"]
    assert ladder["process_min"] == pytest.approx(20.0 + 10.0)
    assert ladder["wait_min"] == pytest.approx(480.0 + 990.0)
    assert ladder["lead_time_min"] == pytest.approx(500.0 + 1000.0)
    assert ladder["pce"] == pytest.approx((10.0 + 10.0) / 1500.0)
    assert document["pce"] == pytest.approx(30.0 / 2000.0)


def test_an_alert_card_carries_its_evidence_in_days_and_minutes() -> None:
    card = alert_card(_alert(), "live")

    assert card["threshold_days"] == 14
    assert card["threshold_basis"] == "learned from 42 won deals"
    assert card["silent_days"] == 16
    assert card["stalled_days"] == 2
    assert card["waste_accrued_min"] == 2 * 24 * 60 + 3
    assert card["last_value_added_id"] == "q-1"
    assert b'"evidence_at":"2026-03-02T09:00:00+00:00"' in json_bytes(card)


# --- the live feed ---------------------------------------------------------------------------


def _feed() -> AlertFeed:
    return AlertFeed(Settings(kafka_bootstrap_servers="127.0.0.1:1", alerts_topic="alerts"))


def test_each_alert_gets_the_next_number_and_is_kept_for_pages_that_open_later() -> None:
    feed = _feed()

    first = feed.accept(_alert().model_dump_json().encode())
    second = feed.accept(_alert(AlertKind.UNSTALLED).model_dump_json().encode())

    assert (first and first.seq, second and second.seq) == (1, 2)
    assert [item.seq for item in feed.since(1)] == [2]
    assert first is not None and first.sse().startswith(b"id: 1\nevent: alert\ndata: {")


def test_a_record_that_is_not_an_alert_is_counted_and_dropped() -> None:
    feed = _feed()

    assert feed.accept(b'{"not": "an alert"}') is None
    assert (feed.rejected, feed.received, feed.since(0)) == (1, 0, [])


def test_every_subscribed_page_receives_each_alert_and_a_page_that_falls_behind_is_let_go() -> None:
    async def scenario() -> tuple[int, bool, bool]:
        feed = _feed()
        keeping_up, behind = feed.subscribe(), feed.subscribe()
        for _ in range(QUEUE + 1):
            feed.accept(_alert().model_dump_json().encode())
            keeping_up.get_nowait()
        drained = [behind.get_nowait() for _ in range(behind.qsize())]
        return len(drained), drained[-1] is None, behind in feed._pages

    count, ended, still_subscribed = asyncio.run(scenario())

    assert (count, ended, still_subscribed) == (QUEUE, True, False)


# --- the derived-view cache ------------------------------------------------------------------


def test_a_derived_view_is_fresh_at_its_position_and_stale_once_the_archive_moves_on() -> None:
    async def scenario() -> list[str]:
        calls: list[int] = []

        async def compute() -> tuple[object, dict[str, int]]:
            calls.append(1)
            return ((("touches", 0, len(calls)),), {"n": len(calls)})

        view = DerivedView("test", compute, asyncio.Semaphore(1), min_interval_s=0)
        seen = [view.state(((("touches", 0, 1)),))]
        view.refresh()
        await asyncio.sleep(0.01)
        seen.append(view.state((("touches", 0, 1),)))
        seen.append(view.state((("touches", 0, 2),)))
        view.refresh((("touches", 0, 2),))
        await asyncio.sleep(0.01)
        seen.append(view.state((("touches", 0, 2),)))
        return seen

    assert asyncio.run(scenario()) == ["computing", "fresh", "stale", "fresh"]


def test_a_failed_computation_is_reported_with_its_reason() -> None:
    async def scenario() -> tuple[str, str | None]:
        async def compute() -> tuple[object, dict[str, int]]:
            raise RuntimeError("no history archive at x")

        view = DerivedView("test", compute, asyncio.Semaphore(1))
        view.refresh()
        await asyncio.sleep(0.01)
        return view.state(()), view.error

    assert asyncio.run(scenario()) == ("failed", "no history archive at x")
