"""Helpers for tests that run a real `gemba worker` process against the real broker.

Each worker gets its own topics, app id (consumer group and changelog topics), state
directory and web port, so tests never share state; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

import orjson
from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from events import Event, EventRejected, decode
from events.producer import KafkaEventPublisher, ensure_topic
from projections import DealNotOpened, Policy, deal_value_stream, events_by_deal
from projections.archive import ArchiveBusy, ArchiveStore, open_archive
from streams.settings import Settings
from streams.simulator import SimulationConfig, history_records

__all__ = [
    "BROKER_FIGURES",
    "Counts",
    "Poison",
    "Record",
    "TopicReader",
    "TouchStream",
    "WorkerProcess",
    "WorkerSetup",
    "broker_figures",
    "free_port",
    "publish",
    "realistic_touches",
    "rejection",
    "running_worker",
    "wait_for",
]

T = TypeVar("T")

FAST_REJOIN_ENV = {
    "BROKER_SESSION_TIMEOUT": "6",
    "BROKER_HEARTBEAT_INTERVAL": "1",
    "BROKER_REBALANCE_TIMEOUT": "15",
}
"""Faust's own settings (read from the environment): a SIGKILLed worker's consumer leaves
the group after 6 s (the broker's minimum) instead of Faust's 60 s default (15 s if it was
killed mid-rebalance), so that its restarted successor gets the partitions quickly. For
tests, on small streams: a worker busy for longer (a benchmark) can miss so short a
session, be rebalanced and recover all its tables; give it `fast_rejoin=False`."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(probe: Callable[[], T | None], timeout_s: float, interval_s: float = 0.2) -> T:
    """Call `probe` until it returns something other than None; TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        outcome = probe()
        if outcome is not None:
            return outcome
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing within {timeout_s:.0f}s")
        time.sleep(interval_s)


@dataclass(frozen=True)
class WorkerSetup:
    """Where one worker reads and writes: topics, app id, state directory and web port."""

    bootstrap_servers: str
    state_dir: Path
    tag: str = field(default_factory=lambda: f"w{uuid.uuid4().hex[:10]}")
    web_port: int = field(default_factory=free_port)
    partitions: int = 6
    replication: int = 1
    """Copies of each partition of the topics it creates (GEMBA_TOPIC_REPLICATION_FACTOR)."""
    fast_rejoin: bool = True
    history_sink: bool = True
    """False: the worker runs without the DuckDB history sink (GEMBA_HISTORY_SINK=false)."""
    duckdb_path: Path | None = None
    """The history archive (GEMBA_DUCKDB_PATH); None: the worker's default, in `state_dir`."""
    log_level: str = "info"
    """GEMBA_LOG_LEVEL of the worker."""
    store: str = "memory://"
    """GEMBA_WORKER_STORE: tests keep Faust's memory store (tables rebuilt from their
    changelogs at every start, nothing left on disk) unless they are about the worker's
    default, RocksDB ("rocksdb://")."""
    extra_env: tuple[tuple[str, str], ...] = ()
    """More environment for the worker (e.g. Faust's own settings), as (name, value) pairs."""

    @classmethod
    def fresh(cls, settings: Settings, state_dir: Path, *, fast_rejoin: bool = True) -> WorkerSetup:
        """A setup nobody else uses, on the test broker (see FAST_REJOIN_ENV)."""
        return cls(settings.bootstrap_servers, state_dir, fast_rejoin=fast_rejoin)

    def sibling(self, state_dir: Path, *, history_sink: bool = True) -> WorkerSetup:
        """Another worker of the same app (consumer group, tables, topics), with a state
        directory, history archive and web port of its own: a scale-out."""
        return replace(
            self, state_dir=state_dir, web_port=free_port(), history_sink=history_sink,
            duckdb_path=None,
        )  # fmt: skip

    @property
    def archive(self) -> Path:
        """Where this worker's history sink writes."""
        return self.duckdb_path or self.state_dir / "gemba.duckdb"

    def query_archive(self, sql: str) -> list[tuple[Any, ...]] | None:
        """Rows of a query on the archive, or None while the sink holds the file."""
        try:
            connection = open_archive(self.archive, read_only=True)
        except ArchiveBusy:
            return None
        try:
            return connection.execute(sql).fetchall()
        finally:
            connection.close()

    def hold_archive(self) -> ArchiveStore:
        """Open the archive for writing from this process, as soon as the sink lets go of
        it (it does when it has nothing to write): the history sink can store nothing more
        while the caller holds it."""

        def opened() -> ArchiveStore | None:
            try:
                return open_archive(self.archive)
            except ArchiveBusy:
                return None

        return wait_for(opened, timeout_s=30, interval_s=0.05)

    def read_value_streams(
        self, expected: dict[bytes, bytes], timeout_s: float = 30.0
    ) -> dict[bytes, bytes | None]:
        """The latest value per deal on the value-streams topic, once it matches `expected`
        (or at the deadline, for the diff)."""
        with TopicReader(self.bootstrap_servers, self.value_streams_topic) as reader:
            reader.read_until(lambda r: r.latest_by_key() == expected, timeout_s=timeout_s)
            return reader.latest_by_key()

    @property
    def app_id(self) -> str:
        return f"gemba-{self.tag}"

    @property
    def touches_topic(self) -> str:
        return f"{self.tag}-touches"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.tag}-touches-dlq"

    @property
    def value_streams_topic(self) -> str:
        return f"{self.tag}-deal-value-streams"

    @property
    def alerts_topic(self) -> str:
        return f"{self.tag}-deal-alerts"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def env(self) -> dict[str, str]:
        """The environment of a `gemba worker` subprocess for this setup (and nothing else)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GEMBA_")}
        if self.fast_rejoin:
            env.update(FAST_REJOIN_ENV)
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
                "GEMBA_APP_ID": self.app_id,
                "GEMBA_STATE_DIR": str(self.state_dir),
                "GEMBA_WORKER_WEB_PORT": str(self.web_port),
                "GEMBA_TOUCHES_TOPIC": self.touches_topic,
                "GEMBA_DEAD_LETTER_TOPIC": self.dead_letter_topic,
                "GEMBA_VALUE_STREAMS_TOPIC": self.value_streams_topic,
                "GEMBA_ALERTS_TOPIC": self.alerts_topic,
                "GEMBA_TOPIC_PARTITIONS": str(self.partitions),
                "GEMBA_TOPIC_REPLICATION_FACTOR": str(self.replication),
                "GEMBA_LOG_FORMAT": "json",
                "GEMBA_LOG_LEVEL": self.log_level,
                "GEMBA_HISTORY_SINK": "true" if self.history_sink else "false",
                "GEMBA_WORKER_STORE": self.store,
            }
        )
        if self.duckdb_path is not None:
            env["GEMBA_DUCKDB_PATH"] = str(self.duckdb_path)
        env.update(self.extra_env)
        return env

    def create_touches_topic(self) -> None:
        """Create the event log topic up front, so events can be published before the worker."""
        ensure_topic(
            self.bootstrap_servers, self.touches_topic, self.partitions,
            replication_factor=self.replication,
        )  # fmt: skip


class Counts(NamedTuple):
    """The worker's counters, as its `/gemba/counts/` page reports them."""

    consumed: int
    processed: int
    dead_lettered: int

    @property
    def settled(self) -> bool:
        """Every message read has an outcome: folded or dead-lettered."""
        return self.consumed == self.processed + self.dead_lettered


