"""Stalled-deal alerts in the worker: episode state per deal, due times, clocks, `deal-alerts`."""

from __future__ import annotations

import asyncio
import heapq
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import orjson
import structlog
from faust.types import TP, TableT, TopicT
from pydantic import BaseModel, ConfigDict, Field

from events.future import DEFAULT_FUTURE_SKEW
from projections.deal.alerts import (
    AlertLedger,
    ClosedDeal,
    StallAlert,
    StallCheck,
    StallThresholds,
    check_stalls,
    live_watermark,
    stall_alert_quality,
    won_stage_times,
)
from projections.deal.value_stream import DealValueStream
from projections.policy.model import Policy
from streams.settings import Settings
from streams.worker.batching import raw_topic
from streams.worker.partitioned import held_partitions, store_in_partition
from streams.worker.pipeline import ValueStreamPipeline
from streams.worker.webhook import attach_webhook_sender

__all__ = [
    "ALERT_STATE_TABLE",
    "AlertClock",
    "DealAlertState",
    "PartitionClock",
    "StallAlertEngine",
    "alerts_topic",
    "attach_stall_alerts",
]

log = structlog.get_logger("gemba.alerts")
ALERT_STATE_TABLE = "deal-alert-state"
NO_OPEN_EPISODE = b'"open":{}'
STILL_OPEN = b'"outcome":null'
ALERT_TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1"}
"""Alerts are events too: kept, so that replays and audits can compare them."""


class DealAlertState(BaseModel):
    """What the worker keeps per deal for alerting (a changelog-backed table value, JSON bytes).

    `partition` is the deal's partition of `touches`, which is also the changelog
    partition of this value; `due_at` is when the deal must be looked at again
    (None: only its next event can change anything); `checked_at` the watermark it
    was last looked at, from which a restarted worker restores its clocks.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    partition: int
    account_id: str
    ledger: AlertLedger = AlertLedger()
    due_at: datetime | None = None
    checked_at: datetime | None = None
    outcome: ClosedDeal | None = None
    won_stage_times: dict[str, timedelta] = Field(default_factory=dict)


@dataclass
class PartitionClock:
    """Event time of one partition of `touches` and the watermark its deals are checked at.

    Each partition keeps its own clock: a deal's events all come through one
    partition, in order, so with the event clock a deal is never judged against
    event time that its own partition has not reached; that is what makes replays
    give the same alerts, however the partitions interleave. With the live clock
    the watermark is `live_watermark` of the wall clock and this event time.
    """

    event_time: datetime | None = None
    """The latest event time seen on the partition."""
    watermark: datetime | None = None

    def saw(self, event_time: datetime) -> None:
        """An event of the partition is dated `event_time`."""
        if self.event_time is None or event_time > self.event_time:
            self.event_time = event_time

    def advance(self, moment: datetime | None) -> None:
        """Move the watermark on to `moment`; it never goes back."""
        if moment is not None and (self.watermark is None or moment > self.watermark):
            self.watermark = moment


def _wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AlertClock:
    """What a partition's deals are judged against: event time, or (live) the wall clock.

    `live` False (GEMBA_ALERT_CLOCK=event): the partition's latest event time, so a
    replay of the log gives the same alerts. `live` True: `live_watermark` of the
    wall clock, the partition's latest event time and `future_skew`
    (GEMBA_MAX_FUTURE_SKEW_S; None: no limit), so a restart cannot set it back;
    but only for a partition read to its end. While the worker reads a backlog, the
    partition's clock follows its event time, as in a replay: a deal's next events
    may still be in the backlog, and judged by the wall clock it would be alerted,
    then withdrawn when they arrive.
    """

    live: bool = False
    future_skew: timedelta | None = DEFAULT_FUTURE_SKEW
    wall_clock: Callable[[], datetime] = _wall_clock

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertClock:
        """The clock GEMBA_ALERT_CLOCK and GEMBA_MAX_FUTURE_SKEW_S ask for."""
        limit = settings.future_limit
        return cls(settings.alert_clock == "live", None if limit is None else limit.skew)

    def watermark(self, event_time: datetime | None, read_to_end: bool) -> datetime | None:
        """The moment to check a partition at, whose latest event time is `event_time`
        (`read_to_end`: no record of it waits unread)."""
        if not (self.live and read_to_end):
            return event_time
        return live_watermark(self.wall_clock(), event_time, self.future_skew)


def _never_behind(partition: int) -> bool:
    return False


class WonDealLearner:
    """Stall thresholds learned from the won deals in this worker's state (if the policy learns).

    Recomputed at batch boundaries only, so one batch sees one set of thresholds.
    Learned thresholds depend on which won deals this worker has folded: with
    learning on, a replay gives the same alerts only where the thresholds agree.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.thresholds = StallThresholds(policy)
        self._times: dict[str, dict[str, timedelta]] = {}
        self._changed = False

    def add(self, deal_id: str, times: dict[str, timedelta]) -> None:
        """A won deal's time per stage."""
        if self.policy.stall.learn_from_history and times and self._times.get(deal_id) != times:
            self._times[deal_id] = times
            self._changed = True

    def refresh(self) -> None:
        """Recompute the thresholds if won deals came in since the last time."""
        if not self._changed:
            return
        self.thresholds = StallThresholds.from_won_deals(self.policy, self._times.values())
        self._changed = False


