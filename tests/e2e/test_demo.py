"""The demo as a user runs it: everything starts, history flows through, a stop stops it all."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.kafka.processes import is_running
from streams.settings import Settings
from tests.support.worker_harness import free_port

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture
def demo_env(kafka_settings: Settings, tmp_path: Path) -> dict[str, str]:
    """A demo of its own: topics, consumer group, state directory and web port."""
    suffix = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEMBA_")}
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "GEMBA_STATE_DIR": str(tmp_path / "state"),
        "GEMBA_APP_ID": f"demo-{suffix}",
        "GEMBA_TOUCHES_TOPIC": f"touches-{suffix}",
        "GEMBA_DEAD_LETTER_TOPIC": f"dlq-{suffix}",
        "GEMBA_VALUE_STREAMS_TOPIC": f"value-streams-{suffix}",
        "GEMBA_WORKER_WEB_PORT": str(free_port()),
        "GEMBA_DASHBOARD_PORT": str(free_port()),
        "GEMBA_LOG_FORMAT": "json",
    }
    return env


def _gemba(*args: str) -> list[str]:
    return [sys.executable, "-m", "streams", *args]


def _state(env: dict[str, str]) -> dict[str, object]:
    state: dict[str, object] = orjson.loads(
        (Path(env["GEMBA_STATE_DIR"]) / "demo" / "state.json").read_bytes()
    )
    return state


def _latest_value_streams(env: dict[str, str]) -> dict[bytes, bytes]:
    topic = env["GEMBA_VALUE_STREAMS_TOPIC"]
    consumer = KafkaConsumer(
        bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"], consumer_timeout_ms=3000
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        return {message.key: message.value for message in consumer}
    finally:
        consumer.close()


def test_the_demo_loads_history_streams_live_and_stops_what_it_started(
    demo_env: dict[str, str],
) -> None:
    small = ["--deals", "60", "--accounts", "40", "--months", "2", "--speed", "86400"]
    result = subprocess.run(
        _gemba("demo", *small, "--live-seconds", "4"),
        env=demo_env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "loaded" in out and "events of simulated history" in out
    assert "the worker has folded all" in out
    assert "Gemba demo is running" in out
    assert "live stream ended after" in out
    assert "demo stopped" in out
    state = _state(demo_env)
    assert state["worker_pid"] is None
    assert not state["started_broker"]  # an external cluster: the demo starts no broker
    value_streams = _latest_value_streams(demo_env)
    assert len(value_streams) >= 50
    first = orjson.loads(next(iter(value_streams.values())))
    assert first["policy_version"].startswith("default-")


@pytest.fixture
def running_demo(demo_env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    small = ["--deals", "30", "--accounts", "20", "--months", "1"]
    process = subprocess.Popen(
        _gemba("demo", *small), env=demo_env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_demo_stop_from_another_terminal_stops_the_demo_and_its_worker(
    demo_env: dict[str, str], running_demo: subprocess.Popen[str]
) -> None:
    assert running_demo.stdout is not None
    deadline = time.monotonic() + 300
    seen = ""
    while "Gemba demo is running" not in seen and time.monotonic() < deadline:
        seen += running_demo.stdout.readline()
    assert "Gemba demo is running" in seen, seen
    worker_pid = _state(demo_env)["worker_pid"]
    assert isinstance(worker_pid, int) and is_running(worker_pid, "streams worker")

    again = subprocess.run(
        _gemba("demo"), env=demo_env, capture_output=True, text=True, timeout=60, check=False
    )
    assert "a demo is already running" in again.stdout

    stop = subprocess.run(
        _gemba("demo", "--stop"), env=demo_env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert running_demo.wait(timeout=60) == 0
    assert not is_running(worker_pid, "streams worker")
