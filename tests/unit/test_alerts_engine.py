"""The stall-alert engine over fake table, topic and pipeline: clocks, due times, restarts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from events import CallOutcome, EventBase, decode, encode
from events.models import Event
from projections.deal.alerts import AlertKind, EpisodeEnd, StallAlert
from projections.deal.fold import DealFold
from projections.deal.value_stream import deal_value_stream
from projections.policy.model import Policy, default_policy
from streams.worker.alerts import AlertClock, DealAlertState, PartitionClock, StallAlertEngine
from tests.support.deal_builders import DealScript, march

DAY = timedelta(days=1)
QUIET_OPENS = march(2, 9)


class FakeTable:
    """What the engine uses of a Faust table: the local store, explicit changelog sends, and
    the changelog partitions assigned to the worker (`held`; empty before any assignment)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.changelog: list[tuple[int, str, Any]] = []
        self.held: set[int] = set()
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: "alerts-changelog")
        assigned = lambda: {TP("alerts-changelog", p) for p in self.held}  # noqa: E731
        self.app = SimpleNamespace(assignor=SimpleNamespace(assigned_actives=assigned))

    def send_changelog(self, partition: int, key: str, value: Any) -> None:
        self.changelog.append((partition, key, value))


class FakeTopic:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    async def maybe_declare(self) -> None:
        pass

    def send_soon(self, key: bytes, value: bytes) -> None:
        self.sent.append((key, value))

    def alerts(self) -> list[StallAlert]:
        return [StallAlert.model_validate_json(value) for _, value in self.sent]


@dataclass(frozen=True)
class FakeFolder:
    policy: Policy


@dataclass
class FakeStore:
    """The pipeline's stored events per deal, by event id."""

    by_deal: dict[str, dict[str, str]] = field(default_factory=dict)

    def events_of(self, deal_id: str) -> dict[str, str]:
        return self.by_deal.get(deal_id, {})


@dataclass
class FakePipeline:
    """The pipeline's stored events per deal, and a fold like its own (as of the latest event)."""

    folder: FakeFolder = field(default_factory=lambda: FakeFolder(default_policy()))
    store: FakeStore = field(default_factory=FakeStore)

    def deal_fold(self, deal_id: str) -> DealFold | None:
        stored = self.store.events_of(deal_id)
        return DealFold.of(deal_id, self.folder.policy, _decoded(stored)) if stored else None


@dataclass
class Worker:
    """One engine over fakes; `fold` does what the pipeline does for a batch of one deal.

    `live`: the live alert clock, on a fake wall clock that reads `now` (by default
    the moment the quiet deal opens); else the event clock. `behind`: partitions with
    records still unread (a backlog).
    """

    table: FakeTable = field(default_factory=FakeTable)
    topic: FakeTopic = field(default_factory=FakeTopic)
    pipeline: FakePipeline = field(default_factory=FakePipeline)
    live: bool = False
    now: datetime = QUIET_OPENS
    behind: set[int] = field(default_factory=set)
    engine: StallAlertEngine = field(init=False)

    def __post_init__(self) -> None:
        clock = AlertClock(live=self.live, wall_clock=lambda: self.now)
        self.engine = StallAlertEngine(
            self.pipeline,  # type: ignore[arg-type]
            self.table,  # type: ignore[arg-type]
            self.topic,  # type: ignore[arg-type]
            clock,
            lambda partition: partition in self.behind,
        )

    def fold(self, partition: int, *events: Event) -> None:
        deal_id = str(events[0].deal_id)
        stored = self.pipeline.store.by_deal.setdefault(deal_id, {})
        stored.update({e.event_id: encode(e).decode() for e in events})
        stream = deal_value_stream(_decoded(stored), self.pipeline.folder.policy)
        asyncio.run(self._fold(partition, stream))

    async def _fold(self, partition: int, stream: Any) -> None:
        await self.engine.deal_folded(partition, stream)
        await self.engine.batch_done(stream.as_of)

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        asyncio.run(self.engine.tick())

    def restart(self) -> Worker:
        """A new engine on the same table and topic (the changelog survived), rebuilt."""
        again = Worker(self.table, self.topic, self.pipeline, self.live, self.now, self.behind)
        asyncio.run(again.engine.rebuild())
        return again


