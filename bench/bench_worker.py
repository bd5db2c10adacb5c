"""Worker throughput: the Faust pipeline beside a raw aiokafka consumer of the same topic, same run.

    .venv/bin/python bench/bench_worker.py [--events N] [--profile FILE]
        [--variant 'LABEL:NAME=VALUE,...' ...]

Fills a topic with N simulated events (default 1,000,000), then measures (a) a raw
aiokafka consumer reading it from offset 0 and (b) the `gemba worker` process folding
it into deal value streams, until its counters page reports all N consumed. Beside
them, a second peer: a Faust agent doing nothing with each message (bench/faust_noop.py),
the ceiling of any Faust pipeline. Prints the rates, the ratios (target: the worker at
least half the raw consumer), the worker's peak RSS and the deals it holds. With
--profile and py-spy on PATH, the worker is sampled while it runs and the profile
written to FILE (speedscope JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
from aiokafka import AIOKafkaConsumer

from bench._broker import benchmark_broker
from events import encode
from events.models import CallLogged, CallOutcome, DealOpened, Direction
from streams.simulator import SimulationConfig, history_records
from tests.support.worker_harness import WorkerProcess, WorkerSetup, publish

EVENTS_PER_DEAL = 25
"""Fewer than the simulator makes per deal (campaign responses included), so that enough
deals are simulated to fill N events; the history is cut at N, in event-time order."""
POLL_S = 0.2
STUCK_S = 600
"""Give up when the counters stand still this long (a rebalance recovers the tables first)."""


class Rate(NamedTuple):
    """How fast N events went through: from the first one seen, and from the very start."""

    events: int
    steady_s: float
    wall_s: float

    @property
    def per_second(self) -> float:
        return self.events / self.steady_s if self.steady_s > 0 else float("inf")


class Inventory(NamedTuple):
    """What the events hold: deals, and how many are still open at the end."""

    deals: int
    open_deals: int
    total_bytes: int


def simulated_messages(count: int) -> list[tuple[bytes, bytes]]:
    """The first `count` events of a simulated history, as (key, line) pairs in time order."""
    config = SimulationConfig(seed=11, deals=max(1, count // EVENTS_PER_DEAL))
    messages: list[tuple[bytes, bytes]] = []
    for record in history_records(config):
        messages.append((record.key.encode(), record.line))
        if len(messages) == count:
            break
    if len(messages) < count:
        raise SystemExit(f"the simulation made only {len(messages):,} events; lower --events")
    return messages


def open_deal_messages(deals: int) -> list[tuple[bytes, bytes]]:
    """`deals` open deals: each opened, then a connected call an hour later, over 90 days."""
    start = datetime(2026, 6, 1, tzinfo=UTC)
    messages: list[tuple[bytes, bytes]] = []
    for n in range(deals):
        deal, account = f"open-{n:07d}", f"acct-{n % 20_000:05d}"
        at = start + timedelta(seconds=n * 90 * 86_400 // max(deals, 1))
        opened = DealOpened(
            event_id=f"{deal}-opened", occurred_at=at, account_id=account, deal_id=deal,
            owner_id=f"rep-{n % 50:02d}", amount=Decimal("12000"), segment="Mid-market",
        )  # fmt: skip
        call = CallLogged(
            event_id=f"{deal}-call", occurred_at=at + timedelta(hours=1), account_id=account,
            deal_id=deal, direction=Direction.OUTBOUND, outcome=CallOutcome.CONNECTED,
            duration_seconds=900,
        )  # fmt: skip
        messages += [(deal.encode(), encode(opened)), (deal.encode(), encode(call))]
    return messages


def inventory(messages: list[tuple[bytes, bytes]]) -> Inventory:
    opened: set[str] = set()
    closed: set[str] = set()
    for _, line in messages:
        event = orjson.loads(line)
        if event["type"] == "deal_opened":
            opened.add(event["deal_id"])
        elif event["type"] in {"deal_won", "deal_lost"}:
            closed.add(event["deal_id"])
    size = sum(len(line) for _, line in messages)
    return Inventory(deals=len(opened), open_deals=len(opened - closed), total_bytes=size)


def raw_consumption(bootstrap_servers: str, topic: str, count: int) -> Rate:
    """Read `count` records from offset 0 with aiokafka, doing nothing with them."""

    async def run() -> Rate:
        began = time.perf_counter()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap_servers, group_id=None,
            auto_offset_reset="earliest", enable_auto_commit=False,
        )  # fmt: skip
        await consumer.start()
        seen, first = 0, 0.0
        try:
            while seen < count:
                batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                got = sum(len(records) for records in batch.values())
                if got and not first:
                    first = time.perf_counter()
                seen += got
        finally:
            await consumer.stop()
        done = time.perf_counter()
        return Rate(seen, done - first, done - began)

    return asyncio.run(run())


def faust_noop(
    bootstrap_servers: str, topic: str, count: int, tmp: Path, *, safe: bool = False
) -> Rate:
    """The second peer: a Faust agent doing nothing with each message (bench/faust_noop.py);
    with `safe`, with the worker's rebalance safety (streams/worker/rebalance.py)."""
    out = tmp / "noop.txt"
    out.unlink(missing_ok=True)
    began = time.perf_counter()
    script = Path(__file__).with_name("faust_noop.py")
    with (tmp / "noop.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(script), bootstrap_servers, topic, str(count), str(out)]
            + (["safe"] if safe else []),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        while not out.exists():
            if process.poll() is not None:
                raise SystemExit(f"the Faust no-op peer exited:\n{(tmp / 'noop.log').read_text()}")
            if time.perf_counter() - began > STUCK_S:
                raise SystemExit("the Faust no-op peer did not finish")
            time.sleep(POLL_S)
        wall = time.perf_counter() - began
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    seen, steady = out.read_text().split()
    return Rate(int(seen), float(steady), wall)


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        print("  (no py-spy on PATH: no profile)")
        return None
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--rate", "50", "--format", "speedscope",
         "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def worker_pipeline(
    setup: WorkerSetup, count: int, log: Path, profile: Path | None
) -> tuple[Rate, int]:
    """Run the worker on the filled topic until it has consumed `count`; rate and peak RSS."""
    worker = WorkerProcess(setup, log)
    began = time.perf_counter()
    worker.start()
    spy = _py_spy(worker.pid, profile) if profile else None
    first, at_first, consumed = 0.0, 0, 0
    try:
        for consumed in _consumed_until(worker, count):
            if consumed and not first:
                first, at_first = time.perf_counter(), consumed
        done = time.perf_counter()
        peak_kib = worker.peak_rss_kib()
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its profile on Ctrl-C
            spy.wait(timeout=120)
        worker.stop()
    # The first figure arrives a batch late: count from it, not from zero.
    return Rate(consumed - at_first, done - first, done - began), peak_kib


