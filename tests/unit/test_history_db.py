"""The archive's pure parts: the hash chain's links, replay and its content hash, alert parsing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import Event, decode
from projections import deal_value_stream, default_policy
from projections.archive import (
    AlertRow,
    AuditFinding,
    HistoryError,
    Tampering,
    chain_hash,
    chain_link,
    content_hash,
    genesis_hash,
    recorded_at_from_ms,
    replay,
)
from streams.simulator import SimulationConfig, history_lines

AT = datetime(2026, 3, 2, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def history() -> tuple[Event, ...]:
    return tuple(decode(line) for line in history_lines(SimulationConfig(seed=9, deals=12)))


def test_a_kafka_timestamp_becomes_the_same_utc_time_everywhere() -> None:
    assert recorded_at_from_ms(1_772_442_000_123) == datetime(
        2026, 3, 2, 9, 0, 0, 123_000, tzinfo=UTC
    )


def test_each_link_depends_on_the_hash_before_it_and_on_every_recorded_fact() -> None:
    start = genesis_hash("touches", 0)
    link = chain_link("touches", 0, 7, AT, "e-6", b'{"event_id":"e-7"}')
    variants = [
        chain_link("touches", 1, 7, AT, "e-6", b'{"event_id":"e-7"}'),
        chain_link("touches", 0, 8, AT, "e-6", b'{"event_id":"e-7"}'),
        chain_link("touches", 0, 7, AT + timedelta(microseconds=1), "e-6", b'{"event_id":"e-7"}'),
        chain_link("touches", 0, 7, AT, "e-5", b'{"event_id":"e-7"}'),
        chain_link("touches", 0, 7, AT, "e-6", b'{"event_id":"e-8"}'),
    ]

    hashed = chain_hash(start, link)

    assert hashed == chain_hash(start, link)
    assert hashed != chain_hash(genesis_hash("touches", 1), link)
    assert len({hashed, *(chain_hash(start, other) for other in variants)}) == 6


def test_the_content_hash_does_not_depend_on_the_order_documents_come_in(
    history: tuple[Event, ...],
) -> None:
    documents = dict(replay(((e, e.occurred_at) for e in history), default_policy()).documents)
    first = next(iter(documents))

    assert content_hash(documents) == content_hash(dict(reversed(documents.items())))
    assert content_hash(documents) != content_hash({first: documents[first]})


def test_replay_equals_the_pure_fold_of_each_deal(history: tuple[Event, ...]) -> None:
    replayed = replay(((e, e.occurred_at) for e in history), default_policy())

    some_deal = next(iter(replayed.streams))
    events = [e for e in history if e.deal_id == some_deal]
    assert replayed.streams[some_deal] == deal_value_stream(events, default_policy())
    assert replayed.events_read == replayed.events_known == len(history)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), copies=st.integers(0, 20))
def test_arrival_order_and_duplicates_do_not_change_the_replay_hash(
    history: tuple[Event, ...], seed: int, copies: int
) -> None:
    rng = random.Random(seed)
    records = [(e, e.occurred_at) for e in history]
    shuffled = rng.sample(records, len(records)) + rng.choices(records, k=copies)

    assert replay(shuffled, default_policy()).content_hash == (
        replay(records, default_policy()).content_hash
    )


def test_replay_as_of_counts_only_what_occurred_and_was_recorded_by_then(
    history: tuple[Event, ...],
) -> None:
    as_of = sorted(e.occurred_at for e in history)[len(history) // 2]
    late = {e.event_id for e in history[::5]}
    records = [
        (e, e.occurred_at + (timedelta(days=30) if e.event_id in late else timedelta()))
        for e in history
    ]

    replayed = replay(records, default_policy(), as_of)

    known = [e for e, recorded_at in records if e.occurred_at <= as_of and recorded_at <= as_of]
    assert len(known) < len([e for e in history if e.occurred_at <= as_of])
    assert replayed.events_known == len(known)
    assert (
        replayed.content_hash
        == replay(((e, e.occurred_at) for e in known), default_policy()).content_hash
    )


def test_replay_refuses_a_time_without_an_offset(history: tuple[Event, ...]) -> None:
    with pytest.raises(HistoryError, match="timezone-aware"):
        replay([], default_policy(), datetime(2026, 3, 1))


def test_an_alert_is_read_for_its_id_kind_deal_and_time() -> None:
    row = AlertRow.parse(
        b'{"alert_id":"a-1","kind":"deal-stalled","deal_id":"d-1","stage":"Proposal",'
        b'"occurred_at":"2026-03-02T09:00:00Z"}'
    )

    assert row == AlertRow("a-1", "deal-stalled", "d-1", "Proposal", AT)
    assert AlertRow.parse(b"not json") is None
    assert AlertRow.parse(b'{"kind":"deal-stalled"}') is None


def test_a_finding_says_what_happened_to_which_event_and_where() -> None:
    finding = AuditFinding(Tampering.REMOVED, "e-9", "touches", 2, None, "it is gone")

    assert str(finding) == "removed: e-9 at touches[2]: it is gone"
