"""The history archive as the command line and the dashboard read it: read-only, waiting
while the worker's sink holds it for a batch.

Neither a command nor the dashboard: both open the archive through `reading`, so the rule
for a busy archive (poll until GEMBA_DUCKDB_BUSY_TIMEOUT_S, then say what to do) is
written once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from streams.errors import GembaError
from streams.settings import Settings

if TYPE_CHECKING:
    from projections.archive import Connection

__all__ = ["BUSY_POLL_S", "reading"]

BUSY_POLL_S = 0.1
"""How often a reader tries again while the sink holds the archive."""


@contextmanager
def reading(settings: Settings) -> Iterator[Connection]:
    """The archive opened for reading (`open_reader`: read-only, no file system, no
    extensions, settings locked), waiting while the sink holds it for a batch."""
    from projections.archive import ArchiveBusy, HistoryError, open_reader

    deadline = time.monotonic() + settings.duckdb_busy_timeout_s
    while True:
        try:
            connection = open_reader(settings.history_db_path)
            break
        except ArchiveBusy:
            if time.monotonic() >= deadline:
                raise GembaError(
                    f"the archive {settings.history_db_path} stayed busy for "
                    f"{settings.duckdb_busy_timeout_s:.0f}s (the worker is writing a batch); "
                    "try again, or raise GEMBA_DUCKDB_BUSY_TIMEOUT_S"
                ) from None
            time.sleep(BUSY_POLL_S)
        except HistoryError as exc:
            raise GembaError(str(exc)) from None
    try:
        yield connection
    finally:
        connection.close()
