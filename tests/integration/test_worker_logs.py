"""A worker logging at debug level writes no byte of any record: no personal data in its log."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson

from streams.settings import Settings
from tests.support.worker_harness import WorkerSetup, publish, running_worker

CONTACT = "marker.person.93e1@acme.example"
SUBJECT = "marker-subject-93e1"


def _touches() -> list[tuple[bytes, bytes]]:
    """A deal opened, an email to a person, and a poison message quoting the same person
    (dead-lettered with its original bytes)."""
    base = {"account_id": "acme", "deal_id": "acme-1", "schema_version": 1}
    opened = base | {
        "type": "deal_opened", "event_id": "e-1", "occurred_at": "2026-03-02T09:00:00Z",
        "stage": "Prospecting", "owner_id": "rep-1",
    }  # fmt: skip
    email = base | {
        "type": "email", "event_id": "e-2", "occurred_at": "2026-03-02T10:00:00Z",
        "contact_id": CONTACT, "direction": "outbound", "subject": SUBJECT,
    }  # fmt: skip
    poison = b'{"type": "email", "contact_id": "' + CONTACT.encode() + b'", "subject": 7'
    return [
        (b"acme-1", orjson.dumps(opened)),
        (b"acme-1", orjson.dumps(email)),
        (b"acme-1", poison),
    ]


def test_a_worker_at_debug_level_logs_no_byte_of_the_records_it_reads_or_writes(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    setup = replace(
        WorkerSetup.fresh(kafka_settings, tmp_path / "gemba"), log_level="debug",
        history_sink=False,
    )  # fmt: skip
    setup.create_touches_topic()
    messages = _touches()
    publish(setup.bootstrap_servers, setup.touches_topic, messages)
    log = tmp_path / "worker.log"

    with running_worker(setup, log) as worker:
        counts = worker.wait_until_consumed(len(messages), timeout_s=60)

    written = log.read_text()
    assert (counts.processed, counts.dead_lettered) == (2, 1)
    assert '"logger": "faust.' in written and '"logger": "aiokafka.' in written  # it did log
    assert CONTACT not in written
    assert SUBJECT not in written
