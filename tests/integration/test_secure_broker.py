"""Gemba's real clients through a real broker that lets in only TLS with SASL.

A broker of this module's own (KRaft, 127.0.0.1) whose one client listener is SASL_SSL,
with a certificate from a throwaway CA (tests/support/secure_broker.py). Events go in
through Gemba's publisher under each SASL mechanism and come back through the
missed-record reader; a real `gemba worker` folds a realistic stream through it, and its
broker watch finds the cluster reachable. A wrong password and a client without TLS are
refused, with an error that says what to check rather than "start the local broker".
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import get_args

import pytest

from events import PublishError
from projections import default_policy
from streams.kafka.clients import ensure_topic_for, open_publisher
from streams.settings import Settings
from streams.worker.missed import MissedRecord, MissedRecordReader
from tests.support.secure_broker import (
    Mechanism,
    SecureBroker,
    SecureWorkerSetup,
    running_secure_broker,
)
from tests.support.worker_harness import (
    BROKER_FIGURES,
    Counts,
    TouchStream,
    WorkerProcess,
    broker_figures,
    realistic_touches,
    running_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

DEALS = 15
"""A few hundred events, poison and duplicates included: enough for every partition."""
LAST_OFFSET = 2**62
"""Read a partition to its end."""


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """The SASL_SSL broker, stopped when the module is done, whatever happened."""
    if not Settings().local_broker:
        pytest.skip("starts its own local broker; KAFKA_BOOTSTRAP_SERVERS points elsewhere")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificates")
    with running_secure_broker(tmp_path_factory.mktemp("secure")) as broker:
        yield broker


def read_back(settings: Settings, topic: str, partitions: int) -> list[MissedRecord]:
    """Every record of the topic, read as the worker reads missed records, partition by
    partition (in offset order within each)."""
    reader = MissedRecordReader.from_settings(settings)

    async def every_partition() -> list[list[MissedRecord]]:
        reads = (reader.read(topic, p, 0, LAST_OFFSET) for p in range(partitions))
        return list(await asyncio.gather(*reads))

    return [record for records in asyncio.run(every_partition()) for record in records]


def latest_by_key(records: list[MissedRecord]) -> dict[bytes, bytes]:
    """What a compacted topic keeps: each key's latest value."""
    return {r.key: r.value for r in sorted(records, key=lambda r: r.offset) if r.key is not None}


# --- each mechanism, through Gemba's publisher and reader ----------------------------------


@pytest.mark.parametrize("mechanism", get_args(Mechanism))
def test_events_published_over_sasl_ssl_are_read_back_whole_and_in_order(
    secure: SecureBroker, mechanism: Mechanism, topic: str
) -> None:
    client = secure.client(mechanism)
    messages = realistic_touches(2).messages[:40]

    assert ensure_topic_for(client, topic, partitions=1)
    with open_publisher(client, topic) as publisher:
        for key, value in messages:
            publisher.publish_encoded(key.decode(), value)
    records = read_back(client, topic, partitions=1)

    assert [(r.key, r.value) for r in records] == list(messages)


# --- a real worker ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SecureRun:
    """A worker that folded the whole stream through the SASL_SSL listener, still running."""

    client: Settings
    setup: SecureWorkerSetup
    worker: WorkerProcess
    stream: TouchStream
    counts: Counts


@pytest.fixture(scope="module")
def secured_worker(
    secure: SecureBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureRun]:
    """`gemba worker` with GEMBA_KAFKA_* set for SCRAM-SHA-512 over TLS, the stream published
    before it started."""
    state = tmp_path_factory.mktemp("secure-worker")
    client = secure.client("SCRAM-SHA-512")
    setup = SecureWorkerSetup.secured(client, state / "gemba")
    stream = realistic_touches(DEALS)
    ensure_topic_for(client, setup.touches_topic, partitions=setup.partitions)
    with open_publisher(client, setup.touches_topic) as publisher:
        for key, value in stream.messages:
            publisher.publish_encoded(key.decode(), value)
    with running_worker(setup, state / "worker.log") as worker:
        counts = worker.wait_until_consumed(len(stream.messages), timeout_s=90)
        yield SecureRun(client, setup, worker, stream, counts)


