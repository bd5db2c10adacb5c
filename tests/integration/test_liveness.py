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


def test_a_worker_whose_agent_dies_turns_unready_and_exits_non_zero_naming_the_agent(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    setup = replace(WorkerSetup.fresh(kafka_settings, tmp_path / "gemba"), history_sink=False)
    setup.create_touches_topic()
    worker = WorkerProcess(
        setup, tmp_path / "worker.log", module=("tests.integration.crashing_worker",)
    )
    worker.start()
    try:
        wait_for(lambda: True if (worker.readiness() or (0,))[0] == 200 else None, 60)
        publish(setup.bootstrap_servers, setup.touches_topic, _touches(deals=1)[:1])
        answers = []
        deadline = time.monotonic() + 30
        while worker.alive and time.monotonic() < deadline:  # what a readiness probe sees
            answer = worker.readiness()
            if answer is not None:
                answers.append(answer)
            time.sleep(0.05)
        exit_code = worker.wait_for_exit(timeout_s=30)
    finally:
        worker.stop()

    died = [event for event in worker.log_events() if event.get("event") == "agent_died"]
    assert exit_code not in {0, None}, worker.tail()
    assert [event["agent"] for event in died] == [CRASHING_AGENT], worker.tail()
    assert CRASH_MESSAGE in died[0]["error"]
    unready = [body for status, body in answers if status == 503]
    assert unready, f"/ready never said 503 before the exit: {answers[-3:]}"
    assert CRASHING_AGENT in str(unready[-1]) and CRASH_MESSAGE in str(unready[-1])
