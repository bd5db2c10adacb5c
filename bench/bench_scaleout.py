"""Scale-out: one, two and four workers of one app on an eight-partition topic, beside raw aiokafka.

    .venv/bin/python bench/bench_scaleout.py [--events N] [--workers 1,2,4] [--partitions 8]

Simulates N events once (default 60,000). For each number of workers, a fresh app (its
own consumer group, tables and topics, an eight-partition `touches`): its workers (real
`gemba worker` processes, each with its own web port and state directory, history sink
off, as scaled-out workers run) start together on the empty topic and form their group
(every worker /ready on three polls two seconds apart: longer than a heartbeat, so no
member is still to rejoin); then the N events are published, and the time runs from the
first one sent until the workers' counters pages report all N consumed (bench_worker.py's
signal). Beside them, in the same run, raw aiokafka consumption of the last of those
topics from offset 0. Prints events/s, the speed-up over one worker, the share of raw
aiokafka and how the partitions were split.

The events are published once the group has formed rather than before the workers
start: workers joining one by one while another folds a backlog rebalance the group in
the middle of its batches, which measures rebalances rather than throughput (and, before
streams/worker/rebalance.py, left partitions unread: tests/integration/test_rebalance_backlog.py
runs that scenario). The publisher runs beside the workers
on the same machine (its seconds are printed); the machine is shared: read the ratios,
not the rates, and the load average printed with them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import benchmark_broker
from bench.bench_worker import POLL_S, STUCK_S, Rate, inventory, raw_consumption, simulated_messages
from streams.kafka.broker import broker_status
from tests.support.worker_harness import WorkerProcess, WorkerSetup, publish

PROGRESS_EVERY_S = 2.0
FORMED_POLLS = 3
FORMED_POLL_S = 2.0
"""The group has formed when every worker is /ready on this many polls this far apart."""
START_S = 120.0
"""How long a worker may take to answer its web port."""


TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system, all threads) the process has used so far; 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks) - idle) / TICKS, sum(ticks) / TICKS


class Cpu(NamedTuple):
    """Where the cores went while the events were folded: CPU seconds of each worker, of the
    broker, of this process (the publisher and the polling) and of the whole machine."""

    workers: tuple[float, ...]
    broker: float
    bench: float
    machine: float
    """CPU seconds the whole machine was busy (every process, ours or not)."""
    capacity: float
    """CPU seconds the machine had (cores x wall seconds)."""


class _CpuMeter:
    """CPU seconds used between `__init__` and `read` by the workers, broker, bench, machine."""

    def __init__(self, pids: list[int], broker: int | None) -> None:
        self.pids, self.broker = pids, broker
        self._start = ([_cpu_s(p) for p in pids], _cpu_s(broker), time.process_time(),
                       _machine_busy_s())  # fmt: skip

    def read(self) -> Cpu:
        workers, broker, bench, (busy, total) = self._start
        now_busy, now_total = _machine_busy_s()
        return Cpu(
            workers=tuple(_cpu_s(p) - w for p, w in zip(self.pids, workers, strict=True)),
            broker=_cpu_s(self.broker) - broker,
            bench=time.process_time() - bench,
            machine=now_busy - busy,
            capacity=now_total - total,
        )


class Round(NamedTuple):
    """How fast `workers` workers folded the topic, and how they split its partitions."""

    workers: int
    rate: Rate
    """From the first event published to the last consumed."""
    formed_s: float
    """From start-up to the group formed."""
    published_s: float
    split: tuple[int, ...]
    """Partitions each worker read, largest first."""
    cpu: Cpu


def _ready(worker: WorkerProcess) -> bool:
    try:
        with urllib.request.urlopen(worker.setup.base_url + "/ready", timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.HTTPError, OSError):
        return False


def _consumed(workers: list[WorkerProcess]) -> int:
    return sum(counts.consumed for worker in workers if (counts := worker.counts()))


def _split(workers: list[WorkerProcess]) -> tuple[int, ...]:
    """Partitions each worker holds counters of (its counters page), largest first."""
    split = []
    for worker in workers:
        page = worker.page("/gemba/counts/") or {"partitions": {}}
        split.append(sum(1 for c in page["partitions"].values() if c["consumed"]))
    return tuple(sorted(split, reverse=True))


@dataclass
class _Watch:
    """Polls the workers' counters, printing progress, until they report `total` consumed."""

    label: str
    workers: list[WorkerProcess]
    total: int
    began: float
    consumed: int = 0
    _shown: float = 0.0
    _changed: float = 0.0

    def poll(self) -> int:
        consumed = _consumed(self.workers)
        now = time.perf_counter()
        if consumed != self.consumed or not self._changed:
            self.consumed, self._changed = consumed, now
        elif now - self._changed > STUCK_S:
            raise SystemExit(f"{self.label} stuck at {consumed:,}:\n{self.workers[0].tail()}")
        if now - self._shown >= PROGRESS_EVERY_S or consumed >= self.total:
            self._shown = now
            share = consumed / self.total
            print(f"  {self.label}: {consumed:,} of {self.total:,} folded ({share:.0%}), "
                  f"{now - self.began:.0f}s", flush=True)  # fmt: skip
        return consumed

    def until_done(self) -> float:
        while self.poll() < self.total:
            time.sleep(POLL_S)
        return time.perf_counter()