class StallAlertEngine:
    """A FoldObserver that turns stall episodes into alerts on `deal-alerts`, each exactly once.

    - `deal_folded`: the pipeline refolded a deal (as of its latest event): check it,
      emit what is new, keep its ledger and its next due time.
    - `batch_done` (event time moved) and `tick` (live mode, wall clock): every deal
      whose due time the watermark of its partition has passed is refolded as of that
      watermark and checked again: it has crossed its threshold (deal-stalled), or a
      touch at the very instant of its latest event ended its episode (deal-unstalled).
    Table writes carry the deal's partition explicitly (`send_changelog` plus the local
    store), because timers run outside stream iteration, with no current event. An
    asyncio lock keeps the agent and the timer from checking the same deal at once.
    Alerts go out just before the state that records them, through the same producer
    buffer: a crash can repeat an alert only in the instant between the two (same
    `alert_id`, which the webhook sender skips), and never loses one.
    With the event clock, the same log gives the same alerts, whatever the batches
    and restarts, as long as each partition's events come in event-time order; an
    event that comes late may disprove an alerted episode (closed as `withdrawn`).
    """

    def __init__(
        self,
        pipeline: ValueStreamPipeline,
        table: TableT[Any, Any],
        topic: TopicT,
        clock: AlertClock | None = None,
        reading_backlog: Callable[[int], bool] = _never_behind,
    ) -> None:
        self.pipeline = pipeline
        self.table = table
        self.topic = topic
        self.policy: Policy = pipeline.folder.policy
        self.clocks: dict[int, PartitionClock] = defaultdict(PartitionClock)
        self.learner = WonDealLearner(self.policy)
        self.alerts_sent = 0
        self.clock = clock or AlertClock()
        self.reading_backlog = reading_backlog
        self._due: defaultdict[int, list[tuple[datetime, str]]] = defaultdict(list)
        self._lock = asyncio.Lock()

    async def deal_folded(self, partition: int, stream: DealValueStream) -> None:
        """Check a refolded deal at its own latest event; see the class docstring."""
        async with self._lock:
            clock = self.clocks[partition]
            clock.saw(stream.as_of)
            self._advance(partition)
            state = self._state_for(stream.deal_id, partition)
            if state.ledger.open and clock.watermark and clock.watermark > stream.as_of:
                # A late event of a stalled deal: an episode alerted as of its partition's
                # event time may start after the deal's own latest event, where the stream
                # cannot show it (it would look disproved and be withdrawn). Judge it there.
                await self._recheck(stream.deal_id, state, clock.watermark)
                return
            check = check_stalls(stream, state.account_id, self.learner.thresholds, state.ledger)
            # A touch starting at the stream's very watermark is not in it yet; if it is a
            # value-added one it ends the episode, so a stalled deal is looked at again
            # as soon as the watermark passes its latest event.
            due = stream.as_of if check.stalled else check.due_at
            await self._settle(stream.deal_id, state, check, due, stream)

    async def batch_done(self, watermark: datetime | None) -> None:
        """Event time moved on: fire what is due (each partition by its own clock)."""
        self.learner.refresh()
        async with self._lock:
            for partition in list(self._due):
                await self._fire_due(partition)

    async def tick(self) -> None:
        """Live mode: move every partition's watermark on with the wall clock, fire what is due."""
        async with self._lock:
            for partition in list(self.clocks):
                self._advance(partition)
                await self._fire_due(partition)

    async def partitions_revoked(self, *args: Any, **kwargs: Any) -> None:
        """A rebalance began: nothing is due here until `rebuild` reads the table again (the
        partitions may go to another worker, which alerts their deals from then on)."""
        async with self._lock:
            self._due.clear()

    async def rebuild(self) -> None:
        """After recovery: due times, clocks and won deals from the table (this worker's part).

        The table's memory also holds deals of partitions this worker has handed over (what
        it wrote for them) and of its standby partitions: they are left to their owners, or
        a live clock here would alert them a second time and write their state."""
        held = held_partitions(self.table)
        deals = 0
        async with self._lock:
            self._due.clear()
            for partition in [p for p in self.clocks if held is not None and p not in held]:
                del self.clocks[partition]
            for deal_id, raw in list(self.table.data.items()):
                stored = orjson.loads(raw)
                partition = int(stored["partition"])
                if held is not None and partition not in held:
                    continue
                deals += 1
                if stored["checked_at"]:
                    self.clocks[partition].saw(datetime.fromisoformat(stored["checked_at"]))
                if stored["due_at"]:
                    due = datetime.fromisoformat(stored["due_at"])
                    self._due[partition].append((due, deal_id))
                if stored["won_stage_times"]:
                    self.learner.add(deal_id, DealAlertState.model_validate(stored).won_stage_times)
            for partition in list(self.clocks):
                self._advance(partition)
            for heap in self._due.values():
                heapq.heapify(heap)
            self.learner.refresh()
        log.info(
            "stall_alerts_recovered",
            deals=deals,
            due=sum(len(heap) for heap in self._due.values()),
        )

    def open_episodes(self) -> dict[str, Any]:
        """Open stall episodes of this worker's partitions (their deal-stalled alerts), oldest
        first."""
        held = held_partitions(self.table)
        alerts = [
            alert
            for raw in self.table.data.values()
            if NO_OPEN_EPISODE not in raw
            for stored in [orjson.loads(raw)]
            if held is None or stored["partition"] in held
            for alert in stored["ledger"]["open"].values()
        ]
        alerts.sort(
            key=lambda alert: (datetime.fromisoformat(alert["stalled_at"]), alert["deal_id"])
        )
        watermarks = {
            str(partition): clock.watermark.isoformat()
            for partition, clock in sorted(self.clocks.items())
            if clock.watermark is not None
        }
        return {"watermarks": watermarks, "open": alerts}

    def quality(self) -> dict[str, Any]:
        """Alert precision per stage over the closed deals of this worker's partitions."""
        held = held_partitions(self.table)
        closed = [
            ClosedDeal.model_validate(stored["outcome"])
            for raw in self.table.data.values()
            if STILL_OPEN not in raw
            for stored in [orjson.loads(raw)]
            if held is None or stored["partition"] in held
        ]
        return {
            "policy_version": self.learner.thresholds.policy_version,
            "closed_deals": len(closed),
            "stages": [
                row.model_dump(mode="json") for row in stall_alert_quality(closed, self.policy)
            ],
        }

    def _advance(self, partition: int) -> None:
        clock = self.clocks[partition]
        read_to_end = not self.reading_backlog(partition)
        clock.advance(self.clock.watermark(clock.event_time, read_to_end))

    async def _fire_due(self, partition: int) -> None:
        watermark = self.clocks[partition].watermark
        heap = self._due[partition]
        while watermark is not None and heap and heap[0][0] < watermark:
            due, deal_id = heapq.heappop(heap)
            state = self._stored(deal_id)
            if state is None or state.due_at != due:
                continue  # superseded by a later check
            await self._recheck(deal_id, state, watermark)

    async def _recheck(self, deal_id: str, state: DealAlertState, watermark: datetime) -> None:
        fold = self.pipeline.deal_fold(deal_id)
        if fold is None:
            return
        try:
            stream = fold.value_stream(watermark)
            check = check_stalls(stream, state.account_id, self.learner.thresholds, state.ledger)
        except Exception:
            log.exception("stall_check_failed", deal_id=deal_id, watermark=watermark.isoformat())
            return
        await self._settle(deal_id, state, check, check.due_at, stream)

    async def _settle(
        self,
        deal_id: str,
        state: DealAlertState,
        check: StallCheck,
        due: datetime | None,
        stream: DealValueStream,
    ) -> None:
        for alert in check.alerts:
            await self._publish(alert)
        won = won_stage_times(stream)
        self.learner.add(deal_id, won)
        settled = state.model_copy(
            update={
                "ledger": check.ledger,
                "due_at": due,
                "checked_at": stream.as_of,
                "outcome": check.outcome,
                "won_stage_times": won,
            }
        )
        if settled.model_copy(update={"checked_at": state.checked_at}) != state:
            self._save(deal_id, settled)
        if due is not None and due != state.due_at:
            heapq.heappush(self._due[settled.partition], (due, deal_id))

    async def _publish(self, alert: StallAlert) -> None:
        # Into the producer's buffer, right before the state that records it (`_save`), so
        # the two reach Kafka together, and a commit (which flushes the buffer) covers both.
        # Sent around the buffer (`send(force=True)`), the alert went out at once while its
        # state waited behind the buffer's backlog (thousands of changelog records when
        # catching up): a SIGKILL in between sent it again after the restart.
        self.topic.send_soon(key=alert.deal_id.encode(), value=alert.model_dump_json().encode())
        self.alerts_sent += 1
        log.debug("stall_alert_sent", alert_id=alert.alert_id, kind=str(alert.kind))

    def _state_for(self, deal_id: str, partition: int) -> DealAlertState:
        state = self._stored(deal_id)
        if state is None:
            return DealAlertState(partition=partition, account_id=self._account_of(deal_id))
        if state.partition != partition:
            return state.model_copy(update={"partition": partition})
        return state

    def _stored(self, deal_id: str) -> DealAlertState | None:
        raw = self.table.data.get(deal_id)
        return DealAlertState.model_validate_json(raw) if raw else None

    def _save(self, deal_id: str, state: DealAlertState) -> None:
        value = state.model_dump_json().encode()
        self.table.send_changelog(state.partition, deal_id, value)
        store_in_partition(self.table, state.partition, deal_id, value)  # from timers too

    def _account_of(self, deal_id: str) -> str:
        fold = self.pipeline.deal_fold(deal_id)
        return (fold.account_id or "") if fold is not None else ""


