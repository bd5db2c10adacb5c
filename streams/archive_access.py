"""The history archive as the command line and the dashboard read it: a read-only snapshot
of its last commit (the worker's sink never makes a reader wait, nor a reader the sink).

Neither a command nor the dashboard: both open the archive through `reading`, so the rule
for a busy archive (only while an archive of the old single-file format is converted:
poll until GEMBA_DUCKDB_BUSY_TIMEOUT_S, then say what to do) is written once.
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
"""How often a reader tries again while another process converts an old-format archive."""


@contextmanager
def reading(settings: Settings) -> Iterator[Connection]:
    """The archive opened for reading (`open_reader`: a snapshot of the last commit, no file
    system, no extensions, settings locked); waits only while an old archive is converted."""
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
                    f"{settings.duckdb_busy_timeout_s:.0f}s (another process holds its old "
                    "single-file format); try again, or raise GEMBA_DUCKDB_BUSY_TIMEOUT_S"
                ) from None
            time.sleep(BUSY_POLL_S)
        except HistoryError as exc:
            raise GembaError(str(exc)) from None
    try:
        yield connection
    finally:
        connection.close()
