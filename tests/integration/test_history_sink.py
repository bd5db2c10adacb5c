"""The history sink in a real worker on the real broker: every event archived once, across a kill.

One worker archives a realistic stream (shuffled deals, duplicates, poison) while it is
published; it is SIGKILLed mid-stream and restarted. The archive must then hold every
event exactly once, its chain must verify, its value streams must equal the worker's
topic and the pure fold, its SQL roll-ups the worker's, and a replay from DuckDB or from
Kafka must give the same content hash.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from click.testing import CliRunner

from projections import default_policy
from projections.archive import (
    archived_events,
    content_hash,
    open_archive,
    replay,
    sql_replay,
    verify_archive,
)
from projections.portfolio.rollup import DIMENSIONS
from streams.cli.main import cli
from streams.settings import Settings
from tests.support.worker_harness import (
    TopicReader,
    TouchStream,
    WorkerProcess,
    WorkerSetup,
    publish,
    realistic_touches,
    wait_for,
)

pytestmark = pytest.mark.integration

DEALS = 120
"""About four thousand events: enough for several sink batches, quick on two cores."""


@dataclass(frozen=True)
class HistorySetup(WorkerSetup):
    """A worker setup with its own alerts topic, an event-time alert clock, and a quick
    rejoin after a kill."""

    @property
    def alerts_topic(self) -> str:
        return f"{self.tag}-deal-alerts"

    @property
    def archive(self) -> Path:
        return self.state_dir / "gemba.duckdb"

    def env(self) -> dict[str, str]:
        return super().env() | {
            "GEMBA_ALERTS_TOPIC": self.alerts_topic,
            "GEMBA_ALERT_CLOCK": "event",
            # A killed member that was mid-rebalance holds its successor up for this
            # long (Faust's default is 60 s), not for the session timeout.
            "BROKER_REBALANCE_TIMEOUT": "15",
        }


@dataclass(frozen=True)
class ArchivedRun:
    """A worker killed mid-stream, restarted, caught up; what the topics held at the end."""

    setup: HistorySetup
    stream: TouchStream
    expected: dict[bytes, bytes]
    value_streams: dict[bytes, bytes | None]
    rollups: dict[str, Any]
    alert_ids: set[str]
    killed_at: int


def _publish_paced(setup: WorkerSetup, stream: TouchStream, failures: list[BaseException]) -> None:
    """Publish over about 15 s: longer than the sink's batch age, so several batches commit."""
    try:
        for start in range(0, len(stream.messages), 100):
            publish(
                setup.bootstrap_servers, setup.touches_topic, stream.messages[start : start + 100]
            )
            time.sleep(0.3)  # pacing, not an assertion
    except BaseException as exc:  # handed to the test thread
        failures.append(exc)


def _archived_offsets(worker: WorkerProcess, topic: str) -> int | None:
    """Offsets of `topic` the archive holds, once nothing is pending and every deal is
    refolded (from the worker's page)."""
    body = worker.get("/gemba/history/")
    if body is None:
        return None
    page = orjson.loads(body)
    if page["pending"] or page["deals_to_refold"]:
        return None
    return sum(n for key, n in page["next_offsets"].items() if key.startswith(f"{topic}["))


def _mid_batch(worker: WorkerProcess) -> bool | None:
    """True once the sink has committed a batch and holds messages not yet archived."""
    body = worker.get("/gemba/history/")
    page = orjson.loads(body) if body else {}
    return True if page.get("stored") and page.get("pending") else None


@pytest.fixture(scope="module")
def archived(
    kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ArchivedRun]:
    stream = realistic_touches(DEALS, seed=11)
    expected = stream.expected_value_streams(default_policy())
    state = tmp_path_factory.mktemp("history")
    setup = HistorySetup(kafka_settings.bootstrap_servers, state / "gemba")
    setup.create_touches_topic()
    failures: list[BaseException] = []
    publisher = threading.Thread(target=_publish_paced, args=(setup, stream, failures))
    total = len(stream.messages)
    worker = WorkerProcess(setup, state / "worker.log")
    try:
        worker.start()
        publisher.start()
        threshold = int(total * random.uniform(0.2, 0.5))
        reached = wait_for(
            lambda: c if (c := worker.counts()) and c.consumed >= threshold else None,
            timeout_s=90,
            interval_s=0.05,
        )
        wait_for(lambda: _mid_batch(worker), timeout_s=60, interval_s=0.02)
        worker.kill()
        worker.start()
        publisher.join(timeout=60)
        assert not failures
        wait_for(lambda: _archived_offsets(worker, setup.touches_topic) == total or None, 120)
        worker.wait_until_consumed(total, timeout_s=60)
        with TopicReader(setup.bootstrap_servers, setup.value_streams_topic) as reader:
            reader.read_until(lambda r: r.latest_by_key() == expected, timeout_s=60)
            value_streams = reader.latest_by_key()
        rollups = {d: orjson.loads(worker.get(f"/gemba/rollups/{d}/") or b"{}") for d in DIMENSIONS}
        with TopicReader(setup.bootstrap_servers, setup.alerts_topic) as reader:
            reader.poll(2.0)
            alert_ids = {orjson.loads(r.value or b"{}")["alert_id"] for r in reader.records}
        wait_for(
            lambda: (
                setup.query_archive("SELECT count(*) FROM dead_letters") == [(len(stream.poison),)]
                or None
            ),
            60,
        )
        wait_for(
            lambda: (
                {r[0] for r in setup.query_archive("SELECT alert_id FROM alerts") or []}
                == alert_ids
                or None
            ),
            60,
        )
    finally:
        worker.stop()
    yield ArchivedRun(setup, stream, expected, value_streams, rollups, alert_ids, reached.consumed)


