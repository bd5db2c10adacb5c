"""Health, readiness and Prometheus metrics on each worker's web server.

- `GET /health`: the process is alive (its event loop answers);
- `GET /ready`: 200 once the worker has its partitions and its tables are recovered,
  503 while it waits for them, rebalances or recovers, and once an agent died (the
  worker then exits non-zero: streams/worker/liveness.py);
- `GET /metrics`: Prometheus text format: consumer lag per partition, events consumed,
  processed and dead-lettered per partition of `touches`, events per second, alerts
  sent, how far the history sink is behind, and whether the Kafka cluster answers.

Every figure is read when scraped, from the app and from the parts `build_worker` hands over
(`MeasuredParts`); nothing is kept but the samples of the events-per-second meter and the
outcomes of the broker watch (streams/worker/broker_watch.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from streams.worker.alerts import StallAlertEngine
from streams.worker.broker_watch import BrokerReachability, BrokerState
from streams.worker.counts import PipelineCounts
from streams.worker.liveness import why_the_worker_stops
from streams.worker.pipeline import ValueStreamPipeline
from streams.worker.sink import HistorySink

__all__ = [
    "ConsumerOffsets",
    "MeasuredParts",
    "SinkState",
    "ThroughputMeter",
    "WorkerSnapshot",
    "attach_metrics",
    "readiness",
    "render_metrics",
    "take_snapshot",
]

LEADER_TOPIC_SUFFIX = "__assignor-__leader"
"""Faust's partition assignor's topic (`<app id>-__assignor-__leader`): not the app's work."""
POSITION_WAIT_S = 1.0
METER_TICK_S = 1.0
METER_WINDOW_S = 10.0
"""Events per second are averaged over the last ten seconds."""


@dataclass
class ThroughputMeter:
    """Events per second from samples of each partition's consumed count.

    Only increases within one partition count: a partition that moves to another
    worker (its count leaves this one's total) or arrives from one (its count joins)
    is not throughput.
    """

    window_s: float = METER_WINDOW_S
    _samples: deque[tuple[float, dict[str, int]]] = field(default_factory=deque)

    def observe(self, now: float, consumed: Mapping[str, int]) -> None:
        """Record each partition's consumed count at monotonic time `now`."""
        self._samples.append((now, dict(consumed)))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()

    def per_second(self) -> float:
        """Events consumed per second over the window (0 until two samples exist)."""
        if len(self._samples) < 2:
            return 0.0
        (start, first), (end, last) = self._samples[0], self._samples[-1]
        if end <= start:
            return 0.0
        grown = sum(max(count - first[p], 0) for p, count in last.items() if p in first)
        return grown / (end - start)


@dataclass(frozen=True)
class ConsumerOffsets:
    """One assigned partition: its end offset and how far this worker has committed."""

    topic: str
    partition: int
    highwater: int
    committed: int

    @property
    def lag(self) -> int:
        return max(self.highwater - self.committed, 0)


@dataclass(frozen=True)
class SinkState:
    """The history sink as its summary reports it, and its lag per partition of `touches`."""

    pending: int
    deals_to_refold: int
    stored: int
    failures: int
    failing: bool
    lag: tuple[ConsumerOffsets, ...] = ()


@dataclass(frozen=True)
class MeasuredParts:
    """The worker's parts whose figures /metrics reads when scraped (given by build_worker)."""

    pipeline: ValueStreamPipeline
    alerts: StallAlertEngine
    broker: BrokerReachability
    sink: HistorySink | None = None
    """None when the worker runs without the history sink (its metrics are left out)."""


@dataclass(frozen=True)
class WorkerSnapshot:
    """Everything /metrics reports, read from the app at one moment."""

    ready: bool
    rebalances: int
    consumer: tuple[ConsumerOffsets, ...]
    counts: Mapping[str, PipelineCounts]
    events_per_second: float
    alerts_sent: int | None = None
    sink: SinkState | None = None
    broker: BrokerState | None = None
    stale_acks_refused: int = 0


