"""Faults, against the real broker: the broker goes away and comes back, the history
archive cannot be written, and thousands of malformed messages arrive.

Each fault is run once, in a fixture that records what the worker did; the tests then
say, one by one, what must hold.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from events import Event, EventRejected, decode, encode
from events.errors import PublishError
from events.future import FutureLimit
from events.producer import KafkaEventPublisher, ensure_topic
from projections import DealNotOpened, deal_value_stream, default_policy, events_by_deal
from projections.archive import open_archive, verify_archive
from streams.kafka.broker import start_broker, stop_broker
from streams.settings import Settings
from tests.support.strategies import events, malformed_messages
from tests.support.worker_harness import (
    BROKER_FIGURES,
    Counts,
    Record,
    TopicReader,
    TouchStream,
    WorkerProcess,
    WorkerSetup,
    broker_figures,
    free_port,
    publish,
    realistic_touches,
    wait_for,
)

pytestmark = pytest.mark.integration


def _differences(got: dict[bytes, bytes | None], expected: dict[bytes, bytes]) -> dict[str, str]:
    """Per deal, what is wrong (a readable assertion message)."""
    problems = {key.decode(): "missing" for key in expected.keys() - got.keys()}
    problems |= {key.decode(): "not an opened deal" for key in got.keys() - expected.keys()}
    for key in expected.keys() & got.keys():
        if got[key] != expected[key]:
            problems[key.decode()] = f"differs: {(got[key] or b'')[:120]!r}..."
    return problems


# --- the broker stops mid-stream and starts again -------------------------------------------

IMPATIENT = {"delivery_timeout_ms": 3_000, "request_timeout_ms": 1_000, "max_block_ms": 2_000}
"""A producer that gives up after 3 s (and waits 2 s for a topic's metadata) instead of the
client's defaults: two minutes (and one)."""
CONNECTION_TROUBLE = re.compile(r"connect|not ready|coordinator|broker|node", re.IGNORECASE)


@dataclass(frozen=True)
class Outage:
    """A worker and two producers that lived through the broker stopping and starting."""

    stream: TouchStream
    counts: Counts
    value_streams: dict[bytes, bytes | None]
    expected: dict[bytes, bytes]
    patient_error: BaseException | None
    """What the producer with default settings raised (None: it delivered everything)."""
    impatient_error: BaseException | None
    """What the producer that gives up after 3 s raised when flushed during the outage."""
    cold_error: BaseException | None
    """What an impatient producer raised publishing to a topic it never published to."""
    outage_log: list[dict[str, Any]]
    """The worker's log lines from the broker's stop until everything was read again."""
    archived: int | None
    down_s: float
    broker_figures: tuple[dict[str, float], dict[str, float], dict[str, float]]
    """The worker's gemba_broker_* metrics before the outage, during it and after it."""


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    """Our own broker (the session's must not stop), stopped and started under load."""
    if not Settings().local_broker:
        pytest.skip("stops its own local broker; KAFKA_BOOTSTRAP_SERVERS points elsewhere")
    state = tmp_path_factory.mktemp("outage")
    broker = Settings(
        broker_port=free_port(), broker_controller_port=free_port(), broker_dir=state / "broker"
    )
    start_broker(broker, say=lambda _: None)
    try:
        yield _live_through_an_outage(broker, state)
    finally:
        stop_broker(broker)


def _send(publisher: KafkaEventPublisher, messages: Sequence[tuple[bytes, bytes]]) -> None:
    for key, value in messages:
        publisher.publish_encoded(key.decode(), value)


def _send_and_flush(
    publisher: KafkaEventPublisher, messages: Sequence[tuple[bytes, bytes]]
) -> None:
    _send(publisher, messages)
    publisher.flush()


@dataclass
class Producers:
    """The three producers of the outage, and what each raised."""

    patient: KafkaEventPublisher
    """Left to its defaults: publishes a third of the stream while the broker is down."""
    impatient: KafkaEventPublisher
    """Gives up after 3 s; publishes to a topic of its own, so its loss changes nothing."""
    cold: KafkaEventPublisher
    """As impatient, but never published to its topic before the outage."""
    failures: dict[str, BaseException] = field(default_factory=dict)

    def try_to(self, name: str, publish: Callable[[], None]) -> None:
        try:
            publish()
        except Exception as exc:  # kept for the tests to judge
            self.failures[name] = exc

    def close(self) -> None:
        for publisher in (self.patient, self.impatient, self.cold):
            with contextlib.suppress(PublishError):
                publisher.close()


def _broker_down(
    broker: Settings,
    producers: Producers,
    during: Sequence[tuple[bytes, bytes]],
    meanwhile: Callable[[], object],
) -> float:
    """Stop the broker, publish while it is down, call `meanwhile`, start the broker again;
    how long it was down.

    The patient producer's flush blocks until the broker is back (or it gives up), so it
    runs in a thread; the impatient one fails in about 3 s, the cold one in about 2 s.
    """

    stopped = time.monotonic()
    stop_broker(broker)
    patiently = functools.partial(_send_and_flush, producers.patient, during)
    sender = threading.Thread(target=producers.try_to, args=("patient", patiently))
    sender.start()
    aside = during[:20]
    producers.try_to("impatient", functools.partial(_send_and_flush, producers.impatient, aside))
    producers.try_to("cold", functools.partial(_send, producers.cold, aside[:1]))
    meanwhile()
    start_broker(broker, say=lambda _: None)
    down_s = time.monotonic() - stopped
    sender.join(timeout=150)
    return down_s


def _broker_figures_when(worker: WorkerProcess, reachable: int) -> dict[str, float]:
    """The figures once gemba_broker_reachable is `reachable` (at the deadline, whatever
    they are then, for the test to report)."""

    def showing() -> dict[str, float] | None:
        found = broker_figures(worker)
        return found if found and found["gemba_broker_reachable"] == reachable else None

    with contextlib.suppress(TimeoutError):
        return wait_for(showing, timeout_s=30)
    return broker_figures(worker) or {}


def _live_through_an_outage(broker: Settings, state: Path) -> Outage:
    """A third of the stream before the outage, a third published during it, the rest after."""
    stream = realistic_touches(30, seed=23)
    messages = stream.messages
    third = len(messages) // 3
    setup = WorkerSetup(broker.bootstrap_servers, state / "gemba")
    setup.create_touches_topic()
    aside = f"{setup.tag}-aside"
    ensure_topic(setup.bootstrap_servers, aside, 1)
    worker = WorkerProcess(setup, state / "worker.log")
    producers = Producers(
        patient=KafkaEventPublisher(setup.bootstrap_servers, setup.touches_topic),
        impatient=KafkaEventPublisher(setup.bootstrap_servers, aside, client_options=IMPATIENT),
        cold=KafkaEventPublisher(setup.bootstrap_servers, aside, client_options=IMPATIENT),
    )
    try:
        worker.start()
        _send(producers.patient, messages[:third])
        producers.patient.flush()
        _send(producers.impatient, messages[:1])  # it knows the topic's partitions from now on
        producers.impatient.flush()
        worker.wait_past(third, timeout_s=60)
        before = _broker_figures_when(worker, reachable=1)
        log_mark = len(worker.log_events())
        figures: list[dict[str, float]] = []
        down_s = _broker_down(
            broker, producers, messages[third : 2 * third],
            meanwhile=lambda: figures.append(_broker_figures_when(worker, reachable=0)),
        )  # fmt: skip
        _send(producers.patient, messages[2 * third :])
        producers.patient.flush()
        counts = worker.wait_until_consumed(len(messages), timeout_s=90)
        expected = stream.expected_value_streams(default_policy())
        value_streams = setup.read_value_streams(expected)
        archived = worker.wait_until_archived(len(messages))
        after = _broker_figures_when(worker, reachable=1)
        failures = producers.failures
        return Outage(
            stream=stream, counts=counts, value_streams=value_streams, expected=expected,
            patient_error=failures.get("patient"), impatient_error=failures.get("impatient"),
            cold_error=failures.get("cold"), outage_log=worker.log_events()[log_mark:],
            archived=archived, down_s=down_s,
            broker_figures=(before, figures[0] if figures else {}, after),
        )  # fmt: skip
    finally:
        producers.close()
        worker.stop()


def test_the_worker_lives_through_the_outage_and_counts_every_message_once(
    outage: Outage,
) -> None:
    sent, poison = len(outage.stream.messages), len(outage.stream.poison)

    assert outage.down_s > 5
    assert outage.counts == Counts(sent, sent - poison, poison)


def test_after_the_outage_every_value_stream_equals_the_pure_fold(outage: Outage) -> None:
    problems = _differences(outage.value_streams, outage.expected)

    assert not problems, f"{len(problems)} deals wrong: {dict(list(problems.items())[:5])}"


def test_after_the_outage_the_archive_holds_every_offset(outage: Outage) -> None:
    assert outage.archived == len(outage.stream.messages)


def test_a_producer_left_to_its_defaults_holds_its_events_until_the_broker_is_back(
    outage: Outage,
) -> None:
    assert outage.patient_error is None, f"the producer gave up: {outage.patient_error!r}"


def test_a_producer_that_gives_up_says_how_many_events_were_not_delivered(
    outage: Outage,
) -> None:
    assert isinstance(outage.impatient_error, PublishError)
    assert str(outage.impatient_error).startswith("20 event(s) were not acknowledged by Kafka")


def test_a_producer_new_to_the_topic_says_kafka_cannot_be_reached(outage: Outage) -> None:
    assert isinstance(outage.cold_error, PublishError), repr(outage.cold_error)
    assert "cannot reach Kafka" in str(outage.cold_error)


def test_the_outage_shows_in_the_worker_log_without_flooding_it(outage: Outage) -> None:
    trouble = [
        line
        for line in outage.outage_log
        if line.get("level") in {"warning", "error"} and line.get("event") != "event_dead_lettered"
    ]

    assert any(CONNECTION_TROUBLE.search(str(line.get("event"))) for line in trouble), trouble
    assert len(trouble) < 100, "one line per kind of trouble, not one per retry"


def test_the_outage_shows_in_the_worker_metrics_and_so_does_the_recovery(
    outage: Outage,
) -> None:
    before, down, after = (
        tuple(figures.get(name) for name in BROKER_FIGURES) for figures in outage.broker_figures
    )

    assert before == (1, 0, 0)
    assert down[:2] == (0, 1), outage.broker_figures
    assert after[0] == 1 and (after[1] or 0) >= 1, outage.broker_figures
    # Counted from the first unanswered probe to the first answered one (once a second).
    assert 0 < (down[2] or 0) < (after[2] or 0) <= outage.down_s + 5, outage.broker_figures


def test_a_fresh_broker_starts_whatever_its_random_cluster_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not Settings().local_broker:
        pytest.skip("starts its own local broker; KAFKA_BOOTSTRAP_SERVERS points elsewhere")
    broker = Settings(
        broker_port=free_port(), broker_controller_port=free_port(), broker_dir=tmp_path
    )
    unlucky = uuid.UUID(bytes=b"\xf8" + bytes(15))  # its base64 starts with "-"
    monkeypatch.setattr(uuid, "uuid4", lambda: unlucky)
    try:
        assert start_broker(broker, say=lambda _: None).running
    finally:
        stop_broker(broker)


# --- the history archive cannot be written -------------------------------------------------


@dataclass(frozen=True)
class ArchiveFaults:
    """What the worker did while its archive could not be written, and after."""

    stream: TouchStream
    unwritable_page: dict[str, Any]
    """/gemba/history/ while a file stood where the archive's directory should be."""
    committed_while_unwritable: dict[int, int]
    busy_page: dict[str, Any]
    """/gemba/history/ while this process held the archive open for writing."""
    archived_before_busy: dict[int, int]
    committed_while_busy: dict[int, int]
    consumed_while_busy: int
    ends: dict[int, int]
    committed_at_end: dict[int, int]
    archived_rows: int
    archived_ids: int
    intact: bool
    log: list[dict[str, Any]]


def _committed(setup: WorkerSetup, topic: str) -> dict[int, int]:
    """The worker group's committed offsets of `topic`, by partition (none: left out)."""
    admin = KafkaAdminClient(bootstrap_servers=setup.bootstrap_servers)
    try:
        offsets = admin.list_group_offsets(setup.app_id).get(setup.app_id, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items()
            if tp.topic == topic and meta.offset >= 0}  # fmt: skip


def _end_offsets(setup: WorkerSetup, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=setup.bootstrap_servers)
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        consumer.close()


def _a_commit_round_has_run(setup: WorkerSetup) -> bool | None:
    """True once the worker has committed all of its by-account topic: a commit round ran
    after the last event was taken (that topic's agent acks each message at once)."""
    topic = f"{setup.touches_topic}-by-account"
    ends = {p: n for p, n in _end_offsets(setup, topic).items() if n}
    committed = _committed(setup, topic)
    return True if ends and all(committed.get(p, 0) >= n for p, n in ends.items()) else None


def _trouble_on_the_page(worker: WorkerProcess) -> dict[str, Any] | None:
    page: dict[str, Any] | None = worker.page("/gemba/history/")
    return page if page and page["last_error"] else None


@pytest.fixture(scope="module")
def archive_faults(
    kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ArchiveFaults]:
    """The archive's directory cannot be made (a file is in the way), then it can; later
    this process holds the archive open for writing while events arrive, then lets go.

    (Tests run as root, whom chmod does not stop; DuckDB allows one writing process.)
    """
    state = tmp_path_factory.mktemp("archive-faults")
    in_the_way = state / "archive"
    in_the_way.write_text("a file where the archive's directory should be\n")
    stream = realistic_touches(30, seed=31)
    total, half = len(stream.messages), len(stream.messages) // 2
    setup = WorkerSetup(
        kafka_settings.bootstrap_servers, state / "gemba", duckdb_path=in_the_way / "gemba.duckdb"
    )
    setup.create_touches_topic()
    publish(setup.bootstrap_servers, setup.touches_topic, stream.messages[:half])
    worker = WorkerProcess(setup, state / "worker.log")
    try:
        worker.start()
        worker.wait_until_consumed(half, timeout_s=60)
        unwritable = wait_for(lambda: _trouble_on_the_page(worker), timeout_s=30)
        wait_for(lambda: _a_commit_round_has_run(setup), timeout_s=30)
        committed_while_unwritable = _committed(setup, setup.touches_topic)

        in_the_way.unlink()  # fixed: the directory can be made now
        worker.wait_until_archived(half)
        holder = setup.hold_archive()
        try:
            archived_before = dict(
                holder.execute(
                    "SELECT source_partition, next_offset FROM offsets WHERE topic = ?",
                    [setup.touches_topic],
                ).fetchall()
            )
            publish(setup.bootstrap_servers, setup.touches_topic, stream.messages[half:])
            consumed = worker.wait_until_consumed(total, timeout_s=60).consumed
            busy = wait_for(lambda: _trouble_on_the_page(worker), timeout_s=30)
            wait_for(lambda: _a_commit_round_has_run(setup), timeout_s=30)
            committed_while_busy = _committed(setup, setup.touches_topic)
        finally:
            holder.close()
        worker.wait_until_archived(total)
        ends = _end_offsets(setup, setup.touches_topic)
        committed_at_end = wait_for(
            lambda: c if (c := _committed(setup, setup.touches_topic)) == ends else None, 30
        )
    finally:
        worker.stop()
    archive = open_archive(setup.archive, read_only=True)
    try:
        rows, ids = archive.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM events"
        ).fetchall()[0]
        intact = verify_archive(archive).intact
    finally:
        archive.close()
    yield ArchiveFaults(
        stream=stream, unwritable_page=unwritable,
        committed_while_unwritable=committed_while_unwritable, busy_page=busy,
        archived_before_busy=archived_before, committed_while_busy=committed_while_busy,
        consumed_while_busy=consumed, ends=ends, committed_at_end=committed_at_end,
        archived_rows=rows, archived_ids=ids, intact=intact, log=worker.log_events(),
    )  # fmt: skip


