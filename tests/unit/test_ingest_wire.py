"""The webhook door on the wire: malformed and slow requests get 4xx or are cut, and no log
line of any logger ever holds the token or a byte of a body.

Each test talks raw HTTP over a socket to the door served as `gemba ingest` serves it
(`ingest_app` with `connection_limits`), on 127.0.0.1, with Gemba's logging at debug and
every library logger (aiohttp's, asyncio's) at debug too.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import structlog
from aiohttp import web

from streams.ingest import LINGER_S, connection_limits, ingest_app
from streams.logs import configure_logging
from streams.settings import Settings
from tests.unit.test_ingest import MARKER, TOKEN, FakePublisher, event

HEADER_TIMEOUT_S = 0.6
BODY_TIMEOUT_S = 0.6
LIMIT = 64 * 1024
LIBRARY_LOGGERS = ("aiohttp.access", "aiohttp.server", "aiohttp.web", "aiohttp.client", "asyncio")
BODY = orjson.dumps(event(1))  # a valid email; its subject is MARKER


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[str]]]:
    """The log lines written so far in the test (Gemba's set-up at debug, every library
    logger at debug)."""
    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    written = io.StringIO()
    monkeypatch.setattr(sys, "stderr", written)  # where Gemba's logging writes
    configure_logging("debug", "json")
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield lambda: written.getvalue().splitlines()
    root.handlers[:], root.level = handlers, level
    structlog.configure(**config)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


@asynccontextmanager
async def door() -> AsyncIterator[int]:
    """The door served over TCP on a free loopback port, as `gemba ingest` serves it."""
    asyncio.get_running_loop().set_debug(True)  # asyncio's own debug reports too
    settings = Settings(
        ingest_token=TOKEN, ingest_header_timeout_s=HEADER_TIMEOUT_S,
        ingest_body_timeout_s=BODY_TIMEOUT_S, ingest_max_body_bytes=2 * LIMIT,
    )  # fmt: skip
    app = ingest_app(
        FakePublisher(), TOKEN, topic="touches", max_body_bytes=settings.ingest_max_body_bytes,
        body_timeout_s=settings.ingest_body_timeout_s,
    )  # fmt: skip
    runner = web.AppRunner(app, **connection_limits(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def exchange(port: int, *parts: bytes, pause_s: float = 0.0) -> tuple[int, float]:
    """Send the parts (pausing between them), read until the server closes; the answer's
    status (0: closed without one) and the seconds the connection lasted."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    received = bytearray()

    async def read_all() -> None:
        # Chunk by chunk, so that what came before a reset is kept: a server that answers
        # and closes while we still send makes the kernel reset the connection.
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                received.extend(chunk)

    answer = asyncio.ensure_future(asyncio.wait_for(read_all(), timeout=10))
    with contextlib.suppress(ConnectionError):  # the server may cut us off mid-sending
        for part in parts:
            if answer.done():
                break
            writer.write(part)
            await writer.drain()
            await asyncio.wait([answer], timeout=pause_s)
    await answer
    lasted = time.monotonic() - started
    writer.close()
    status = int(received.split(b" ", 2)[1]) if received.startswith(b"HTTP/1.") else 0
    return status, lasted


def head(*lines: bytes, length: int | None = len(BODY)) -> bytes:
    """A POST /events request line and headers (Host, Content-Type, Connection: close, and
    Content-Length unless None), then the given header lines."""
    sent = [b"POST /events HTTP/1.1", b"Host: 127.0.0.1", b"Content-Type: application/json"]
    sent += [b"Connection: close"] + ([b"Content-Length: %d" % length] if length else [])
    return b"\r\n".join([*sent, *lines]) + b"\r\n\r\n"


def run(*exchanges: tuple[Any, ...]) -> list[tuple[int, float]]:
    async def all_of_them() -> list[tuple[int, float]]:
        async with door() as port:
            return [await exchange(port, *parts, **options) for parts, options in exchanges]

    return asyncio.run(all_of_them())


def assert_nothing_secret(lines: list[str]) -> None:
    text = "\n".join(lines)
    assert lines, "the test captured no log line at all"
    assert TOKEN not in text
    assert TOKEN.encode().hex() not in text
    assert MARKER not in text
    assert "jane@acme.example" not in text
    assert "Bearer" not in text


