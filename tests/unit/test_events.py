"""Events are frozen facts: valid ones round-trip, invalid ones are refused field by field."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from events import (
    EVENT_TYPES,
    CallLogged,
    DealWon,
    EventBase,
    EventCodec,
    EventRejected,
    FieldProblem,
    decode,
    encode,
    json_schema,
)
from events.codec import MAX_EVENT_BYTES, decode_jsonl
from tests.support.strategies import events

CALL: dict[str, Any] = {
    "type": "call",
    "event_id": "evt-1",
    "occurred_at": "2026-03-02T10:00:00Z",
    "account_id": "acct-1",
    "deal_id": "deal-1",
    "actor_id": "rep-1",
    "direction": "outbound",
    "outcome": "no_answer",
    "duration_seconds": 60,
}


def raw(**changes: Any) -> bytes:
    document = {**CALL, **changes}
    return orjson.dumps({k: v for k, v in document.items() if v is not None})


def problems(data: bytes, codec: EventCodec | None = None) -> list[FieldProblem]:
    with pytest.raises(EventRejected) as caught:
        (codec or EventCodec()).decode(data)
    return caught.value.problems


def fields(data: bytes) -> set[str]:
    return {p.field for p in problems(data)}


@settings(max_examples=300)
@given(events)
def test_every_valid_event_survives_an_encode_decode_round_trip(event: EventBase) -> None:
    assert decode(encode(event)) == event


@given(events)
def test_encoding_is_deterministic(event: EventBase) -> None:
    assert encode(event) == encode(decode(encode(event)))


def test_a_decoded_event_keeps_its_fields() -> None:
    event = decode(raw())
    assert isinstance(event, CallLogged)
    assert event.occurred_at == datetime(2026, 3, 2, 10, tzinfo=UTC)
    assert event.duration_seconds == 60
    assert event.partition_key == "deal-1"


def test_events_are_frozen() -> None:
    event = decode(raw())
    with pytest.raises(ValidationError):
        event.duration_seconds = 5  # type: ignore[misc]


def test_an_event_without_a_deal_is_keyed_by_its_account() -> None:
    assert decode(raw(deal_id=None)).partition_key == "acct-1"


def test_a_naive_time_is_refused() -> None:
    assert problems(raw(occurred_at="2026-03-02T10:00:00")) == [
        FieldProblem("occurred_at", "Input should have timezone info")
    ]


def test_a_time_with_an_offset_is_kept_as_the_same_instant() -> None:
    event = decode(raw(occurred_at="2026-03-02T12:00:00+02:00"))
    assert event.occurred_at == datetime(2026, 3, 2, 10, tzinfo=UTC)


def test_every_bad_field_is_reported_at_once() -> None:
    found = fields(raw(direction="sideways", duration_seconds=-1, surprise=1, event_id=None))
    assert found == {"direction", "duration_seconds", "surprise", "event_id"}


def test_an_unknown_type_is_refused_naming_the_type_field() -> None:
    [problem] = problems(raw(type="fax"))
    assert problem.field == "type"
    assert "call" in problem.reason


def test_a_missing_type_is_refused_naming_the_type_field() -> None:
    assert fields(raw(type=None)) == {"type"}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'"call"', "expected a JSON object, got str"),
    ],
)
def test_input_that_is_not_an_object_is_refused(data: bytes, reason: str) -> None:
    [problem] = problems(data)
    assert problem.field == "(event)"
    assert reason in problem.reason


def test_an_oversized_event_is_refused_without_parsing() -> None:
    [problem] = problems(raw(subject="x" * MAX_EVENT_BYTES))
    assert "limit" in problem.reason


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"event_id": "has space"}, "event_id", "pattern"),
        ({"event_id": "x" * 129}, "event_id", "at most 128"),
        ({"duration_seconds": 90_000}, "duration_seconds", "less than or equal"),
        ({"duration_seconds": "long"}, "duration_seconds", "integer"),
        ({"direction": "inbound"}, "(event)", "inbound call is logged only when it connected"),
    ],
)
def test_call_fields_are_checked(changes: dict[str, Any], field: str, reason: str) -> None:
    [problem] = problems(raw(**changes))
    assert problem.field == field
    assert reason in problem.reason


MEETING = {
    "type": "meeting",
    "event_id": "m-1",
    "occurred_at": "2026-03-05T10:00:00Z",
    "account_id": "a",
    "deal_id": "d",
    "kind": "discovery",
    "outcome": "held",
    "started_at": "2026-03-05T10:00:00Z",
    "ended_at": "2026-03-05T11:00:00Z",
}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"ended_at": "2026-03-05T09:00:00Z"}, "ended_at must be after started_at"),
        ({"ended_at": "2026-03-07T10:00:00Z"}, "longer than 24 hours"),
        ({"kind": "lunch"}, "'discovery', 'demo', 'negotiation' or 'internal'"),
        ({"outcome": "cancelled"}, "'held', 'no_show' or 'rescheduled'"),
    ],
)
def test_meeting_slots_and_kinds_are_checked(changes: dict[str, Any], reason: str) -> None:
    [problem] = problems(orjson.dumps({**MEETING, **changes}))
    assert reason in problem.reason


def test_an_inbound_email_cannot_be_a_reply_to_the_customer() -> None:
    email = {**CALL, "type": "email", "direction": "inbound", "replies_to_customer": True}
    del email["outcome"], email["duration_seconds"]
    [problem] = problems(orjson.dumps(email))
    assert "outbound emails only" in problem.reason


QUOTE = {
    "type": "quote",
    "event_id": "q-1",
    "occurred_at": "2026-03-09T10:00:00Z",
    "account_id": "a",
    "deal_id": "d",
    "quote_id": "Q1",
    "version": 1,
    "amount": "24000.00",
    "currency": "EUR",
}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount": "-1"}, "amount"),
        ({"amount": "1.001"}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"currency": "euro"}, "currency"),
        ({"version": 0}, "version"),
        ({"deal_id": None}, "deal_id"),
    ],
)
def test_quote_fields_are_checked(changes: dict[str, Any], field: str) -> None:
    document = {k: v for k, v in {**QUOTE, **changes}.items() if v is not None}
    assert fields(orjson.dumps(document)) == {field}


def test_quote_amounts_keep_their_cents_exactly() -> None:
    event = decode(orjson.dumps({**QUOTE, "amount": "1234567.89"}))
    assert b'"amount":"1234567.89"' in encode(event)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"from_stage": "Proposal", "to_stage": "Proposal"}, "not a stage change"),
        ({"to_stage": "Won"}, "deal_won or deal_lost"),
        ({"to_stage": ""}, "at least 1 character"),
    ],
)
def test_stage_changes_must_move_between_open_stages(changes: dict[str, Any], reason: str) -> None:
    document = {
        "type": "stage_changed",
        "event_id": "s",
        "occurred_at": "2026-03-03T09:00:00Z",
        "account_id": "a",
        "deal_id": "d",
        **changes,
    }
    [problem] = problems(orjson.dumps(document))
    assert reason in problem.reason


def test_a_schema_version_newer_than_known_is_refused_with_what_to_do() -> None:
    [problem] = problems(raw(schema_version=2))
    assert problem.field == "schema_version"
    assert "upgrade Gemba" in problem.reason


def test_old_versions_are_upcast_step_by_step_before_validation() -> None:
    def v1_from_v0(old: dict[str, Any]) -> dict[str, Any]:
        new = {k: v for k, v in old.items() if k != "seconds"}
        new["duration_seconds"] = old["seconds"]
        return new

    codec = EventCodec(upcasters={("call", 1): v1_from_v0}, current_version=2)
    lifted = codec.upcast({**CALL, "schema_version": 1, "seconds": 42})
    assert lifted["duration_seconds"] == 42
    assert "seconds" not in lifted
    assert lifted["schema_version"] == 2


def test_a_missing_upcaster_is_reported() -> None:
    codec = EventCodec(current_version=2)
    [problem] = problems(raw(schema_version=1), codec)
    assert "no upcaster for call version 1" in problem.reason


def test_json_lines_are_numbered_and_bad_lines_do_not_stop_the_batch() -> None:
    lines = [raw(), b"\n", b"not json\n", raw(event_id="evt-2", duration_seconds=-5)]
    outcomes = list(decode_jsonl(lines))
    assert [number for number, _ in outcomes] == [1, 3, 4]
    good, bad_json, bad_field = (outcome for _, outcome in outcomes)
    assert isinstance(good, CallLogged)
    assert str(bad_json).startswith("line 3: (event): not valid JSON")
    assert str(bad_field).startswith("line 4: duration_seconds:")


def test_the_json_schema_describes_every_event_type() -> None:
    schema = json_schema()
    mapping = schema["discriminator"]["mapping"]
    assert set(mapping) == set(EVENT_TYPES)


# --- numbers are numbers; money is exact to the cent ------------------------------------------

WON: dict[str, Any] = {
    "type": "deal_won",
    "event_id": "won-1",
    "occurred_at": "2026-03-20T10:00:00Z",
    "account_id": "a",
    "deal_id": "d",
    "amount": "24000.00",
}
OPENED: dict[str, Any] = {
    "type": "deal_opened",
    "event_id": "open-1",
    "occurred_at": "2026-03-01T10:00:00Z",
    "account_id": "a",
    "deal_id": "d",
    "owner_id": "rep-1",
    "amount": "24000.00",
}


@pytest.mark.parametrize("boolean", [True, False])
@pytest.mark.parametrize(
    ("event", "field"),
    [
        (CALL, "duration_seconds"),
        (QUOTE, "version"),
        (QUOTE, "amount"),
        (OPENED, "amount"),
        (WON, "amount"),
    ],
    ids=["call.duration_seconds", "quote.version", "quote.amount", "opened.amount", "won.amount"],
)
def test_a_boolean_is_not_a_number(event: dict[str, Any], field: str, boolean: bool) -> None:
    [problem] = problems(orjson.dumps({**event, field: boolean}))

    assert problem.field == field
    assert "not the boolean" in problem.reason


@pytest.mark.parametrize("event", [QUOTE, OPENED, WON], ids=["quote", "opened", "won"])
@pytest.mark.parametrize("amount", ["100.125", "0.001", 100.125, "0.30000000000000004"])
def test_money_that_needs_a_third_decimal_place_is_refused_with_the_reason(
    event: dict[str, Any], amount: str | float
) -> None:
    [problem] = problems(orjson.dumps({**event, "amount": amount}))

    assert problem.field == "amount"
    assert "more than two decimal places" in problem.reason


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("100.120", "100.12"),
        ("100.000000", "100.00"),
        ("24000.50", "24000.50"),
        ("100", "100"),
        (100.5, "100.5"),
    ],
)
def test_zeros_past_the_cent_are_dropped_and_other_amounts_kept_as_written(
    written: str | float, stored: str
) -> None:
    for event in (QUOTE, OPENED, WON):
        decoded = decode(orjson.dumps({**event, "amount": written}))

        assert f'"amount":"{stored}"'.encode() in encode(decoded)


@given(
    st.decimals(min_value=0, max_value=10**15, places=2, allow_nan=False),
    st.integers(min_value=0, max_value=6),
)
def test_zeros_past_the_cent_change_nothing_but_the_form(cents: Decimal, zeros: int) -> None:
    written = f"{cents:f}" + "0" * zeros
    decoded = decode(orjson.dumps({**WON, "amount": written}))

    assert isinstance(decoded, DealWon)
    assert decoded.amount == cents
    assert decoded.amount.as_tuple().exponent == -2


def test_the_json_schema_says_money_is_exact_to_the_cent() -> None:
    amount = json_schema()["$defs"]["DealWon"]["properties"]["amount"]
    number, text = amount["anyOf"]

    assert number == {"type": "number", "minimum": 0, "multipleOf": 0.01}
    assert re.fullmatch(text["pattern"], "1234.50")
    assert re.fullmatch(text["pattern"], "1234.500")
    assert not re.fullmatch(text["pattern"], "1234.501")
    assert "exact to the cent" in amount["description"]


def test_a_boolean_schema_version_is_refused_even_without_the_codec() -> None:
    document = {**WON, "schema_version": True}

    with pytest.raises(ValidationError, match="not the boolean true"):
        DealWon.model_validate(document)
