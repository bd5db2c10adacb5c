"""Stall-alert delay: threshold crossing to `deal-alerts`, beside event to value stream, same run.

    .venv/bin/python bench/bench_alerts.py [--deals N] [--rate R] [--seconds S]
                                           [--threshold-s T] [--moves M]

A real worker (`python -m streams worker`, live alert clock) first folds N open deals
(deal_opened, segment "Bench"), then gets a live stream of R events/s for S seconds,
every event stamped with the wall clock as its event time: a share M of them move a
deal to Qualification, whose Bench threshold is T seconds, so that the deal crosses
it T seconds later unless touched; the rest are outbound emails to random deals
(overhead, which does not restart a deal's clock). Two delays are measured from the
records' Kafka timestamps:

- alert delay: deal-stalled alert's timestamp minus its `stalled_at` (the crossing);
- the peer, value-stream delay: a deal's value-stream record timestamp minus its
  `as_of` (the live event that changed it): how far behind the live stream the
  worker's main output is (the pipeline folds every 0.5 s or 2,000 messages, and
  Faust publishes what a message produced when its offset is committed).

The live alert clock is the wall clock (`projections.deal.alerts.live_watermark`), so a
crossing is alerted within a tick of the clock once the worker has folded the event
that set it: the alert delay is the clock's tick, plus whatever of the fold lag
exceeds the threshold; it does not wait for a commit (alerts are sent at once,
before the state recording them). If the worker cannot keep up with the stream, the
value-stream delay grows with its lag, and the alert delay once the lag passes T.
Prints p50/p99/max of both, crossings alerted, missing and duplicated.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench._broker import benchmark_broker, free_port
from events.producer import ensure_topic
from streams.kafka.processes import is_running, spawn, stop_process, tail, wait_for_url
from streams.settings import Settings

__all__ = ["main"]

MARKER = "streams worker"
SEGMENT_POLICY = """
[stall.segments.Bench]
Prospecting = 3650
Qualification = {days}
"""


@dataclass(frozen=True)
class Options:
    deals: int
    rate: float
    seconds: float
    threshold_s: float
    moves: float
    partitions: int
    seed: int


@dataclass
class Bench:
    """One run's topics, worker and what was sent."""

    settings: Settings
    options: Options
    workdir: Path
    tag: str = field(default_factory=lambda: f"bench{uuid.uuid4().hex[:8]}")
    port: int = 0
    pid: int | None = None
    moved_at: dict[str, float] = field(default_factory=dict)
    sent: int = 0

    @property
    def touches(self) -> str:
        return f"{self.tag}-touches"

    @property
    def alerts(self) -> str:
        return f"{self.tag}-alerts"

    @property
    def value_streams(self) -> str:
        return f"{self.tag}-value-streams"

    def env(self) -> dict[str, str]:
        policy = self.workdir / "policy.toml"
        policy.write_text(_bench_policy(self.options.threshold_s))
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers,
            "GEMBA_APP_ID": f"gemba-{self.tag}",
            "GEMBA_STATE_DIR": str(self.workdir / "state"),
            "GEMBA_WORKER_WEB_PORT": str(self.port),
            "GEMBA_TOUCHES_TOPIC": self.touches,
            "GEMBA_DEAD_LETTER_TOPIC": f"{self.tag}-dlq",
            "GEMBA_VALUE_STREAMS_TOPIC": self.value_streams,
            "GEMBA_ALERTS_TOPIC": self.alerts,
            "GEMBA_TOPIC_PARTITIONS": str(self.options.partitions),
            "GEMBA_POLICY_FILE": str(policy),
            "GEMBA_ALERT_CLOCK": "live",
            "GEMBA_ALERT_TICK_S": "0.1",
            "GEMBA_LOG_LEVEL": "warning",
            "GEMBA_LOG_FORMAT": "json",
        }

    def start_worker(self) -> None:
        self.port = free_port()
        log = self.workdir / "worker.log"
        for inherited in [k for k in os.environ if k.startswith("GEMBA_")]:
            del os.environ[inherited]  # the worker gets this run's settings and no others
        self.pid = spawn(["worker"], log, self.env())
        # Until the child has exec'd, /proc shows the parent's command line: wait for it.
        _wait(lambda: is_running(self.pid, MARKER), timeout_s=10)
        wait_for_url(self._url("/gemba/counts/"), self.pid, MARKER, log, timeout_s=120)

    def stop_worker(self) -> None:
        stop_process(self.pid, MARKER)

    def consumed(self) -> int:
        with urllib.request.urlopen(self._url("/gemba/counts/"), timeout=10) as response:
            return int(orjson.loads(response.read())["consumed"])

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _bench_policy(threshold_s: float) -> str:
    from importlib import resources

    text = resources.files("projections.policy").joinpath("default.toml").read_text("utf-8")
    override = SEGMENT_POLICY.format(days=threshold_s / 86_400).strip()
    return text.replace('name = "default"', 'name = "bench"').replace("[stall.segments]", override)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _event(kind: str, n: int, deal: int, **fields: object) -> tuple[bytes, bytes]:
    key = f"deal-{deal}"
    body = {
        "type": kind,
        "event_id": f"{kind}-{n}",
        "occurred_at": _now(),
        "account_id": f"acct-{deal % 5000}",
        "deal_id": key,
        **fields,
    }
    return key.encode(), orjson.dumps(body)