def readiness(app: faust.App) -> tuple[bool, str]:
    """Whether the worker does its work now, and if not, what it waits for (or why it stops)."""
    stops = why_the_worker_stops(app)  # a dead agent or a stalled table recovery
    if stops is not None:  # the worker stops and exits non-zero: streams/worker/liveness.py
        return False, str(stops)
    if app.crashed:  # another part of Faust crashed: the worker stops too
        return False, f"stopping after a crash: {app.crash_reason}"
    tables: Any = app.tables  # the TableManager; its recovery is not on the interface
    if not tables.recovery.completed.is_set():
        return False, "waiting for partitions to be assigned and tables recovered"
    if app.rebalancing:
        return False, "rebalancing"
    if app.in_recovery:
        return False, "recovering tables"
    return True, "ready"


async def _consumer_offsets(app: faust.App) -> tuple[ConsumerOffsets, ...]:
    """Offsets of the assigned partitions of the agents' topics (Faust's own aside).

    Committed offsets are those this worker committed; before its first commit on a
    partition, its fetch position stands in for it.
    """
    internal = {table.changelog_topic.get_topic_name() for table in app.tables.values()}
    internal.add(f"{app.conf.id}-{LEADER_TOPIC_SUFFIX}")
    try:
        assigned = sorted(app.consumer.assignment())
    except Exception:  # not started yet, or stopping
        return ()
    found = []
    committed_offsets = app.monitor.tp_committed_offsets
    for tp in assigned:
        if tp.topic in internal:
            continue
        try:
            highwater = app.consumer.highwater(tp)
            committed = committed_offsets.get(tp)
            if committed is None:
                committed = await asyncio.wait_for(app.consumer.position(tp), POSITION_WAIT_S)
        except Exception:  # the partition left while we looked, or is not fetched yet
            continue
        if highwater is not None and committed is not None:
            found.append(ConsumerOffsets(tp.topic, tp.partition, highwater, committed))
    return tuple(found)


def _sink_state(sink: HistorySink, highwaters: Mapping[tuple[str, int], int]) -> SinkState:
    summary = sink.summary()
    lag = []
    for name, next_offset in summary["next_offsets"].items():
        topic, _, partition = name.rstrip("]").rpartition("[")
        highwater = highwaters.get((topic, int(partition)))
        if highwater is not None:
            lag.append(ConsumerOffsets(topic, int(partition), highwater, next_offset))
    return SinkState(
        pending=summary["pending"],
        deals_to_refold=summary["deals_to_refold"],
        stored=summary["stored"],
        failures=summary["failures"],
        failing=summary["last_error"] is not None,
        lag=tuple(lag),
    )


async def take_snapshot(
    app: faust.App, parts: MeasuredParts, meter: ThroughputMeter
) -> WorkerSnapshot:
    """Read every figure /metrics reports from the running app and its parts."""
    consumer = await _consumer_offsets(app)
    highwaters = {(o.topic, o.partition): o.highwater for o in consumer}
    return WorkerSnapshot(
        ready=readiness(app)[0],
        rebalances=app.rebalancing_count,
        consumer=consumer,
        counts=parts.pipeline.counts_by_partition(),
        events_per_second=meter.per_second(),
        alerts_sent=parts.alerts.alerts_sent,
        sink=_sink_state(parts.sink, highwaters) if parts.sink is not None else None,
        broker=parts.broker.state(time.monotonic()),
        stale_acks_refused=getattr(app.consumer, "refused_acks", 0),
    )


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: WorkerSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        yield _gauge("gemba_ready", "1 when the worker has its partitions and tables", snap.ready)
        yield _counter("gemba_rebalances_total", "Rebalances this process went through",
                       snap.rebalances)  # fmt: skip
        yield from _offsets(snap.consumer, "gemba_consumer", "this worker's consumer")
        yield _counter("gemba_stale_acks_refused_total", "Acks of messages skipped in a "
                       "rebalance, refused so they are read again (streams/worker/rebalance.py)",
                       snap.stale_acks_refused)  # fmt: skip
        for name, what in (
            ("consumed", "Messages of touches read, each offset once"),
            ("processed", "Messages of touches folded into the projections"),
            ("dead_lettered", "Messages of touches sent to the dead-letter topic"),
        ):
            family = CounterMetricFamily(f"gemba_events_{name}_total", what, labels=["partition"])
            for partition, counts in sorted(snap.counts.items(), key=lambda kv: int(kv[0])):
                family.add_metric([partition], getattr(counts, name))
            yield family
        yield _gauge("gemba_events_per_second", "Messages of touches consumed per second "
                     f"(last {METER_WINDOW_S:.0f} s)", snap.events_per_second)  # fmt: skip
        if snap.alerts_sent is not None:
            yield _counter("gemba_alerts_sent_total", "Stall alerts sent to deal-alerts",
                           snap.alerts_sent)  # fmt: skip
        if snap.sink is not None:
            yield from _sink(snap.sink)
        if snap.broker is not None:
            yield from _broker(snap.broker)


