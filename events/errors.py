"""Errors raised by the events package: what was wrong with an event, field by field."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EventError", "EventRejected", "FieldProblem", "PublishError", "TomlUnreadable"]


class EventError(Exception):
    """Root of every error the events package raises."""


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One reason an event was refused: the field (dotted path) and why."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class EventRejected(EventError):
    """The bytes or mapping given are not a valid event; `problems` says where and why."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class PublishError(EventError):
    """Events could not be written to Kafka; the message says what to check."""


class TomlUnreadable(EventError):
    """TOML text that cannot be read: bad syntax, or nested too deep; where (if known) and why."""

    def __init__(self, reason: str, line: int | None = None, column: int | None = None) -> None:
        self.reason = reason
        self.line = line
        self.column = column
        where = "" if line is None else f" (at line {line}, column {column})"
        super().__init__(f"{reason}{where}")