def _producer(settings: Settings) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5,
        batch_size=256 * 1024, enable_idempotence=True,
    )  # fmt: skip


def load_open_deals(bench: Bench) -> float:
    """Publish N deal_opened events and wait until the worker has taken them; events/s."""
    began = time.perf_counter()
    producer = _producer(bench.settings)
    for deal in range(bench.options.deals):
        key, value = _event(
            "deal_opened", deal, deal, owner_id=f"rep-{deal % 50}", stage="Prospecting",
            segment="Bench",
        )  # fmt: skip
        producer.send(bench.touches, key=key, value=value)
    producer.flush()
    producer.close()
    bench.sent = bench.options.deals
    _wait(lambda: bench.consumed() >= bench.sent, timeout_s=3600)
    return bench.options.deals / (time.perf_counter() - began)


def live_stream(bench: Bench) -> tuple[float, float]:
    """R events/s for S seconds, stamped with the wall clock; (start, end) in epoch seconds."""
    options = bench.options
    rng = random.Random(options.seed)
    producer = _producer(bench.settings)
    start = time.time()
    sent = moved = 0
    while (elapsed := time.time() - start) < options.seconds:
        due = int(elapsed * options.rate)
        for _ in range(due - sent):
            sent += 1
            if rng.random() < options.moves and moved < options.deals:
                key, value = _event("stage_changed", sent, moved, to_stage="Qualification")
                bench.moved_at[key.decode()] = time.time()
                moved += 1
            else:
                deal = rng.randrange(options.deals)
                key, value = _event("email", sent, deal, direction="outbound")
            producer.send(bench.touches, key=key, value=value)
        time.sleep(0.005)
    producer.flush()
    producer.close()
    bench.sent += sent
    return start, time.time()


@dataclass
class Reader:
    """Reads a topic in a thread, from its start, keeping what `keep` makes of each record."""

    settings: Settings
    topic: str
    keep: Callable[[bytes, int], tuple[str, float] | None]
    got: list[tuple[str, float]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Reader:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers, group_id=None,
            enable_auto_commit=False, auto_offset_reset="earliest",
        )  # fmt: skip
        while not (partitions := consumer.partitions_for_topic(self.topic)):
            time.sleep(0.5)
            consumer.topics()
        consumer.assign([TopicPartition(self.topic, p) for p in partitions])
        while not self.stop.is_set():
            for records in consumer.poll(timeout_ms=200, max_records=20_000).values():
                for record in records:
                    kept = self.keep(record.value, record.timestamp)
                    if kept is not None:
                        self.got.append(kept)
        consumer.close()


def _stalled_alert(value: bytes, timestamp_ms: int) -> tuple[str, float] | None:
    alert = orjson.loads(value)
    if alert["kind"] != "deal-stalled" or alert["stage"] != "Qualification":
        return None
    crossing = datetime.fromisoformat(alert["stalled_at"]).timestamp()
    return alert["deal_id"], timestamp_ms / 1000 - crossing


