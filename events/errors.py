"""Errors raised by the events package: what was wrong with an event, field by field."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EventError", "EventRejected", "FieldProblem", "PublishError"]


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