@pytest.fixture
def archive(archived: ArchivedRun) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_archive(archived.setup.archive, read_only=True)
    yield connection
    connection.close()


def test_every_event_is_archived_exactly_once_though_the_worker_was_killed_mid_stream(
    archived: ArchivedRun, archive: duckdb.DuckDBPyConnection
) -> None:
    stream = archived.stream
    rows = archive.execute("SELECT event_id FROM events").fetchall()
    offsets = archive.execute(
        "SELECT sum(next_offset) FROM offsets WHERE topic = ?", [archived.setup.touches_topic]
    ).fetchall()

    context = f"killed after {archived.killed_at} of {len(stream.messages)} consumed"
    assert len(rows) == len(stream.events), context
    assert {event_id for (event_id,) in rows} == {event.event_id for event in stream.events}
    assert archive.execute("SELECT count(*) FROM duplicates").fetchall() == [(stream.duplicates,)]
    assert offsets == [(len(stream.messages),)], context
    assert archive.execute("SELECT count(*) FROM offset_gaps").fetchall() == [(0,)]


def test_each_dead_letter_and_alert_is_kept_once(
    archived: ArchivedRun, archive: duckdb.DuckDBPyConnection
) -> None:
    dead = archive.execute("SELECT value, reason FROM dead_letters").fetchall()
    alerts = archive.execute("SELECT alert_id FROM alerts").fetchall()

    assert {bytes(value) for value, _ in dead} == {p.value for p in archived.stream.poison}
    assert all(reason for _, reason in dead)
    assert {alert_id for (alert_id,) in alerts} == archived.alert_ids
    assert len(alerts) == len(archived.alert_ids)


def test_the_archived_value_streams_equal_the_worker_topic_and_the_pure_fold(
    archived: ArchivedRun, archive: duckdb.DuckDBPyConnection
) -> None:
    documents = {
        deal_id.encode(): document.encode()
        for deal_id, document in archive.execute(
            "SELECT deal_id, value_stream FROM vs_deals"
        ).fetchall()
    }

    assert documents == archived.expected
    assert documents == archived.value_streams


def test_streaming_and_replayed_projections_have_the_same_content_hash(
    archived: ArchivedRun, archive: duckdb.DuckDBPyConnection
) -> None:
    streaming = content_hash({k.decode(): v or b"" for k, v in archived.value_streams.items()})

    replayed = replay(archived_events(archive), default_policy())
    in_sql = sql_replay(archive, default_policy())

    assert replayed.content_hash == streaming
    assert in_sql.content_hash == streaming
    assert len(replayed.streams) == in_sql.deals == len(archived.expected)


def test_sql_totals_by_stage_rep_segment_and_product_equal_the_worker_rollups(
    archived: ArchivedRun, archive: duckdb.DuckDBPyConnection
) -> None:
    rows = archive.execute(
        "SELECT dimension, value, month, deals, rework, lead_time_min, value_added_min, "
        "waste_chasing_min, wait_min, inventory_min FROM value_stream_by"
    ).fetchall()
    sql = {(d, f"{v}|{m}"): tuple(rest) for d, v, m, *rest in rows}

    worker = {
        (dimension, key): (
            flat["deals"],
            flat["rework"],
            flat["lead_time"] / 60,
            flat["value_added"] / 60,
            flat["waste.chasing"] / 60,
            flat["wait"] / 60,
            flat["inventory"] / 60,
        )
        for dimension, buckets in archived.rollups.items()
        for key, flat in buckets.items()
        if flat.get("deals")
    }
    assert sql == worker


def test_the_live_archive_chain_verifies(archive: duckdb.DuckDBPyConnection) -> None:
    report = verify_archive(archive)

    assert report.intact, [str(f) for f in report.findings[:5]]
    assert report.partitions == 6


def test_gemba_replay_from_kafka_and_from_duckdb_print_the_same_hash(
    archived: ArchivedRun, kafka_settings: Settings
) -> None:
    env = archived.setup.env()
    runner = CliRunner()

    hashes = []
    for source in ("duckdb", "kafka"):
        result = runner.invoke(cli, ["replay", "--from", source, "--json"], env=env)
        assert result.exit_code == 0, result.output
        hashes.append(orjson.loads(result.output)["content_hash"])

    streaming = content_hash({k.decode(): v or b"" for k, v in archived.value_streams.items()})
    assert hashes == [f"sha256:{streaming}"] * 2
