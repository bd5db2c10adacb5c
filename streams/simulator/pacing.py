"""Pacing live events against a clock: a fixed rate, or simulated time running faster."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from streams.simulator.config import SimulatorError
from streams.simulator.generate import SimulatedEvent

__all__ = ["Pace", "paced", "seconds_to_sleep"]


@dataclass(frozen=True)
class Pace:
    """How fast live events come out: `events_per_second`, or `speedup` simulated seconds
    per wall-clock second (86,400 is one simulated day a second). Exactly one is set."""

    events_per_second: float | None = None
    speedup: float | None = None

    def __post_init__(self) -> None:
        given = [value for value in (self.events_per_second, self.speedup) if value is not None]
        if len(given) != 1:
            raise SimulatorError("give exactly one of events_per_second and speedup")
        if given[0] <= 0:
            raise SimulatorError("a pace must be greater than zero")

    @classmethod
    def rate(cls, events_per_second: float) -> Pace:
        """A steady number of events a second, whatever their event times."""
        return cls(events_per_second=events_per_second)

    @classmethod
    def accelerated(cls, speedup: float) -> Pace:
        """Event time runs `speedup` times faster than the wall clock."""
        return cls(speedup=speedup)


def seconds_to_sleep(
    pace: Pace, *, events_sent: int, simulated_elapsed: float, wall_elapsed: float
) -> float:
    """How long to wait before sending the next event; never negative.

    `events_sent` is how many went out already, `simulated_elapsed` the event
    time of the next one minus the simulated start, and `wall_elapsed` the
    wall-clock seconds since sending began. Behind schedule, the answer is 0.
    """
    if pace.speedup is not None:
        due = simulated_elapsed / pace.speedup
    else:
        assert pace.events_per_second is not None
        due = events_sent / pace.events_per_second
    return max(0.0, due - wall_elapsed)


def paced(
    events: Iterable[SimulatedEvent],
    pace: Pace,
    *,
    simulated_start: datetime | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[SimulatedEvent]:
    """Yield `events`, sleeping between them to keep to `pace`.

    Simulated time starts at `simulated_start` (default: the first event's time)
    when the first event is asked for. `clock` and `sleep` are injected so that
    tests can use a fake clock.
    """
    started, origin = clock(), simulated_start
    for sent, event in enumerate(events):
        origin = event.occurred_at if origin is None else origin
        wait = seconds_to_sleep(
            pace,
            events_sent=sent,
            simulated_elapsed=(event.occurred_at - origin).total_seconds(),
            wall_elapsed=clock() - started,
        )
        if wait > 0:
            sleep(wait)
        yield event
