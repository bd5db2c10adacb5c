"""The worker's consumer reads again what a rebalance skipped, and never commits past it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP, Message

from streams.settings import Settings
from streams.worker.app import create_app
from streams.worker.rebalance import ConsumerAckedStream, RebalanceSafeConsumer

GENERATION = 7


@pytest.fixture
def app(tmp_path: Path) -> Any:
    """A worker app as of generation 7, flowing, with its topics indexed (nothing connects)."""
    app: Any = create_app(Settings(state_dir=tmp_path))
    app.topics.add(app.topic(Settings().touches_topic))  # what the agent does as it starts
    asyncio.run(app.topics._update_indices())  # and the conductor
    app.consumer_generation_id = GENERATION
    app.flow_control.resume()
    return app


def _message(app: Any, offset: int, generation: int) -> Message:
    topic = Settings().touches_topic
    return Message(topic, 0, offset, 0.0, 0, {}, b"deal", b"{}", None, generation_id=generation)


def _committable(app: Any) -> int | None:
    """The offset Faust would commit for partition 0 of touches now."""
    offset: int | None = app.consumer._new_offset(TP(Settings().touches_topic, 0))
    return offset


def test_the_worker_app_consumes_with_the_guarded_consumer(app: Any) -> None:
    assert isinstance(app.consumer, RebalanceSafeConsumer)


def test_messages_of_the_current_generation_are_acked_and_committable(app: Any) -> None:
    acked = [app.consumer.ack(_message(app, offset, GENERATION)) for offset in range(3)]

    assert acked == [True, True, True]
    assert _committable(app) == 3


def test_a_message_fetched_in_an_older_generation_is_never_committable(app: Any) -> None:
    # The partition was revoked and given back: Faust's stream skips what it fetched
    # before, and acks it; nothing was ever committed for the partition.
    skipped = [_message(app, offset, GENERATION - 1) for offset in range(100, 103)]

    assert [app.consumer.ack(message) for message in skipped] == [False, False, False]
    assert all(message.acked for message in skipped)  # done with: nobody waits for it
    assert _committable(app) is None
    assert app.consumer.refused_acks == 3


def test_the_same_offset_fetched_again_in_the_new_generation_is_acked(app: Any) -> None:
    app.consumer.ack(_message(app, 0, GENERATION - 1))

    assert app.consumer.ack(_message(app, 0, GENERATION)) is True
    assert _committable(app) == 1


def test_a_message_skipped_while_a_rebalance_suspends_the_flow_is_not_acked(app: Any) -> None:
    app.flow_control.suspend()

    assert app.consumer.ack(_message(app, 0, GENERATION)) is False

    app.flow_control.resume()
    assert _committable(app) is None


def test_the_worker_apps_streams_ack_through_the_consumer_not_around_it(app: Any) -> None:
    # Faust's compiled stream iterator writes the consumer's ack bookkeeping itself.
    stream = app.stream(app.channel())
    iterator = stream.__aiter__()

    assert isinstance(stream, ConsumerAckedStream)
    assert iterator.ag_code is stream._py_aiter.__code__


def test_nothing_is_committed_past_a_gap_after_a_rewound_partitions_first_offset(
    app: Any,
) -> None:
    # Messages fetched at the old position arrive around the rewind to the beginning.
    app.consumer._first_offsets = {TP(Settings().touches_topic, 0): 0}
    for offset in (3, 4):
        app.consumer.ack(_message(app, offset, GENERATION))

    assert _committable(app) is None

    for offset in (0, 1, 2):  # fetched again from the beginning
        app.consumer.ack(_message(app, offset, GENERATION))

    assert _committable(app) == 5
