"""What rebalance safety costs: Faust's no-op agent with and without streams/worker/rebalance.py.

    .venv/bin/python bench/bench_rebalance_cost.py [--events N] [--rounds R]

`gemba worker` iterates its streams in Python (Faust's compiled iterator acks around the
consumer that refuses stale acks) and acks through that consumer. This measures the
cost where it is largest, on an agent that does nothing else: bench/faust_noop.py reads
the same topic of N simulated events (default 200,000) as Faust ships it and with
`make_rebalance_safe`, alternately, R rounds each (default 2), beside raw aiokafka
consumption of the topic in the same run. Prints each run's events/s and the ratio of
the medians. The machine is shared: read the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import benchmark_broker
from bench.bench_worker import faust_noop, raw_consumption, simulated_messages
from events.producer import ensure_topic
from tests.support.worker_harness import publish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    messages = simulated_messages(args.events)
    print(f"simulated {len(messages):,} events; load average {os.getloadavg()[0]:.2f}",
          flush=True)  # fmt: skip
    rates: dict[bool, list[float]] = {False: [], True: []}
    with benchmark_broker() as settings, tempfile.TemporaryDirectory(prefix="gemba-rc-") as tmp:
        topic = f"rebalance-cost-{uuid.uuid4().hex[:8]}"
        ensure_topic(settings.bootstrap_servers, topic, 8)
        publish(settings.bootstrap_servers, topic, messages)
        for n in range(args.rounds):
            for safe in (False, True):
                rate = faust_noop(settings.bootstrap_servers, topic, len(messages), Path(tmp),
                                  safe=safe)  # fmt: skip
                rates[safe].append(rate.per_second)
                label = "with rebalance safety" if safe else "as Faust ships it   "
                print(f"  round {n + 1}: Faust no-op {label} {rate.per_second:>9,.0f} events/s",
                      flush=True)  # fmt: skip
        raw = raw_consumption(settings.bootstrap_servers, topic, len(messages))
    plain, guarded = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"\nmedian events/s: as shipped {plain:,.0f}; with rebalance safety {guarded:,.0f} "
          f"({guarded / plain:.2f}x); raw aiokafka (peer) {raw.per_second:,.0f}; "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
