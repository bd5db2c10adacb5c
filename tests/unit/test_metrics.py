"""The worker's metrics: events per second, readiness and the Prometheus page, from fakes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.worker.broker_watch import BrokerReachability, BrokerState
from streams.worker.counts import PipelineCounts
from streams.worker.metrics import (
    ConsumerOffsets,
    SinkState,
    ThroughputMeter,
    WorkerSnapshot,
    readiness,
    render_metrics,
)


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus page, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_events_per_second_is_the_growth_over_the_window() -> None:
    meter = ThroughputMeter(window_s=10)
    for second in range(21):
        meter.observe(float(second), {"0": 100 * second, "1": 50 * second})

    assert meter.per_second() == pytest.approx(150)


def test_partitions_moving_between_workers_are_not_throughput() -> None:
    meter = ThroughputMeter(window_s=10)
    meter.observe(0.0, {"0": 1000, "1": 5000})
    meter.observe(2.0, {"0": 1020, "2": 9000})  # 1 left, 2 arrived: only 0's growth counts

    assert meter.per_second() == pytest.approx(10)


def test_a_meter_with_one_sample_reports_nothing() -> None:
    meter = ThroughputMeter()
    meter.observe(0.0, {"0": 10})

    assert meter.per_second() == 0.0


def test_lag_is_the_end_offset_less_the_committed_one_and_never_negative() -> None:
    assert ConsumerOffsets("touches", 0, highwater=120, committed=100).lag == 20
    assert ConsumerOffsets("touches", 0, highwater=100, committed=101).lag == 0


def fake_app(*, recovered: bool, rebalancing: bool = False, in_recovery: bool = False) -> object:
    completed = asyncio.Event()
    if recovered:
        completed.set()
    tables = SimpleNamespace(recovery=SimpleNamespace(completed=completed))
    return SimpleNamespace(
        tables=tables, rebalancing=rebalancing, in_recovery=in_recovery, agents={}, crashed=False
    )


@pytest.mark.parametrize(
    ("app", "ready", "reason"),
    [
        (fake_app(recovered=False), False, "waiting for partitions"),
        (fake_app(recovered=True, rebalancing=True), False, "rebalancing"),
        (fake_app(recovered=True, in_recovery=True), False, "recovering tables"),
        (fake_app(recovered=True), True, "ready"),
    ],
)
def test_a_worker_is_ready_once_assigned_and_recovered_and_not_while_rebalancing(
    app: object, ready: bool, reason: str
) -> None:
    found = readiness(app)  # type: ignore[arg-type]

    assert found[0] is ready
    assert reason in found[1]


def snapshot() -> WorkerSnapshot:
    return WorkerSnapshot(
        ready=True,
        rebalances=2,
        consumer=(
            ConsumerOffsets("touches", 0, 120, 100),
            ConsumerOffsets("touches", 3, 50, 50),
        ),
        counts={
            "3": PipelineCounts(first_offset=0, last_offset=49, processed=48, dead_lettered=2),
            "0": PipelineCounts(first_offset=0, last_offset=99, processed=100),
        },
        events_per_second=12.5,
        alerts_sent=7,
        sink=SinkState(
            pending=30,
            deals_to_refold=4,
            stored=140,
            failures=1,
            failing=False,
            lag=(ConsumerOffsets("touches", 0, 120, 90),),
        ),
    )


def test_the_page_reports_lag_counts_rate_alerts_and_sink_in_prometheus_format() -> None:
    found = samples(render_metrics(snapshot()))

    touches0 = (("partition", "0"), ("topic", "touches"))
    assert found[("gemba_consumer_lag", touches0)] == 20
    assert found[("gemba_consumer_lag", (("partition", "3"), ("topic", "touches")))] == 0
    assert found[("gemba_consumer_highwater", touches0)] == 120
    assert found[("gemba_events_consumed_total", (("partition", "0"),))] == 100
    assert found[("gemba_events_consumed_total", (("partition", "3"),))] == 50
    assert found[("gemba_events_processed_total", (("partition", "3"),))] == 48
    assert found[("gemba_events_dead_lettered_total", (("partition", "3"),))] == 2
    assert found[("gemba_events_per_second", ())] == 12.5
    assert found[("gemba_alerts_sent_total", ())] == 7
    assert found[("gemba_sink_lag", touches0)] == 30
    assert found[("gemba_sink_pending_messages", ())] == 30
    assert found[("gemba_sink_failures_total", ())] == 1
    assert found[("gemba_ready", ())] == 1
    assert found[("gemba_rebalances_total", ())] == 2


def test_a_worker_without_alerts_or_sink_leaves_their_metrics_out() -> None:
    bare = WorkerSnapshot(ready=False, rebalances=0, consumer=(), counts={}, events_per_second=0)

    names = {name for name, _ in samples(render_metrics(bare))}

    assert "gemba_ready" in names
    assert not any(name.startswith(("gemba_sink", "gemba_alerts")) for name in names)


def test_an_outage_counts_once_from_the_first_unanswered_probe_to_the_next_answered_one() -> None:
    watch = BrokerReachability()
    assert watch.state(0.0) is None  # no probe yet

    changes = [watch.observe(answered, float(second)) for second, answered in
               enumerate([True, True, False, False, False, True, True, False, True])]  # fmt: skip

    assert changes == [True, False, True, False, False, True, False, True, True]
    assert watch.state(10.0) == BrokerState(reachable=True, outages=2, unreachable_s=4.0)


def test_the_outage_under_way_counts_up_to_the_moment_of_scraping() -> None:
    watch = BrokerReachability()
    watch.observe(True, 0.0)
    watch.observe(False, 5.0)

    assert watch.state(12.5) == BrokerState(reachable=False, outages=1, unreachable_s=7.5)


def test_a_worker_started_while_the_cluster_is_away_is_in_an_outage_from_the_start() -> None:
    watch = BrokerReachability()
    watch.observe(False, 0.0)
    watch.observe(True, 3.0)

    assert watch.state(4.0) == BrokerState(reachable=True, outages=1, unreachable_s=3.0)


def test_the_page_shows_whether_the_cluster_answers_and_how_long_it_did_not() -> None:
    down = BrokerState(reachable=False, outages=3, unreachable_s=42.5)
    bare = WorkerSnapshot(ready=True, rebalances=0, consumer=(), counts={}, events_per_second=0)

    found = samples(render_metrics(replace(bare, broker=down)))

    assert found[("gemba_broker_reachable", ())] == 0
    assert found[("gemba_broker_outages_total", ())] == 3
    assert found[("gemba_broker_unreachable_seconds_total", ())] == 42.5
    assert not any(name.startswith("gemba_broker") for name, _ in samples(render_metrics(bare)))
