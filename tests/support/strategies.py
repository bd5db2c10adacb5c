"""Hypothesis strategies for random valid events of every type, and for malformed messages."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import strategies as st

from events import (
    CallLogged,
    CallOutcome,
    CampaignResponded,
    DealLost,
    DealOpened,
    DealWon,
    Direction,
    EmailLogged,
    EventBase,
    MeetingKind,
    MeetingLogged,
    MeetingOutcome,
    QuoteSent,
    QuoteStatus,
    ResponseKind,
    StageChanged,
    encode,
)
from events.codec import MAX_EVENT_BYTES
from events.future import DEFAULT_FUTURE_SKEW
from events.models import EVENT_TYPES

__all__ = ["Malformed", "Recorded", "events", "future_dated", "malformed_messages", "on_time"]

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.:", min_size=1, max_size=40)
offsets = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))])
times = st.builds(
    lambda base, tz: base.replace(tzinfo=UTC).astimezone(tz),
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
    offsets,
)
money = st.decimals(min_value=0, max_value=10_000_000, places=2, allow_nan=False).map(Decimal)
stages = st.sampled_from(["Prospecting", "Qualification", "Discovery", "Proposal", "Negotiation"])
common = {
    "event_id": ids,
    "occurred_at": times,
    "account_id": ids,
    "contact_id": st.none() | ids,
    "actor_id": st.none() | ids,
}


def _calls() -> st.SearchStrategy[EventBase]:
    outbound = st.builds(
        CallLogged,
        **common,
        deal_id=st.none() | ids,
        direction=st.just(Direction.OUTBOUND),
        outcome=st.sampled_from(CallOutcome),
        duration_seconds=st.integers(0, 86_400),
    )
    inbound = st.builds(
        CallLogged,
        **common,
        deal_id=st.none() | ids,
        direction=st.just(Direction.INBOUND),
        outcome=st.just(CallOutcome.CONNECTED),
        duration_seconds=st.integers(0, 86_400),
    )
    return outbound | inbound


def _meetings() -> st.SearchStrategy[EventBase]:
    return st.builds(
        lambda start, minutes, **kw: MeetingLogged(
            started_at=start, ended_at=start + timedelta(minutes=minutes), **kw
        ),
        times,
        st.integers(1, 600),
        **common,
        deal_id=st.none() | ids,
        kind=st.sampled_from(MeetingKind),
        outcome=st.sampled_from(MeetingOutcome),
    )


def _emails() -> st.SearchStrategy[EventBase]:
    outbound = st.builds(
        EmailLogged,
        **common,
        deal_id=st.none() | ids,
        direction=st.just(Direction.OUTBOUND),
        replies_to_customer=st.booleans(),
    )
    inbound = st.builds(
        EmailLogged, **common, deal_id=st.none() | ids, direction=st.just(Direction.INBOUND)
    )
    return outbound | inbound


def _deal_events() -> st.SearchStrategy[EventBase]:
    return st.one_of(
        st.builds(
            QuoteSent, **common, deal_id=ids, quote_id=ids, version=st.integers(1, 20),
            amount=money, currency=st.sampled_from(["USD", "EUR"]),
            status=st.sampled_from(QuoteStatus), requested_by_customer=st.booleans(),
        ),
        st.builds(
            DealOpened, **common, deal_id=ids, owner_id=ids, stage=stages,
            amount=st.none() | money, segment=st.none() | st.sampled_from(["SMB", "Enterprise"]),
        ),
        st.builds(StageChanged, **common, deal_id=ids, to_stage=stages),
        st.builds(DealWon, **common, deal_id=ids, amount=money),
        st.builds(DealLost, **common, deal_id=ids, reason=st.sampled_from(["price", "timing"])),
        st.builds(
            CampaignResponded, **common, deal_id=st.none() | ids, campaign_id=ids,
            kind=st.sampled_from(ResponseKind),
        ),
    )  # fmt: skip


events: st.SearchStrategy[EventBase] = st.one_of(_calls(), _meetings(), _emails(), _deal_events())
"""Any valid event."""


# --- malformed messages -----------------------------------------------------------------

ID_FIELDS = ("event_id", "account_id", "deal_id", "contact_id", "actor_id", "campaign_id")
REQUIRED_FIELDS = ("type", "event_id", "occurred_at", "account_id")
"""Fields every event has: without any of them no event is valid."""
ID_PATTERN = r"[A-Za-z0-9._:@/+=-]+"
BAD_SCHEMA_VERSIONS: tuple[object, ...] = (0, -1, 2, 99, "1", 1.5, True, None, [1], {"v": 1})

int64 = st.integers(-(2**63), 2**63 - 1)
json_scalars = st.none() | st.booleans() | int64 | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
containers = st.lists(json_values, max_size=3) | st.dictionaries(
    st.text(max_size=8), json_values, max_size=3
)
"""What no field of an event accepts: every field is a scalar."""
bad_ids = st.text(min_size=1, max_size=20).filter(lambda t: not re.fullmatch(ID_PATTERN, t)) | (
    st.text(alphabet="abc123", min_size=129, max_size=200)
)


@dataclass(frozen=True)
class Malformed:
    """Bytes the codec must refuse, and what kind of wrong they are."""

    kind: str
    value: bytes


def _broken(kind: str, event: EventBase, change: Callable[[dict[str, Any]], object]) -> Malformed:
    """The event as a JSON document with one thing changed."""
    document: dict[str, Any] = orjson.loads(encode(event))
    change(document)
    return Malformed(kind, orjson.dumps(document))


def _set(kind: str, event: EventBase, key: str, value: object) -> Malformed:
    """The event as a JSON document with `key` set to `value`."""
    return _broken(kind, event, lambda document: document.__setitem__(key, value))


def _naive(document: dict[str, Any]) -> None:
    aware = datetime.fromisoformat(document["occurred_at"])
    document["occurred_at"] = aware.replace(tzinfo=None).isoformat()


@st.composite
def _one_field_broken(draw: st.DrawFn, base: st.SearchStrategy[EventBase]) -> Malformed:
    """A valid event with one field missing, of the wrong type, or with a value out of range."""
    event = draw(base)
    document = orjson.loads(encode(event))
    how = draw(st.sampled_from(["missing", "container", "not a string", "bad id", "naive"]))
    if how == "missing":
        key = draw(st.sampled_from(REQUIRED_FIELDS))
        return _broken("missing field", event, lambda d: d.pop(key))
    if how == "container":
        return _set("wrong type", event, draw(st.sampled_from(sorted(document))), draw(containers))
    ids = [key for key in ID_FIELDS if key in document]
    key = draw(st.sampled_from(ids))
    if how == "not a string":
        return _set(
            "wrong type", event, key, draw(st.booleans() | int64 | st.floats(allow_nan=False))
        )
    if how == "bad id":
        return _set("bad value", event, key, draw(bad_ids))
    return _broken("naive time", event, _naive)


@st.composite
def _whole_message_wrong(draw: st.DrawFn, base: st.SearchStrategy[EventBase]) -> Malformed:
    """A message wrong as a whole: not JSON, cut short, not an object, of an unknown type or
    version, with a field no event has, or too big."""
    event = draw(base)
    raw = encode(event)
    how = draw(
        st.sampled_from(
            ["garbage", "truncated", "utf-8", "not an object", "type", "version", "extra", "size"]
        )
    )
    if how == "garbage":
        return Malformed("not JSON", draw(st.binary(max_size=300)))
    if how == "truncated":
        return Malformed("truncated", raw[: draw(st.integers(0, len(raw) - 1))])
    if how == "utf-8":
        return Malformed("invalid UTF-8", raw.replace(b'"event_id":"', b'"event_id":"\xff\xfe', 1))
    if how == "not an object":
        return Malformed(
            "not an object", orjson.dumps(draw(json_scalars | st.lists(json_values, max_size=4)))
        )
    if how == "type":
        kind = draw(st.text(max_size=20).filter(lambda t: t not in EVENT_TYPES))
        return _set("unknown type", event, "type", kind)
    if how == "version":
        version = draw(st.sampled_from(BAD_SCHEMA_VERSIONS))
        return _set("wrong schema_version", event, "schema_version", version)
    if how == "extra":
        name = draw(st.text(min_size=1, max_size=12))
        return _set("unknown field", event, f"x-{name}", draw(json_values))
    size = draw(st.integers(MAX_EVENT_BYTES + 1, MAX_EVENT_BYTES + 4096))
    return Malformed("oversized", b" " * (size - len(raw)) + raw)


def malformed_messages(base: st.SearchStrategy[EventBase] = events) -> st.SearchStrategy[Malformed]:
    """Bytes that are no valid event: each kind of wrong a producer can send, most of them
    a valid event drawn from `base` with one thing broken."""
    return _one_field_broken(base) | _whole_message_wrong(base)


# --- future-dated events ----------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """A valid event's bytes and the moment they were recorded (a Kafka record's timestamp,
    the time a request came): whether it is future-dated depends on both."""

    kind: str
    value: bytes
    recorded_at: datetime


ahead = st.one_of(
    st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(seconds=1)),
    st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=3)),
    st.timedeltas(min_value=timedelta(days=1), max_value=timedelta(days=365 * 150)),
)
"""How much further than the allowance: a hair (the edge), days (a time zone or clock
mistaken), or years (a typo in the year)."""


def future_dated(
    base: st.SearchStrategy[EventBase] = events, skew: timedelta = DEFAULT_FUTURE_SKEW
) -> st.SearchStrategy[Recorded]:
    """A valid event recorded more than `skew` before the time it says it happened."""
    return st.builds(
        lambda event, excess: Recorded(
            "future-dated", encode(event), event.occurred_at - skew - excess
        ),
        base,
        ahead,
    )


def on_time(
    base: st.SearchStrategy[EventBase] = events, skew: timedelta = DEFAULT_FUTURE_SKEW
) -> st.SearchStrategy[Recorded]:
    """A valid event recorded at most `skew` before it happened, or any time after."""
    lead = st.timedeltas(min_value=-skew, max_value=timedelta(days=365 * 20))
    return st.builds(
        lambda event, late: Recorded("on time", encode(event), event.occurred_at + late),
        base,
        lead,
    )