AUTH = b"Authorization: Bearer " + TOKEN.encode()


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        pytest.param(AUTH + b"\xff", 401, id="0xff-after-the-token"),
        pytest.param(b"Authorization: Bearer \xc3\x28" + TOKEN.encode(), 401, id="bad-utf8"),
        pytest.param(AUTH + b"\x00", 400, id="nul-in-the-header"),
        pytest.param(AUTH + b"\rX-Smuggled: 1", 400, id="lone-cr"),
        pytest.param(AUTH + b"\nX-Smuggled: 1", 400, id="lone-lf"),
        pytest.param(AUTH + b"\r\n X-Folded: 1", 400, id="obsolete-line-folding"),
        pytest.param(b"Authorization : Bearer " + TOKEN.encode(), 400, id="space-before-colon"),
        pytest.param(AUTH + b"\r\n" + AUTH, 401, id="the-header-twice"),
        pytest.param(AUTH + b"\r\nAuthorization: Bearer x", 401, id="a-second-header"),
    ],
)
def test_a_malformed_authorization_header_is_refused_4xx_and_never_logged(
    logged: Callable[[], list[str]], authorization: bytes, status: int
) -> None:
    [(answered, _)] = run(((head(authorization) + BODY,), {}))

    assert answered == status
    assert_nothing_secret(logged())


def test_a_malformed_chunked_body_is_refused_400_and_none_of_it_is_logged(
    logged: Callable[[], list[str]],
) -> None:
    broken_size = head(AUTH, b"Transfer-Encoding: chunked", length=None) + BODY + b"\r\n"
    broken_end = head(AUTH, b"Transfer-Encoding: chunked", length=None)
    broken_end += b"%x\r\n" % 5 + BODY + b"\r\n0\r\n\r\n"

    answers = run(((broken_size,), {}), ((broken_end,), {}))

    assert [status for status, _ in answers] == [400, 400]
    assert any("Error handling request" in line for line in logged())  # aiohttp did log them
    assert_nothing_secret(logged())


def test_a_json_body_over_the_limit_is_refused_413_on_the_bytes_received(
    logged: Callable[[], list[str]],
) -> None:
    # One event padded with whitespace: its bytes received are over the codec's 64 KiB,
    # though it would serialise again to a few hundred bytes.
    padded = b"[" + BODY[:-1] + b" " * LIMIT + b"}]"
    chunked = (
        b"".join(b"%x\r\n%s\r\n" % (len(BODY), BODY) for _ in range(3 * LIMIT // len(BODY)))
        + b"0\r\n\r\n"
    )

    answers = run(
        ((head(AUTH, length=len(padded)) + padded,), {}),
        ((head(AUTH, b"Transfer-Encoding: chunked", length=None) + chunked,), {}),
    )

    assert [status for status, _ in answers] == [413, 413]
    assert_nothing_secret(logged())


def test_a_client_trickling_its_headers_is_cut_off_after_the_header_timeout(
    logged: Callable[[], list[str]],
) -> None:
    request = head(AUTH) + BODY
    trickled = [request[n : n + 4] for n in range(0, 120, 4)]  # 30 pieces, 0.1 s apart: 3 s

    [(status, lasted)] = run((trickled, {"pause_s": 0.1}))

    assert status == 0  # closed, not answered
    assert HEADER_TIMEOUT_S - 0.1 <= lasted < HEADER_TIMEOUT_S + 1.0  # its timer starts first
    assert_nothing_secret(logged())


def test_a_client_trickling_its_body_is_answered_408_after_the_body_timeout(
    logged: Callable[[], list[str]],
) -> None:
    pieces = [BODY[n : n + 4] for n in range(0, len(BODY), 4)]  # 0.1 s apart: over 6 s

    [(status, lasted)] = run(([head(AUTH), *pieces], {"pause_s": 0.1}))

    assert status == 408
    assert BODY_TIMEOUT_S - 0.1 <= lasted < BODY_TIMEOUT_S + LINGER_S + 1.0
    assert_nothing_secret(logged())


def test_well_formed_requests_still_pass_on_the_wire(logged: Callable[[], list[str]]) -> None:
    good = orjson.dumps([event(1), event(2)])

    [(status, _)] = run(((head(AUTH, length=len(good)) + good,), {}))

    assert status == 202
    assert any("ingest_accepted" in line for line in logged())
    assert_nothing_secret(logged())