def _logged(faults: ArchiveFaults, event: str) -> list[dict[str, Any]]:
    return [line for line in faults.log if line.get("event") == event]


def test_an_archive_directory_that_cannot_be_made_is_named_on_the_history_page_and_logged(
    archive_faults: ArchiveFaults,
) -> None:
    reason = archive_faults.unwritable_page["last_error"]
    failed = _logged(archive_faults, "history_archive_failed")

    assert "cannot make the archive's directory" in reason
    assert "GEMBA_DUCKDB_PATH" in reason
    assert failed and failed[0]["level"] == "error" and failed[0]["reason"] == reason
    assert archive_faults.unwritable_page["failures"] >= 1


def test_nothing_is_committed_while_the_archive_cannot_be_written(
    archive_faults: ArchiveFaults,
) -> None:
    assert archive_faults.committed_while_unwritable == {}


def test_while_another_process_holds_the_archive_the_worker_folds_on_and_commits_no_further(
    archive_faults: ArchiveFaults,
) -> None:
    held = archive_faults.archived_before_busy
    committed = archive_faults.committed_while_busy

    assert "in use by another process" in archive_faults.busy_page["last_error"]
    assert _logged(archive_faults, "history_archive_busy")
    assert archive_faults.consumed_while_busy == len(archive_faults.stream.messages)
    assert all(committed.get(p, 0) <= held.get(p, 0) for p in archive_faults.ends)
    assert any(archive_faults.ends[p] > held.get(p, 0) for p in archive_faults.ends)


