"""The webhook door: nobody in without the token, nothing oversized, invalid or half-published."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import orjson
import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from kafka.errors import KafkaTimeoutError

from events import EventBase, PublishError
from events.future import FutureLimit
from streams.cli.ingest import register
from streams.ingest import (
    IngestNotConfigured,
    ingest_app,
    ingest_token,
    read_events,
    received_sizes,
    token_matches,
)
from streams.logs import configure_logging
from streams.settings import Settings

TOKEN = "s3cret-ingest-token-4d9f2a7c1b"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MARKER = "subject-nobody-may-log-93e1"
LIMIT = 64 * 1024


def event(n: int = 1, **changes: Any) -> dict[str, Any]:
    return {
        "type": "email", "event_id": f"crm-{n}", "occurred_at": "2026-03-02T14:00:00Z",
        "account_id": "acme", "deal_id": "acme-2026-1", "contact_id": "jane@acme.example",
        "direction": "outbound", "subject": MARKER,
    } | changes  # fmt: skip


class FakePublisher:
    """Keeps what it is given; flushes fail when told to."""

    def __init__(self, *, fail: bool = False, away: bool = False) -> None:
        self.pending: list[EventBase] = []
        self.published: list[EventBase] = []
        self.fail = fail
        self.away = away

    def publish(self, item: EventBase) -> None:
        if self.away:
            raise KafkaTimeoutError("Failed to update metadata after 60.0 secs.")
        self.pending.append(item)

    def publish_encoded(self, key: str, value: bytes) -> None:
        raise AssertionError("the door publishes decoded events")

    def flush(self) -> None:
        if self.fail:
            self.pending.clear()
            raise PublishError("1 event(s) were not acknowledged by Kafka")
        self.published += self.pending
        self.pending.clear()

    def close(self) -> None:
        self.flush()


def post(
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
    publisher: FakePublisher | None = None,
    max_body_bytes: int = 1024 * 1024,
    future: FutureLimit | None = None,
) -> tuple[int, Any]:
    """POST body to /events of a fresh door; the status and the decoded JSON answer."""
    door = ingest_app(
        publisher or FakePublisher(), TOKEN, topic="touches", max_body_bytes=max_body_bytes,
        future=future,
    )  # fmt: skip

    async def call() -> tuple[int, Any]:
        async with TestClient(TestServer(door)) as client:
            sent = {"Content-Type": content_type} | (AUTH if headers is None else headers)
            response = await client.post("/events", data=body, headers=sent)
            return response.status, orjson.loads(await response.read())

    return asyncio.run(call())


def test_one_event_with_the_token_is_published_and_answered_202_with_counts() -> None:
    publisher = FakePublisher()

    status, answer = post(orjson.dumps(event()), publisher=publisher)

    assert status == 202
    assert answer == {"received": 1, "published": 1, "topic": "touches"}
    assert [e.event_id for e in publisher.published] == ["crm-1"]


def test_an_array_and_json_lines_are_each_published_whole() -> None:
    array, lines = FakePublisher(), FakePublisher()
    events = [event(n) for n in range(1, 4)]

    assert post(orjson.dumps(events), publisher=array)[0] == 202
    body = b"\n".join(orjson.dumps(e) for e in events) + b"\n\n"
    assert post(body, content_type="application/x-ndjson", publisher=lines)[0] == 202

    assert [e.event_id for e in array.published] == ["crm-1", "crm-2", "crm-3"]
    assert lines.published == array.published


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-000000000000"}, {"Authorization": TOKEN},
     {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}x"}],
    ids=["no header", "wrong token", "no scheme", "basic", "longer token"],
)  # fmt: skip
def test_without_the_right_bearer_token_nothing_is_published_401(headers: dict[str, str]) -> None:
    publisher = FakePublisher()

    status, answer = post(orjson.dumps(event()), headers=headers, publisher=publisher)

    assert status == 401
    assert "bearer token" in answer["error"]
    assert publisher.published == []


def test_another_content_type_is_refused_415() -> None:
    status, answer = post(orjson.dumps(event()), content_type="text/plain")

    assert status == 415
    assert "application/json" in answer["error"]


def test_a_body_over_the_limit_is_refused_413_before_it_is_read() -> None:
    big = orjson.dumps([event(n) for n in range(600)])
    assert len(big) > 100_000

    status, answer = post(big, max_body_bytes=100_000)

    assert status == 413
    assert "100000-byte limit" in answer["error"]


def test_a_chunked_body_over_the_limit_is_refused_413() -> None:
    door = ingest_app(FakePublisher(), TOKEN, topic="touches", max_body_bytes=LIMIT)

    async def chunks() -> Any:
        for n in range(600):
            yield orjson.dumps(event(n)) + b"\n"

    async def call() -> int:
        async with TestClient(TestServer(door)) as client:
            headers = AUTH | {"Content-Type": "application/x-ndjson"}
            response = await client.post("/events", data=chunks(), headers=headers)
            return response.status

    assert asyncio.run(call()) == 413


def test_an_event_over_64_kib_is_refused_413_with_its_index_and_nothing_is_published() -> None:
    publisher = FakePublisher()
    events = [event(1), event(2, subject=None, deal_id="x" * 70_000)]

    status, answer = post(orjson.dumps(events), publisher=publisher)

    assert status == 413
    assert answer["oversized"] == [1]
    assert publisher.published == []


def test_invalid_events_are_refused_422_with_index_field_and_reason_and_none_published() -> None:
    publisher = FakePublisher()
    events = [
        event(1),
        event(2, occurred_at="2026-03-02T14:00:00"),
        event(3, direction="sideways"),
    ]

    status, answer = post(orjson.dumps(events), publisher=publisher)

    assert status == 422
    assert answer["error"] == "2 of 3 event(s) refused; nothing was published"
    assert [(r["index"], r["field"]) for r in answer["refused"]] == [
        (1, "occurred_at"),
        (2, "direction"),
    ]
    assert "timezone" in answer["refused"][0]["reason"]
    assert publisher.published == []


def test_a_future_dated_event_is_refused_422_naming_occurred_at_and_none_is_published() -> None:
    publisher = FakePublisher()
    now = datetime.now(UTC)
    soon, later = (now + timedelta(hours=hours) for hours in (23, 25))
    events = [event(1, occurred_at=soon.isoformat()), event(2, occurred_at=later.isoformat())]

    status, answer = post(orjson.dumps(events), publisher=publisher, future=FutureLimit())

    assert status == 422
    assert answer["refused"] == [
        {"index": 1, "field": "occurred_at", "reason": FutureLimit().reason}
    ]
    assert "future-dated: more than 1 day after" in answer["refused"][0]["reason"]
    assert publisher.published == []


def test_future_dated_json_lines_are_refused_against_the_time_the_request_came() -> None:
    came = datetime(2026, 3, 2, 12, tzinfo=UTC)
    lines = b"\n".join(
        orjson.dumps(event(n, occurred_at=moment))
        for n, moment in enumerate(["2026-03-03T12:00:00Z", "2026-03-03T12:00:01Z"], 1)
    )

    read = read_events(lines, json_lines=True, future=FutureLimit(), received_at=came)

    assert [e.event_id for e in read.events] == ["crm-1"]
    assert [(r.index, r.line, r.field) for r in read.refused] == [(1, 2, "occurred_at")]


def test_refused_json_lines_name_their_line_too() -> None:
    body = orjson.dumps(event(1)) + b"\n\n{not json\n"

    status, answer = post(body, content_type="application/x-ndjson")

    assert status == 422
    assert answer["refused"][0]["index"] == 1
    assert answer["refused"][0]["line"] == 3
    assert "not valid JSON" in answer["refused"][0]["reason"]


@pytest.mark.parametrize("body", [b"", b"[]", b"{oops", b"42"])
def test_a_body_that_holds_no_events_is_refused_422(body: bytes) -> None:
    publisher = FakePublisher()

    status, _ = post(body, publisher=publisher)

    assert status == 422
    assert publisher.published == []


@pytest.mark.parametrize("publisher", [FakePublisher(fail=True), FakePublisher(away=True)],
                         ids=["not acknowledged", "broker away"])  # fmt: skip
def test_when_kafka_does_not_take_the_events_the_sender_is_told_to_retry_503(
    publisher: FakePublisher,
) -> None:
    status, answer = post(orjson.dumps(event()), publisher=publisher)

    assert status == 503
    assert "send them again" in answer["error"]


def test_health_answers_without_a_token() -> None:
    door = ingest_app(FakePublisher(), TOKEN, topic="touches", max_body_bytes=LIMIT)

    async def call() -> tuple[int, Any]:
        async with TestClient(TestServer(door)) as client:
            response = await client.get("/health")
            return response.status, await response.json()

    assert asyncio.run(call()) == (200, {"status": "alive"})


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Whatever a test does to the logging set-up is undone afterwards."""
    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    yield
    root.handlers[:], root.level = handlers, level
    structlog.configure(**config)


