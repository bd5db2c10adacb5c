"""The streaming worker, a real process on the real broker: touches in, value streams out.

One worker folds a realistic history (shuffled deals, duplicates, poison messages) and
is checked from every side: the value-stream topic, the deal pages, the dead-letter
topic and the counters. A second one is SIGKILLed mid-stream and restarted, and must
end where the first one did.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from projections import default_policy
from streams.settings import Settings
from tests.support.worker_harness import (
    Counts,
    Record,
    TopicReader,
    TouchStream,
    WorkerProcess,
    WorkerSetup,
    publish,
    realistic_touches,
    rejection,
    running_worker,
)

pytestmark = pytest.mark.integration

DEALS = 200
"""Simulated deals: about seven thousand events, a few hundred deals."""


@dataclass(frozen=True)
class FoldedRun:
    """What one uninterrupted worker made of the stream."""

    setup: WorkerSetup
    worker: WorkerProcess
    counts: Counts
    value_streams: dict[bytes, bytes | None]
    dead_letters: list[Record]
    touches: list[Record]


@pytest.fixture(scope="module")
def stream() -> TouchStream:
    return realistic_touches(DEALS)


@pytest.fixture(scope="module")
def expected(stream: TouchStream) -> dict[bytes, bytes]:
    """The pure fold of every opened deal: what the value-stream topic must hold."""
    return stream.expected_value_streams(default_policy())


def _expected_counts(stream: TouchStream) -> Counts:
    sent = len(stream.messages)
    return Counts(consumed=sent, processed=sent - len(stream.poison),
                  dead_lettered=len(stream.poison))  # fmt: skip


def _read(setup: WorkerSetup, topic: str, count: int) -> list[Record]:
    with TopicReader(setup.bootstrap_servers, topic) as reader:
        reader.read_until(lambda r: len(r.records) >= count, timeout_s=30)
        reader.poll(0.5)  # anything beyond `count` would show up too
        return reader.records


@pytest.fixture(scope="module")
def uninterrupted(
    kafka_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    stream: TouchStream,
    expected: dict[bytes, bytes],
) -> Iterator[FoldedRun]:
    """A worker that read the whole stream, published before it started; kept running."""
    state = tmp_path_factory.mktemp("uninterrupted")
    setup = WorkerSetup.fresh(kafka_settings, state / "gemba", fast_rejoin=False)
    setup.create_touches_topic()
    publish(setup.bootstrap_servers, setup.touches_topic, stream.messages)
    with running_worker(setup, state / "worker.log") as worker:
        counts = worker.wait_until_consumed(len(stream.messages), timeout_s=90)
        yield FoldedRun(
            setup=setup,
            worker=worker,
            counts=counts,
            value_streams=setup.read_value_streams(expected),
            dead_letters=_read(setup, setup.dead_letter_topic, len(stream.poison)),
            touches=_read(setup, setup.touches_topic, len(stream.messages)),
        )


def _differences(got: dict[bytes, bytes | None], expected: dict[bytes, bytes]) -> dict[str, str]:
    """Per deal, what is wrong (for a readable assertion message)."""
    problems = {key.decode(): "missing" for key in expected.keys() - got.keys()}
    problems |= {key.decode(): "not an opened deal" for key in got.keys() - expected.keys()}
    for key in expected.keys() & got.keys():
        if got[key] != expected[key]:
            problems[key.decode()] = f"differs: {(got[key] or b'')[:160]!r}..."
    return problems


def test_the_stream_holds_shuffled_deals_duplicates_and_poison(stream: TouchStream) -> None:
    assert len(stream.reordered_deals) >= DEALS // 5
    assert stream.duplicates >= len(stream.events) // 25
    assert len(stream.poison) >= 3
    assert len(stream.messages) == len(stream.events) + stream.duplicates + len(stream.poison)


def test_every_deal_on_the_value_stream_topic_equals_the_pure_fold_of_its_events(
    uninterrupted: FoldedRun, expected: dict[bytes, bytes]
) -> None:
    problems = _differences(uninterrupted.value_streams, expected)

    assert not problems, f"{len(problems)} of {len(expected)} deals are wrong: " + str(
        dict(list(problems.items())[:5])
    )


def test_the_deal_page_serves_the_pure_fold_as_of_the_latest_event_time_seen(
    uninterrupted: FoldedRun, stream: TouchStream, expected: dict[bytes, bytes]
) -> None:
    # An open deal's "now" on its page is the worker's watermark, not its own last event.
    as_of_now = stream.expected_value_streams(default_policy(), stream.latest_event_time)
    sample = sorted(stream.reordered_deals)[:10] + sorted(k.decode() for k in expected)[:10]

    pages = {deal_id: uninterrupted.worker.get(f"/gemba/deals/{deal_id}/") for deal_id in sample}

    wrong = [deal_id for deal_id, page in pages.items() if page != as_of_now[deal_id.encode()]]
    assert not wrong
    assert any(as_of_now[d.encode()] != expected[d.encode()] for d in sample), "no open deal"
    assert uninterrupted.worker.get("/gemba/deals/no-such-deal/") is None


def test_each_poison_message_is_dead_lettered_with_its_original_bytes_and_the_reason(
    uninterrupted: FoldedRun, stream: TouchStream
) -> None:
    dead = {record.value or b"": record for record in uninterrupted.dead_letters}
    touches = {(r.partition, r.offset): r for r in uninterrupted.touches}

    assert len(uninterrupted.dead_letters) == len(stream.poison)
    for poison in stream.poison:
        record = dead.get(poison.value)
        assert record is not None, f"{poison.name} is not on the dead-letter topic"
        reason = record.headers["reason"].decode()
        assert reason == rejection(poison.value), poison.name
        assert poison.names_the_problem in reason, poison.name
        assert record.key == poison.key
        assert record.headers["source.topic"].decode() == uninterrupted.setup.touches_topic
        source = touches[
            (int(record.headers["source.partition"]), int(record.headers["source.offset"]))
        ]
        assert (source.key, source.value or b"") == (poison.key, poison.value), poison.name


def test_the_counters_account_for_every_message_sent_once(
    uninterrupted: FoldedRun, stream: TouchStream
) -> None:
    assert uninterrupted.counts == _expected_counts(stream)


def test_the_value_stream_topic_is_compacted_and_keyed_by_deal(
    uninterrupted: FoldedRun, expected: dict[bytes, bytes]
) -> None:
    topic = uninterrupted.setup.value_streams_topic
    admin = KafkaAdminClient(bootstrap_servers=uninterrupted.setup.bootstrap_servers)
    try:
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()

    assert configs["topic"][topic]["cleanup.policy"]["value"] == "compact"
    assert uninterrupted.value_streams.keys() == expected.keys()


def _publish_paced(
    setup: WorkerSetup, stream: TouchStream, failures: list[BaseException], chunk: int = 250
) -> None:
    """Publish the stream at roughly the worker's own pace, so that it is killed mid-stream."""
    try:
        messages = stream.messages
        for start in range(0, len(messages), chunk):
            publish(setup.bootstrap_servers, setup.touches_topic, messages[start : start + chunk])
            time.sleep(0.1)  # pacing, not an assertion
    except BaseException as exc:  # handed to the test thread
        failures.append(exc)


