"""Byte-progress bars for commands that read or publish large files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from streams.cli.terminal_text import printable

__all__ = ["PROGRESS_MIN_BYTES", "byte_progress"]

PROGRESS_MIN_BYTES = 1_000_000
"""Smaller inputs finish before a bar would say anything useful."""


@contextmanager
def byte_progress(total: int, label: str, console: Console) -> Iterator[Callable[[int], None]]:
    """A byte-progress bar on a terminal for inputs of PROGRESS_MIN_BYTES or more; a no-op
    otherwise. Yields the function to call with the bytes done since its last call."""
    if total < PROGRESS_MIN_BYTES or not console.is_terminal:
        yield lambda _n: None
        return
    columns = (
        TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(printable(label), total=total)  # a file name is data
        yield lambda n: bar.advance(task, n)