class WorkerProcess:
    """A `python -m streams worker` subprocess, started detached, stopped or killed by pid."""

    def __init__(
        self, setup: WorkerSetup, log: Path, module: tuple[str, ...] = ("streams", "worker")
    ) -> None:
        self.setup = setup
        self.log = log
        self.module = module
        """What `python -m` runs: the module and its arguments."""
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the worker is not running")
        return self._process.pid

    def start(self, timeout_s: float = 60.0) -> WorkerProcess:
        """Start the worker and wait until its web server answers the counts page."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                [sys.executable, "-m", *self.module],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=self.setup.env(),
            )
        self.starts += 1
        wait_for(self._counts_or_death, timeout_s)
        return self

    def _counts_or_death(self) -> Counts | None:
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError(f"the worker exited; last lines of its log:\n{self.tail()}")
        return self.counts()

    def wait_for_exit(self, timeout_s: float) -> int | None:
        """Wait until the worker exits by itself; its exit code (None if it still runs)."""
        if self._process is None:
            raise RuntimeError("the worker is not running")
        try:
            return self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    @property
    def alive(self) -> bool:
        """True while the worker process runs."""
        return self._process is not None and self._process.poll() is None

    def page(self, path: str) -> Any:
        """A JSON page of the worker's web server, parsed; None if it does not answer."""
        body = self.get(path)
        return None if body is None else orjson.loads(body)

    def archived(self) -> int | None:
        """Offsets of the touches topic the history archive holds, once nothing is pending
        (None while something is, or while the page does not answer)."""
        page = self.page("/gemba/history/")
        if page is None or page["pending"]:
            return None
        prefix = f"{self.setup.touches_topic}["
        held: int = sum(n for key, n in page["next_offsets"].items() if key.startswith(prefix))
        return held

    def wait_until_archived(self, total: int, timeout_s: float = 60.0) -> int | None:
        """Wait until the archive holds `total` offsets of the touches topic; what it holds
        then (or at the deadline, for the caller's assertion to report)."""
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: True if self.archived() == total else None, timeout_s)
        return self.archived()

    def log_events(self) -> list[dict[str, Any]]:
        """Every JSON line of the worker's log (all its runs), parsed; other lines left out."""
        found = []
        for line in self.log.read_bytes().splitlines():
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict):
                found.append(event)
        return found

    def counts(self) -> Counts | None:
        """The counters, or None while the web server does not answer."""
        body = self.get("/gemba/counts/")
        if body is None:
            return None
        page = orjson.loads(body)
        return Counts(page["consumed"], page["processed"], page["dead_lettered"])

    def get(self, path: str) -> bytes | None:
        """GET a page of the worker's web server; None if it does not answer (or 404)."""
        try:
            with urllib.request.urlopen(self.setup.base_url + path, timeout=5) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        except OSError:
            return None

    def readiness(self) -> tuple[int, Any] | None:
        """The status and JSON body of `/ready` (200 or 503); None if it does not answer."""
        try:
            with urllib.request.urlopen(self.setup.base_url + "/ready", timeout=5) as response:
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read() or b"null")
        except OSError:
            return None

    def wait_past(self, consumed: int, timeout_s: float, interval_s: float = 0.2) -> Counts:
        """Wait until at least `consumed` messages are consumed; the counts then."""

        def reached() -> Counts | None:
            counts = self._counts_or_death()
            return counts if counts is not None and counts.consumed >= consumed else None

        return wait_for(reached, timeout_s, interval_s)

    def wait_until_consumed(self, total: int, timeout_s: float = 60.0) -> Counts:
        """Wait until `total` messages are consumed and each has an outcome; the last counts.

        Returns the counts once `consumed` reaches `total` and they settle (or a few
        seconds later if they never do, for the caller's assertion to report).
        """
        counts = self.wait_past(total, timeout_s)
        with contextlib.suppress(TimeoutError):
            counts = wait_for(lambda: c if (c := self.counts()) and c.settled else None, 5.0)
        return self.counts() or counts

    def peak_rss_kib(self) -> int:
        """The worker's peak resident set size (VmHWM), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM in /proc status")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no commit, as when a machine dies."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._process.pid, signal.SIGKILL)
        self._process.wait(timeout=30)
        self._process = None

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM and wait; SIGKILL if it does not stop in time."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        self._process = None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def publish(bootstrap_servers: str, topic: str, messages: Iterable[tuple[bytes, bytes]]) -> int:
    """Send (key, value) byte pairs as they are, in order, acknowledged by all replicas."""
    with KafkaEventPublisher(bootstrap_servers, topic) as publisher:
        for key, value in messages:
            publisher.publish_encoded(key.decode(), value)
        return publisher.sent


class Record(NamedTuple):
    """One record read back from a topic."""

    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes]
    partition: int
    offset: int


class TopicReader:
    """Reads a topic from its first offset, every partition, keeping each record it sees."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.topic = topic
        self.records: list[Record] = []
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self._assigned = False

    def _assign(self) -> bool:
        partitions = self._consumer.partitions_for_topic(self.topic)
        if not partitions:
            return False
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)
        self._assigned = True
        return True

    def poll(self, timeout_s: float = 0.5) -> int:
        """Read what has arrived (waiting up to `timeout_s`); the number of new records."""
        if not self._assigned and not self._assign():
            time.sleep(timeout_s)
            return 0
        batch = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=10_000)
        new = [
            Record(r.key, r.value, dict(r.headers or ()), r.partition, r.offset)
            for records in batch.values()
            for r in records
        ]
        self.records.extend(new)
        return len(new)

    def read_until(self, done: Callable[[TopicReader], bool], timeout_s: float) -> bool:
        """Keep reading until `done(self)` holds (True) or the deadline passes (False)."""
        deadline = time.monotonic() + timeout_s
        while not done(self):
            if time.monotonic() >= deadline:
                return False
            self.poll()
        return True

    def latest_by_key(self) -> dict[bytes, bytes | None]:
        """What a compacted topic keeps: the latest value of each key."""
        latest: dict[bytes, bytes | None] = {}
        for record in sorted(self.records, key=lambda r: (r.partition, r.offset)):
            if record.key is not None:
                latest[record.key] = record.value
        return latest

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def running_worker(setup: WorkerSetup, log: Path) -> Iterator[WorkerProcess]:
    """A started worker, stopped (SIGTERM, then SIGKILL) when the block ends."""
    worker = WorkerProcess(setup, log)
    try:
        yield worker.start()
    finally:
        worker.stop()