def test_a_worker_killed_twice_mid_stream_ends_as_the_uninterrupted_run_and_the_pure_fold(
    kafka_settings: Settings,
    tmp_path: Path,
    stream: TouchStream,
    expected: dict[bytes, bytes],
    uninterrupted: FoldedRun,
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    total = len(stream.messages)
    kill_after = sorted([int(total * rng.uniform(0.15, 0.4)), int(total * rng.uniform(0.55, 0.8))])
    setup = WorkerSetup.fresh(kafka_settings, tmp_path / "gemba")
    setup.create_touches_topic()
    failures: list[BaseException] = []
    publisher = threading.Thread(target=_publish_paced, args=(setup, stream, failures))
    killed_at: list[int] = []

    with running_worker(setup, tmp_path / "worker.log") as worker:
        publisher.start()
        for threshold in kill_after:
            reached = worker.wait_past(threshold, timeout_s=90, interval_s=0.05)
            time.sleep(rng.uniform(0, 0.3))  # land anywhere in a batch, not only between them
            worker.kill()
            killed_at.append(reached.consumed)
            worker.start()
        publisher.join(timeout=60)
        counts = worker.wait_until_consumed(total, timeout_s=90)
        value_streams = setup.read_value_streams(expected)
        dead_letters = _read(setup, setup.dead_letter_topic, len(stream.poison))

    context = f"seed {seed}, killed after {killed_at} of {total} consumed"
    assert not failures, context
    assert worker.starts == 3, context
    assert counts == _expected_counts(stream), context
    problems = _differences(value_streams, expected)
    assert not problems, (
        f"{context}: {len(problems)} deals wrong: {dict(list(problems.items())[:5])}"
    )
    assert value_streams == uninterrupted.value_streams, context
    # At least once: a replayed poison message may be dead-lettered again, none is lost.
    assert {r.value or b"" for r in dead_letters} == {p.value for p in stream.poison}, context