AS_OF = b'"as_of":"'


def _value_stream_delay(since: float) -> Callable[[bytes, int], tuple[str, float] | None]:
    def keep(value: bytes, timestamp_ms: int) -> tuple[str, float] | None:
        at = value.find(AS_OF) + len(AS_OF)
        as_of = datetime.fromisoformat(value[at : value.index(b'"', at)].decode()).timestamp()
        return ("", timestamp_ms / 1000 - as_of) if as_of >= since else None

    return keep


def _wait(done: Callable[[], bool], timeout_s: float, every_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(every_s)
    return True


def _percentiles(delays: list[float]) -> str:
    if not delays:
        return "none"
    ordered = sorted(delays)

    def at(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return (
        f"p50 {at(0.50) * 1000:>8,.0f} ms   p99 {at(0.99) * 1000:>8,.0f} ms   "
        f"max {ordered[-1] * 1000:>8,.0f} ms   (n={len(ordered):,})"
    )


def run(settings: Settings, options: Options, workdir: Path) -> None:
    bench = Bench(settings, options, workdir)
    for topic in (bench.touches, bench.alerts, bench.value_streams):
        ensure_topic(settings.bootstrap_servers, topic, options.partitions)
    bench.start_worker()
    try:
        load_rate = load_open_deals(bench)
        print(f"loaded {options.deals:,} open deals: {load_rate:,.0f} events/s folded")
        alerts = Reader(settings, bench.alerts, _stalled_alert).start()
        live_since = time.time()
        peer = Reader(settings, bench.value_streams, _value_stream_delay(live_since)).start()
        start, end = live_stream(bench)
        achieved = (bench.sent - options.deals) / (end - start)
        behind = bench.sent - bench.consumed()
        crossed = {deal for deal, at in bench.moved_at.items() if at + options.threshold_s < end}
        caught_up = _wait(lambda: bench.consumed() >= bench.sent, timeout_s=600)
        _wait(lambda: crossed <= {deal for deal, _ in alerts.got}, timeout_s=60)
        alerts.stop.set()
        peer.stop.set()
    finally:
        bench.stop_worker()
    alerted = {deal for deal, _ in alerts.got}
    print(
        f"live stream: {achieved:,.0f} events/s for {end - start:.0f} s "
        f"(asked {options.rate:,.0f}); worker {behind:,} events behind at the end"
        f"{'' if caught_up else ' (never caught up)'}"
    )
    print(
        f"crossings in the window: {len(crossed):,}; alerted: {len(crossed & alerted):,}; "
        f"missing: {len(crossed - alerted):,}; duplicates: {len(alerts.got) - len(alerted):,}"
    )
    alert_delays = [delay for _, delay in alerts.got]
    print(f"  alert delay (crossing -> deal-alerts)       : {_percentiles(alert_delays)}")
    peer_delays = [delay for _, delay in peer.got]
    print(f"  peer: event -> deal-value-streams (same run) : {_percentiles(peer_delays)}")
    if not caught_up:
        print(tail(workdir / "worker.log"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=5000.0, help="live events per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the live stream")
    parser.add_argument("--threshold-s", type=float, default=5.0, help="Qualification threshold")
    parser.add_argument("--moves", type=float, default=0.05, help="share of stage changes")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    options = Options(
        args.deals, args.rate, args.seconds, args.threshold_s, args.moves, args.partitions,
        args.seed,
    )  # fmt: skip
    print(
        f"{options.deals:,} open deals, live stream {options.rate:,.0f} events/s for "
        f"{options.seconds:.0f} s, {options.moves:.0%} stage changes, threshold "
        f"{options.threshold_s:g} s, {options.partitions} partitions, {os.cpu_count()} CPUs"
    )
    with benchmark_broker() as settings, tempfile.TemporaryDirectory(prefix="gemba-bench-") as tmp:
        run(settings, options, Path(tmp))


if __name__ == "__main__":
    main()