class Poison(NamedTuple):
    """A message the worker must dead-letter, and a word its reason must contain."""

    name: str
    key: bytes
    value: bytes
    names_the_problem: str


def rejection(value: bytes) -> str:
    """Why the codec refuses these bytes (what the dead-letter reason header should say)."""
    try:
        decode(value)
    except EventRejected as exc:
        return str(exc)
    raise AssertionError(f"{value[:80]!r} is a valid event")


def _poison() -> list[Poison]:
    """One message of each kind the codec refuses (keys are given where they are placed)."""
    call = {
        "type": "call", "event_id": "poison-1", "occurred_at": "2026-06-02T10:00:00Z",
        "account_id": "acct-poison", "deal_id": "deal-poison", "direction": "outbound",
        "outcome": "connected", "duration_seconds": 60,
    }  # fmt: skip
    oversized = {**call, "type": "email", "subject": "x" * 70_000}
    del oversized["outcome"], oversized["duration_seconds"]
    kinds = [
        ("not JSON", b"\x00\x9f{ this is not json", "not valid JSON"),
        ("empty", b"", "not valid JSON"),
        ("a JSON list", b"[1, 2, 3]", "expected a JSON object"),
        ("not an event", b'{"type": "call", "event_id": "bad one"}', "event_id"),
        ("naive time", orjson.dumps({**call, "occurred_at": "2026-06-02T10:00:00"}), "timezone"),
        ("unknown type", orjson.dumps({**call, "type": "telegram"}), "telegram"),
        ("newer schema", orjson.dumps({**call, "schema_version": 99}), "upgrade Gemba"),
        ("oversized", orjson.dumps(oversized), "over the 65536 limit"),
    ]
    return [Poison(name, b"", value, problem) for name, value, problem in kinds]