def test_once_fixed_the_archive_holds_every_event_exactly_once_and_every_offset_is_committed(
    archive_faults: ArchiveFaults,
) -> None:
    distinct = len(archive_faults.stream.events)

    assert archive_faults.archived_rows == archive_faults.archived_ids == distinct
    assert archive_faults.intact
    assert archive_faults.committed_at_end == archive_faults.ends
    assert _logged(archive_faults, "history_archive_writable_again")


# --- thousands of malformed, duplicated, out-of-order and future-dated messages -------------

FUZZED = 1_200
"""Messages drawn by Hypothesis, mixed into a realistic stream of about 2,900."""
PLACES = 10_000


@dataclass(frozen=True)
class Fuzzed:
    """One drawn message: what it is, and where in the stream it goes (0..PLACES)."""

    kind: str
    key: bytes
    value: bytes
    place: int


def _shifted(event: Event, delta: timedelta, **changes: object) -> Event:
    """The event with every time in it moved by `delta` (so a meeting stays a sane slot)."""
    times = {k: v + delta for k, v in vars(event).items() if isinstance(v, datetime)}
    return type(event).model_validate(event.model_dump() | times | changes)


@st.composite
def fuzzed_messages(draw: st.DrawFn, known: Sequence[tuple[bytes, Event]]) -> Fuzzed:
    """A message for the realistic stream `known`: mostly malformed (refused by the codec,
    a valid event broken in one way, or no event at all), else valid and awkward: another
    copy of a known event, a conflicting copy (same id, other times), a future-dated
    touch of a known deal, or a random valid event."""
    place = draw(st.integers(0, PLACES))
    key, event = draw(st.sampled_from(known))
    how = draw(st.sampled_from(["malformed"] * 6 + ["copy", "conflict", "future", "random"]))
    if how == "malformed":
        base = st.just(event) | events
        broken = draw(malformed_messages(base))
        return Fuzzed(f"malformed: {broken.kind}", key, broken.value, place)
    if how == "copy":
        return Fuzzed("copy", key, encode(event), place)
    if how == "conflict":
        minutes = draw(st.integers(-7 * 24 * 60, 7 * 24 * 60).filter(bool))
        return Fuzzed(
            "conflicting copy", key, encode(_shifted(event, timedelta(minutes=minutes))), place
        )
    if how == "future":
        years = draw(st.integers(1, 150))  # events are bounded to years before 2200
        future = _shifted(event, timedelta(days=365 * years), event_id=f"{event.event_id}-future")
        return Fuzzed("future-dated", key, encode(future), place)
    random_event = draw(events)
    return Fuzzed("random valid", random_event.partition_key.encode(), encode(random_event), place)