def _decoded(stored: dict[str, str]) -> list[EventBase]:
    return [decode(raw) for raw in stored.values()]


def quiet() -> DealScript:
    return DealScript(deal_id="quiet", account_id="acct-q").opened(QUIET_OPENS)


def busy(day: int) -> DealScript:
    """A deal whose only events move its partition's event time to March `day`."""
    return (
        DealScript(deal_id="busy", account_id="acct-b")
        .opened(march(day - 1, 9))
        .call(march(day, 10), 20)
    )


def test_a_deal_stalls_when_its_own_partitions_event_time_passes_its_threshold() -> None:
    worker = Worker()
    worker.fold(0, *quiet().events)
    worker.fold(0, *busy(17).events)

    [alert] = worker.topic.alerts()
    assert (alert.kind, alert.deal_id, alert.account_id) == (AlertKind.STALLED, "quiet", "acct-q")
    assert alert.stalled_at == march(16, 9)
    assert worker.topic.sent[0][0] == b"quiet"


def test_event_time_of_another_partition_does_not_stall_a_deal() -> None:
    worker = Worker()
    worker.fold(0, *quiet().events)
    worker.fold(1, *busy(17).events)

    assert worker.topic.sent == []


def test_exactly_at_the_threshold_nothing_fires_one_instant_later_it_does() -> None:
    worker = Worker()
    worker.fold(0, *quiet().events)
    at_threshold = DealScript(deal_id="busy").opened(march(16, 9))
    worker.fold(0, *at_threshold.events)
    assert worker.topic.sent == []

    just_after = DealScript(deal_id="busy").opened(march(16, 9)).email(march(16, 9, 1))
    worker.fold(0, *just_after.events)
    assert [a.stalled_at for a in worker.topic.alerts()] == [march(16, 9)]


def test_state_goes_to_the_changelog_partition_of_the_deal() -> None:
    worker = Worker()
    worker.fold(4, *quiet().events)

    assert [(partition, key) for partition, key, _ in worker.table.changelog] == [(4, "quiet")]
    state = DealAlertState.model_validate_json(worker.table.data["quiet"])
    assert state.due_at == march(16, 9)
    assert state.account_id == "acct-q"


def test_folding_the_same_deal_again_writes_no_state_and_sends_nothing() -> None:
    worker = Worker()
    worker.fold(0, *quiet().events)
    worker.fold(0, *quiet().events)

    assert len(worker.table.changelog) == 1
    assert worker.topic.sent == []


def test_in_live_mode_the_wall_clock_alone_raises_the_alert() -> None:
    worker = Worker(live=True)
    worker.fold(0, *quiet().events)
    worker.tick(14 * 86_400)
    assert worker.topic.sent == []

    worker.tick(1)
    [alert] = worker.topic.alerts()
    assert alert.stalled_at == march(16, 9)


JUNE_1 = QUIET_OPENS.replace(month=6, day=1)
SEPTEMBER_1 = QUIET_OPENS.replace(month=9, day=1)
DECEMBER_4 = QUIET_OPENS.replace(month=12, day=4)


def june_deal(deal_id: str = "june", opened: datetime = JUNE_1) -> DealScript:
    """A deal opened months before the wall clock, with no event since."""
    return DealScript(deal_id=deal_id, account_id=f"acct-{deal_id}").opened(opened)


def test_in_live_mode_a_deal_silent_since_june_is_alerted_at_the_first_look_in_december() -> None:
    worker = Worker(live=True, now=DECEMBER_4)
    worker.fold(0, *june_deal().events)  # its partition carries nothing later

    [alert] = worker.topic.alerts()
    assert (alert.deal_id, alert.stalled_at) == ("june", JUNE_1 + 14 * DAY)
    assert worker.engine.open_episodes()["watermarks"] == {"0": DECEMBER_4.isoformat()}