def alerts_topic(app: faust.App, settings: Settings) -> TopicT:
    """The `deal-alerts` topic: JSON alerts keyed by deal id, kept forever."""
    return raw_topic(
        app,
        settings.alerts_topic,
        partitions=settings.topic_partitions,
        config=ALERT_TOPIC_CONFIG,
        internal=True,  # declared by the worker before it subscribes (the webhook agent does)
    )


def _backlog_of(app: faust.App, pipeline: ValueStreamPipeline) -> Callable[[int], bool]:
    """Whether records of a partition of `touches` wait unread by the pipeline (or its end
    is not known yet: the consumer has not fetched from it)."""

    def reading_backlog(partition: int) -> bool:
        try:
            highwater = app.consumer.highwater(TP(pipeline.source_topic, partition))
        except Exception:  # not started, or the partition left while we looked
            return True
        read = pipeline.machine.last_offset(partition)
        return highwater is None or read + 1 < highwater

    return reading_backlog


def _register_pages(app: faust.App, engine: StallAlertEngine) -> None:
    @app.page("/gemba/alerts/")
    async def open_episodes_page(web: Any, request: Any) -> Any:
        return web.json(engine.open_episodes())

    @app.page("/gemba/alerts/quality/")
    async def quality_page(web: Any, request: Any) -> Any:
        return web.json(engine.quality())