def test_neither_the_token_nor_any_message_body_is_ever_logged(
    restored_logging: None, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    configure_logging("debug", "json")  # Gemba's set-up, writing to this test's stderr
    caplog.set_level(logging.DEBUG)
    good, bad = orjson.dumps([event(1)]), orjson.dumps([event(2, direction=MARKER)])

    post(good)
    post(bad)
    post(good, headers={"Authorization": f"Bearer {TOKEN}-but-wrong"})
    post(good, publisher=FakePublisher(fail=True))

    written = capsys.readouterr()
    logged = written.out + written.err + caplog.text
    assert "ingest_accepted" in logged and "ingest_refused" in logged  # logs were captured
    assert "ingest_unauthorised" in logged and "ingest_publish_failed" in logged
    assert TOKEN not in logged
    assert MARKER not in logged
    assert "jane@acme.example" not in logged


def test_token_comparison_needs_the_bearer_scheme_and_the_exact_token() -> None:
    assert token_matches(f"Bearer {TOKEN}", TOKEN)
    assert token_matches(f"bearer  {TOKEN} ", TOKEN)
    assert not token_matches(None, TOKEN)
    assert not token_matches(f"Bearer {TOKEN[:-1]}", TOKEN)


@pytest.mark.parametrize("token", [None, "", "short"])
def test_ingest_refuses_to_start_without_a_long_token_and_says_how_to_set_one(
    token: str | None,
) -> None:
    settings = Settings(ingest_token=token)

    with pytest.raises(IngestNotConfigured, match="set GEMBA_INGEST_TOKEN") as refused:
        ingest_token(settings)

    assert "secrets.token_urlsafe" in str(refused.value)


def test_the_ingest_command_stops_before_listening_when_no_token_is_set() -> None:
    @click.group()
    def cli() -> None:
        """A command line with only `ingest`."""

    register(cli)

    result = CliRunner().invoke(cli, ["ingest", "--port", "1"], obj=Settings(ingest_token=None))

    assert isinstance(result.exception, IngestNotConfigured)
    assert "GEMBA_INGEST_TOKEN" in str(result.exception)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(alphabet=st.characters(codec="utf-8")),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(items=st.lists(JSON_VALUES, max_size=6), gap=st.sampled_from([b"", b" ", b"\n\t "]))
def test_each_element_of_a_json_array_is_measured_in_the_bytes_it_came_in(
    items: list[Any], gap: bytes
) -> None:
    sent = [orjson.dumps(item, option=orjson.OPT_INDENT_2) for item in items]
    body = b"[" + gap + (gap + b"," + gap).join(sent) + gap + b"]"

    assert received_sizes(body, orjson.loads(body)) == [len(part) for part in sent]
