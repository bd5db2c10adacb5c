"""Nothing stops silently, against the real broker: a record too large to dead-letter whole,
a quiet spell (not a stuck commit), a commit really held back, and an agent that dies.

One worker lives through them in turn (tests/support/crashing_worker.py: the real
worker, plus an agent that dies on a message keyed DEATH_KEY); the tests then say, one by
one, what must hold.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from streams.settings import Settings
from streams.simulator import SimulationConfig, history_records
from tests.support.crashing_worker import CRASH_MESSAGE, CRASHING_AGENT, DEATH_KEY
from tests.support.worker_harness import (
    Counts,
    Record,
    TopicReader,
    WorkerProcess,
    WorkerSetup,
    publish,
    wait_for,
)

pytestmark = pytest.mark.integration

HUGE_RECORD_BYTES = 1_048_450
"""As in the report: the broker takes a record this large, but its dead letter (the same bytes
plus headers) is over the producer's request limit."""
STUCK_AFTER_S = 14
LIVELOCK_ENV = (
    ("BROKER_COMMIT_INTERVAL", "0.4"),
    ("BROKER_COMMIT_LIVELOCK_SOFT_TIMEOUT", str(STUCK_AFTER_S)),
    ("STREAM_PROCESSING_TIMEOUT", str(STUCK_AFTER_S)),
)
"""The checks for stuck commits and streams, once a second, after 14 s instead of 5 minutes
(longer than a batch of the worker's agents may wait to be folded and acked, 2 s, with room
for a loaded machine: at 8 s a heavily loaded run reported new data as stuck)."""
QUIET_S = STUCK_AFTER_S + 3.0
"""Longer than the timeouts and a check: nothing arrives, nothing is owed."""
STUCK = ("Has not committed", "Stream stopped processing", "Stream has not started processing")
"""Faust's own reports of stuck work."""


def _touches(deals: int, seed: int = 11) -> list[tuple[bytes, bytes]]:
    return [
        (record.key.encode(), record.line)
        for record in history_records(SimulationConfig(seed=seed, deals=deals))
    ]


def _huge_event() -> bytes:
    """An email whose subject alone is about a megabyte: valid JSON, far over the event limit."""
    head = b'{"type": "email", "event_id": "huge-1", "subject": "'
    tail = b'"}'
    return head + b"x" * (HUGE_RECORD_BYTES - len(head) - len(tail)) + tail


def _stuck_reports(worker: WorkerProcess) -> list[str]:
    """The ERROR lines saying a partition's commits or stream are stuck (Faust's and ours)."""
    found = []
    for event in worker.log_events():
        text = str(event.get("event"))
        if text == "commit_stuck":
            found.append(f"commit_stuck {event['topic']}[{event['partition']}]")
        elif event.get("level") == "error" and any(s in text for s in STUCK):
            found.append(text[:200])
    return found


@dataclass(frozen=True)
class Story:
    """What the worker did through each fault."""

    setup: WorkerSetup
    huge: bytes
    published_with_huge: int
    counts_after_huge: Counts
    dead_letters: list[Record]
    ready_after_huge: tuple[int, Any] | None
    reports_after_quiet_spell: list[str]
    reports_while_held: list[str]
    ready_answers_at_death: list[tuple[int, Any]]
    exit_code: int | None
    log: list[dict[str, Any]]
    tail: str


def _read_dead_letters(setup: WorkerSetup) -> list[Record]:
    with TopicReader(setup.bootstrap_servers, setup.dead_letter_topic) as reader:
        reader.read_until(lambda r: bool(r.records), timeout_s=10)
        reader.poll(0.5)
        return reader.records


def _readiness_until_exit(worker: WorkerProcess, timeout_s: float) -> list[tuple[int, Any]]:
    """What a readiness probe polling every 50 ms sees until the process is gone."""
    answers = []
    deadline = time.monotonic() + timeout_s
    while worker.alive and time.monotonic() < deadline:
        answer = worker.readiness()
        if answer is not None:
            answers.append(answer)
        time.sleep(0.05)
    return answers


