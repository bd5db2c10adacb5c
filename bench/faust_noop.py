"""A Faust agent that does nothing with each message: the ceiling of any Faust pipeline.

    python bench/faust_noop.py BOOTSTRAP TOPIC COUNT OUT_FILE [safe]

Run by bench_worker.py as a second peer beside raw aiokafka: the same Faust version and
consumer settings as `gemba worker`, one agent on the same topic that counts messages
(acks on, as a plain Faust agent has them) and writes, once it has seen COUNT, the
seconds from its first message to its last to OUT_FILE. The benchmark then stops it.
With `safe`, the app gets what `gemba worker` has from streams/worker/rebalance.py (its consumer
and streams iterated in Python), so that bench_rebalance_cost.py can weigh it.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import faust

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.worker.rebalance import make_rebalance_safe


def main() -> None:
    bootstrap, topic_name, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    safe = sys.argv[5:] == ["safe"]
    app = faust.App(
        f"bench-noop-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=tempfile.mkdtemp(prefix="gemba-noop-"),
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        stream_wait_empty=False,
    )
    if safe:
        make_rebalance_safe(app)
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, value_serializer="raw")
    seen = {"n": 0, "first": 0.0}

    @app.agent(topic)
    async def count_messages(stream: Any) -> None:
        async for _ in stream:
            if not seen["n"]:
                seen["first"] = time.perf_counter()
            seen["n"] += 1
            if seen["n"] == count:
                elapsed = time.perf_counter() - seen["first"]
                Path(out).write_text(f"{count} {elapsed}\n")

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