def _drawn_by_hypothesis(known: Sequence[tuple[bytes, Event]], count: int) -> list[Fuzzed]:
    """`count` messages drawn once, the same every run.

    Hypothesis rather than a seeded random.Random: its draws lean to the edges (empty and
    huge values, odd Unicode, boundary numbers, every branch of a strategy early), which
    is where malformed input hides. Each example is one message; the run only collects
    them (nothing can fail, so there is no shrinking), `derandomize` fixes the corpus,
    and `max_examples` bounds its size and time (about 10 ms a message).
    """
    drawn: list[Fuzzed] = []

    @hypothesis.settings(
        max_examples=count, derandomize=True, database=None, deadline=None,
        phases=[hypothesis.Phase.generate], suppress_health_check=list(hypothesis.HealthCheck),
    )  # fmt: skip
    @hypothesis.given(fuzzed_messages(known))
    def collect(message: Fuzzed) -> None:
        drawn.append(message)

    collect()
    return drawn


@dataclass(frozen=True)
class BadInput:
    """A worker that read a realistic stream with thousands of drawn messages mixed in."""

    messages: list[tuple[bytes, bytes]]
    kinds: dict[str, int]
    refused: list[bytes]
    reasons: dict[bytes, str]
    """Why each refused message is refused."""
    good: list[Event]
    future_dated: list[Event]
    """Valid events dated more than the allowance after they were published: dead-lettered."""
    counts: Counts
    value_streams: dict[bytes, bytes | None]
    expected: dict[bytes, bytes]
    dead_letters: list[Record]
    history: dict[str, Any]
    archived_ids: int
    log: list[dict[str, Any]]
    alive: bool


