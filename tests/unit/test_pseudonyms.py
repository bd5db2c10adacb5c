"""Contact ids are replaced by keyed pseudonyms at the door, and nothing else changes."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from events import CallLogged, DealOpened, EventRejected, decode, encode
from events.pseudonyms import Pseudonymiser, is_pseudonym
from streams.kafka.clients import pseudonymiser
from streams.settings import Settings

KEY = b"a-key-of-thirty-two-bytes-000000"
CONTACT_IDS = st.from_regex(r"[A-Za-z0-9._:@/+=-]{1,128}", fullmatch=True)


def call(contact_id: str | None = "jane.doe@acme.example") -> CallLogged:
    return CallLogged(
        event_id="crm-8812", occurred_at=datetime(2026, 3, 2, 14, tzinfo=UTC),
        account_id="acme", deal_id="acme-2026-1", contact_id=contact_id, actor_id="rep-ana",
        direction="outbound", outcome="connected", duration_seconds=1200,
    )  # fmt: skip


def test_a_contact_id_becomes_p_and_the_hmac_sha256_prefix_under_the_key() -> None:
    expected = hmac.new(KEY, b"jane.doe@acme.example", hashlib.sha256).hexdigest()[:32]

    assert Pseudonymiser(KEY).pseudonym("jane.doe@acme.example") == f"p:{expected}"


@given(CONTACT_IDS)
def test_the_same_contact_always_gets_the_same_valid_pseudonym(contact_id: str) -> None:
    first = Pseudonymiser(KEY).event(call(contact_id))
    again = Pseudonymiser(KEY).event(call(contact_id))

    assert first.contact_id == again.contact_id
    assert first.contact_id is not None and is_pseudonym(first.contact_id)
    assert decode(encode(first)) == first  # still a valid event


@given(st.lists(CONTACT_IDS, min_size=2, max_size=20, unique=True))
def test_different_contacts_get_different_pseudonyms(contact_ids: list[str]) -> None:
    pseudonyms = {Pseudonymiser(KEY).pseudonym(c) for c in contact_ids if not is_pseudonym(c)}

    assert len(pseudonyms) == len([c for c in contact_ids if not is_pseudonym(c)])


def test_another_key_gives_other_pseudonyms() -> None:
    other = Pseudonymiser(b"another-key-of-thirty-two-bytes!")

    assert other.pseudonym("jane") != Pseudonymiser(KEY).pseudonym("jane")


def test_only_the_contact_id_changes_and_the_event_id_stays() -> None:
    original = call()

    changed = Pseudonymiser(KEY).event(original)

    assert changed.contact_id != original.contact_id
    assert changed.model_dump(exclude={"contact_id"}) == original.model_dump(exclude={"contact_id"})
    assert changed.event_id == "crm-8812"


def test_an_event_without_a_contact_is_left_as_it_is() -> None:
    opened = DealOpened(
        event_id="o-1", occurred_at=datetime(2026, 3, 1, tzinfo=UTC), account_id="acme",
        deal_id="acme-2026-1", owner_id="rep-ana",
    )  # fmt: skip

    assert Pseudonymiser(KEY).event(opened) is opened


def test_a_pseudonym_is_not_hashed_again_when_a_log_is_published_twice() -> None:
    once = Pseudonymiser(KEY).event(call())

    assert Pseudonymiser(KEY).event(once) is once
    assert Pseudonymiser(KEY).encoded(encode(once)) == encode(once)


def test_encoded_events_get_the_same_pseudonym_as_decoded_ones() -> None:
    pseudonymise = Pseudonymiser(KEY)

    from_bytes = decode(pseudonymise.encoded(encode(call())))

    assert from_bytes == pseudonymise.event(call())


def test_encoded_bytes_that_are_not_json_are_refused_not_published_as_they_are() -> None:
    with pytest.raises(EventRejected, match="cannot pseudonymise"):
        Pseudonymiser(KEY).encoded(b"\x00 not json")


def test_encoded_json_without_a_contact_is_passed_through_byte_for_byte() -> None:
    raw = orjson.dumps({"type": "deal_won", "event_id": "w-1"})

    assert Pseudonymiser(KEY).encoded(raw) is raw


def test_a_short_key_is_refused_and_the_key_never_shows() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Pseudonymiser(b"short")
    assert KEY.decode() not in repr(Pseudonymiser(KEY))


def test_settings_turn_pseudonymisation_on_only_with_a_key() -> None:
    assert pseudonymiser(Settings()) is None
    on = pseudonymiser(Settings(pseudonymise_key=KEY.decode()))

    assert on is not None
    assert on.pseudonym("jane") == Pseudonymiser(KEY).pseudonym("jane")
