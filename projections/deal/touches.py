"""Touches: the calls, emails, meetings and quotes of a deal, with their process time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict

from events.models import (
    CallLogged,
    CallOutcome,
    Direction,
    EmailLogged,
    MeetingKind,
    MeetingLogged,
    MeetingOutcome,
    QuoteSent,
    TouchEvent,
)
from projections.categories import TouchClass, WasteCategory
from projections.intervals import Span, utc
from projections.policy.model import StandardMinutes

__all__ = ["Touch", "TouchKind", "touch_span"]

TouchKind: TypeAlias = Literal["call", "email", "meeting", "quote"]


class Touch(BaseModel):
    """One touch of a deal, classified, with its span clipped to the deal's life.

    `touch_class` is None for an inbound message: it takes none of our time.
    `rule` is the number of the DOMAIN.md touch rule that classified it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    kind: TouchKind
    direction: Direction
    started_at: datetime
    ended_at: datetime
    stage: str
    touch_class: TouchClass | None
    waste: WasteCategory | None = None
    rule: int
    outcome: CallOutcome | MeetingOutcome | None = None
    meeting_kind: MeetingKind | None = None

    @property
    def span(self) -> Span:
        """When the touch took our time, within the deal's life."""
        return Span(self.started_at, self.ended_at)

    @property
    def process_time(self) -> timedelta:
        """This touch's own process time (before merging with overlapping touches)."""
        return self.ended_at - self.started_at

    @property
    def is_rework(self) -> bool:
        """Whether this touch redoes work: it counts towards the deal's rework."""
        return self.waste is WasteCategory.REWORK

    @property
    def answers_customer(self) -> bool:
        """Whether this is our move towards the customer (it ends waiting-on-us)."""
        return (
            self.direction is Direction.OUTBOUND and self.meeting_kind is not MeetingKind.INTERNAL
        )


def touch_span(touch: TouchEvent, minutes: StandardMinutes) -> Span:
    """The touch's process time as a span, before clipping to the deal's life.

    Calls and meetings carry their own; an inbound email takes none of ours;
    outbound emails and quotes take the policy's standard time.

    SQL twin: projections.archive.fold_sql.rules.touch_span_sql.
    """
    start = utc(touch.occurred_at)
    match touch:
        case CallLogged():
            return Span(start, start + timedelta(seconds=touch.duration_seconds))
        case MeetingLogged():
            return Span(utc(touch.started_at), utc(touch.ended_at))
        case EmailLogged(direction=Direction.INBOUND):
            return Span(start, start)
        case EmailLogged():
            standard = minutes.reply if touch.replies_to_customer else minutes.email
            return Span(start, start + timedelta(minutes=standard))
        case QuoteSent():
            standard = minutes.quote if touch.version == 1 else minutes.quote_revision
            return Span(start, start + timedelta(minutes=standard))
