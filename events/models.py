"""The facts: frozen, versioned models of everything that happens to a deal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Literal, Self, TypeAlias

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

__all__ = [
    "CURRENT_SCHEMA_VERSION",
    "EVENT_TYPES",
    "CallDirection",
    "CallLogged",
    "CallOutcome",
    "CampaignResponded",
    "DealEvent",
    "DealLost",
    "DealOpened",
    "DealWon",
    "Direction",
    "EmailLogged",
    "Event",
    "EventBase",
    "MeetingKind",
    "MeetingLogged",
    "MeetingOutcome",
    "QuoteSent",
    "QuoteStatus",
    "ResponseKind",
    "StageChanged",
    "TouchEvent",
    "exact_to_the_cent",
]

CURRENT_SCHEMA_VERSION = 1
MAX_TOUCH_DURATION = timedelta(hours=24)

Id = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/+=-]+$")
]
"""Identifiers: printable, no spaces, at most 128 characters."""

Text = Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]
StageName = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _within_reason(moment: datetime) -> datetime:
    if not EARLIEST <= moment < LATEST:
        raise ValueError(
            f"must lie between {EARLIEST:%Y} and {LATEST:%Y} (UTC): a time at the edge of the "
            "calendar cannot be measured against others"
        )
    return moment


EventTime = Annotated[AwareDatetime, AfterValidator(_within_reason)]
"""A timezone-aware time from 1900 to 2200 UTC: sales facts, with room for arithmetic."""
CENT = Decimal("0.01")


def _not_a_boolean(value: object) -> object:
    """Refuse true and false where a number is due (Python counts them as 1 and 0)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not the boolean {str(value).lower()}")
    return value


def exact_to_the_cent(amount: Decimal) -> Decimal:
    """Money is kept to the cent: an amount that needs a third decimal place is refused,
    and zeros written past the cent are dropped (`100.120` is stored as `100.12`).

    An amount of two places or fewer is kept as written, so an event accepted
    before this rule encodes to the same bytes and reads the same from the log.
    Currencies without cents (JPY) write none; those with three minor digits
    (KWD, BHD) are kept to two as well: Gemba weighs deals, it keeps no ledger.
    """
    exponent = amount.as_tuple().exponent
    if not isinstance(exponent, int) or exponent >= -2:
        return amount
    cents = amount.quantize(CENT)  # cannot overflow: it has fewer places than `amount`
    if cents != amount:
        raise ValueError(
            f"{amount} has more than two decimal places; money is kept to the cent: "
            "round it at the source"
        )
    return cents


def _money_input(value: object) -> object:
    """Refuse a boolean, or an amount that is not exact to the cent, with the rule's reason."""
    value = _not_a_boolean(value)
    if isinstance(value, str | int | float | Decimal):
        try:
            written = Decimal(str(value).strip())
        except InvalidOperation:
            return value  # not a number: the decimal validator says so
        if written.is_finite():
            exact_to_the_cent(written)
    return value


MONEY_PATTERN = r"^[0-9]{1,16}(\.[0-9]{1,2}0*)?$"
"""Money written as a string: digits, and at most two decimal places past which only zeros."""

Count = Annotated[int, BeforeValidator(_not_a_boolean)]
"""A whole number; true and false are not numbers."""
Money = Annotated[
    Decimal,
    BeforeValidator(_money_input),
    Field(ge=0, max_digits=18, decimal_places=2, allow_inf_nan=False),
    AfterValidator(exact_to_the_cent),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "multipleOf": 0.01},
                {"type": "string", "pattern": MONEY_PATTERN},
            ],
            "description": "Money, exact to the cent: zero or more, at most 16 digits before "
            "the point and two decimal places (zeros past them are dropped); booleans are "
            "refused.",
        }
    ),
]
"""An amount of money: zero or more, exact to the cent (see exact_to_the_cent)."""


class Direction(StrEnum):
    """Who started the touch: us (outbound) or the customer (inbound)."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


CallDirection = Direction


class CallOutcome(StrEnum):
    """How a call ended."""

    CONNECTED = "connected"
    NO_ANSWER = "no_answer"
    VOICEMAIL = "voicemail"
    BUSY = "busy"


class MeetingKind(StrEnum):
    """What a meeting was for; `internal` means no customer attended."""

    DISCOVERY = "discovery"
    DEMO = "demo"
    NEGOTIATION = "negotiation"
    INTERNAL = "internal"


class MeetingOutcome(StrEnum):
    """Whether the meeting took place."""

    HELD = "held"
    NO_SHOW = "no_show"
    RESCHEDULED = "rescheduled"


class QuoteStatus(StrEnum):
    """Where a quote version stands."""

    SENT = "sent"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class ResponseKind(StrEnum):
    """The marketing touch a contact made."""

    AD_CLICK = "ad_click"
    WEBINAR = "webinar"
    CONTENT_DOWNLOAD = "content_download"
    EVENT_VISIT = "event_visit"
    EMAIL_CLICK = "email_click"
    FORM_SUBMISSION = "form_submission"


class EventBase(BaseModel):
    """What every fact carries: identity, time, version and who was involved."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    event_id: Id = Field(
        description="Client-supplied idempotency key; the same id is the same fact."
    )
    occurred_at: EventTime = Field(description="When it happened (event time), with a UTC offset.")
    schema_version: Annotated[Literal[1], BeforeValidator(_not_a_boolean)] = Field(
        default=1, description="Version of this event's schema."
    )
    account_id: Id = Field(description="The customer account.")
    deal_id: Id | None = Field(default=None, description="The deal (work item), when there is one.")
    contact_id: Id | None = Field(default=None, description="The person at the account.")
    actor_id: Id | None = Field(default=None, description="Who on our side did it (rep id).")
    campaign_id: Id | None = Field(default=None, description="Campaign this is attributed to.")

    @property
    def partition_key(self) -> str:
        """Kafka key: the deal, or the account while there is no deal yet."""
        return self.deal_id or self.account_id


