"""Restart-to-ready: the worker's tables in memory (rebuilt from changelogs) beside RocksDB.

    .venv/bin/python bench/bench_restart.py [--events N]

Fills a `touches` topic with N simulated events (default 1,000,000: the issue's figure;
at today's fold rate that takes a while, so pass e.g. --events 200000), then, for each
store in turn (GEMBA_WORKER_STORE=memory:// and rocksdb://, each its own app, topics
and state, in the same run): runs the worker until it has folded all N, stops it
(SIGTERM), starts it again and times start -> `/ready` 200 with its counters serving
all N. Prints both times, their ratio and what the changelogs held.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kafka import KafkaConsumer, TopicPartition

from bench._broker import benchmark_broker
from bench.bench_worker import simulated_messages
from tests.support.worker_harness import WorkerProcess, WorkerSetup, publish, wait_for

STORES = ("memory://", "rocksdb://")
FOLD_TIMEOUT_S = 7200.0
READY_TIMEOUT_S = 3600.0


class Restart(NamedTuple):
    """One store's run: how long the first fold took, and the restart to ready."""

    store: str
    fold_s: float
    ready_s: float
    changelog_records: int


def _changelog_records(setup: WorkerSetup) -> int:
    """Records the app's changelog topics hold (what a memory store reads at start)."""
    consumer = KafkaConsumer(bootstrap_servers=setup.bootstrap_servers, group_id=None)
    try:
        topics = [t for t in consumer.topics() if t.startswith(f"{setup.app_id}-")]
        partitions = [
            TopicPartition(t, p)
            for t in topics
            if "changelog" in t
            for p in consumer.partitions_for_topic(t) or ()
        ]
        ends, starts = consumer.end_offsets(partitions), consumer.beginning_offsets(partitions)
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        consumer.close()


def _serving(worker: WorkerProcess, count: int) -> bool | None:
    """True once `/ready` says 200 and the counters page reports all `count` consumed."""
    answer = worker.readiness()
    counts = worker.counts()
    ready = answer is not None and answer[0] == 200
    return True if ready and counts is not None and counts.consumed >= count else None


def restart_to_ready(setup: WorkerSetup, count: int, log: Path) -> Restart:
    """Fold `count` events, stop, start again: the seconds from start to serving them."""
    worker = WorkerProcess(setup, log)
    began = time.perf_counter()
    worker.start(timeout_s=READY_TIMEOUT_S)
    try:
        worker.wait_until_consumed(count, timeout_s=FOLD_TIMEOUT_S)
        wait_for(lambda: _serving(worker, count), timeout_s=READY_TIMEOUT_S)
        time.sleep(2.0)  # the last batch folded and its changelog records sent
        fold_s = time.perf_counter() - began
    finally:
        worker.stop(timeout_s=120)
    held = _changelog_records(setup)
    began = time.perf_counter()
    worker.start(timeout_s=READY_TIMEOUT_S)
    try:
        wait_for(lambda: _serving(worker, count), timeout_s=READY_TIMEOUT_S, interval_s=0.1)
        ready_s = time.perf_counter() - began
    finally:
        worker.stop(timeout_s=120)
    return Restart(setup.store, fold_s, ready_s, held)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()

    messages = simulated_messages(args.events)
    print(f"simulated {len(messages):,} events")
    results: list[Restart] = []
    with benchmark_broker() as settings, tempfile.TemporaryDirectory(prefix="gemba-br-") as tmp:
        for store in STORES:
            name = store.split(":")[0]
            fresh = WorkerSetup.fresh(settings, Path(tmp) / name, fast_rejoin=False)
            setup = replace(fresh, store=store, history_sink=False)
            setup.create_touches_topic()
            publish(setup.bootstrap_servers, setup.touches_topic, messages)
            result = restart_to_ready(setup, args.events, Path(tmp) / f"{name}.log")
            held = f"{result.changelog_records:,} changelog records"
            print(f"  {store:<12} folded in {result.fold_s:,.0f}s; restart to ready "
                  f"{result.ready_s:,.1f}s ({held})")  # fmt: skip
            results.append(result)

    memory, rocksdb = results
    print(f"events: {args.events:,}")
    for result in results:
        print(f"  restart -> /ready 200 and counters served, {result.store:<12}: "
              f"{result.ready_s:>8,.1f} s")  # fmt: skip
    print(f"  RocksDB restart takes {rocksdb.ready_s / memory.ready_s:.2f}x the memory store's "
          f"(which reads {memory.changelog_records:,} changelog records at start)")  # fmt: skip


if __name__ == "__main__":
    main()
