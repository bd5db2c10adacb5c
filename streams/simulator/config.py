"""The simulation's parameters: one frozen object, checked once when it is made."""

from __future__ import annotations

from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from streams.errors import GembaError

__all__ = ["DEFAULT_HISTORY_END", "SimulationConfig", "SimulatorError"]

DEFAULT_HISTORY_END = datetime(2026, 10, 31, tzinfo=UTC)
"""Where generated history stops by default; the wall clock is never read."""


class SimulatorError(GembaError, ValueError):
    """A simulation cannot be run as asked; the message says which parameter to change."""


def _months_before(moment: datetime, months: int) -> datetime:
    """The same day and time `months` calendar months earlier (clamped to the month's end)."""
    year, month = divmod(moment.year * 12 + moment.month - 1 - months, 12)
    day = min(moment.day, monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


@dataclass(frozen=True)
class SimulationConfig:
    """How big a market to simulate, over how long, from which seed.

    The same config always produces the same events, byte for byte.
    """

    seed: int = 42
    accounts: int = 400
    reps: int = 8
    campaigns: int = 6
    deals: int = 1_500
    months: int = 6
    end: datetime = DEFAULT_HISTORY_END

    def __post_init__(self) -> None:
        minimums = {"accounts": 1, "reps": 3, "campaigns": 2, "deals": 1, "months": 1}
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise SimulatorError(f"{name} must be a whole number of at least {minimum}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise SimulatorError("seed must be a whole number")
        if self.end.tzinfo is None or self.end.utcoffset() is None:
            raise SimulatorError("end must be timezone-aware, e.g. 2026-10-31T00:00:00Z")
        if self.end.utcoffset() != timedelta(0) or self.end.microsecond:
            object.__setattr__(self, "end", self.end.astimezone(UTC).replace(microsecond=0))

    @property
    def start(self) -> datetime:
        """Where history begins: `months` calendar months before `end`."""
        return _months_before(self.end, self.months)
