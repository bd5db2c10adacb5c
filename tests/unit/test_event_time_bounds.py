"""Every event the codec accepts can be folded: its times lie within the calendar the fold
computes in (Python's datetime: years 1 to 9999, in UTC)."""

from __future__ import annotations

import orjson
import pytest

from events import EventRejected, decode
from projections import deal_value_stream, default_policy

OPENED = {
    "type": "deal_opened", "event_id": "open-1", "occurred_at": "2026-01-05T09:00:00Z",
    "account_id": "acme", "deal_id": "acme-1", "owner_id": "rep-ana", "stage": "Prospecting",
}  # fmt: skip
CALL = {
    "type": "call", "event_id": "call-1", "account_id": "acme", "deal_id": "acme-1",
    "direction": "outbound", "outcome": "connected", "duration_seconds": 600,
}  # fmt: skip


@pytest.mark.parametrize(
    "occurred_at",
    ["9999-12-31T23:59:59+00:00", "9999-12-31T22:00:00-05:00", "0001-01-01T03:00:00+05:00"],
)
def test_an_event_the_codec_accepts_can_be_folded(occurred_at: str) -> None:
    try:
        deal = [
            decode(orjson.dumps(OPENED)),
            decode(orjson.dumps({**CALL, "occurred_at": occurred_at})),
        ]
    except EventRejected:
        return  # refused at the door: nothing to fold

    deal_value_stream(deal, default_policy())