def _group_formed(workers: list[WorkerProcess]) -> None:
    """Wait until every worker is /ready on FORMED_POLLS polls in a row."""
    deadline, steady = time.monotonic() + START_S, 0
    while steady < FORMED_POLLS:
        if time.monotonic() > deadline:
            tails = "\n\n".join(worker.tail() for worker in workers)
            raise SystemExit(f"the group did not form in {START_S:.0f}s; logs end:\n{tails}")
        time.sleep(FORMED_POLL_S)
        steady = steady + 1 if all(_ready(worker) for worker in workers) else 0


def _timed_publish(setup: WorkerSetup, messages: list[tuple[bytes, bytes]]) -> float:
    """Publish the events to the setup's topic; the seconds it took."""
    began = time.perf_counter()
    publish(setup.bootstrap_servers, setup.touches_topic, messages)
    return time.perf_counter() - began


def scale_round(
    setup: WorkerSetup,
    count: int,
    messages: list[tuple[bytes, bytes]],
    state: Path,
    broker_pid: int | None,
) -> Round:
    """Start `count` workers of a fresh app on its empty topic, then publish; time the fold."""
    setup.create_touches_topic()
    workers = [
        WorkerProcess(
            setup if n == 0 else setup.sibling(state / f"worker-{n}", history_sink=False),
            state / f"worker-{n}.log",
        )
        for n in range(count)
    ]
    label = f"{count} worker{'s' if count > 1 else ''}"
    started = time.perf_counter()
    try:
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            list(pool.map(lambda worker: worker.start(timeout_s=START_S), workers))
        _group_formed(workers)
        formed_s = time.perf_counter() - started
        print(f"  {label}: group formed in {formed_s:.0f}s; publishing {len(messages):,} events",
              flush=True)  # fmt: skip
        began = time.perf_counter()
        meter = _CpuMeter([worker.pid for worker in workers], broker_pid)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            published = pool.submit(_timed_publish, setup, messages)
            _Watch(label, workers, len(messages), began).until_done()
            done = time.perf_counter()
            published_s = published.result()
        cpu = meter.read()
        rate = Rate(len(messages), done - began, done - started)
        return Round(count, rate, formed_s, published_s, _split(workers), cpu)
    finally:
        for worker in workers:
            worker.stop()


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--workers", default="1,2,4", help="Comma-separated worker counts.")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--standby-replicas", type=int, default=None,
        help="Faust's TABLE_STANDBY_REPLICAS for the workers (default: Faust's, 1): 0 shows "
        "what keeping a warm copy of the other workers' tables costs.",
    )  # fmt: skip
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]

    began = time.perf_counter()
    messages = simulated_messages(args.events)
    held = inventory(messages)
    print(f"simulated {len(messages):,} events ({held.total_bytes / 1e6:,.1f} MB) of "
          f"{held.deals:,} deals in {time.perf_counter() - began:.0f}s; {os.cpu_count()} CPUs, "
          f"load average {_load()}", flush=True)  # fmt: skip
    rounds: list[Round] = []
    with benchmark_broker() as settings, tempfile.TemporaryDirectory(prefix="gemba-bs-") as tmp:
        broker_pid = broker_status(settings).pid if settings.local_broker else None
        for count in counts:
            state = Path(tmp) / f"workers-{count}"
            fresh = WorkerSetup.fresh(settings, state / "worker-0", fast_rejoin=False)
            standby = () if args.standby_replicas is None else (
                ("TABLE_STANDBY_REPLICAS", str(args.standby_replicas)),)  # fmt: skip
            setup = replace(fresh, partitions=args.partitions, history_sink=False,
                            extra_env=standby)  # fmt: skip
            rounds.append(scale_round(setup, count, messages, state, broker_pid))
        print("  raw aiokafka: reading the last topic from offset 0", flush=True)
        raw = raw_consumption(settings.bootstrap_servers, setup.touches_topic, args.events)

    base = rounds[0].rate.per_second
    print(
        f"\nevents: {args.events:,} on {args.partitions} partitions, {held.deals:,} deals; "
        f"workers without history sink, table standby replicas "
        f"{'Faust default (1)' if args.standby_replicas is None else args.standby_replicas}; "
        f"load average now {_load()} ({os.cpu_count()} CPUs)"
    )
    print(
        f"  {'workers':>7}  {'events/s':>9}  {'speed-up':>8}  {'% of raw':>8}  "
        f"{'seconds':>7}  {'publish s':>9}  {'group s':>7}  split"
    )
    for r in rounds:
        print(
            f"  {r.workers:>7}  {r.rate.per_second:>9,.0f}  {r.rate.per_second / base:>7.2f}x  "
            f"{r.rate.per_second / raw.per_second:>8.2%}  {r.rate.steady_s:>7.1f}  "
            f"{r.published_s:>9.1f}  {r.formed_s:>7.0f}  {'+'.join(map(str, r.split))}"
        )
    print(f"  aiokafka raw consumption of the same topic from offset 0 (peer): "
          f"{raw.per_second:,.0f} events/s")  # fmt: skip
    print("\nwhere the cores went while folding (CPU seconds; cores busy = CPU s / wall s):")
    print(f"  {'workers':>7}  {'each worker':>18}  {'broker':>6}  {'bench':>5}  "
          f"{'machine':>7}  {'of':>5}  {'cores busy':>10}")  # fmt: skip
    for r in rounds:
        c = r.cpu
        each = "+".join(f"{w:.1f}" for w in c.workers)
        busy = c.machine / r.rate.steady_s if r.rate.steady_s else 0.0
        print(f"  {r.workers:>7}  {each:>18}  {c.broker:>6.1f}  {c.bench:>5.1f}  "
              f"{c.machine:>7.1f}  {c.capacity:>5.1f}  {busy:>10.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
