"""Simulated time: whole seconds since the epoch, office hours, and ISO 8601 text."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import TypeAlias

__all__ = [
    "DAY",
    "HOUR",
    "MINUTE",
    "WEEK",
    "IsoFormatter",
    "clock_faces",
    "epoch_seconds",
    "iso_formatter",
    "to_datetime",
    "working_time",
    "working_time_before",
]

MINUTE = 60
HOUR = 3_600
DAY = 86_400
WEEK = 7 * DAY

IsoFormatter: TypeAlias = Callable[[int], str]
"""Epoch seconds to ISO 8601 text in UTC with a 'Z'."""

_OPENS = 8 * HOUR
_CLOSES = 18 * HOUR
_THURSDAY = 3  # 1970-01-01 was a Thursday; Monday is 0


def epoch_seconds(moment: datetime) -> int:
    """Whole seconds since 1970-01-01T00:00Z."""
    return int(moment.timestamp())


def to_datetime(seconds: int) -> datetime:
    """The UTC moment `seconds` after the epoch."""
    return datetime.fromtimestamp(seconds, UTC)


def working_time(seconds: int) -> int:
    """The first office moment (Monday to Friday, 08:00-18:00 UTC) at or after `seconds`.

    Moments outside office hours move to the next opening, keeping a spread of
    minutes so that touches do not all land on the hour.
    """
    day = seconds // DAY
    clock = seconds - day * DAY
    if _OPENS <= clock < _CLOSES and (day + _THURSDAY) % 7 < 5:
        return seconds
    if clock < _OPENS:
        clock = _OPENS + clock % HOUR
    elif clock >= _CLOSES:
        day += 1
        clock = _OPENS + clock % HOUR
    weekday = (day + _THURSDAY) % 7
    if weekday >= 5:
        day += 7 - weekday
    return day * DAY + clock


def working_time_before(seconds: int, limit: int) -> int:
    """`working_time(seconds)` if that is still before `limit`, else `seconds` itself."""
    moment = working_time(seconds)
    return moment if moment < limit else seconds


@cache
def clock_faces() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """'HH:MM:' for every minute of a day and 'SSZ' for every second of a minute."""
    minutes = tuple(f"{minute // 60:02d}:{minute % 60:02d}:" for minute in range(DAY // MINUTE))
    seconds = tuple(f"{second:02d}Z" for second in range(MINUTE))
    return minutes, seconds


def iso_formatter() -> IsoFormatter:
    """A function turning epoch seconds into '2026-03-02T09:00:00Z', caching each day's date."""
    dates: dict[int, str] = {}
    minutes, seconds = clock_faces()

    def iso(moment: int) -> str:
        day, clock = divmod(moment, DAY)
        date = dates.get(day)
        if date is None:
            date = dates[day] = to_datetime(day * DAY).strftime("%Y-%m-%dT")
        return date + minutes[clock // MINUTE] + seconds[clock % MINUTE]

    return iso
