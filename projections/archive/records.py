"""What the archive receives: Kafka records in batches, the events and alerts they carry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
from pydantic import TypeAdapter, ValidationError

from events import Event, EventBase, EventRejected, decode
from projections.deal.value_stream import DealValueStream
from projections.intervals import EPOCH

__all__ = [
    "AlertRow",
    "ArchiveBatch",
    "BatchOutcome",
    "LogRecord",
    "OffsetGap",
    "archived_event",
    "decoded_or_none",
    "recorded_at_from_ms",
]


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One Kafka record as the sink received it; `recorded_at` is its Kafka timestamp."""

    topic: str
    partition: int
    offset: int
    recorded_at: datetime
    value: bytes
    key: bytes | None = None
    headers: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class ArchiveBatch:
    """What one commit appends: records of `touches`, of the dead letters and of alerts;
    from a caller that decoded and folded them, the events and value streams too.

    `decoded`, when given, is each record of `events` decoded, in the same order (None for
    one that is not an event): the writer then decodes nothing. `value_streams`, when given,
    are the folded value streams of the deals the batch touched, stored as they are (the
    writer folds nothing); None: the writer marks the touched deals for its own refold.
    """

    events: Sequence[LogRecord] = ()
    dead_letters: Sequence[LogRecord] = ()
    alerts: Sequence[LogRecord] = ()
    decoded: Sequence[EventBase | None] | None = None
    value_streams: Sequence[DealValueStream] | None = None


@dataclass(frozen=True, slots=True)
class OffsetGap:
    """Offsets of a partition the archive never received (the consumer was ahead of it)."""

    topic: str
    partition: int
    first: int
    last: int


@dataclass(frozen=True)
class BatchOutcome:
    """What a batch changed: rows stored, records skipped, deals refolded (and still to be),
    offsets now held."""

    stored: int = 0
    duplicates: int = 0
    already_archived: int = 0
    not_events: int = 0
    dead_letters: int = 0
    alerts: int = 0
    deals_refreshed: int = 0
    failed_deals: tuple[str, ...] = ()
    gaps: tuple[OffsetGap, ...] = ()
    next_offsets: Mapping[tuple[str, int], int] = field(default_factory=dict)
    deals_to_refresh: int = 0


def recorded_at_from_ms(milliseconds: int) -> datetime:
    """A Kafka record timestamp (ms since the epoch) as a UTC time, the same way everywhere."""
    return EPOCH + timedelta(milliseconds=milliseconds)


@dataclass(frozen=True, slots=True)
class AlertRow:
    """The fields of an alert the archive indexes; the whole alert is kept as JSON."""

    alert_id: str
    kind: str | None
    deal_id: str | None
    stage: str | None
    occurred_at: datetime | None

    @classmethod
    def parse(cls, value: bytes) -> AlertRow | None:
        """The alert's fields, or None if the bytes are not an alert."""
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(document, dict) or not isinstance(document.get("alert_id"), str):
            return None
        occurred = document.get("occurred_at")
        return cls(
            alert_id=document["alert_id"],
            kind=document.get("kind"),
            deal_id=document.get("deal_id"),
            stage=document.get("stage"),
            occurred_at=datetime.fromisoformat(occurred) if isinstance(occurred, str) else None,
        )


_EVENT_JSON: TypeAdapter[Event] = TypeAdapter(Event)


def archived_event(payload: str | bytes) -> EventBase:
    """An archived (canonical, validated) payload as an event: straight from JSON when it
    is of the current schema version, else through the codec, which upcasts it."""
    try:
        event: EventBase = _EVENT_JSON.validate_json(payload)
        return event
    except ValidationError:
        return decode(payload)


def decoded_or_none(value: bytes) -> EventBase | None:
    """A record's value as an event; None for what the codec rejects."""
    try:
        return decode(value)
    except EventRejected:
        return None  # the streaming worker dead-letters it; it reaches the archive from there
