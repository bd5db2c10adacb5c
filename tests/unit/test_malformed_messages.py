"""The malformed-message strategy makes only what the codec must refuse, of every kind."""

from __future__ import annotations

import pytest
from hypothesis import event, given, settings

from events import EventRejected, decode
from events.codec import MAX_EVENT_BYTES
from tests.support.strategies import Malformed, malformed_messages

KINDS = {
    "not JSON", "truncated", "invalid UTF-8", "not an object", "missing field", "wrong type",
    "bad value", "naive time", "unknown type", "wrong schema_version", "unknown field",
    "oversized",
}  # fmt: skip


@settings(max_examples=300)
@given(malformed_messages())
def test_every_malformed_message_is_refused_by_the_codec_with_a_reason(
    message: Malformed,
) -> None:
    event(message.kind)

    with pytest.raises(EventRejected) as refused:
        decode(message.value)

    assert message.kind in KINDS
    assert str(refused.value)
    if message.kind == "oversized":
        assert f"over the {MAX_EVENT_BYTES} limit" in str(refused.value)
