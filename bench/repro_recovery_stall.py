"""Reproduce the survivor's table recovery stall (slow, not in CI): two workers share a
topic, a backlog flows, one is stopped; does the survivor recover its tables, and how long
does the take-over cost?

    .venv/bin/python bench/repro_recovery_stall.py [--rounds R] [--events N] [--stop-at F]

Each round: a fresh app on a six-partition topic (as tests/integration/test_scale_out.py),
two workers formed into one group, N simulated events (default 12,000) published at once,
the second worker stopped (SIGTERM) once the two have consumed the fraction F (default
0.3) of them, while the survivor's stream buffers are full of the backlog. The survivor
runs with GEMBA_RECOVERY_STALL_TIMEOUT_S=30, so a stalled recovery ends the round with its
`table_recovery_stuck` line (the partitions, and what the consumer fetched and held back).
Prints per round: stopped at, seconds from the stop to the survivor /ready again, seconds
to fold the rest, and the outcome; the workers' logs are kept in /tmp/gemba-recovery-stall.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import benchmark_broker
from bench.bench_worker import simulated_messages
from streams.settings import Settings
from tests.support.worker_harness import WorkerProcess, WorkerSetup, publish

STALL_ENV = (("GEMBA_RECOVERY_STALL_TIMEOUT_S", "30"),)
KEPT = Path("/tmp/gemba-recovery-stall")


def _consumed(*workers: WorkerProcess) -> int:
    return sum(c.consumed for w in workers if w.alive and (c := w.counts()))


def _ready(worker: WorkerProcess) -> bool:
    answer = worker.readiness()
    return answer is not None and answer[0] == 200


def _stuck_line(worker: WorkerProcess) -> str | None:
    for event in worker.log_events():
        if event.get("event") == "table_recovery_stuck":
            return str(event)
    return None


def _publish_paced(setup: WorkerSetup, messages: list[tuple[bytes, bytes]]) -> None:
    """As test_scale_out publishes its last act: 50 events every 0.2 s."""
    for start in range(0, len(messages), 50):
        publish(setup.bootstrap_servers, setup.touches_topic, messages[start : start + 50])
        time.sleep(0.2)


def one_round(
    settings: Settings,
    state: Path,
    messages: list[tuple[bytes, bytes]],
    stop_at: float,
    module: tuple[str, ...] = ("streams", "worker"),
    paced: bool = False,
) -> str:
    setup = replace(WorkerSetup.fresh(settings, state / "first", fast_rejoin=False),
                    extra_env=STALL_ENV)  # fmt: skip
    setup.create_touches_topic()
    first = WorkerProcess(setup, state / "first.log", module=module)
    second = WorkerProcess(setup.sibling(state / "second", history_sink=False),
                           state / "second.log")  # fmt: skip
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda w: w.start(timeout_s=120), (first, second)))
        while not (_ready(first) and _ready(second)):
            time.sleep(0.5)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            if paced:
                pool.submit(_publish_paced, setup, messages)
            else:
                pool.submit(publish, setup.bootstrap_servers, setup.touches_topic, messages)
            while (n := _consumed(first, second)) < stop_at * len(messages):
                time.sleep(0.05)
            stopped = time.monotonic()
            second.stop()
            while not _ready(first) and first.alive and time.monotonic() - stopped < 120:
                time.sleep(0.2)
            ready_s = time.monotonic() - stopped
            if not first.alive or not _ready(first):
                line = _stuck_line(first) or first.tail()
                return f"stopped at {n:,}: STALLED after {ready_s:.0f}s: {line[:3000]}"
            first.wait_past(len(messages), timeout_s=240)
        done_s = time.monotonic() - stopped
        return f"stopped at {n:,}: ready again in {ready_s:.1f}s, all folded {done_s:.0f}s after"
    finally:
        second.stop()
        first.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=12_000)
    parser.add_argument("--stop-at", type=float, default=0.3)
    parser.add_argument(
        "--paced",
        action="store_true",
        help="Publish 50 events every 0.2 s (as test_scale_out), not at once.",
    )
    parser.add_argument(
        "--module",
        default="streams.worker",
        help="What the survivor runs (python -m), e.g. an instrumented worker.",
    )
    args = parser.parse_args()
    messages = simulated_messages(args.events)
    with benchmark_broker() as settings, tempfile.TemporaryDirectory(prefix="gemba-rs-") as tmp:
        for n in range(args.rounds):
            state = Path(tmp) / f"round-{n}"
            module = tuple(args.module.split()) if " " in args.module else (args.module,)
            outcome = one_round(settings, state, messages, args.stop_at, module, args.paced)
            print(f"round {n + 1}: {outcome}; load average {os.getloadavg()[0]:.2f}", flush=True)
            for log in state.glob("*.log"):  # the workers' logs of every round
                (KEPT / f"round-{n}").mkdir(parents=True, exist_ok=True)
                shutil.copy(log, KEPT / f"round-{n}" / log.name)


if __name__ == "__main__":
    main()