class _NeedsDeal(EventBase):
    deal_id: Id = Field(description="The deal this fact belongs to.")


class CallLogged(EventBase):
    """A phone call with the customer, answered or not."""

    type: Literal["call"] = "call"
    direction: Direction
    outcome: CallOutcome
    duration_seconds: Count = Field(
        ge=0, le=int(MAX_TOUCH_DURATION.total_seconds()), description="Talk or ringing time."
    )

    @model_validator(mode="after")
    def _inbound_calls_connect(self) -> Self:
        if self.direction is Direction.INBOUND and self.outcome is not CallOutcome.CONNECTED:
            raise ValueError("an inbound call is logged only when it connected")
        return self


class EmailLogged(EventBase):
    """An email to or from the customer."""

    type: Literal["email"] = "email"
    direction: Direction
    replies_to_customer: bool = Field(
        default=False, description="Outbound only: it answers a message from the customer."
    )
    subject: Text | None = None

    @model_validator(mode="after")
    def _only_outbound_replies(self) -> Self:
        if self.direction is Direction.INBOUND and self.replies_to_customer:
            raise ValueError("replies_to_customer applies to outbound emails only")
        return self


class MeetingLogged(EventBase):
    """A meeting, held or not; its slot is [started_at, ended_at)."""

    type: Literal["meeting"] = "meeting"
    kind: MeetingKind
    outcome: MeetingOutcome
    started_at: EventTime
    ended_at: EventTime

    @model_validator(mode="after")
    def _slot_is_sane(self) -> Self:
        if self.ended_at <= self.started_at:
            raise ValueError("ended_at must be after started_at")
        if self.ended_at - self.started_at > MAX_TOUCH_DURATION:
            raise ValueError("a meeting cannot last longer than 24 hours")
        return self


class QuoteSent(_NeedsDeal):
    """A version of a quote sent to the customer."""

    type: Literal["quote"] = "quote"
    quote_id: Id
    version: Count = Field(ge=1, le=1000)
    amount: Money
    currency: Currency
    status: QuoteStatus = QuoteStatus.SENT
    requested_by_customer: bool = Field(
        default=False, description="The customer asked for this revision."
    )


class DealOpened(_NeedsDeal):
    """A deal (opportunity) was created; it starts flowing through the stages."""

    type: Literal["deal_opened"] = "deal_opened"
    stage: StageName = "Prospecting"
    owner_id: Id = Field(description="The rep who owns the deal.")
    name: Text | None = None
    amount: Money | None = Field(default=None, description="Expected value.")
    currency: Currency = "USD"
    segment: StageName | None = Field(default=None, description="Customer segment, e.g. SMB.")
    industry: StageName | None = None
    product: StageName | None = None


class StageChanged(_NeedsDeal):
    """The deal moved to another stage (forwards, or back: a regression)."""

    type: Literal["stage_changed"] = "stage_changed"
    from_stage: StageName | None = None
    to_stage: StageName

    @model_validator(mode="after")
    def _moves(self) -> Self:
        if self.from_stage is not None and self.from_stage == self.to_stage:
            raise ValueError("from_stage and to_stage are the same: not a stage change")
        if self.to_stage.lower() in {"won", "lost"}:
            raise ValueError("close a deal with a deal_won or deal_lost event, not a stage change")
        return self


class DealWon(_NeedsDeal):
    """The customer signed: the order, the product of the sales value stream."""

    type: Literal["deal_won"] = "deal_won"
    amount: Money
    currency: Currency = "USD"


class DealLost(_NeedsDeal):
    """The deal ended without an order."""

    type: Literal["deal_lost"] = "deal_lost"
    reason: Text
    competitor: Text | None = None


class CampaignResponded(EventBase):
    """A contact at an account responded to a marketing campaign."""

    type: Literal["campaign_response"] = "campaign_response"
    campaign_id: Id = Field(description="The campaign responded to.")
    kind: ResponseKind


TouchEvent: TypeAlias = CallLogged | EmailLogged | MeetingLogged | QuoteSent
DealEvent: TypeAlias = DealOpened | StageChanged | DealWon | DealLost

Event = Annotated[
    CallLogged
    | EmailLogged
    | MeetingLogged
    | QuoteSent
    | DealOpened
    | StageChanged
    | DealWon
    | DealLost
    | CampaignResponded,
    Field(discriminator="type"),
]
"""Any fact, told apart by its `type` field."""

EVENT_TYPES: dict[str, type[EventBase]] = {
    "call": CallLogged,
    "email": EmailLogged,
    "meeting": MeetingLogged,
    "quote": QuoteSent,
    "deal_opened": DealOpened,
    "stage_changed": StageChanged,
    "deal_won": DealWon,
    "deal_lost": DealLost,
    "campaign_response": CampaignResponded,
}
