"""The archive's errors: one root, small subclasses saying what to do."""

from __future__ import annotations

from projections.errors import ProjectionError

__all__ = ["ArchiveBusy", "ArchiveMissing", "HistoryError", "StatementRefused"]


class HistoryError(ProjectionError):
    """Root of the archive's errors."""


class ArchiveMissing(HistoryError):
    """There is no archive file where one was expected."""


class ArchiveBusy(HistoryError):
    """Another process holds the archive file (the sink writing, or a reader): try again."""


class StatementRefused(HistoryError):
    """A statement given to the read-only query is not a query."""
