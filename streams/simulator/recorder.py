"""Events recorded compactly, then rendered as plain dicts in the codec's exact JSON shape."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias

import orjson

from streams.simulator.worktime import DAY, MINUTE, IsoFormatter, clock_faces

__all__ = [
    "DayBuckets",
    "DealRecorder",
    "Pending",
    "Window",
    "render",
    "response",
    "write_lines",
]

Pending: TypeAlias = tuple[Any, ...]
"""A recorded event: (epoch seconds, event id, partition key, shape number, *fields).

Its first two items order events by (occurred_at, event_id). It holds only
numbers and text, so the garbage collector soon stops tracking it; rendering
waits until the event is released, so that few serialised lines live at once.
"""

Shape: TypeAlias = Callable[[Pending, str, IsoFormatter], dict[str, Any]]
"""Builds an event's JSON document from its record, its time as text, and a time
formatter for any other moment it carries."""

DayBuckets: TypeAlias = defaultdict[int, list[Pending]]
"""Recorded events by day (epoch seconds // 86,400), each day's list in no particular order."""

Window: TypeAlias = tuple[int, int]
"""The [from, until) epoch seconds whose events are kept; the rest are counted, not kept."""


def _deal_opened(event: Pending, occurred: str, iso: IsoFormatter) -> dict[str, Any]:
    _, event_id, _, _, account, deal, contact, rep, name, amount, segment, industry, product = event
    return {
        "event_id": event_id, "occurred_at": occurred, "schema_version": 1, "account_id": account,
        "deal_id": deal, "contact_id": contact, "actor_id": rep, "type": "deal_opened",
        "stage": "Prospecting", "owner_id": rep, "name": name, "amount": f"{amount}.00",
        "currency": "USD", "segment": segment, "industry": industry, "product": product,
    }  # fmt: skip


def _stage_changed(event: Pending, occurred: str, iso: IsoFormatter) -> dict[str, Any]:
    _, event_id, _, _, account, deal, rep, from_stage, to_stage = event
    return {
        "event_id": event_id, "occurred_at": occurred, "schema_version": 1, "account_id": account,
        "deal_id": deal, "actor_id": rep, "type": "stage_changed", "from_stage": from_stage,
        "to_stage": to_stage,
    }  # fmt: skip


def _call(event: Pending, occurred: str, iso: IsoFormatter) -> dict[str, Any]:
    _, event_id, _, _, account, deal, contact, rep, direction, outcome, seconds = event
    return {
        "event_id": event_id, "occurred_at": occurred, "schema_version": 1, "account_id": account,
        "deal_id": deal, "contact_id": contact, "actor_id": rep, "type": "call",
        "direction": direction, "outcome": outcome, "duration_seconds": seconds,
    }  # fmt: skip


def _email(event: Pending, occurred: str, iso: IsoFormatter) -> dict[str, Any]:
    _, event_id, _, _, account, deal, contact, rep, direction, replies = event
    return {
        "event_id": event_id, "occurred_at": occurred, "schema_version": 1, "account_id": account,
        "deal_id": deal, "contact_id": contact, "actor_id": rep, "type": "email",
        "direction": direction, "replies_to_customer": replies,
    }  # fmt: skip


def _meeting(event: Pending, occurred: str, iso: IsoFormatter) -> dict[str, Any]:
    at, event_id, _, _, account, deal, contact, rep, kind, outcome, minutes = event
    document = {
        "event_id": event_id, "occurred_at": occurred, "schema_version": 1, "account_id": account,
        "deal_id": deal, "contact_id": contact, "actor_id": rep, "type": "meeting", "kind": kind,
        "outcome": outcome, "started_at": occurred, "ended_at": iso(at + minutes * MINUTE),
    }  # fmt: skip
    if contact is None:
        del document["contact_id"]
    return document


def _quote(event: Pending, occurred: str, iso: IsoFormatter) -> dict[str, Any]:
    _, event_id, _, _, account, deal, contact, rep, quote_id, version, amount, requested = event
    return {
        "event_id": event_id, "occurred_at": occurred, "schema_version": 1, "account_id": account,
        "deal_id": deal, "contact_id": contact, "actor_id": rep, "type": "quote",
        "quote_id": quote_id, "version": version, "amount": f"{amount}.00", "currency": "USD",
        "status": "sent", "requested_by_customer": requested,
    }  # fmt: skip


def _deal_won(event: Pending, occurred: str, iso: IsoFormatter) -> dict[str, Any]:
    _, event_id, _, _, account, deal, rep, amount = event
    return {
        "event_id": event_id, "occurred_at": occurred, "schema_version": 1, "account_id": account,
        "deal_id": deal, "actor_id": rep, "type": "deal_won", "amount": f"{amount}.00",
        "currency": "USD",
    }  # fmt: skip


def _deal_lost(event: Pending, occurred: str, iso: IsoFormatter) -> dict[str, Any]:
    _, event_id, _, _, account, deal, rep, reason, competitor = event
    document = {
        "event_id": event_id, "occurred_at": occurred, "schema_version": 1, "account_id": account,
        "deal_id": deal, "actor_id": rep, "type": "deal_lost", "reason": reason,
        "competitor": competitor,
    }  # fmt: skip
    if competitor is None:
        del document["competitor"]
    return document


def _campaign_response(event: Pending, occurred: str, iso: IsoFormatter) -> dict[str, Any]:
    _, event_id, account, _, contact, campaign, kind = event
    return {
        "event_id": event_id, "occurred_at": occurred, "schema_version": 1, "account_id": account,
        "contact_id": contact, "campaign_id": campaign, "type": "campaign_response", "kind": kind,
    }  # fmt: skip


SHAPES: tuple[Shape, ...] = (
    _deal_opened,
    _stage_changed,
    _call,
    _email,
    _meeting,
    _quote,
    _deal_won,
    _deal_lost,
    _campaign_response,
)
"""Every shape, by its number in a recorded event."""
(
    DEAL_OPENED,
    STAGE_CHANGED,
    CALL,
    EMAIL,
    MEETING,
    QUOTE,
    DEAL_WON,
    DEAL_LOST,
    CAMPAIGN_RESPONSE,
) = range(len(SHAPES))


def response(
    at: int, event_id: str, account_id: str, contact_id: str, campaign_id: str, kind: str
) -> Pending:
    """A campaign response: marketing knows the account and the contact, not the deal."""
    return (at, event_id, account_id, CAMPAIGN_RESPONSE, contact_id, campaign_id, kind)


def _day_of(events: list[Pending], iso: IsoFormatter) -> tuple[int, str]:
    """The start of the first event's UTC day and its 'YYYY-MM-DDT'."""
    day_starts = events[0][0] // DAY * DAY
    return day_starts, iso(day_starts)[:11]


def render(events: list[Pending], iso: IsoFormatter) -> Iterator[bytes]:
    """The JSON line (no newline) of each recorded event, in the list's order.

    Fastest when the events share one UTC day, as `EventStream.batches` gives
    them, and when each line is used and dropped before the next is made.
    """
    if not events:
        return
    dumps, (minutes, seconds), shapes = orjson.dumps, clock_faces(), SHAPES
    day_starts, date = _day_of(events, iso)
    for event in events:
        clock = event[0] - day_starts
        if 0 <= clock < DAY:
            occurred = date + minutes[clock // MINUTE] + seconds[clock % MINUTE]
        else:
            occurred = iso(event[0])
        yield dumps(shapes[event[3]](event, occurred, iso))


def write_lines(events: list[Pending], iso: IsoFormatter, write: Callable[[bytes], int]) -> int:
    """Write each recorded event as a JSON line ending in a newline; give the bytes written.

    The same lines as `render`, with less overhead per line.
    """
    if not events:
        return 0
    dumps, (minutes, seconds), shapes = orjson.dumps, clock_faces(), SHAPES
    day_starts, date = _day_of(events, iso)
    newline, written = orjson.OPT_APPEND_NEWLINE, 0
    for event in events:
        clock = event[0] - day_starts
        if 0 <= clock < DAY:
            occurred = date + minutes[clock // MINUTE] + seconds[clock % MINUTE]
        else:
            occurred = iso(event[0])
        written += write(dumps(shapes[event[3]](event, occurred, iso), option=newline))
    return written


class DealRecorder:
    """Records one deal's facts; event ids are numbered in the order the facts are made.

    Facts outside the window still take their number, so that the same deal
    gets the same ids whichever window (history or live) is being produced.
    """

    __slots__ = ("_account", "_from", "_out", "_prefix", "_rep", "_until", "count", "deal_id")

    def __init__(
        self, *, prefix: str, account_id: str, deal_id: str, rep_id: str, window: Window,
        out: DayBuckets, used: int = 0,
    ) -> None:  # fmt: skip
        self._prefix, self._account, self.deal_id, self._rep = prefix, account_id, deal_id, rep_id
        self._from, self._until = window
        self._out = out
        self.count = used
        """Event ids taken so far: the next fact gets number count + 1."""

    @property
    def until(self) -> int:
        """The end of the window: facts from then on are counted, not kept."""
        return self._until

    def deal_opened(
        self, at: int, *, contact_id: str, name: str, amount: int, segment: str, industry: str,
        product: str,
    ) -> None:  # fmt: skip
        """The deal is created in Prospecting, owned by the rep."""
        self.count += 1
        if self._from <= at < self._until:
            deal, event_id = self.deal_id, f"{self._prefix}{self.count:03d}"
            self._out[at // DAY].append((
                at, event_id, deal, DEAL_OPENED, self._account, deal, contact_id, self._rep,
                name, amount, segment, industry, product,
            ))  # fmt: skip

    def stage_changed(self, at: int, from_stage: str, to_stage: str) -> None:
        """The deal moves to another stage, forwards or back."""
        self.count += 1
        if self._from <= at < self._until:
            deal, event_id = self.deal_id, f"{self._prefix}{self.count:03d}"
            self._out[at // DAY].append((
                at, event_id, deal, STAGE_CHANGED, self._account, deal, self._rep, from_stage,
                to_stage,
            ))  # fmt: skip

    def call(self, at: int, contact_id: str, direction: str, outcome: str, seconds: int) -> None:
        """A phone call, connected or not."""
        self.count += 1
        if self._from <= at < self._until:
            deal, event_id = self.deal_id, f"{self._prefix}{self.count:03d}"
            self._out[at // DAY].append((
                at, event_id, deal, CALL, self._account, deal, contact_id, self._rep, direction,
                outcome, seconds,
            ))  # fmt: skip

    def email(self, at: int, contact_id: str, direction: str, replies: bool) -> None:
        """An email; an outbound one may answer the customer's last message."""
        self.count += 1
        if self._from <= at < self._until:
            deal, event_id = self.deal_id, f"{self._prefix}{self.count:03d}"
            self._out[at // DAY].append((
                at, event_id, deal, EMAIL, self._account, deal, contact_id, self._rep, direction,
                replies,
            ))  # fmt: skip

    def meeting(
        self, at: int, contact_id: str | None, kind: str, outcome: str, minutes: int
    ) -> None:
        """A meeting slot [at, at + minutes); internal meetings have no contact."""
        self.count += 1
        if self._from <= at < self._until:
            deal, event_id = self.deal_id, f"{self._prefix}{self.count:03d}"
            self._out[at // DAY].append((
                at, event_id, deal, MEETING, self._account, deal, contact_id, self._rep, kind,
                outcome, minutes,
            ))  # fmt: skip

    def quote(
        self, at: int, contact_id: str, quote_id: str, version: int, amount: int, requested: bool
    ) -> None:
        """A version of a quote sent to the customer."""
        self.count += 1
        if self._from <= at < self._until:
            deal, event_id = self.deal_id, f"{self._prefix}{self.count:03d}"
            self._out[at // DAY].append((
                at, event_id, deal, QUOTE, self._account, deal, contact_id, self._rep, quote_id,
                version, amount, requested,
            ))  # fmt: skip

    def deal_won(self, at: int, amount: int) -> None:
        """The customer signed."""
        self.count += 1
        if self._from <= at < self._until:
            deal, event_id = self.deal_id, f"{self._prefix}{self.count:03d}"
            self._out[at // DAY].append(
                (at, event_id, deal, DEAL_WON, self._account, deal, self._rep, amount)
            )

    def deal_lost(self, at: int, reason: str, competitor: str | None) -> None:
        """The deal ended without an order."""
        self.count += 1
        if self._from <= at < self._until:
            deal, event_id = self.deal_id, f"{self._prefix}{self.count:03d}"
            self._out[at // DAY].append(
                (at, event_id, deal, DEAL_LOST, self._account, deal, self._rep, reason, competitor)
            )

    def campaign_response(self, at: int, contact_id: str, campaign_id: str, kind: str) -> None:
        """A contact of the deal's account responded to a campaign (keyed by the account)."""
        self.count += 1
        if self._from <= at < self._until:
            event_id = f"{self._prefix}{self.count:03d}"
            event = response(at, event_id, self._account, contact_id, campaign_id, kind)
            self._out[at // DAY].append(event)
