"""The simulator's modes: writing history to a file, live events after it, pacing, config."""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.codec import decode
from streams.simulator import (
    Pace,
    SimulatedEvent,
    SimulationConfig,
    SimulatorError,
    WriteProgress,
    history_events,
    history_lines,
    history_records,
    live_events,
    paced,
    seconds_to_sleep,
    write_jsonl,
)

TINY = SimulationConfig(seed=5, accounts=60, reps=4, campaigns=3, deals=150, months=3)


# Writing history


def test_write_jsonl_writes_exactly_the_history_lines(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    report = write_jsonl(path, TINY)
    expected = b"".join(line + b"\n" for line in history_lines(TINY))
    assert path.read_bytes() == expected
    assert report.events == expected.count(b"\n")
    assert report.bytes == len(expected)


def test_write_jsonl_accepts_an_open_binary_file() -> None:
    sink = io.BytesIO()
    write_jsonl(sink, TINY)
    assert sink.getvalue().splitlines() == list(history_lines(TINY))


def test_write_jsonl_reports_growing_progress_ending_with_every_deal_done(tmp_path: Path) -> None:
    reports: list[WriteProgress] = []
    final = write_jsonl(tmp_path / "history.jsonl", TINY, progress=reports.append)
    assert len(reports) > 2
    assert reports[-1] == final
    assert final.done and final.deals == TINY.deals
    pairs = itertools.pairwise(reports)
    assert all(a.events <= b.events and a.deals <= b.deals for a, b in pairs)


def test_history_records_carry_time_and_partition_key() -> None:
    for record, event in zip(history_records(TINY), map(decode, history_lines(TINY)), strict=True):
        assert record.occurred_at == event.occurred_at
        assert record.key == event.partition_key


def test_history_events_are_the_lines_as_dicts() -> None:
    first = next(history_events(TINY))
    assert first == decode(next(history_lines(TINY))).model_dump(mode="json", exclude_none=True)


# Live


def test_live_events_start_after_history_and_stay_in_event_time_order() -> None:
    live = list(itertools.islice(live_events(TINY), 3_000))
    assert all(event.occurred_at >= TINY.end for event in live)
    keys = [(event.occurred_at, decode(event.line).event_id) for event in live]
    assert keys == sorted(keys)
    assert live[-1].occurred_at - live[0].occurred_at > timedelta(days=30)


def test_live_events_bring_new_deals_and_close_deals_left_open_by_history() -> None:
    history_ids = {decode(line).event_id for line in history_lines(TINY)}
    live = [decode(e.line) for e in itertools.islice(live_events(TINY), 3_000)]
    assert not history_ids & {event.event_id for event in live}
    opened = {event.deal_id for event in live if event.type == "deal_opened"}
    closed = {event.deal_id for event in live if event.type in {"deal_won", "deal_lost"}}
    assert any(int(str(deal).removeprefix("deal-")) >= TINY.deals for deal in opened)
    assert any(int(str(deal).removeprefix("deal-")) < TINY.deals for deal in closed)


def test_live_from_the_start_of_history_replays_history_exactly() -> None:
    replay = itertools.takewhile(
        lambda e: e.occurred_at < TINY.end, live_events(TINY, since=TINY.start)
    )
    assert [event.line for event in replay] == list(history_lines(TINY))


def test_live_events_refuse_a_start_before_history() -> None:
    with pytest.raises(SimulatorError, match="before the start of history"):
        live_events(TINY, since=TINY.start - timedelta(days=1))


# Pacing


def test_accelerated_pace_sleeps_until_simulated_time_catches_up() -> None:
    day_a_second = Pace.accelerated(86_400)
    wait = seconds_to_sleep(
        day_a_second, events_sent=10, simulated_elapsed=3 * 86_400, wall_elapsed=1.25
    )
    assert wait == pytest.approx(1.75)


def test_a_fixed_rate_sleeps_by_events_sent_and_never_a_negative_time() -> None:
    hundred = Pace.rate(100)
    assert seconds_to_sleep(hundred, events_sent=50, simulated_elapsed=9e9, wall_elapsed=0.2) == (
        pytest.approx(0.3)
    )
    assert seconds_to_sleep(hundred, events_sent=50, simulated_elapsed=0, wall_elapsed=2.0) == 0


@given(
    speedup=st.floats(min_value=1e-3, max_value=1e6),
    simulated=st.floats(min_value=0, max_value=1e9),
    wall=st.floats(min_value=0, max_value=1e6),
    later=st.floats(min_value=0, max_value=1e3),
)
def test_a_pace_never_asks_for_negative_sleep_and_asks_less_as_time_passes(
    speedup: float, simulated: float, wall: float, later: float
) -> None:
    pace = Pace.accelerated(speedup)
    now = seconds_to_sleep(pace, events_sent=0, simulated_elapsed=simulated, wall_elapsed=wall)
    after = seconds_to_sleep(
        pace, events_sent=0, simulated_elapsed=simulated, wall_elapsed=wall + later
    )
    assert 0 <= after <= now


class FakeClock:
    """A monotonic clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _event(minutes: int) -> SimulatedEvent:
    moment = datetime(2026, 10, 31, tzinfo=UTC) + timedelta(minutes=minutes)
    return SimulatedEvent(moment, b"{}", "deal-1")


def test_paced_sleeps_the_simulated_gaps_divided_by_the_speedup() -> None:
    clock = FakeClock()
    events = [_event(0), _event(60), _event(60), _event(180)]
    out = list(paced(events, Pace.accelerated(60), clock=clock, sleep=clock.sleep))
    assert out == events
    assert clock.sleeps == pytest.approx([60.0, 120.0])
    assert clock.now == pytest.approx(1_180.0)


def test_paced_counts_simulated_time_from_the_given_start() -> None:
    clock = FakeClock()
    start = _event(0).occurred_at - timedelta(minutes=30)
    list(
        paced(
            [_event(0)], Pace.accelerated(60), simulated_start=start, clock=clock, sleep=clock.sleep
        )
    )
    assert clock.sleeps == pytest.approx([30.0])


def test_a_pace_needs_exactly_one_positive_setting() -> None:
    with pytest.raises(SimulatorError):
        Pace()
    with pytest.raises(SimulatorError):
        Pace(events_per_second=10, speedup=10)
    with pytest.raises(SimulatorError):
        Pace.rate(0)


# Config


def test_history_starts_whole_calendar_months_before_its_end() -> None:
    assert SimulationConfig().start == datetime(2026, 4, 30, tzinfo=UTC)
    config = SimulationConfig(months=1, end=datetime(2026, 3, 31, 12, tzinfo=UTC))
    assert config.start == datetime(2026, 2, 28, 12, tzinfo=UTC)


def test_an_end_with_another_offset_is_kept_as_the_same_moment_in_utc() -> None:
    config = SimulationConfig(end=datetime(2026, 10, 31, 2, tzinfo=timezone(timedelta(hours=2))))
    assert config.end == datetime(2026, 10, 31, tzinfo=UTC)
    assert config.end.tzinfo is UTC


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"reps": 2}, "reps must be a whole number of at least 3"),
        ({"campaigns": 1}, "campaigns must be"),
        ({"deals": 0}, "deals must be"),
        ({"end": datetime(2026, 10, 31)}, "timezone-aware"),
    ],
)
def test_a_config_that_cannot_run_is_refused_with_a_reason(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(SimulatorError, match=message):
        SimulationConfig(**changes)  # type: ignore[arg-type]
