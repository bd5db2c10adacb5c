"""Future-dated events: an event said to happen well after it was recorded is refused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from events.errors import EventRejected, FieldProblem
from events.models import EventBase

__all__ = ["DEFAULT_FUTURE_SKEW", "FutureLimit"]

DEFAULT_FUTURE_SKEW = timedelta(days=1)
"""How far ahead of the moment it is recorded an event may be dated: clocks drift, and a
CRM may stamp a touch a little early, but a fact cannot be known before it happens."""


def _span(length: timedelta) -> str:
    """A length of time in words, to the largest whole unit: '1 day', '90 minutes'."""
    seconds = int(length.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "0 seconds"


@dataclass(frozen=True, slots=True)
class FutureLimit:
    """How far after the moment it was recorded an event's `occurred_at` may lie.

    The moment is given, never read from a clock here: the Kafka record's timestamp in
    the worker (so a replay of the log decides the same), the time of the request or of
    the run at the door.
    """

    skew: timedelta = DEFAULT_FUTURE_SKEW

    def __post_init__(self) -> None:
        if self.skew < timedelta(0):
            raise ValueError("the allowance for future-dated events cannot be negative")

    def is_future(self, event: EventBase, recorded_at: datetime) -> bool:
        """True when the event is dated more than the allowance after `recorded_at`."""
        return event.occurred_at - recorded_at > self.skew

    def problem(self, event: EventBase, recorded_at: datetime) -> FieldProblem | None:
        """Why the event is refused as future-dated, or None if it is not."""
        if not self.is_future(event, recorded_at):
            return None
        return FieldProblem("occurred_at", self.reason)

    @property
    def reason(self) -> str:
        """The same words for every future-dated event, so that they can be counted together."""
        return (
            f"future-dated: more than {_span(self.skew)} after the event was recorded "
            "(check the sending system's clock and time zone)"
        )

    def check(self, event: EventBase, recorded_at: datetime) -> None:
        """Raise EventRejected, naming occurred_at, if the event is future-dated."""
        problem = self.problem(event, recorded_at)
        if problem is not None:
            raise EventRejected([problem])