def test_in_live_mode_a_partition_read_to_its_end_only_is_judged_by_the_wall_clock() -> None:
    worker = Worker(live=True, now=DECEMBER_4, behind={0})
    script = june_deal()
    worker.fold(0, *script.events)  # the backlog may hold its next events: event time rules
    worker.tick(1)
    assert worker.topic.sent == []

    worker.fold(0, *script.call(JUNE_1 + 10 * DAY, 20).events)  # it did
    worker.behind.clear()
    worker.tick(1)
    [alert] = worker.topic.alerts()
    assert alert.stalled_at == JUNE_1 + 24 * DAY


def test_in_event_mode_the_same_deal_waits_for_its_partitions_event_time() -> None:
    worker = Worker(live=False, now=DECEMBER_4)
    worker.fold(0, *june_deal().events)
    worker.tick(1)

    assert worker.topic.sent == []


def test_in_live_mode_a_restarted_engine_keeps_the_wall_clock_and_repeats_nothing() -> None:
    worker = Worker(live=True, now=DECEMBER_4)
    worker.fold(0, *june_deal().events)
    worker.now += timedelta(hours=1)  # down for an hour

    again = worker.restart()
    assert again.engine.clocks[0].watermark == DECEMBER_4 + timedelta(hours=1)
    again.tick(1)
    again.fold(0, *june_deal("september", SEPTEMBER_1).events)  # sent while it was down
    again.fold(0, *june_deal().events)

    assert [a.deal_id for a in again.topic.alerts()] == ["june", "september"]


def test_a_touch_at_the_latest_instant_ends_the_episode_once_the_watermark_passes_it() -> None:
    worker = Worker(live=True)
    script = quiet()
    worker.fold(0, *script.events)
    worker.tick(15 * 86_400)
    script.call(march(17, 9), 20)  # this very instant of the wall clock
    worker.fold(0, *script.events)
    assert [a.kind for a in worker.topic.alerts()] == [AlertKind.STALLED]

    worker.tick(0.5)
    [_, ended] = worker.topic.alerts()
    assert ended.kind is AlertKind.UNSTALLED
    assert ended.ended_by is EpisodeEnd.VALUE_ADDED_TOUCH
    assert ended.occurred_at == march(17, 9)


def test_a_late_event_that_ends_no_silence_leaves_the_alerted_episode_open() -> None:
    worker = Worker()
    worker.fold(0, *quiet().events)
    worker.fold(0, *busy(17).events)  # quiet stalled on March 16, as of its partition's time

    late = quiet().call(march(3, 9), 1, outcome=CallOutcome.NO_ANSWER)  # before the stall
    worker.fold(0, *late.events)

    assert [a.kind for a in worker.topic.alerts()] == [AlertKind.STALLED]
    assert [a["deal_id"] for a in worker.engine.open_episodes()["open"]] == ["quiet"]


def test_a_late_value_added_touch_withdraws_the_episode_it_disproves() -> None:
    worker = Worker()
    worker.fold(0, *quiet().events)
    worker.fold(0, *busy(17).events)

    late = quiet().call(march(10, 9), 20)  # the silence ended on March 10: no stall by the 17th
    worker.fold(0, *late.events)

    alerts = worker.topic.alerts()
    assert [(a.kind, a.ended_by) for a in alerts] == [
        (AlertKind.STALLED, None), (AlertKind.UNSTALLED, EpisodeEnd.WITHDRAWN),
    ]  # fmt: skip
    assert worker.engine.open_episodes()["open"] == []


def test_a_restarted_engine_rebuilds_due_times_and_clocks_and_repeats_nothing() -> None:
    worker = Worker()
    worker.fold(0, *quiet().events)
    worker.fold(0, *busy(17).events)
    assert len(worker.topic.sent) == 1

    again = worker.restart()
    asyncio.run(again.engine.batch_done(None))
    again.tick(1)
    assert len(worker.topic.sent) == 1
    assert again.engine.clocks[0].watermark is not None
    assert again.engine.clocks[0].watermark >= march(2, 9)

    script = quiet().call(march(18, 9), 20)
    again.fold(0, *script.events)
    again.fold(0, *busy(19).events)
    assert [a.kind for a in again.topic.alerts()] == [AlertKind.STALLED, AlertKind.UNSTALLED]