def _consumed_until(worker: WorkerProcess, count: int) -> Iterator[int]:
    last_change, last = time.monotonic(), -1
    while True:
        counts = worker.counts()
        consumed = counts.consumed if counts else 0
        if consumed != last:
            last_change, last = time.monotonic(), consumed
        yield consumed
        if consumed >= count:
            return
        if not worker.alive:
            raise SystemExit(
                f"the worker exited at {consumed:,} of {count:,}; its log ends:\n{worker.tail(200)}"
            )
        if time.monotonic() - last_change > STUCK_S:
            raise SystemExit(
                f"the worker is stuck at {consumed:,} of {count:,}; its log ends:\n{worker.tail()}"
            )
        time.sleep(POLL_S)


def _variant(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """'label:NAME=VALUE,NAME=VALUE' -> (label, ((NAME, VALUE), ...))."""
    label, _, assignments = text.partition(":")
    pairs = [a.split("=", 1) for a in assignments.split(",") if a.strip()]
    if not label or any(len(pair) != 2 or not pair[0] for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected LABEL:NAME=VALUE[,NAME=VALUE...], not {text!r}")
    return label, tuple((name.strip(), value.strip()) for name, value in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy speedscope output")
    parser.add_argument(
        "--open-deals", type=int, default=None,
        help="Instead of simulated history: N open deals (two events each), for memory.",
    )  # fmt: skip
    parser.add_argument(
        "--variant", action="append", type=_variant, default=None, metavar="LABEL:NAME=V,...",
        help="Run the worker once per variant (repeat the option), each with these environment "
        "variables, e.g. 'uvloop:GEMBA_WORKER_LOOP=uvloop' or "
        "'big buffer:STREAM_BUFFER_MAXSIZE=16384' (Faust reads its settings from them).",
    )  # fmt: skip
    args = parser.parse_args()

    began = time.perf_counter()
    if args.open_deals:
        messages = open_deal_messages(args.open_deals)
        args.events = len(messages)
    else:
        messages = simulated_messages(args.events)
    held = inventory(messages)
    print(
        f"simulated {len(messages):,} events ({held.total_bytes / 1e6:,.0f} MB) of "
        f"{held.deals:,} deals in {time.perf_counter() - began:.0f}s"
    )
    with benchmark_broker() as settings, tempfile.TemporaryDirectory(prefix="gemba-bw-") as tmp:
        setup = WorkerSetup.fresh(settings, Path(tmp) / "gemba", fast_rejoin=False)
        setup.create_touches_topic()
        began = time.perf_counter()
        publish(setup.bootstrap_servers, setup.touches_topic, messages)
        print(f"filled {setup.touches_topic} in {time.perf_counter() - began:.0f}s")
        del messages
        raw = raw_consumption(setup.bootstrap_servers, setup.touches_topic, args.events)
        noop = faust_noop(setup.bootstrap_servers, setup.touches_topic, args.events, Path(tmp))
        runs: list[tuple[str, Rate, int]] = []
        for label, env in args.variant or [("gemba worker", ())]:
            # Each variant is an app of its own (consumer group, tables) on the same topic.
            variant = replace(
                setup, tag=f"{setup.tag}v{len(runs)}",
                extra_env=(("GEMBA_TOUCHES_TOPIC", setup.touches_topic), *env),
            )  # fmt: skip
            log = Path(tmp) / f"worker-{len(runs)}.log"
            rate, peak = worker_pipeline(variant, args.events, log, args.profile)
            runs.append((label, rate, peak))

    print(f"events: {args.events:,}; deals in the worker's state: {held.deals:,} "
          f"({held.open_deals:,} still open at the last event)")  # fmt: skip
    print(f"  aiokafka raw consumption from offset 0 : {raw.per_second:>10,.0f} events/s "
          f"(peer; {raw.wall_s:.1f}s with start-up)")  # fmt: skip
    print(f"  Faust agent doing nothing (2nd peer)   : {noop.per_second:>10,.0f} events/s "
          f"({noop.per_second / raw.per_second:.2%} of raw; "
          f"{noop.wall_s:.1f}s with start-up)")  # fmt: skip
    for label, worker, peak_kib in runs:
        print(f"  {label[:38]:<38} : {worker.per_second:>10,.0f} events/s "
              f"({worker.per_second / raw.per_second:.2%} of raw, target 50%; "
              f"{worker.per_second / noop.per_second:.1%} of the Faust no-op; "
              f"{worker.wall_s:.1f}s with start-up)")  # fmt: skip
        print(f"    peak RSS (VmHWM)                     : {peak_kib / 1024:>10,.0f} MiB")


if __name__ == "__main__":
    main()
