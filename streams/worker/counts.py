"""Pipeline counters per source partition: consumed = processed + dead-lettered, replay-safe."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["PipelineCounts"]


@dataclass(frozen=True)
class PipelineCounts:
    """What one partition of `touches` gave the worker.

    `first_offset`..`last_offset` is the range read; each offset is counted once, as
    processed or dead-lettered, even when a restart replays it (at-least-once
    delivery). Kafka offsets of a plain topic are contiguous, so `consumed` comes
    from the range, independently of the two outcome counts.
    """

    first_offset: int = -1
    last_offset: int = -1
    processed: int = 0
    dead_lettered: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineCounts:
        return cls(**data) if data else cls()

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def already_seen(self, offset: int) -> bool:
        """True when this offset was counted before (a replay after a restart)."""
        return self.first_offset <= offset <= self.last_offset and self.first_offset >= 0

    def _at(self, offset: int) -> PipelineCounts:
        first = offset if self.first_offset < 0 else min(self.first_offset, offset)
        return replace(self, first_offset=first, last_offset=max(self.last_offset, offset))

    def processed_at(self, offset: int) -> PipelineCounts:
        """Count a message folded into the projections."""
        if self.already_seen(offset):
            return self
        return replace(self._at(offset), processed=self.processed + 1)

    def dead_lettered_at(self, offset: int) -> PipelineCounts:
        """Count a message sent to the dead-letter topic."""
        if self.already_seen(offset):
            return self
        return replace(self._at(offset), dead_lettered=self.dead_lettered + 1)

    @property
    def consumed(self) -> int:
        """Messages read from the partition."""
        return 0 if self.first_offset < 0 else self.last_offset - self.first_offset + 1

    @classmethod
    def total(cls, parts: Iterable[PipelineCounts]) -> PipelineCounts:
        """Sum over partitions (offsets lose their meaning and are reset)."""
        processed = dead = consumed = 0
        for part in parts:
            processed += part.processed
            dead += part.dead_lettered
            consumed += part.consumed
        return cls(first_offset=0, last_offset=consumed - 1, processed=processed,
                   dead_lettered=dead)  # fmt: skip

    def summary(self) -> dict[str, int]:
        """The three counters a user reads."""
        return {
            "consumed": self.consumed,
            "processed": self.processed,
            "dead_lettered": self.dead_lettered,
        }
