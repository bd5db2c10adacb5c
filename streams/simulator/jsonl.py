"""Writing simulated history to a JSON-lines file, reporting progress as it goes."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import BinaryIO

from streams.simulator.config import SimulationConfig
from streams.simulator.generate import EventStream
from streams.simulator.recorder import write_lines

__all__ = ["WriteProgress", "write_jsonl"]

_BUFFER = 1 << 20


@dataclass(frozen=True)
class WriteProgress:
    """How far a write has come: events and bytes written, deals generated out of all."""

    events: int
    bytes: int
    deals: int
    deals_total: int

    @property
    def done(self) -> bool:
        """Every deal of history has been generated (the last events may still be on their way)."""
        return self.deals >= self.deals_total


def write_jsonl(
    target: str | os.PathLike[str] | BinaryIO,
    config: SimulationConfig,
    *,
    progress: Callable[[WriteProgress], None] | None = None,
) -> WriteProgress:
    """Write every event of history, one JSON object per line, in (occurred_at, event_id) order.

    `target` is a path (created or replaced) or a binary file open for writing.
    `progress` is called after each simulated day is written, and once more at the end.
    """
    stream = EventStream(config, since=config.start, until=config.end)
    events = written = 0
    report = WriteProgress(0, 0, 0, config.deals)
    with ExitStack() as stack:
        if isinstance(target, str | os.PathLike):
            sink: BinaryIO = stack.enter_context(open(target, "wb", buffering=_BUFFER))
        else:
            sink = target
        for batch in stream.batches():
            written += write_lines(batch, stream.iso, sink.write)
            events += len(batch)
            report = WriteProgress(events, written, stream.deals_done, config.deals)
            if progress is not None:
                progress(report)
    if progress is not None:
        progress(report)
    return report
