"""Future-dated events: refused at every door, or dead-lettered by the worker, with the reason.

Whether an event is future-dated depends on when it was recorded (a Kafka record's
timestamp, the time a request came or an import ran), which is always given: nothing
here reads a clock.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings

from events import EventBase, EventRejected, decode, encode
from events.future import DEFAULT_FUTURE_SKEW, FutureLimit
from events.importers.outcome import Refused, Skipped, refuse_future_dated
from events.producer import publish_jsonl
from projections import default_policy
from streams.settings import Settings
from streams.simulator import SimulationConfig, history_lines
from streams.worker.deal_store import DealEventStore
from streams.worker.keyed import KeyedMachine, delivered_record, read_back_record, record_time
from streams.worker.missed import MissedRecord
from streams.worker.pipeline import ValueStreamPipeline
from streams.worker.value_streams import ValueStreamFolder
from tests.support.deal_builders import DealScript, march
from tests.support.fakes import FakeApp, FakeCounters, FakeStream, FakeTopic
from tests.support.strategies import Recorded, future_dated, on_time

LIMIT = FutureLimit()
RECORDED = datetime(2026, 3, 2, 12, tzinfo=UTC)


@settings(max_examples=300)
@given(future_dated())
def test_an_event_dated_beyond_the_allowance_after_it_was_recorded_is_refused_naming_occurred_at(
    message: Recorded,
) -> None:
    event = decode(message.value)  # a valid event: only the moment makes it wrong

    with pytest.raises(EventRejected) as refused:
        LIMIT.check(event, message.recorded_at)

    [problem] = refused.value.problems
    assert problem.field == "occurred_at"
    assert problem.reason == LIMIT.reason


@settings(max_examples=300)
@given(on_time())
def test_an_event_within_the_allowance_or_in_the_past_is_taken(message: Recorded) -> None:
    LIMIT.check(decode(message.value), message.recorded_at)


def test_the_allowance_is_a_day_by_default_and_its_edge_is_taken() -> None:
    call = DealScript().opened(march(2, 9)).events[0]

    assert timedelta(days=1) == DEFAULT_FUTURE_SKEW
    assert not LIMIT.is_future(call, call.occurred_at - timedelta(days=1))
    assert LIMIT.is_future(call, call.occurred_at - timedelta(days=1, microseconds=1))
    assert LIMIT.reason.startswith("future-dated: more than 1 day after the event was recorded")
    assert "90 minutes" in FutureLimit(timedelta(minutes=90)).reason


def test_a_negative_allowance_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        FutureLimit(timedelta(seconds=-1))


def test_the_setting_gives_the_allowance_in_seconds_and_inf_lifts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().future_limit == FutureLimit(timedelta(days=1))
    assert Settings(max_future_skew_s=3600).future_limit == FutureLimit(timedelta(hours=1))
    monkeypatch.setenv("GEMBA_MAX_FUTURE_SKEW_S", "inf")
    assert Settings().future_limit is None
    with pytest.raises(ValueError, match="max_future_skew_s"):
        Settings(max_future_skew_s=-1)


def test_simulated_history_is_never_future_dated_as_of_its_end() -> None:
    config = SimulationConfig(seed=5, deals=40)

    lines = list(history_lines(config))

    assert not [line for line in lines if LIMIT.is_future(decode(line), config.end)]


# --- the doors -------------------------------------------------------------------------------


class KeptPublisher:
    def __init__(self) -> None:
        self.published: list[EventBase] = []

    def publish(self, event: EventBase) -> None:
        self.published.append(event)

    def publish_encoded(self, key: str, value: bytes) -> None:
        raise AssertionError("gemba produce publishes decoded events")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _dated(event_id: str, at: datetime) -> bytes:
    [opened] = DealScript(deal_id=event_id, account_id="acme").opened(at).events
    return encode(opened)


def test_gemba_produce_refuses_future_dated_lines_by_number_and_publishes_the_rest() -> None:
    publisher = KeptPublisher()
    lines = [
        _dated("old", RECORDED - timedelta(days=400)),
        _dated("tomorrow", RECORDED + timedelta(hours=23)),
        _dated("next-year", RECORDED + timedelta(days=365)),
    ]

    report = publish_jsonl(lines, publisher, future=LIMIT, recorded_at=RECORDED)

    assert [e.deal_id for e in publisher.published] == ["old", "tomorrow"]
    assert [(r.line, str(r.error)) for r in report.refused] == [(3, f"occurred_at: {LIMIT.reason}")]


def test_without_a_limit_gemba_produce_takes_any_date() -> None:
    publisher = KeptPublisher()

    publish_jsonl([_dated("far", datetime(2150, 1, 1, tzinfo=UTC))], publisher)

    assert len(publisher.published) == 1


def test_an_import_refuses_future_dated_rows_by_event_id_and_takes_old_data() -> None:
    old = decode(_dated("old", datetime(2009, 5, 1, tzinfo=UTC)))
    future = decode(_dated("future", datetime(2027, 5, 1, tzinfo=UTC)))
    skipped = Skipped("Task.csv", "line 4", "a note")

    items = list(refuse_future_dated([old, skipped, future], "Task.csv", LIMIT, RECORDED))

    assert items[:2] == [old, skipped]
    assert items[2] == Refused(
        "Task.csv", f"event {future.event_id} (occurred_at 2027-05-01T00:00:00+00:00)", LIMIT.reason
    )


# --- the worker ------------------------------------------------------------------------------


def _pipeline(dead_letters: FakeTopic) -> Any:
    app: Any = FakeApp()
    pipeline = ValueStreamPipeline(
        folder=ValueStreamFolder(default_policy()),
        value_streams=FakeTopic(),  # type: ignore[arg-type]
        contributions=None,  # type: ignore[arg-type]
    )
    pipeline.machine = KeyedMachine(
        app=app,
        part=pipeline,
        store=DealEventStore(app, {}),  # type: ignore[arg-type]
        counters=FakeCounters(),  # type: ignore[arg-type]
        dead_letters=dead_letters,  # type: ignore[arg-type]
        source_topic="touches",
        future_limit=LIMIT,
    )
    return pipeline


def _record(value: bytes, offset: int, timestamp_s: float) -> Any:
    message = SimpleNamespace(
        topic="touches", partition=0, offset=offset, key=b"d", value=value, timestamp=timestamp_s
    )
    return SimpleNamespace(message=message)


def test_the_worker_dead_letters_an_event_dated_beyond_the_allowance_after_its_record() -> None:
    dead_letters = FakeTopic()
    pipeline = _pipeline(dead_letters)
    recorded_s = RECORDED.timestamp()
    late, early = _dated("late", RECORDED), _dated("early", RECORDED + timedelta(days=2))

    async def take() -> None:
        stream: Any = FakeStream()
        await pipeline.take(stream, _record(late, 0, recorded_s))
        await pipeline.take(stream, _record(early, 1, recorded_s))

    asyncio.run(take())

    counts = pipeline.counts()
    assert (counts.consumed, counts.processed, counts.dead_lettered) == (2, 1, 1)
    [(_, value, headers)] = dead_letters.sent
    assert value == early
    assert headers["reason"].decode() == f"occurred_at: {LIMIT.reason}"
    assert headers["source.offset"] == b"1"
    assert orjson.loads(value)["deal_id"] == "early"


def test_a_record_read_back_by_offset_is_judged_by_its_own_timestamp() -> None:
    read_back = MissedRecord("touches", 0, 7, int(RECORDED.timestamp() * 1000), b"d", b"{}")
    delivered = _record(b"{}", 8, RECORDED.timestamp()).message

    assert record_time(read_back_record(read_back)) == RECORDED
    assert record_time(delivered_record(delivered)) == RECORDED
    no_time = SimpleNamespace(**{**vars(delivered), "timestamp": None, "headers": None})
    assert record_time(delivered_record(no_time)) is None