def _broker(broker: BrokerState) -> Iterator[Metric]:
    yield _gauge("gemba_broker_reachable", "1 while the Kafka cluster answers this worker "
                 "(asked once a second)", broker.reachable)  # fmt: skip
    yield _counter("gemba_broker_outages_total", "Times the Kafka cluster stopped answering",
                   broker.outages)  # fmt: skip
    yield _counter("gemba_broker_unreachable_seconds_total",
                   "Seconds the Kafka cluster did not answer", broker.unreachable_s)  # fmt: skip


def _sink(sink: SinkState) -> Iterator[Metric]:
    yield from _offsets(sink.lag, "gemba_sink", "the history archive (DuckDB)")
    yield _gauge("gemba_sink_pending_messages", "Messages taken, not yet archived", sink.pending)
    yield _gauge("gemba_sink_deals_to_refold", "Archived deals whose value-stream rows wait",
                 sink.deals_to_refold)  # fmt: skip
    yield _counter("gemba_sink_stored_total", "Events archived by this process", sink.stored)
    yield _counter("gemba_sink_failures_total", "Archive transactions that failed", sink.failures)
    yield _gauge("gemba_sink_failing", "1 while the last archive attempt failed", sink.failing)


def _offsets(offsets: Iterable[ConsumerOffsets], prefix: str, whose: str) -> Iterator[Metric]:
    labels = ["topic", "partition"]
    lag = GaugeMetricFamily(f"{prefix}_lag", f"Messages behind the end, {whose}", labels=labels)
    ends = GaugeMetricFamily(f"{prefix}_highwater", "End offset of the partition", labels=labels)
    done = GaugeMetricFamily(
        f"{prefix}_committed_offset", f"Next offset to be read, {whose}", labels=labels
    )
    for item in offsets:
        key = [item.topic, str(item.partition)]
        lag.add_metric(key, item.lag)
        ends.add_metric(key, item.highwater)
        done.add_metric(key, item.committed)
    yield from (lag, ends, done)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=float(value))


def render_metrics(snapshot: WorkerSnapshot) -> bytes:
    """The snapshot in Prometheus text exposition format (0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return generate_latest(registry)


def attach_metrics(app: faust.App, parts: MeasuredParts) -> ThroughputMeter:
    """Add /health, /ready and /metrics to the worker's web server, and the throughput meter.

    Call it at the end of `build_worker`, with the parts it reports on once they are attached.
    """
    meter = ThroughputMeter()

    @app.timer(METER_TICK_S, name="metrics-throughput")  # type: ignore[untyped-decorator]
    async def sample_throughput() -> None:
        by_partition = parts.pipeline.counts_by_partition()
        meter.observe(time.monotonic(), {p: c.consumed for p, c in by_partition.items()})

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        return web.json({"status": "alive"})

    @app.page("/ready")
    async def ready_page(web: Any, request: Any) -> Any:
        ready, reason = readiness(app)
        return web.json({"ready": ready, "reason": reason}, status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        body = render_metrics(await take_snapshot(app, parts, meter))
        return web.bytes(body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    return meter