def _pure_fold(good: Sequence[Event]) -> dict[bytes, bytes]:
    """Each opened deal's value stream from all its valid events (copies included: the
    fold keeps one of each id, whatever the order)."""
    policy = default_policy()
    folded = {}
    for deal_id, deal_events in events_by_deal(good).items():
        try:
            stream = deal_value_stream(deal_events, policy)
        except DealNotOpened:
            continue
        folded[deal_id.encode()] = stream.model_dump_json().encode()
    return folded


@pytest.fixture(scope="module")
def bad_input(
    kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BadInput]:
    stream = realistic_touches(30, seed=43)
    known = [(key, decode(value)) for key, value in stream.messages if _is_event(value)]
    drawn = _drawn_by_hypothesis(known, FUZZED)
    step = PLACES / len(stream.messages)
    placed = [(i * step, 0, message) for i, message in enumerate(stream.messages)]
    placed += [(f.place, 1, (f.key, f.value)) for f in drawn]
    messages = [message for *_, message in sorted(placed, key=lambda p: (p[0], p[1]))]
    state = tmp_path_factory.mktemp("bad-input")
    setup = WorkerSetup.fresh(kafka_settings, state / "gemba", fast_rejoin=False)
    setup.create_touches_topic()
    published_from = datetime.now(UTC)
    publish(setup.bootstrap_servers, setup.touches_topic, messages)
    published = (published_from - PUBLISH_SLACK, datetime.now(UTC) + PUBLISH_SLACK)
    reasons = {value: r for _, value in messages if (r := _refusal(value, published)) is not None}
    refused = [value for _, value in messages if value in reasons]
    good = [decode(value) for _, value in messages if value not in reasons]
    future_dated = [decode(value) for value, r in reasons.items() if r == FUTURE_DATED]
    expected = _pure_fold(good)
    worker = WorkerProcess(setup, state / "worker.log")
    try:
        worker.start()
        counts = worker.wait_until_consumed(len(messages), timeout_s=120)
        value_streams = setup.read_value_streams(expected, timeout_s=45)
        with TopicReader(setup.bootstrap_servers, setup.dead_letter_topic) as reader:
            reader.read_until(lambda r: len(r.records) >= len(refused), timeout_s=30)
            reader.poll(0.5)
            dead_letters = reader.records
        worker.wait_until_archived(len(messages))
        history = worker.page("/gemba/history/")
        alive = worker.alive
    finally:
        worker.stop()
    connection = open_archive(setup.archive, read_only=True)
    try:
        archived_ids = connection.execute("SELECT count(*) FROM events").fetchall()[0][0]
    finally:
        connection.close()
    kinds = Counter(f.kind for f in drawn)
    yield BadInput(
        messages=messages, kinds=dict(kinds), refused=refused, reasons=reasons, good=good,
        future_dated=future_dated, counts=counts,
        value_streams=value_streams, expected=expected, dead_letters=dead_letters,
        history=history, archived_ids=archived_ids, log=worker.log_events(), alive=alive,
    )  # fmt: skip


