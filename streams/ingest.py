"""The HTTP door for CRM webhooks: POST /events with a bearer token, checked, then published.

A request carries one event (a JSON object), several (a JSON array) or JSON lines. It
is all or nothing: every event is validated by the codec first, and only a request
whose events are all valid is published; otherwise nothing of it is, and the answer
lists each refused event's index, field and reason. Status codes: 401 without the
token (or with a wrong one, a malformed one, or two Authorization headers), 400 for a request
that is not well-formed HTTP (bad header bytes, a broken chunk), 408 for a body not
received within GEMBA_INGEST_BODY_TIMEOUT_S, 415 for another content type, 413 for a
body over GEMBA_INGEST_MAX_BODY_BYTES or an event over the codec's 64 KiB (both counted
in the bytes received, for JSON as for JSON lines), 422 for invalid
events (future-dated ones too: dated more than GEMBA_MAX_FUTURE_SKEW_S after the request
came), 503 when Kafka did not acknowledge them, 202 when published.

A connection whose headers have not all come GEMBA_INGEST_HEADER_TIMEOUT_S after it
opened is closed: a client trickling bytes holds nothing for long.

The logs say what happened to each request (status and counts), never the token nor
anything of a body: aiohttp's access log is off, its parser errors (which quote the bytes
refused) are logged by class only, and library debug lines (kafka-python's quote each
record) never reach the log (streams.logs.LibraryRecordPolicy).
"""

from __future__ import annotations

import asyncio
import hmac
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from aiohttp import web
from kafka.errors import KafkaError
from pydantic import SecretStr

from events import Event, EventCodec, EventRejected, PublishError
from events.codec import MAX_EVENT_BYTES
from events.future import FutureLimit
from events.producer import EventPublisher
from streams.errors import GembaError
from streams.kafka.clients import ensure_topic_for, open_publisher
from streams.settings import MIN_SECRET_CHARS, Settings

__all__ = [
    "INGEST_HOST",
    "IngestNotConfigured",
    "ReadEvents",
    "Refusal",
    "connection_limits",
    "ingest_app",
    "ingest_token",
    "read_events",
    "received_sizes",
    "run_ingest",
    "token_matches",
]

log = structlog.get_logger("gemba.ingest")
INGEST_HOST = "127.0.0.1"
JSON = "application/json"
JSON_LINES = frozenset(
    {
        "application/x-ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/jsonlines",
    }
)
RETRY_AFTER_S = 5
LINGER_S = 1.0
"""How long the rest of a refused request's body is read (and dropped) before closing."""
_CODEC = EventCodec()
TOKEN_ADVICE = (
    "set GEMBA_INGEST_TOKEN to a random secret of at least "
    f"{MIN_SECRET_CHARS} characters, e.g. "
    "`export GEMBA_INGEST_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')`, "
    "and give the CRM's webhook the header `Authorization: Bearer <that token>`"
)


class IngestNotConfigured(GembaError):
    """`gemba ingest` cannot start as configured; the message says what to set."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """One reason an event of a request was refused: its index (from 0) and the field."""

    index: int
    field: str
    reason: str
    line: int | None = None
    """JSON lines: the line number (from 1)."""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class ReadEvents:
    """What a request body holds: its valid events, the refusals, the oversized events."""

    events: list[Event] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    oversized: list[int] = field(default_factory=list)
    """Indexes of events over the codec's limit (MAX_EVENT_BYTES)."""

    def refuse(self, index: int, error: EventRejected, line: int | None = None) -> None:
        self.refused += [Refusal(index, p.field, p.reason, line) for p in error.problems]


def read_events(
    body: bytes,
    *,
    json_lines: bool,
    codec: EventCodec = _CODEC,
    future: FutureLimit | None = None,
    received_at: datetime | None = None,
) -> ReadEvents:
    """Decode a request body: one JSON event or an array of them, or JSON lines.

    With `future` and `received_at` (when the request came), events dated further ahead
    than the limit are refused as future-dated.
    """
    read = ReadEvents()

    def decoded(event: Event) -> Event:
        if future is not None and received_at is not None:
            future.check(event, received_at)
        return event

    if json_lines:
        lines = [(n, line) for n, line in enumerate(body.splitlines(), 1) if line.strip()]
        for index, (number, line) in enumerate(lines):
            if len(line) > codec.max_bytes:
                read.oversized.append(index)
                continue
            try:
                read.events.append(decoded(codec.decode(line)))
            except EventRejected as exc:
                read.refuse(index, exc, number)
        return read
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        read.refused.append(Refusal(0, "(body)", f"not valid JSON: {exc}"))
        return read
    items = document if isinstance(document, list) else [document]
    sizes = received_sizes(body, document)
    for index, (item, size) in enumerate(zip(items, sizes, strict=True)):
        if size > codec.max_bytes:
            read.oversized.append(index)
            continue
        try:
            read.events.append(decoded(codec.from_dict(item)))
        except EventRejected as exc:
            read.refuse(index, exc)
    return read


