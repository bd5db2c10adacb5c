"""Hypothesis strategies for random valid events of every type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

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
)

__all__ = ["events"]

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