FUTURE = FutureLimit()
"""The worker's allowance for future-dated events (the default: a day)."""
FUTURE_DATED = f"occurred_at: {FUTURE.reason}"
PUBLISH_SLACK = timedelta(seconds=1)
"""Kafka stamps a record at the producer, to the millisecond, between the two readings of
the clock around `publish`."""


def _refusal(value: bytes, published: tuple[datetime, datetime]) -> str | None:
    """Why the worker refuses these bytes, published between the two moments: the codec's
    reason, or that the event is future-dated; None when it takes them."""
    try:
        event = decode(value)
    except EventRejected as exc:
        return str(exc)
    earliest, latest = published
    if FUTURE.is_future(event, latest):
        return FUTURE_DATED
    # Dated within the publish's few seconds of the allowance's edge, the outcome would
    # depend on the record's exact timestamp: unlikely for a drawn time, so it is not
    # guessed at but reported.
    assert not FUTURE.is_future(event, earliest), f"{event.event_id} is at the edge"
    return None


def _is_event(value: bytes) -> bool:
    try:
        decode(value)
    except EventRejected:
        return False
    return True


def test_the_drawn_messages_cover_every_kind_of_bad_input(bad_input: BadInput) -> None:
    print(bad_input.kinds)
    malformed = {k for k in bad_input.kinds if k.startswith("malformed: ")}
    assert len(malformed) == 12
    assert {"copy", "conflicting copy", "future-dated", "random valid"} <= bad_input.kinds.keys()
    assert len(bad_input.messages) > 4_000