@pytest.fixture(scope="module")
def story(kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    state = tmp_path_factory.mktemp("liveness")
    setup = replace(
        WorkerSetup.fresh(kafka_settings, state / "gemba"), partitions=1, extra_env=LIVELOCK_ENV
    )
    setup.create_touches_topic()
    good, later, held = _touches(deals=6), _touches(deals=2, seed=12), _touches(2, seed=13)
    huge = _huge_event()
    with_huge = [*good[: len(good) // 2], (good[0][0], huge), *good[len(good) // 2 :]]
    total = len(with_huge)
    publish(setup.bootstrap_servers, setup.touches_topic, with_huge)
    worker = WorkerProcess(setup, state / "worker.log", module=("tests.support.crashing_worker",))
    try:
        worker.start()
        counts_after_huge = worker.wait_until_consumed(total, timeout_s=60)
        dead_letters = _read_dead_letters(setup)
        ready_after_huge = worker.readiness()
        worker.wait_until_archived(total)

        time.sleep(QUIET_S)
        publish(setup.bootstrap_servers, setup.touches_topic, later)
        total += len(later)
        worker.wait_until_consumed(total, timeout_s=60)
        worker.wait_until_archived(total)
        time.sleep(3.0)  # more checks, everything committed
        after_quiet = _stuck_reports(worker)

        holder = setup.hold_archive()
        try:
            publish(setup.bootstrap_servers, setup.touches_topic, held)
            total += len(held)
            worker.wait_until_consumed(total, timeout_s=60)
            with contextlib.suppress(TimeoutError):
                wait_for(lambda: _stuck_reports(worker)[len(after_quiet) :] or None, 45)
            while_held = _stuck_reports(worker)[len(after_quiet) :]
        finally:
            holder.close()

        publish(setup.bootstrap_servers, setup.touches_topic, [(DEATH_KEY, b"{}")])
        answers = _readiness_until_exit(worker, timeout_s=30)
        exit_code = worker.wait_for_exit(timeout_s=30)
    finally:
        worker.stop()
    yield Story(
        setup=setup, huge=huge, published_with_huge=len(with_huge),
        counts_after_huge=counts_after_huge, dead_letters=dead_letters,
        ready_after_huge=ready_after_huge, reports_after_quiet_spell=after_quiet,
        reports_while_held=while_held, ready_answers_at_death=answers, exit_code=exit_code,
        log=worker.log_events(), tail=worker.tail(),
    )  # fmt: skip


def test_a_record_too_large_to_dead_letter_whole_is_sent_cut_saying_so(story: Story) -> None:
    [dead] = story.dead_letters[:1]
    huge = story.huge

    assert dead.headers["truncated"] == b"value"
    assert int(dead.headers["original.size"]) == len(huge) == HUGE_RECORD_BYTES
    assert dead.headers["original.sha256"].decode() == hashlib.sha256(huge).hexdigest()
    assert dead.value and huge.startswith(dead.value) and len(dead.value) < len(huge)
    assert b"over the 65536 limit" in dead.headers["reason"]
    assert int(dead.headers["source.offset"]) == story.published_with_huge // 2


def test_the_partition_moves_on_past_it_and_every_message_has_one_outcome(story: Story) -> None:
    published = story.published_with_huge

    assert story.counts_after_huge == Counts(published, published - 1, 1)
    assert story.ready_after_huge is not None and story.ready_after_huge[0] == 200


def test_new_data_after_a_quiet_spell_is_not_reported_as_a_stuck_commit(story: Story) -> None:
    assert not story.reports_after_quiet_spell


def test_a_commit_really_held_back_is_still_reported(story: Story) -> None:
    held = f"commit_stuck {story.setup.touches_topic}[0]"

    assert held in story.reports_while_held, story.reports_while_held


def test_a_dead_agent_turns_the_worker_unready_naming_it_and_the_worker_exits_non_zero(
    story: Story,
) -> None:
    died = [event for event in story.log if event.get("event") == "agent_died"]
    unready = [body for status, body in story.ready_answers_at_death if status == 503]

    assert story.exit_code not in {0, None}, story.tail
    assert [event["agent"] for event in died] == [CRASHING_AGENT], story.tail
    assert CRASH_MESSAGE in died[0]["error"]
    assert unready, f"/ready never said 503 before the exit: {story.ready_answers_at_death[-3:]}"
    assert CRASHING_AGENT in unready[-1]["reason"] and CRASH_MESSAGE in unready[-1]["reason"]
