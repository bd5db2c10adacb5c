"""A broker for benchmarks: KAFKA_BOOTSTRAP_SERVERS if set, else Gemba's own on a free port."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streams.kafka.broker import start_broker, stop_broker
from streams.settings import Settings

__all__ = ["benchmark_broker", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def benchmark_broker() -> Iterator[Settings]:
    """Yield settings for a live broker on 127.0.0.1, stopping it afterwards if we started it."""
    settings = Settings()
    if not settings.local_broker:
        yield settings
        return
    with tempfile.TemporaryDirectory(prefix="gemba-bench-") as tmp:
        settings = Settings(
            broker_port=free_port(),
            broker_controller_port=free_port(),
            broker_dir=Path(tmp),
        )
        start_broker(settings)
        try:
            yield settings
        finally:
            stop_broker(settings)