def test_nothing_crashes_on_bad_input(bad_input: BadInput) -> None:
    crashes = [
        line
        for line in bad_input.log
        if line.get("level") in {"error", "critical"}
        # The Kafka clients' own transient errors (a coordinator not ready yet) are not ours.
        and not str(line.get("logger", "")).startswith(("kafka", "aiokafka"))
    ]

    assert bad_input.alive
    assert not crashes, crashes[:3]


def test_consumed_equals_processed_plus_dead_lettered_equals_messages_published(
    bad_input: BadInput,
) -> None:
    sent, refused = len(bad_input.messages), len(bad_input.refused)

    assert bad_input.counts == Counts(consumed=sent, processed=sent - refused,
                                      dead_lettered=refused)  # fmt: skip


def test_every_refused_message_is_dead_lettered_with_the_reason_it_was_refused(
    bad_input: BadInput,
) -> None:
    dead = sorted(record.value or b"" for record in bad_input.dead_letters)

    assert dead == sorted(bad_input.refused)
    for record in bad_input.dead_letters:
        assert record.headers["reason"].decode() == bad_input.reasons[record.value or b""]


def test_future_dated_events_are_dead_lettered_with_the_allowance_they_passed(
    bad_input: BadInput,
) -> None:
    future = {event.event_id for event in bad_input.future_dated}
    reasons = [r.headers["reason"].decode() for r in bad_input.dead_letters]

    assert any(event_id.endswith("-future") for event_id in future)
    assert reasons.count(FUTURE_DATED) == sum(
        1 for value in bad_input.refused if bad_input.reasons[value] == FUTURE_DATED
    )


def test_the_valid_messages_fold_into_the_pure_value_streams(bad_input: BadInput) -> None:
    problems = _differences(bad_input.value_streams, bad_input.expected)

    assert not problems, f"{len(problems)} deals wrong: {dict(list(problems.items())[:5])}"


def test_the_archive_keeps_each_valid_event_once_and_reports_no_trouble(
    bad_input: BadInput,
) -> None:
    # Future-dated events are not archived as events (a conflicting copy dated too far
    # ahead leaves its id to the good copy): the sink applies the worker's allowance, and
    # keeps them among the dead letters the worker sent them to.
    assert bad_input.archived_ids == len({event.event_id for event in bad_input.good})
    assert bad_input.history["last_error"] is None
    assert bad_input.history["failures"] == 0
