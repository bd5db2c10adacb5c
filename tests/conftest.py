"""Shared fixtures: a real Kafka broker for the whole session, started by Gemba itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from streams.kafka.broker import start_broker, stop_broker
from streams.settings import Settings
from tests.support.worker_harness import free_port


@pytest.fixture(scope="session")
def kafka_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings pointing at a live broker: KAFKA_BOOTSTRAP_SERVERS if set, else our own.

    Our own broker gets free ports and a temporary data directory, so tests never
    touch a broker the user is running; the Kafka jars are shared with `gemba broker`.
    """
    settings = Settings()
    if not settings.local_broker:
        yield settings
        return
    settings = Settings(
        broker_port=free_port(),
        broker_controller_port=free_port(),
        broker_dir=tmp_path_factory.mktemp("broker"),
    )
    start_broker(settings, say=print)
    try:
        yield settings
    finally:
        stop_broker(settings)


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"test-{uuid.uuid4().hex[:12]}"
