"""One row of an export, read column by column; a bad cell refuses the row, naming the column."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, tzinfo
from decimal import Decimal
from typing import IO, Any

from events.importers.outcome import ImportItem, Refused, Skipped
from events.importers.source import csv_rows
from events.importers.values import BadValue, build, parse_bool, parse_money, parse_time
from events.models import EventBase

__all__ = ["Row", "TimeRules", "each_row"]


@dataclass(frozen=True)
class TimeRules:
    """How to read times: the zone of naive ones, extra strptime formats, where dates land."""

    zone: tzinfo = UTC
    formats: tuple[str, ...] = ()
    date_at: time = time(0)

    def parse(self, text: str) -> datetime:
        """A timezone-aware time (see `values.parse_time`)."""
        return parse_time(text, self.zone, self.formats, self.date_at)


@dataclass(frozen=True)
class Row:
    """A CSV row with its place in the file; cell readers raise BadValue naming the column."""

    values: Mapping[str, str]
    source: str
    location: str
    times: TimeRules = field(default_factory=TimeRules)

    def text(self, *columns: str) -> str:
        """The first non-empty value among `columns` (exports name a column differently)."""
        for column in columns:
            value = self.values.get(column, "").strip()
            if value:
                return value
        return ""

    def has(self, *columns: str) -> bool:
        """Whether the export has any of these columns at all (empty or not)."""
        return any(column in self.values for column in columns)

    def required(self, *columns: str, why: str = "") -> str:
        """The value, or BadValue `no <column>` with `why` appended."""
        value = self.text(*columns)
        if not value:
            raise BadValue(f"no {columns[0]}{why}")
        return value

    def time(self, *columns: str, why: str = "") -> datetime:
        """A required time from the first non-empty column."""
        found = self.optional_time(*columns)
        if found is None:
            raise BadValue(f"no {columns[0]}{why}")
        return found

    def optional_time(self, *columns: str) -> datetime | None:
        """A time from the first non-empty column, or None when all are empty."""
        for column in columns:
            value = self.values.get(column, "").strip()
            if value:
                try:
                    return self.times.parse(value)
                except BadValue as exc:
                    raise BadValue(f"{column}: {exc}") from None
        return None

    def date_only(self, *columns: str) -> bool:
        """Whether the first non-empty column holds a date without a time of day."""
        return ":" not in self.text(*columns)

    def money(self, *columns: str) -> Decimal | None:
        """An amount from the first non-empty column, or None."""
        value = self.text(*columns)
        try:
            return parse_money(value)
        except BadValue as exc:
            raise BadValue(f"{columns[0]}: {exc}") from None

    def flag(self, *columns: str) -> bool:
        """A true/false column (empty is false)."""
        try:
            return parse_bool(self.text(*columns))
        except BadValue as exc:
            raise BadValue(f"{columns[0]}: {exc}") from None

    def whole_number(self, *columns: str, default: int = 0) -> int:
        """An integer column such as a duration in seconds (empty is `default`)."""
        value = self.text(*columns).replace(",", "")
        if not value:
            return default
        try:
            return round(float(value))
        except ValueError:
            raise BadValue(f"{columns[0]}: {value!r} is not a number") from None

    def build(self, model: type[EventBase], **fields: Any) -> EventBase | Refused:
        """The event, or this row refused with the model's reasons."""
        return build(model, self.source, self.location, fields)

    def refused(self, reason: str) -> Refused:
        """This row refused, with `reason`."""
        return Refused(self.source, self.location, reason)

    def skipped(self, reason: str) -> Skipped:
        """This row skipped on purpose, with `reason`."""
        return Skipped(self.source, self.location, reason)


RowConverter = Callable[[Row], Iterable[ImportItem]]


def each_row(
    stream: IO[bytes], source: str, convert: RowConverter, times: TimeRules | None = None
) -> Iterator[ImportItem]:
    """Convert every CSV row; a BadValue refuses the whole row (nothing of it is yielded)."""
    rules = times or TimeRules()
    for item in csv_rows(stream, source):
        if isinstance(item, Refused):
            yield item
            continue
        line, values = item
        row = Row(values, source, f"line {line}", rules)
        try:
            converted = list(convert(row))
        except BadValue as exc:
            yield row.refused(str(exc))
            continue
        yield from converted
