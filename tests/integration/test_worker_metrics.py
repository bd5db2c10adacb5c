"""A real worker process answers /health, /ready and /metrics, and its metrics agree with
its counters page."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.settings import Settings
from tests.support.worker_harness import (
    TouchStream,
    WorkerProcess,
    WorkerSetup,
    publish,
    realistic_touches,
    running_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

METRIC_NAMES = {
    "gemba_ready",
    "gemba_rebalances_total",
    "gemba_consumer_lag",
    "gemba_consumer_highwater",
    "gemba_consumer_committed_offset",
    "gemba_events_consumed_total",
    "gemba_events_processed_total",
    "gemba_events_dead_lettered_total",
    "gemba_events_per_second",
    "gemba_alerts_sent_total",
    "gemba_sink_lag",
    "gemba_sink_pending_messages",
    "gemba_sink_deals_to_refold",
    "gemba_sink_stored_total",
    "gemba_sink_failures_total",
    "gemba_sink_failing",
    "gemba_broker_reachable",
    "gemba_broker_outages_total",
    "gemba_broker_unreachable_seconds_total",
}


@dataclass(frozen=True)
class Running:
    worker: WorkerProcess
    setup: WorkerSetup
    stream: TouchStream


def get(setup: WorkerSetup, path: str) -> tuple[int, bytes]:
    """GET a page of the worker: its status and body (0 while nothing answers)."""
    try:
        with urllib.request.urlopen(setup.base_url + path, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def metrics(setup: WorkerSetup) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of /metrics: by metric name, then by sorted labels."""
    status, body = get(setup, "/metrics")
    assert status == 200
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


@pytest.fixture(scope="module")
def running(
    kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """A worker that has read a small realistic stream (poison messages included)."""
    state: Path = tmp_path_factory.mktemp("metrics")
    stream = realistic_touches(30)
    setup = WorkerSetup.fresh(kafka_settings, state / "gemba", fast_rejoin=False)
    setup.create_touches_topic()
    publish(setup.bootstrap_servers, setup.touches_topic, stream.messages)
    with running_worker(setup, state / "worker.log") as worker:
        worker.wait_until_consumed(len(stream.messages), timeout_s=90)
        yield Running(worker, setup, stream)


def test_health_says_the_process_is_alive(running: Running) -> None:
    status, body = get(running.setup, "/health")

    assert status == 200
    assert orjson.loads(body) == {"status": "alive"}


def test_ready_once_the_partitions_are_assigned_and_the_tables_recovered(running: Running) -> None:
    wait_for(lambda: get(running.setup, "/ready")[0] == 200 or None, timeout_s=30)

    assert orjson.loads(get(running.setup, "/ready")[1])["ready"] is True
    assert metrics(running.setup)["gemba_ready"][()] == 1


def test_metrics_name_every_figure_and_consumed_equals_the_counts_page(running: Running) -> None:
    # The sink reports its lag once it has archived a first batch.
    def complete() -> dict[str, dict[tuple[tuple[str, str], ...], float]] | None:
        found = metrics(running.setup)
        return found if found.keys() >= METRIC_NAMES else None

    found = wait_for(complete, timeout_s=30)
    counts = running.worker.counts()

    consumed = sum(found["gemba_events_consumed_total"].values())
    assert counts is not None
    assert consumed == counts.consumed == len(running.stream.messages)
    assert sum(found["gemba_events_processed_total"].values()) == counts.processed
    assert sum(found["gemba_events_dead_lettered_total"].values()) == len(running.stream.poison)
    partitions = {dict(labels)["partition"] for labels in found["gemba_events_consumed_total"]}
    assert partitions <= {str(p) for p in range(running.setup.partitions)}
    lagging = {dict(labels)["topic"] for labels in found["gemba_consumer_lag"]}
    assert running.setup.touches_topic in lagging
    assert not any("__assignor" in topic or "changelog" in topic for topic in lagging)


def test_consumer_and_sink_lag_fall_to_zero_once_everything_is_committed_and_archived(
    running: Running,
) -> None:
    touches = running.setup.touches_topic

    def settled() -> dict[str, float] | None:
        found = metrics(running.setup)
        lag = {
            name: sum(
                v for labels, v in found.get(name, {}).items() if ("topic", touches) in labels
            )
            for name in ("gemba_consumer_lag", "gemba_sink_lag")
        }
        seen = all(
            any(("topic", touches) in labels for labels in found.get(name, {}))
            for name in ("gemba_consumer_lag", "gemba_sink_lag")
        )
        return lag if seen and not any(lag.values()) else None

    assert wait_for(settled, timeout_s=60, interval_s=1) == {
        "gemba_consumer_lag": 0,
        "gemba_sink_lag": 0,
    }
    highwaters = metrics(running.setup)["gemba_consumer_highwater"]
    assert sum(v for labels, v in highwaters.items() if ("topic", touches) in labels) == len(
        running.stream.messages
    )


def test_a_worker_whose_broker_answers_reports_it_reachable_and_no_outage(
    running: Running,
) -> None:
    def watched() -> dict[str, dict[tuple[tuple[str, str], ...], float]] | None:
        found = metrics(running.setup)
        return found if "gemba_broker_reachable" in found else None

    found = wait_for(watched, timeout_s=30)

    assert found["gemba_broker_reachable"][()] == 1
    assert found["gemba_broker_outages_total"][()] == 0
    assert found["gemba_broker_unreachable_seconds_total"][()] == 0