_JSON_SYNTAX = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]')
"""A JSON string (skipped whole, escapes and all), or a bracket or comma."""


def received_sizes(body: bytes, document: object) -> list[int]:
    """The bytes each event of a JSON body took as received (whitespace around it aside):
    the whole body's for one object, each element's for an array (`document`, decoded)."""
    if not isinstance(document, list):
        return [len(body.strip())]
    sizes: list[int] = []
    depth, start = 0, 0
    for token in _JSON_SYNTAX.finditer(body):
        mark = token.group()
        if mark in (b"[", b"{"):
            depth += 1
            start = token.end() if depth == 1 else start
        elif depth == 1 and mark in (b",", b"]"):
            sizes.append(len(body[start : token.start()].strip()))
            start = token.end()
        if mark in (b"]", b"}"):
            depth -= 1
    sizes = sizes if document else []
    if len(sizes) != len(document):  # cannot happen for a body orjson read; never guess
        raise ValueError("the array's elements and their spans do not match")
    return sizes


def token_matches(authorization: str | None, token: str) -> bool:
    """True when the Authorization header is `Bearer <token>` (compared in constant time)."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Header bytes that are not UTF-8 arrive as lone surrogates: no token, and no error.
    sent = given.strip().encode("utf-8", "surrogatepass")
    return hmac.compare_digest(sent, token.encode("utf-8", "surrogatepass"))


def _json(status: int, document: dict[str, Any], **headers: str) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(document), content_type=JSON, headers=headers or None
    )


class _Door:
    """Publishes the events of one request at a time, off the event loop."""

    def __init__(self, publisher: EventPublisher) -> None:
        self.publisher = publisher
        self._lock = asyncio.Lock()

    async def publish(self, events: Sequence[Event]) -> None:
        async with self._lock:  # one flush per request: its failures are its own
            await asyncio.get_running_loop().run_in_executor(None, self._publish, events)

    def _publish(self, events: Sequence[Event]) -> None:
        try:
            for event in events:
                self.publisher.publish(event)
            self.publisher.flush()
        except KafkaError as exc:  # e.g. no metadata in time: the broker is away
            raise PublishError(
                f"Kafka did not take the events ({exc.__class__.__name__})"
            ) from None


def ingest_app(
    publisher: EventPublisher,
    token: str,
    *,
    topic: str,
    max_body_bytes: int,
    future: FutureLimit | None = None,
    body_timeout_s: float = 30.0,
) -> web.Application:
    """The aiohttp application: POST /events and GET /health; with `future`, events dated
    further than that after the request came are refused (422, occurred_at); a body not
    received whole within `body_timeout_s` is refused (408)."""
    door = _Door(publisher)
    refusals = {
        415: f"send {JSON} (an event or an array of events) or JSON lines (application/x-ndjson)",
        413: f"the body is over the {max_body_bytes}-byte limit (GEMBA_INGEST_MAX_BODY_BYTES)",
        408: f"the body did not come whole within {body_timeout_s:g} s "
        "(GEMBA_INGEST_BODY_TIMEOUT_S); send it again",
    }

    async def post_events(request: web.Request) -> web.Response:
        given = request.headers.getall("Authorization", [])
        if len(given) != 1 or not token_matches(given[0], token):  # one header, the token
            log.warning("ingest_unauthorised", has_header="Authorization" in request.headers)
            return _json(401, {"error": "a valid bearer token is required"},
                         **{"WWW-Authenticate": 'Bearer realm="gemba"'})  # fmt: skip
        kind = request.content_type
        if kind != JSON and kind not in JSON_LINES:
            log.warning("ingest_refused", status=415, content_type=kind[:100])
            return _json(415, {"error": refusals[415]})
        if (request.content_length or 0) > max_body_bytes:
            log.warning("ingest_refused", status=413, body_bytes=request.content_length)
            return _json(413, {"error": refusals[413]})
        try:
            async with asyncio.timeout(body_timeout_s):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            log.warning("ingest_refused", status=413, body_bytes=None)
            return _json(413, {"error": refusals[413]})
        except TimeoutError:
            log.warning("ingest_refused", status=408, timeout_s=body_timeout_s)
            response = _json(408, {"error": refusals[408]})
            response.force_close()
            return response
        return await _take(body, json_lines=kind in JSON_LINES)

    async def _take(body: bytes, *, json_lines: bool) -> web.Response:
        read = read_events(
            body, json_lines=json_lines, future=future, received_at=datetime.now(UTC)
        )
        seen = len(read.events) + len(read.oversized) + len({r.index for r in read.refused})
        if read.oversized:
            log.warning("ingest_refused", status=413, events=seen, oversized=len(read.oversized))
            error = f"events over the {MAX_EVENT_BYTES}-byte limit; nothing was published"
            return _json(413, {"error": error, "oversized": read.oversized})
        if read.refused or not read.events:
            indexes = {r.index for r in read.refused}
            log.warning("ingest_refused", status=422, events=seen, refused=len(indexes))
            error = (
                f"{len(indexes)} of {seen} event(s) refused; nothing was published"
                if read.refused
                else "the body holds no events"
            )
            return _json(422, {"error": error, "refused": [r.to_json() for r in read.refused]})
        try:
            await door.publish(read.events)
        except PublishError as exc:
            log.error("ingest_publish_failed", events=seen, error=str(exc))
            return _json(503, {"error": "Kafka did not take the events; send them again"},
                         **{"Retry-After": str(RETRY_AFTER_S)})  # fmt: skip
        log.info("ingest_accepted", events=seen, topic=topic)
        return _json(202, {"received": seen, "published": seen, "topic": topic})

    async def health(request: web.Request) -> web.Response:
        return _json(200, {"status": "alive"})

    app = web.Application(client_max_size=max_body_bytes, middlewares=[_failures_by_class])
    app.router.add_post("/events", post_events)
    app.router.add_get("/health", health)
    return app


@web.middleware
async def _failures_by_class(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A request that fails unexpectedly is answered 500 and logged by the error's class:
    its message could quote the request (aiohttp would log it whole)."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:  # the edge: whatever failed, nothing of the request is logged
        log.error("ingest_failed", path=request.path, error=type(exc).__name__)
        return _json(500, {"error": "the request could not be handled; see the door's log"})


def connection_limits(settings: Settings) -> dict[str, Any]:
    """The aiohttp server's arguments: no access log, and a connection whose headers have
    not all come within GEMBA_INGEST_HEADER_TIMEOUT_S (of its opening, or of its previous
    answer) is closed (aiohttp's keep-alive timer also covers a request being received).
    After answering a request whose body was not read whole (401, 408, 413), what still comes
    of it is read and dropped for LINGER_S at most, so the client sees the answer."""
    return {
        "access_log": None,
        "keepalive_timeout": settings.ingest_header_timeout_s,
        "lingering_time": LINGER_S,
    }


def ingest_token(settings: Settings) -> str:
    """The bearer token requests must carry; IngestNotConfigured if unset or too short."""
    secret: SecretStr | None = settings.ingest_token
    token = secret.get_secret_value().strip() if secret is not None else ""
    if not token:
        raise IngestNotConfigured(f"gemba ingest needs a bearer token: {TOKEN_ADVICE}")
    if len(token) < MIN_SECRET_CHARS:
        raise IngestNotConfigured(f"GEMBA_INGEST_TOKEN is too short: {TOKEN_ADVICE}")
    return token


def run_ingest(settings: Settings, port: int | None = None) -> None:
    """Serve POST /events on 127.0.0.1 until stopped (SIGTERM or Ctrl-C)."""
    token = ingest_token(settings)
    port = port or settings.ingest_port
    topic = settings.touches_topic
    ensure_topic_for(settings, topic)
    publisher = open_publisher(settings, topic)
    app = ingest_app(
        publisher, token, topic=topic, max_body_bytes=settings.ingest_max_body_bytes,
        future=settings.future_limit, body_timeout_s=settings.ingest_body_timeout_s,
    )  # fmt: skip

    async def close_publisher(_: web.Application) -> None:
        await asyncio.get_running_loop().run_in_executor(None, publisher.close)

    app.on_cleanup.append(close_publisher)
    log.info(
        "ingest_listening", url=f"http://{INGEST_HOST}:{port}/events", topic=topic,
        pseudonymised=publisher.pseudonymiser is not None,
        max_body_bytes=settings.ingest_max_body_bytes,
    )  # fmt: skip
    try:
        web.run_app(app, host=INGEST_HOST, port=port, print=None, **connection_limits(settings))
    except OSError as exc:
        raise GembaError(
            f"cannot listen on {INGEST_HOST}:{port} ({exc.strerror or exc}): stop what uses "
            "the port, or pick another with --port or GEMBA_INGEST_PORT"
        ) from None
