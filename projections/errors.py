"""Errors raised by the projections package: what was wrong and what to do."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AttributionError",
    "DealNotOpened",
    "NotOneDeal",
    "PolicyError",
    "PolicyProblem",
    "ProjectionError",
    "TooManyCampaigns",
]


class ProjectionError(Exception):
    """Root of every error the projections package raises."""


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One reason a policy file was refused: where (line, key) and why."""

    reason: str
    key: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "line unknown"
        if self.column is not None:
            where += f", column {self.column}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.reason}"


class PolicyError(ProjectionError):
    """A policy file could not be read or is not a valid policy; `problems` say where and why."""

    def __init__(self, source: str, problems: list[PolicyProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        details = "\n".join(f"  {source}: {problem}" for problem in problems)
        super().__init__(f"policy {source} refused; fix it and load it again:\n{details}")


class DealNotOpened(ProjectionError):
    """The events hold no deal_opened for the deal (as of the watermark): nothing to measure yet."""


class NotOneDeal(ProjectionError):
    """Events of several deals, or of none, were given where one deal's events were expected."""


class AttributionError(ProjectionError):
    """Campaign attribution was given inputs it cannot credit; the message says what to pass."""


class TooManyCampaigns(AttributionError):
    """A journey touches too many distinct campaigns for exact Shapley values (2^n coalitions)."""