def test_a_worker_over_sasl_ssl_folds_every_message_once(secured_worker: SecureRun) -> None:
    sent, poison = len(secured_worker.stream.messages), len(secured_worker.stream.poison)

    assert secured_worker.counts == Counts(sent, sent - poison, poison), (
        secured_worker.worker.tail()
    )


def test_its_value_streams_read_back_over_sasl_ssl_equal_the_pure_fold(
    secured_worker: SecureRun,
) -> None:
    run = secured_worker
    expected = run.stream.expected_value_streams(default_policy())

    def complete() -> dict[bytes, bytes] | None:
        records = read_back(run.client, run.setup.value_streams_topic, run.setup.partitions)
        found = latest_by_key(records)
        return found if found == expected else None

    assert wait_for(complete, timeout_s=30, interval_s=0.5) == expected


def test_its_broker_watch_finds_the_cluster_reachable_through_sasl_ssl(
    secured_worker: SecureRun,
) -> None:
    worker = secured_worker.worker

    figures = wait_for(lambda: broker_figures(worker), timeout_s=30)

    assert figures == dict.fromkeys(BROKER_FIGURES, 0) | {"gemba_broker_reachable": 1}
    assert not [e for e in worker.log_events() if e.get("event") == "broker_unreachable"]


# --- refusals --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusals:
    """What a worker with a wrong password and a client without TLS were told, and when."""

    worker: subprocess.CompletedProcess[str]
    worker_s: float
    no_tls: BaseException | None
    no_tls_s: float


def _worker_exit(setup: SecureWorkerSetup) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streams", "worker"], env=setup.env(), capture_output=True,
        text=True, stdin=subprocess.DEVNULL, timeout=120, check=False,
    )  # fmt: skip
    return done, time.monotonic() - start


def _topic_refusal(client: Settings, topic: str) -> tuple[BaseException | None, float]:
    start = time.monotonic()
    try:
        ensure_topic_for(client, topic)
    except Exception as exc:
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


@pytest.fixture(scope="module")
def refusals(secure: SecureBroker, tmp_path_factory: pytest.TempPathFactory) -> Refusals:
    """Both tried side by side: kafka-python takes its 30 s bootstrap timeout to give up."""
    wrong = secure.client("SCRAM-SHA-512", password="not-the-password")
    setup = SecureWorkerSetup.secured(wrong, tmp_path_factory.mktemp("refused") / "gemba")
    no_tls = secure.client("SCRAM-SHA-512", protocol="SASL_PLAINTEXT")
    with ThreadPoolExecutor(max_workers=2) as pool:
        worker = pool.submit(_worker_exit, setup)
        client = pool.submit(_topic_refusal, no_tls, "refused-without-tls")
        (done, worker_s), (error, no_tls_s) = worker.result(), client.result()
    return Refusals(done, worker_s, error, no_tls_s)


def test_a_worker_with_a_wrong_password_exits_saying_what_to_check(refusals: Refusals) -> None:
    done = refusals.worker

    assert done.returncode == 2, done.stderr[-2000:]
    said = " ".join(done.stderr.split())
    assert "accepts connections but no SASL_SSL session could be opened" in said
    assert "GEMBA_KAFKA_SASL_PASSWORD" in said
    assert "gemba broker start" not in said
    assert refusals.worker_s < 60
    assert "not-the-password" not in done.stderr + done.stdout


def test_a_client_without_tls_is_refused_at_the_tls_port_saying_what_to_check(
    refusals: Refusals,
) -> None:
    error = refusals.no_tls

    assert isinstance(error, PublishError), repr(error)
    assert "accepts connections but no SASL_PLAINTEXT session could be opened" in str(error)
    assert "GEMBA_KAFKA_SECURITY_PROTOCOL" in str(error)
    assert refusals.no_tls_s < 60


def test_the_broker_says_why_it_refused_each(secure: SecureBroker, refusals: Refusals) -> None:
    assert refusals.worker.returncode != 0 and refusals.no_tls is not None
    log = (secure.broker.broker_data_dir / "broker.log").read_text(errors="replace")

    assert "due to invalid credentials with SASL mechanism SCRAM-SHA-512" in log
    assert "(SSL handshake failed)" in log
