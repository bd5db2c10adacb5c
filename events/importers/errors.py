"""Errors of the importers: a mapping that cannot be used, a file that cannot be read."""

from __future__ import annotations

from events.errors import EventError

__all__ = ["ImporterError", "MappingInvalid", "SourceUnreadable"]


class ImporterError(EventError):
    """Root of the importers' errors; a single bad row is never one (it is `Refused`)."""


class MappingInvalid(ImporterError):
    """A mapping file is missing, is not TOML, or names something that does not exist."""


class SourceUnreadable(ImporterError):
    """The file to import cannot be read as the kind it was said to be."""