@dataclass(frozen=True)
class TouchStream:
    """Messages for the `touches` topic, in publish order, and what they hold."""

    messages: tuple[tuple[bytes, bytes], ...]
    events: tuple[Event, ...]
    """Every distinct good event, once."""
    poison: tuple[Poison, ...]
    duplicates: int
    reordered_deals: frozenset[str]

    def expected_value_streams(
        self, policy: Policy, watermark: datetime | None = None
    ) -> dict[bytes, bytes]:
        """The pure fold of each opened deal, serialised as the worker sends it.

        As of each deal's own latest event (what the value-stream topic holds), or as of
        `watermark` if given.
        """
        expected = {}
        for deal_id, events in events_by_deal(self.events).items():
            try:
                stream = deal_value_stream(events, policy, watermark)
            except DealNotOpened:
                continue
            expected[deal_id.encode()] = stream.model_dump_json().encode()
        return expected

    @property
    def latest_event_time(self) -> datetime:
        """The watermark of the whole stream: its latest event time."""
        return max(event.occurred_at for event in self.events)


def realistic_touches(deals: int, seed: int = 7, accounts: int | None = None) -> TouchStream:
    """Simulated history with the disorder of real life, and poison messages interleaved.

    A quarter of the deals have their events published in a shuffled order (each
    still in its deal's partition, so the worker sees them out of order: some
    touches before their deal_opened); one event in twenty is published again
    later (same bytes, same event_id); the poison messages are spread evenly,
    each keyed like the good event before it. `accounts` narrows the market (the
    simulator's default otherwise), so that more deals share accounts and campaigns.
    """
    config = SimulationConfig(seed=seed, deals=deals)
    if accounts is not None:
        config = SimulationConfig(seed=seed, deals=deals, accounts=accounts)
    records = list(history_records(config))
    events = [decode(record.line) for record in records]
    keys = [record.key.encode() for record in records]
    values = [record.line for record in records]
    rng = random.Random(seed)
    slots: defaultdict[str, list[int]] = defaultdict(list)
    for index, event in enumerate(events):
        if event.deal_id is not None:
            slots[event.deal_id].append(index)
    reordered = frozenset(rng.sample(sorted(slots), len(slots) // 4))
    for deal_id in sorted(reordered):
        shuffled = [values[i] for i in slots[deal_id]]
        rng.shuffle(shuffled)
        for slot, value in zip(slots[deal_id], shuffled, strict=True):
            values[slot] = value
    placed = [(float(i), (keys[i], values[i])) for i in range(len(records))]
    copies = rng.sample(range(len(records)), len(records) // 20)
    placed += [(rng.uniform(i, len(records)), (keys[i], values[i])) for i in copies]
    poison = _poison()
    step = len(records) / (len(poison) + 1)
    for n, kind in enumerate(poison):
        slot = int(step * (n + 1))
        poison[n] = kind._replace(key=keys[slot])
        placed.append((slot + 0.5, (keys[slot], kind.value)))
    placed.sort(key=lambda item: item[0])
    return TouchStream(
        messages=tuple(message for _, message in placed),
        events=tuple({event.event_id: event for event in events}.values()),
        poison=tuple(poison),
        duplicates=len(copies),
        reordered_deals=reordered,
    )


BROKER_FIGURES = (
    "gemba_broker_reachable",
    "gemba_broker_outages_total",
    "gemba_broker_unreachable_seconds_total",
)


def broker_figures(worker: WorkerProcess) -> dict[str, float] | None:
    """The worker's gemba_broker_* metrics, once its /metrics page reports them all."""
    body = worker.get("/metrics")
    if body is None:
        return None
    found = {
        sample.name: sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name in BROKER_FIGURES
    }
    return found if len(found) == len(BROKER_FIGURES) else None
