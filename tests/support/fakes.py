"""Fakes of the Faust objects a worker's pipeline touches: the app, a topic, a stream."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

__all__ = ["FakeApp", "FakeStream", "FakeTopic"]


@dataclass
class FakeApp:
    """What a pipeline asks of the Faust app: whether it is recovering its tables."""

    in_recovery: bool = False


class FakeTopic:
    """A topic that keeps what is sent to it, as (key, value, headers), in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, Any, dict[str, bytes]]] = []
        # what send_dead_letter reads to cut a letter to the producer's request limit
        self.app = SimpleNamespace(conf=SimpleNamespace(producer_max_request_size=1_000_000))

    async def send(
        self,
        key: Any = None,
        value: Any = None,
        headers: dict[str, bytes] | None = None,
        force: bool = False,
    ) -> None:
        self.sent.append((key, value, headers or {}))


class FakeStream:
    """A stream that keeps the events acked, in order, and ignores which one is current."""

    def __init__(self) -> None:
        self.acked: list[Any] = []

    def _set_current_event(self, event: Any) -> None:
        pass

    async def ack(self, event: Any) -> None:
        self.acked.append(event)


class FakeCounters(dict[str, Any]):
    """A keyed machine's counters table: empty rows by default, and no partitions assigned yet."""

    app = SimpleNamespace(assignor=SimpleNamespace(assigned_actives=set))

    def __missing__(self, key: str) -> dict[str, int]:
        return {}
