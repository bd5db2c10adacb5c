"""Helpers for the value-stream tests: a deal script builder and Hypothesis strategies."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Self

from hypothesis import strategies as st

from events.models import (
    CallLogged,
    CallOutcome,
    CampaignResponded,
    DealLost,
    DealOpened,
    DealWon,
    Direction,
    EmailLogged,
    Event,
    MeetingKind,
    MeetingLogged,
    MeetingOutcome,
    QuoteSent,
    ResponseKind,
    StageChanged,
)

__all__ = ["DealScript", "campaign_response", "deal_events", "march"]


def march(day: int, hour: int, minute: int = 0) -> datetime:
    """A time in March 2026, UTC (the month of the DOMAIN.md worked example)."""
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


@dataclass
class DealScript:
    """Write a deal's events by hand, one line per fact; ids are numbered in writing order."""

    deal_id: str = "deal-1"
    account_id: str = "acct-1"
    events: list[Event] = field(default_factory=list)

    def _next_id(self) -> str:
        return f"{self.deal_id}-e{len(self.events) + 1:03d}"

    def _common(self, at: datetime) -> dict[str, object]:
        return {
            "event_id": self._next_id(),
            "occurred_at": at,
            "account_id": self.account_id,
            "deal_id": self.deal_id,
        }

    def opened(self, at: datetime, stage: str = "Prospecting", segment: str | None = None) -> Self:
        self.events.append(
            DealOpened.model_validate(
                {
                    **self._common(at),
                    "stage": stage,
                    "owner_id": "rep-1",
                    "segment": segment,
                    "product": "Widgets",
                    "amount": Decimal("20000"),
                }
            )
        )
        return self

    def stage(self, at: datetime, to: str) -> Self:
        self.events.append(StageChanged.model_validate({**self._common(at), "to_stage": to}))
        return self

    def call(
        self,
        at: datetime,
        minutes: float,
        outcome: CallOutcome = CallOutcome.CONNECTED,
        direction: Direction = Direction.OUTBOUND,
    ) -> Self:
        self.events.append(
            CallLogged.model_validate(
                {
                    **self._common(at),
                    "direction": direction,
                    "outcome": outcome,
                    "duration_seconds": int(minutes * 60),
                }
            )
        )
        return self

    def email(
        self, at: datetime, direction: Direction = Direction.OUTBOUND, reply: bool = False
    ) -> Self:
        self.events.append(
            EmailLogged.model_validate(
                {**self._common(at), "direction": direction, "replies_to_customer": reply}
            )
        )
        return self

    def meeting(
        self,
        start: datetime,
        end: datetime,
        kind: MeetingKind,
        outcome: MeetingOutcome = MeetingOutcome.HELD,
    ) -> Self:
        self.events.append(
            MeetingLogged.model_validate(
                {
                    **self._common(start),
                    "kind": kind,
                    "outcome": outcome,
                    "started_at": start,
                    "ended_at": end,
                }
            )
        )
        return self

    def quote(
        self, at: datetime, version: int, requested: bool = False, quote_id: str = "q-1"
    ) -> Self:
        self.events.append(
            QuoteSent.model_validate(
                {
                    **self._common(at),
                    "quote_id": quote_id,
                    "version": version,
                    "amount": Decimal("24000"),
                    "currency": "USD",
                    "requested_by_customer": requested,
                }
            )
        )
        return self

    def won(self, at: datetime, amount: str = "24000") -> Self:
        self.events.append(DealWon.model_validate({**self._common(at), "amount": Decimal(amount)}))
        return self

    def lost(self, at: datetime) -> Self:
        self.events.append(DealLost.model_validate({**self._common(at), "reason": "budget"}))
        return self


STAGES = ["Prospecting", "Qualification", "Discovery", "Proposal", "Negotiation", "Legal review"]
OFFSETS = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]


@st.composite
def _moment(draw: st.DrawFn, opened: datetime) -> datetime:
    """A time from two days before the deal opened to sixty days after, in any offset."""
    seconds = draw(st.integers(min_value=-2 * 86_400, max_value=60 * 86_400))
    return (opened + timedelta(seconds=seconds)).astimezone(draw(st.sampled_from(OFFSETS)))


@st.composite
def _fact(draw: st.DrawFn, script: DealScript, opened: datetime) -> None:
    at = draw(_moment(opened))
    kind = draw(st.sampled_from(["stage", "call", "email", "meeting", "quote", "close"]))
    if kind == "stage":
        script.stage(at, draw(st.sampled_from(STAGES)))
    elif kind == "call":
        direction = draw(st.sampled_from(Direction))
        outcome = CallOutcome.CONNECTED
        if direction is Direction.OUTBOUND:
            outcome = draw(st.sampled_from(CallOutcome))
        script.call(at, draw(st.integers(0, 180)), outcome, direction)
    elif kind == "email":
        direction = draw(st.sampled_from(Direction))
        reply = direction is Direction.OUTBOUND and draw(st.booleans())
        script.email(at, direction, reply)
    elif kind == "meeting":
        end = at + timedelta(minutes=draw(st.integers(1, 240)))
        script.meeting(
            at, end, draw(st.sampled_from(MeetingKind)), draw(st.sampled_from(MeetingOutcome))
        )
    elif kind == "quote":
        script.quote(
            at, draw(st.integers(1, 3)), draw(st.booleans()), draw(st.sampled_from(["q-1", "q-2"]))
        )
    elif draw(st.booleans()):
        script.won(at)
    else:
        script.lost(at)


@st.composite
def deal_events(draw: st.DrawFn, deal_id: str = "deal-1", max_facts: int = 25) -> list[Event]:
    """A random, valid set of one deal's events: opened, then any mix of facts.

    Facts fall before the open, after the close and across stage changes, with
    mixed UTC offsets, so that clipping, late events and overlaps all get tried.
    """
    opened = datetime(2026, 1, 5, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 30 * 86_400)))
    script = DealScript(deal_id=deal_id, account_id=f"acct-{deal_id}")
    script.opened(opened, draw(st.sampled_from(STAGES[:3])), draw(st.sampled_from([None, "SMB"])))
    for _ in range(draw(st.integers(0, max_facts))):
        draw(_fact(script, opened))
    return script.events


def campaign_response(at: datetime, event_id: str = "cr-1") -> CampaignResponded:
    """A marketing touch with no deal: it belongs to no deal's value stream."""
    return CampaignResponded(
        event_id=event_id,
        occurred_at=at,
        account_id="acct-1",
        campaign_id="c-1",
        kind=ResponseKind.WEBINAR,
    )
