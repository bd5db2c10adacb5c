"""Nothing stops silently, against the real broker: a record too large to dead-letter whole,
an agent that dies, and a commit check that must not cry wolf after a quiet spell.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from streams.settings import Settings
from streams.simulator import SimulationConfig, history_records
from tests.integration.crashing_worker import CRASH_MESSAGE, CRASHING_AGENT
from tests.integration.worker_harness import (
    Counts,
    Record,
    TopicReader,
    WorkerProcess,
    WorkerSetup,
    publish,
    running_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

HUGE_RECORD_BYTES = 1_048_450
"""As in the report: the broker takes a record this large, but its dead letter (the same bytes
plus headers) is over the producer's request limit."""


def _touches(deals: int) -> list[tuple[bytes, bytes]]:
    return [
        (record.key.encode(), record.line)
        for record in history_records(SimulationConfig(seed=11, deals=deals))
    ]


def _huge_event() -> bytes:
    """An email whose subject alone is about a megabyte: valid JSON, far over the event limit."""
    head = b'{"type": "email", "event_id": "huge-1", "subject": "'
    tail = b'"}'
    return head + b"x" * (HUGE_RECORD_BYTES - len(head) - len(tail)) + tail


@dataclass(frozen=True)
class HugeRecordRun:
    """A worker fed a partition whose middle record is too large to dead-letter whole."""

    huge: bytes
    published: int
    counts: Counts
    dead_letters: list[Record]
    readiness: tuple[int, object] | None
    alive: bool


@pytest.fixture(scope="module")
def huge_record_run(
    kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HugeRecordRun]:
    state = tmp_path_factory.mktemp("huge-record")
    setup = replace(WorkerSetup.fresh(kafka_settings, state / "gemba"), partitions=1)
    setup.create_touches_topic()
    good = _touches(deals=6)
    huge = _huge_event()
    messages = [*good[: len(good) // 2], (good[0][0], huge), *good[len(good) // 2 :]]
    publish(setup.bootstrap_servers, setup.touches_topic, messages)
    with running_worker(setup, state / "worker.log") as worker:
        counts = worker.wait_until_consumed(len(messages), timeout_s=60)
        with TopicReader(setup.bootstrap_servers, setup.dead_letter_topic) as reader:
            reader.read_until(lambda r: bool(r.records), timeout_s=10)
            reader.poll(0.5)
        yield HugeRecordRun(
            huge=huge,
            published=len(messages),
            counts=counts,
            dead_letters=reader.records,
            readiness=worker.readiness(),
            alive=worker.alive,
        )


def test_a_record_too_large_to_dead_letter_whole_is_sent_cut_saying_so(
    huge_record_run: HugeRecordRun,
) -> None:
    [dead] = huge_record_run.dead_letters
    huge = huge_record_run.huge

    assert dead.headers["truncated"] == b"value"
    assert int(dead.headers["original.size"]) == len(huge) == HUGE_RECORD_BYTES
    assert dead.headers["original.sha256"].decode() == hashlib.sha256(huge).hexdigest()
    assert dead.value and huge.startswith(dead.value) and len(dead.value) < len(huge)
    assert b"over the 65536 limit" in dead.headers["reason"]
    assert int(dead.headers["source.offset"]) == huge_record_run.published // 2


def test_the_partition_moves_on_past_it_and_every_message_has_one_outcome(
    huge_record_run: HugeRecordRun,
) -> None:
    published = huge_record_run.published

    assert huge_record_run.counts == Counts(published, published - 1, 1)
    assert huge_record_run.alive
    assert huge_record_run.readiness is not None and huge_record_run.readiness[0] == 200
