"""Producer throughput: Gemba's publisher beside kafka-python sending the same bytes, same run.

    .venv/bin/python bench/bench_producer.py [--events N] [--rounds R]

Prints events/s for (1) raw kafka-python `send` of pre-encoded bytes, (2) Gemba's
`publish` of event objects (encode + send), (3) `publish_jsonl`, the `gemba produce`
path (parse + validate + encode + send), and each Gemba figure as a ratio of the raw
peer. All three use the same producer settings (acks=all, idempotence). Rounds
alternate the order so that a noisy neighbour hurts each side alike; the best round
of each is reported.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kafka import KafkaProducer

from bench._broker import benchmark_broker
from events import CallLogged, CallOutcome, Direction, EventBase, encode
from events.producer import KafkaEventPublisher, ensure_topic, publish_jsonl


def make_events(count: int) -> list[EventBase]:
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    return [
        CallLogged(
            event_id=f"bench-{n}",
            occurred_at=start + timedelta(seconds=n),
            account_id=f"acct-{n % 500}",
            deal_id=f"deal-{n % 2000}",
            actor_id=f"rep-{n % 9}",
            direction=Direction.OUTBOUND,
            outcome=CallOutcome.CONNECTED,
            duration_seconds=n % 1800,
        )
        for n in range(count)
    ]


def timed(run: Callable[[], None], count: int) -> float:
    began = time.perf_counter()
    run()
    return count / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    events = make_events(args.events)
    encoded = [(e.partition_key.encode(), encode(e)) for e in events]
    lines = [value + b"\n" for _, value in encoded]
    best: dict[str, float] = {"raw": 0.0, "publish": 0.0, "jsonl": 0.0}

    with benchmark_broker() as settings:
        servers = settings.bootstrap_servers

        def fresh_topic() -> str:
            name = f"bench-{uuid.uuid4().hex[:8]}"
            ensure_topic(servers, name, partitions=6)
            return name

        def raw() -> None:
            topic = fresh_topic()
            producer = KafkaProducer(
                bootstrap_servers=servers, acks="all", enable_idempotence=True,
                linger_ms=5, batch_size=256 * 1024,
            )  # fmt: skip
            for key, value in encoded:
                producer.send(topic, key=key, value=value)
            producer.flush()
            producer.close()

        def publish() -> None:
            with KafkaEventPublisher(servers, fresh_topic()) as publisher:
                for event in events:
                    publisher.publish(event)

        def jsonl() -> None:
            with KafkaEventPublisher(servers, fresh_topic()) as publisher:
                publish_jsonl(lines, publisher)

        runs = {"raw": raw, "publish": publish, "jsonl": jsonl}
        for round_number in range(args.rounds):
            order = list(runs) if round_number % 2 == 0 else list(reversed(runs))
            for name in order:
                best[name] = max(best[name], timed(runs[name], len(events)))

    print(f"events per run: {len(events):,}, rounds: {args.rounds} (best of each)")
    print(f"  kafka-python raw send of the same bytes : {best['raw']:>10,.0f} events/s (peer)")
    for name, label in [("publish", "gemba publish(event)"), ("jsonl", "gemba produce (validate)")]:
        ratio = best[name] / best["raw"]
        print(f"  {label:<39}: {best[name]:>10,.0f} events/s  ({ratio:.2f}x the peer)")


if __name__ == "__main__":
    main()
