"""The doors to Kafka, on the real broker: webhooks in through `gemba ingest`, contact ids
pseudonymised whichever door an event takes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from events import decode
from events.producer import publish_jsonl
from events.pseudonyms import Pseudonymiser, is_pseudonym
from streams.ingest import ingest_app
from streams.kafka.clients import ensure_topic_for, open_publisher
from streams.settings import Settings
from tests.support.worker_harness import TopicReader, free_port, wait_for

pytestmark = pytest.mark.integration

TOKEN = "integration-ingest-token-5e0b8c"
KEY = "integration-pseudonymise-key-77f1c2"
SUBJECT = "renewal terms for jane, do not log"


def email(n: int, contact: str) -> dict[str, Any]:
    return {
        "type": "email", "event_id": f"hook-{n}", "occurred_at": "2026-03-02T14:00:00Z",
        "account_id": "acme", "deal_id": f"acme-{n % 3}", "contact_id": contact,
        "direction": "inbound", "subject": SUBJECT,
    }  # fmt: skip


def door_settings(kafka_settings: Settings, topic: str) -> Settings:
    settings = Settings(
        kafka_bootstrap_servers=kafka_settings.bootstrap_servers,
        touches_topic=topic,
        topic_partitions=3,
        pseudonymise_key=KEY,
        ingest_token=TOKEN,
    )
    ensure_topic_for(settings, topic)
    return settings


def read_back(settings: Settings, count: int) -> list[dict[str, Any]]:
    with TopicReader(settings.bootstrap_servers, settings.touches_topic) as reader:
        reader.read_until(lambda r: len(r.records) >= count, timeout_s=30)
        return [orjson.loads(r.value or b"") for r in reader.records]


def test_webhook_events_reach_the_topic_with_their_contacts_pseudonymised(
    kafka_settings: Settings, topic: str
) -> None:
    settings = door_settings(kafka_settings, topic)
    events = [email(n, f"contact-{n % 2}@acme.example") for n in range(6)]

    async def post() -> tuple[int, Any]:
        with open_publisher(settings) as publisher:
            door = ingest_app(publisher, TOKEN, topic=topic, max_body_bytes=1 << 20)
            async with TestClient(TestServer(door)) as client:
                response = await client.post(
                    "/events", data=orjson.dumps(events),
                    headers={"Authorization": f"Bearer {TOKEN}",
                             "Content-Type": "application/json"},
                )  # fmt: skip
                return response.status, await response.json()

    status, answer = asyncio.run(post())
    stored = read_back(settings, len(events))

    assert (status, answer["published"]) == (202, 6)
    assert sorted(e["event_id"] for e in stored) == [f"hook-{n}" for n in range(6)]
    pseudonymise = Pseudonymiser(KEY.encode())
    for event in stored:
        n = int(event["event_id"].removeprefix("hook-"))
        assert event["contact_id"] == pseudonymise.pseudonym(f"contact-{n % 2}@acme.example")
    assert len({e["contact_id"] for e in stored}) == 2  # the same contact, the same pseudonym


def test_produce_and_pre_encoded_events_are_pseudonymised_at_the_same_door(
    kafka_settings: Settings, topic: str
) -> None:
    settings = door_settings(kafka_settings, topic)
    lines = [orjson.dumps(email(n, "jane@acme.example")) for n in range(3)]

    with open_publisher(settings) as publisher:
        report = publish_jsonl(lines, publisher)  # what `gemba produce` and importers do
        publisher.publish_encoded("acme-9", orjson.dumps(email(9, "jane@acme.example")))
    stored = read_back(settings, 4)

    assert report.published == 3
    assert {e["contact_id"] for e in stored} == {
        Pseudonymiser(KEY.encode()).pseudonym("jane@acme.example")
    }
    assert all(is_pseudonym(decode(orjson.dumps(e)).contact_id or "") for e in stored)


def _request(url: str, body: bytes | None = None, token: str = TOKEN) -> int:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:  # not listening (yet)
        return 0


def test_the_ingest_server_serves_on_loopback_and_its_log_holds_no_token_or_body(
    kafka_settings: Settings, topic: str, tmp_path: Path
) -> None:
    settings = door_settings(kafka_settings, topic)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEMBA_")} | {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "GEMBA_TOUCHES_TOPIC": topic,
        "GEMBA_INGEST_TOKEN": TOKEN,
        "GEMBA_INGEST_PORT": str(port),
        "GEMBA_LOG_LEVEL": "debug",
        "GEMBA_LOG_FORMAT": "json",
    }
    log = tmp_path / "ingest.log"
    program = "from streams.ingest import run_ingest; from streams.settings import Settings; "
    program += "from streams.logs import configure_logging; s = Settings(); "
    program += "configure_logging(s.log_level, s.log_format); run_ingest(s)"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-c", program], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _request(f"{base}/health") == 200 or None, timeout_s=30)
        accepted = _request(f"{base}/events", orjson.dumps(email(1, "jane@acme.example")))
        unauthorised = _request(f"{base}/events", b"{}", token="not-the-token-at-all")
        refused = _request(f"{base}/events", orjson.dumps(email(2, "jane acme")))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    written = log.read_text()
    assert (accepted, unauthorised, refused) == (202, 401, 422)
    assert "ingest_listening" in written and "ingest_accepted" in written
    assert TOKEN not in written and "not-the-token-at-all" not in written
    assert SUBJECT not in written and "jane" not in written
