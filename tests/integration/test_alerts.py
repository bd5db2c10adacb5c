"""Stall alerts from a real worker process on the real broker: silence alone raises them.

Event-clock workers (what replays use) show the episode life cycle, the webhook and the
restart; a replay compares two workers over one log; live-clock workers show that the
wall clock alone, with no event at all, raises and ends an episode, and that a deal silent
for months is stalled now, however old its partition's latest event, across a restart too.
"""

from __future__ import annotations

import contextlib
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import IO, Any

import orjson
import pytest
from click.testing import CliRunner
from kafka.partitioner.default import murmur2

from events import CallLogged, CallOutcome, DealOpened, Direction, EventBase, decode, encode
from projections import deal_value_stream, default_policy, events_by_deal
from projections.deal.alerts import (
    AlertKind,
    EpisodeEnd,
    StallAlert,
    StallThresholds,
    check_stalls,
)
from streams.settings import Settings
from streams.simulator import SimulationConfig, history_records
from tests.support.worker_harness import (
    TopicReader,
    WorkerProcess,
    WorkerSetup,
    publish,
    running_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

MARCH_2 = datetime(2026, 3, 2, 9, tzinfo=UTC)
DAY = timedelta(days=1)
LIVE_POLICY = """
[stall.segments.Live]
Prospecting = {days}
"""


@dataclass(frozen=True)
class AlertSetup(WorkerSetup):
    """A worker setup with its own alerts topic, alert clock, policy and webhook."""

    clock: str = "event"
    policy_file: Path | None = None
    webhook_url: str | None = None

    @property
    def alerts_topic(self) -> str:
        return f"{self.tag}-deal-alerts"

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(
            {
                "GEMBA_ALERTS_TOPIC": self.alerts_topic,
                "GEMBA_ALERT_CLOCK": self.clock,
                "GEMBA_ALERT_TICK_S": "0.1",
                "GEMBA_ALERT_WEBHOOK_RETRY_S": "0.2",
            }
        )
        if self.policy_file is not None:
            env["GEMBA_POLICY_FILE"] = str(self.policy_file)
        if self.webhook_url is not None:
            env["GEMBA_ALERT_WEBHOOK_URL"] = self.webhook_url
        return env


class Receiver:
    """A webhook receiver on 127.0.0.1 that refuses the first `failures` requests (HTTP 503)."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.attempts: list[str] = []
        self.accepted: list[tuple[str, dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
                alert_id = self.headers["X-Gemba-Alert-Id"]
                receiver.attempts.append(alert_id)
                refuse = len(receiver.attempts) <= receiver.failures
                if not refuse:
                    receiver.accepted.append((alert_id, body))
                self.send_response(503 if refuse else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/gemba"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted_ids(self) -> list[str]:
        return [alert_id for alert_id, _ in self.accepted]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver(failures=1)
    yield made
    made.close()


def opened(deal: str, at: datetime, segment: str | None = None) -> DealOpened:
    return DealOpened(
        event_id=f"{deal}-opened", occurred_at=at, account_id=f"acct-{deal}", deal_id=deal,
        owner_id="rep-ana", amount=Decimal("12000"), segment=segment,
    )  # fmt: skip


def call(deal: str, at: datetime, outcome: CallOutcome = CallOutcome.CONNECTED) -> CallLogged:
    return CallLogged(
        event_id=f"{deal}-call-{at:%m%d%H%M%S%f}", occurred_at=at, account_id=f"acct-{deal}",
        deal_id=deal, direction=Direction.OUTBOUND, outcome=outcome, duration_seconds=600,
    )  # fmt: skip


def send(setup: WorkerSetup, events: list[EventBase]) -> None:
    publish(setup.bootstrap_servers, setup.touches_topic, [_message(e) for e in events])


def _message(event: EventBase) -> tuple[bytes, bytes]:
    return event.partition_key.encode(), encode(event)


def alerts_of(reader: TopicReader) -> list[StallAlert]:
    return [StallAlert.model_validate_json(r.value or b"") for r in reader.records]


def read_alerts_until(reader: TopicReader, count: int, timeout_s: float = 30) -> list[StallAlert]:
    """Read until `count` alerts are in, then a little longer to catch any extra one."""
    reader.read_until(lambda r: len(r.records) >= count, timeout_s)
    reader.poll(1.0)
    return alerts_of(reader)


def worker_page(worker: WorkerProcess, path: str) -> Any:
    body = worker.get(path)
    assert body is not None, worker.tail()
    return orjson.loads(body)


def busy_days(deal: str, first: int, last: int) -> list[EventBase]:
    """Connected calls every day, 10:00, on March `first`..`last`: a deal that never stalls."""
    return [
        call(deal, MARCH_2 + (day - 2) * DAY + timedelta(hours=1)) for day in range(first, last + 1)
    ]


# The life of an episode, with the webhook and a restart -------------------------------------


def test_a_silent_deal_is_alerted_once_a_touch_ends_it_and_a_restart_repeats_nothing(
    kafka_settings: Settings, tmp_path: Path, receiver: Receiver
) -> None:
    # One partition: the busy deal's events move the clock of the quiet deal's partition.
    setup = AlertSetup(
        kafka_settings.bootstrap_servers, tmp_path / "gemba", partitions=1,
        webhook_url=receiver.url,
    )  # fmt: skip
    setup.create_touches_topic()
    send(setup, [opened("quiet", MARCH_2), opened("busy", MARCH_2), *busy_days("busy", 3, 20)])

    with (
        TopicReader(setup.bootstrap_servers, setup.alerts_topic) as reader,
        running_worker(setup, tmp_path / "worker.log") as worker,
    ):
        [stalled] = read_alerts_until(reader, 1)
        assert stalled.kind is AlertKind.STALLED
        assert (stalled.deal_id, stalled.account_id, stalled.owner_id) == (
            "quiet", "acct-quiet", "rep-ana",
        )  # fmt: skip
        assert stalled.stalled_at == MARCH_2 + 14 * DAY
        assert stalled.silent_since == MARCH_2
        assert stalled.threshold == 14 * DAY
        assert stalled.threshold_basis.choice == "fixed"
        [listed] = worker_page(worker, "/gemba/alerts/")["open"]
        assert listed["alert_id"] == stalled.alert_id

        touch = call("quiet", MARCH_2 + 19 * DAY + timedelta(hours=1))
        send(setup, [touch, *busy_days("busy", 22, 22)])
        [_, unstalled] = read_alerts_until(reader, 2)
        assert unstalled.kind is AlertKind.UNSTALLED
        assert unstalled.episode_id == stalled.episode_id
        assert unstalled.ended_by is EpisodeEnd.VALUE_ADDED_TOUCH
        assert unstalled.last_value_added_id == touch.event_id
        assert unstalled.time_stalled == touch.occurred_at - stalled.stalled_at
        assert unstalled.waste_while_stalled.inventory == unstalled.time_stalled
        assert worker_page(worker, "/gemba/alerts/")["open"] == []
        wait_for(lambda: len(receiver.accepted) >= 2 or None, 30)

    # Stopped between episodes; the next one starts while it is down.
    send(setup, busy_days("busy", 23, 40))
    with running_worker(setup, tmp_path / "worker.log"), reader_for(setup) as again:
        alerts = read_alerts_until(again, 3)
        wait_for(lambda: len(receiver.accepted) >= 3 or None, 30)

    assert [a.kind for a in alerts] == [AlertKind.STALLED, AlertKind.UNSTALLED, AlertKind.STALLED]
    assert alerts[2].silent_since == touch.occurred_at
    assert len({a.alert_id for a in alerts}) == 3
    assert receiver.accepted_ids() == [a.alert_id for a in alerts]
    assert receiver.attempts[:2] == [stalled.alert_id, stalled.alert_id]  # refused, then retried
    assert "alert_delivery_failed" in (tmp_path / "worker.log").read_text()
    first_message = receiver.accepted[0][1]
    assert "quiet" in first_message["text"]
    assert first_message["blocks"][0]["type"] == "section"


def reader_for(setup: AlertSetup) -> TopicReader:
    return TopicReader(setup.bootstrap_servers, setup.alerts_topic)


# Replays ------------------------------------------------------------------------------------


def test_a_replay_of_the_same_log_gives_the_same_alerts_even_across_a_restart(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    records = list(history_records(SimulationConfig(seed=11, deals=100)))
    messages = [(r.key.encode(), r.line) for r in records]
    half = len(messages) // 2

    interrupted = AlertSetup(kafka_settings.bootstrap_servers, tmp_path / "a", partitions=3)
    interrupted.create_touches_topic()
    publish(interrupted.bootstrap_servers, interrupted.touches_topic, messages[:half])
    with running_worker(interrupted, tmp_path / "a.log") as worker:
        worker.wait_until_consumed(half)
        settled_alerts(interrupted)  # the last messages folded and acked: a clean stop
    publish(interrupted.bootstrap_servers, interrupted.touches_topic, messages[half:])
    with running_worker(interrupted, tmp_path / "a.log") as worker:
        worker.wait_until_consumed(len(messages))
        first = settled_alerts(interrupted)
        quality = worker_page(worker, "/gemba/alerts/quality/")

    replay = AlertSetup(kafka_settings.bootstrap_servers, tmp_path / "b", partitions=3)
    replay.create_touches_topic()
    publish(replay.bootstrap_servers, replay.touches_topic, messages)
    with running_worker(replay, tmp_path / "b.log") as worker:
        worker.wait_until_consumed(len(messages))
        second = settled_alerts(replay)

    expected = pure_alerts([decode(line) for _, line in messages], partitions=3)
    assert len(expected) > 10
    assert len({a.alert_id for a in first}) == len(first), "an alert was repeated"
    assert as_json(first) == as_json(expected)
    assert as_json(second) == as_json(expected)
    assert not [a for a in first if a.ended_by is EpisodeEnd.WITHDRAWN]  # in order: none late
    assert quality["closed_deals"] > 0
    assert sum(row["alerts"] for row in quality["stages"]) > 0


def as_json(alerts: list[StallAlert]) -> list[str]:
    return sorted(alert.model_dump_json() for alert in alerts)


def pure_alerts(events: list[EventBase], partitions: int) -> list[StallAlert]:
    """What the pure core says: each deal checked as of the event time of its partition.

    A deal's partition is the producer's (murmur2 of the deal id); the partition's
    event time is the latest event time of the opened deals in it.
    """
    policy = default_policy()
    by_deal = events_by_deal(events)
    streams = {d: deal_value_stream(evs, policy) for d, evs in by_deal.items()}
    clock: dict[int, datetime] = {}
    for deal_id, stream in streams.items():
        partition = (murmur2(deal_id.encode()) & 0x7FFFFFFF) % partitions
        clock[partition] = max(clock.get(partition, stream.as_of), stream.as_of)
    alerts: list[StallAlert] = []
    for deal_id, deal_events in by_deal.items():
        at = clock[(murmur2(deal_id.encode()) & 0x7FFFFFFF) % partitions]
        stream = deal_value_stream(deal_events, policy, at)
        account = deal_events[0].account_id
        alerts += check_stalls(stream, account, StallThresholds(policy)).alerts
    return alerts


def settled_alerts(setup: AlertSetup, quiet_s: float = 3.0) -> list[StallAlert]:
    """Every alert on the topic once no new one has come for `quiet_s` seconds."""
    with reader_for(setup) as reader:
        idle = 0.0
        while idle < quiet_s:
            idle = 0.0 if reader.poll(0.5) else idle + 0.5
        return alerts_of(reader)


# The live clock -----------------------------------------------------------------------------


def test_in_live_mode_silence_alone_raises_the_alert_and_a_touch_ends_it(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(_policy_with_live_segment(seconds=2))
    setup = AlertSetup(
        kafka_settings.bootstrap_servers, tmp_path / "gemba", partitions=1, clock="live",
        policy_file=policy,
    )  # fmt: skip
    setup.create_touches_topic()

    with (
        running_worker(setup, tmp_path / "worker.log") as worker,
        following(setup) as follower,
        reader_for(setup) as reader,
    ):
        start = datetime.now(UTC)
        send(setup, [opened("live-1", start, segment="Live")])
        [stalled] = read_alerts_until(reader, 1)
        assert stalled.stalled_at == start + timedelta(seconds=2)
        assert stalled.threshold_basis.choice == "segment"
        line = line_of(follower.stdout, timeout_s=30)
        assert "STALLED" in line
        assert "live-1" in line

        listed = CliRunner().invoke(
            cli_with_alerts(), ["alerts", "--json"], env=setup.env(), catch_exceptions=False
        )
        assert [a["deal_id"] for a in orjson.loads(listed.output)["open"]] == ["live-1"]

        touch = call("live-1", datetime.now(UTC))
        send(setup, [touch])  # no event after it: the wall clock must pass it
        [_, unstalled] = read_alerts_until(reader, 2)
        assert unstalled.ended_by is EpisodeEnd.VALUE_ADDED_TOUCH
        assert unstalled.last_value_added_id == touch.event_id
        assert worker_page(worker, "/gemba/alerts/")["open"] == []


def test_in_live_mode_a_deal_silent_for_months_is_alerted_at_once_and_a_restart_keeps_that(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    # One partition, carrying nothing later than the deal's own months-old event.
    setup = AlertSetup(
        kafka_settings.bootstrap_servers, tmp_path / "gemba", partitions=1, clock="live"
    )
    setup.create_touches_topic()
    now = datetime.now(UTC)
    send(setup, [opened("june", now - 180 * DAY)])

    with reader_for(setup) as reader, running_worker(setup, tmp_path / "worker.log") as worker:
        ready = time.monotonic()
        [stalled] = read_alerts_until(reader, 1, timeout_s=20)
        assert time.monotonic() - ready < 15, "alerted only after the worker was ready long since"
        assert (stalled.deal_id, stalled.stalled_at) == ("june", now - 166 * DAY)
        watermark = worker_page(worker, "/gemba/alerts/")["watermarks"]["0"]
        assert datetime.fromisoformat(watermark) >= now

    send(setup, [opened("october", now - 60 * DAY)])  # while the worker is down
    restarted = datetime.now(UTC)
    with running_worker(setup, tmp_path / "worker.log") as worker, reader_for(setup) as again:
        alerts = read_alerts_until(again, 2, timeout_s=20)
        page = worker_page(worker, "/gemba/alerts/")

    assert [(a.deal_id, a.kind) for a in alerts] == [
        ("june", AlertKind.STALLED), ("october", AlertKind.STALLED),
    ]  # fmt: skip
    assert alerts[0].alert_id == stalled.alert_id
    assert sorted(a["deal_id"] for a in page["open"]) == ["june", "october"]
    assert datetime.fromisoformat(page["watermarks"]["0"]) >= restarted


def _policy_with_live_segment(seconds: float) -> str:
    text = resources.files("projections.policy").joinpath("default.toml").read_text("utf-8")
    override = LIVE_POLICY.format(days=seconds / 86_400)
    return text.replace('name = "default"', 'name = "live-test"').replace(
        "[stall.segments]", override.strip()
    )


def cli_with_alerts() -> Any:
    from streams.cli.alerts import register
    from streams.cli.main import cli

    register(cli)
    return cli


FOLLOW = (
    "from streams.cli.main import cli, main; from streams.cli.alerts import register; "
    "register(cli); main()"
)


@contextlib.contextmanager
def following(setup: AlertSetup) -> Iterator[subprocess.Popen[str]]:
    """`gemba alerts --follow --count 1` in a subprocess, once it reads from the topic's end."""
    process = subprocess.Popen(
        [sys.executable, "-c", FOLLOW, "alerts", "--follow", "--count", "1"],
        env=setup.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert "following" in line_of(process.stderr, timeout_s=30)
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


def line_of(pipe: IO[str] | None, timeout_s: float) -> str:
    """The next line a child process writes to `pipe`, or '' at the deadline."""
    assert pipe is not None
    with selectors.DefaultSelector() as selector:
        selector.register(pipe, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if selector.select(left):
                line = pipe.readline()
                if not line.startswith("waiting"):
                    return line
    return ""
