"""The archive as the dashboard reads it: opened read-only for one question, then closed."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from streams.archive_access import reading
from streams.settings import Settings

if TYPE_CHECKING:
    from projections.archive import Connection

__all__ = ["ArchiveReader"]

T = TypeVar("T")
KEPT_ANSWERS = 128
"""Answers kept for an unchanged archive file (most recently asked first out last)."""


class ArchiveReader:
    """Answers questions from the history archive off the event loop.

    Each question gets its own read-only connection over the archive's last commit,
    opened and closed around it (the sink never waits for it, nor it for the sink). A
    question asked with a key is answered from memory while the catalog (and its write-ahead
    log) has not changed since it was last answered: the sink's every commit
    changes the catalog's size or modification time.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._answers: OrderedDict[tuple[Hashable, tuple[int, ...]], Any] = OrderedDict()

    @property
    def path(self) -> str:
        """The archive file."""
        return str(self.settings.history_db_path)

    def _signature(self) -> tuple[int, ...]:
        from projections.archive.store import CATALOG

        catalog = self.settings.history_db_path / CATALOG
        signature: list[int] = []
        for file in (catalog, Path(f"{catalog}-wal")):
            try:
                status = file.stat()
            except FileNotFoundError:
                signature += [-1, -1]
            else:
                signature += [status.st_mtime_ns, status.st_size]
        return tuple(signature)

    async def ask(self, question: Callable[[Connection], T], key: Hashable | None = None) -> T:
        """Run `question` with an open connection in a worker thread; return its answer.

        With a `key` naming the question (and its parameters), an unchanged file's
        answer is reused. Raises GembaError when the archive is missing or stays busy.
        """
        if key is None:
            return await asyncio.to_thread(self._ask, question)
        signature = self._signature()
        kept = self._answers.get((key, signature), self)
        if kept is not self:
            self._answers.move_to_end((key, signature))
            answer: T = kept
            return answer
        answer = await asyncio.to_thread(self._ask, question)
        self._answers[(key, signature)] = answer
        while len(self._answers) > KEPT_ANSWERS:
            self._answers.popitem(last=False)
        return answer

    def _ask(self, question: Callable[[Connection], T]) -> T:
        with reading(self.settings) as connection:
            return question(connection)