def attach_stall_alerts(
    app: faust.App, pipeline: ValueStreamPipeline, settings: Settings
) -> StallAlertEngine:
    """Add stall alerts to a built app: state table, observer, clock, pages, webhook sender.

    Call it in `build_worker` after the pipeline is built. Nothing connects until the
    worker starts. In live mode (GEMBA_ALERT_CLOCK=live) a timer ticks every
    GEMBA_ALERT_TICK_S seconds; with GEMBA_ALERT_WEBHOOK_URL set, alerts are delivered.
    """
    topic = alerts_topic(app, settings)
    # Values are JSON bytes: one object per deal in memory, nothing for the GC to walk.
    table = app.Table(ALERT_STATE_TABLE, value_type=bytes)
    engine = StallAlertEngine(
        pipeline, table, topic, AlertClock.from_settings(settings), _backlog_of(app, pipeline)
    )
    pipeline.observers.append(engine)
    app.on_partitions_revoked.connect(engine.partitions_revoked)
    table.on_recover(engine.rebuild)

    @app.task  # type: ignore[untyped-decorator]
    async def declare_alerts_topic() -> None:
        await topic.maybe_declare()

    if settings.alert_clock == "live":

        @app.timer(interval=settings.alert_tick_s, name="stall-alert-clock")  # type: ignore[untyped-decorator]
        async def advance_alert_clock() -> None:
            await engine.tick()

    _register_pages(app, engine)
    attach_webhook_sender(app, settings, topic)
    return engine