def test_a_restarted_engine_fires_what_fell_due_while_it_was_down() -> None:
    worker = Worker()
    worker.fold(0, *quiet().events)

    again = worker.restart()
    again.fold(0, *busy(17).events)

    assert [a.deal_id for a in again.topic.alerts()] == ["quiet"]


def test_after_a_rebalance_the_deals_of_a_handed_over_partition_are_left_to_their_owner() -> None:
    worker = Worker(live=True)
    worker.fold(0, *quiet().events)
    worker.fold(1, *busy(10).events)

    written = len(worker.table.changelog)

    worker.table.held = {1}  # partition 0 went to another worker
    again = worker.restart()
    again.tick(30 * 86_400)

    assert [alert.deal_id for alert in again.topic.alerts()] == ["busy"]
    page = again.engine.open_episodes()
    assert [alert["deal_id"] for alert in page["open"]] == ["busy"]
    assert list(page["watermarks"]) == ["1"]
    assert {partition for partition, _, _ in again.table.changelog[written:]} == {1}


def test_while_partitions_are_being_handed_over_nothing_is_alerted_until_rebuilt() -> None:
    worker = Worker(live=True)
    worker.fold(0, *quiet().events)

    asyncio.run(worker.engine.partitions_revoked(None, set()))
    worker.tick(30 * 86_400)

    assert worker.topic.alerts() == []
    asyncio.run(worker.engine.rebuild())  # the partition stayed here: its deals are due again
    worker.tick(1)
    assert [alert.deal_id for alert in worker.topic.alerts()] == ["quiet"]


def test_the_open_episodes_page_lists_stalled_deals_and_the_quality_page_closed_ones() -> None:
    worker = Worker()
    worker.fold(0, *quiet().events)
    lost = DealScript(deal_id="gone", account_id="acct-g").opened(march(2, 9)).lost(march(25, 9))
    worker.fold(0, *lost.events)
    worker.fold(0, *busy(17).events)

    page = worker.engine.open_episodes()
    assert [alert["deal_id"] for alert in page["open"]] == ["quiet"]
    assert page["watermarks"] == {"0": march(25, 9).isoformat()}
    quality = worker.engine.quality()
    assert quality["closed_deals"] == 1
    assert quality["stages"] == [
        {"stage": "Prospecting", "alerts": 1, "lost": 1, "slipped": 0, "precision": 1.0}
    ]


def test_a_partition_clock_never_goes_back() -> None:
    clock = PartitionClock()
    clock.saw(march(10, 9))
    clock.advance(march(10, 9, 1))
    clock.saw(march(3, 9))
    clock.advance(march(3, 9))

    assert clock.event_time == march(10, 9)
    assert clock.watermark == march(10, 9, 1)
    clock.advance(None)
    assert clock.watermark == march(10, 9, 1)


def test_thresholds_learned_from_won_deals_take_over_once_there_are_enough() -> None:
    base = default_policy()
    learning = base.model_copy(
        update={
            "stall": base.stall.model_copy(
                update={"learn_from_history": True, "learn_min_won_deals": 3}
            )
        }
    )
    worker = Worker(pipeline=FakePipeline(folder=FakeFolder(learning)))
    for n in range(3):
        won = DealScript(deal_id=f"won-{n}").opened(march(1, 9)).stage(march(3, 9), "Qualification")
        worker.fold(0, *won.won(march(4, 9)).events)
    worker.fold(0, *quiet().events)
    worker.fold(0, *busy(6).events)

    [alert] = worker.topic.alerts()
    assert alert.threshold == 2 * DAY
    assert alert.threshold_basis.describe() == "learned from 3 won deals"
