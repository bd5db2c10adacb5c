"""What reaches the logs: no record's bytes, no request's bytes, at any log level."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import sys
from collections.abc import Callable, Iterator

import faust.topics
import pytest
import structlog
from aiokafka.producer import producer as aiokafka_producer

from streams.logs import configure_logging

MARKER = "jane.personal@acme.example"
RECORD = b'{"type":"email","contact_id":"' + MARKER.encode() + b'","subject":"hello"}'


@pytest.fixture
def log_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], io.StringIO]]:
    """Configure Gemba's logging at a level, writing to a buffer returned; undone after."""
    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    named = ("faust", "faust.topics", "aiokafka", "kafka", "aiohttp.server", "asyncio")
    levels = {name: logging.getLogger(name).level for name in named}

    def configure(level: str) -> io.StringIO:
        written = io.StringIO()
        monkeypatch.setattr(sys, "stderr", written)
        configure_logging(level, "json")
        return written

    yield configure
    root.handlers[:], root.level = handlers, level
    structlog.configure(**config)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def _a_decode_error() -> ValueError:
    try:
        RECORD.decode("ascii").encode("ascii")
        raise ValueError(f"cannot read {RECORD!r}")
    except ValueError as exc:
        return exc


@pytest.mark.parametrize("level", ["debug", "info"])
def test_library_lines_quoting_a_records_bytes_never_reach_the_log(
    log_at: Callable[[str], io.StringIO], level: str
) -> None:
    written = log_at(level)
    for name in ("faust.topics", "aiokafka", "kafka"):
        logging.getLogger(name).setLevel(logging.DEBUG)  # whatever a library sets for itself

    # The very calls Faust and aiokafka make for each record they send, at debug level.
    faust.topics.logger.debug(
        "send: topic=%r k=%r v=%r timestamp=%r partition=%r", "touches", b"k", RECORD, 1.0, 0
    )
    aiokafka_producer.log.debug("Sending (key=%s value=%s) to %s", b"k", RECORD, "touches-0")
    logging.getLogger("kafka.producer.record_accumulator").debug("Appending %r", RECORD)
    # A library's warning and error with a record or an exception quoting one.
    logging.getLogger("faust.transport").warning("Cannot decode %r", RECORD)
    logging.getLogger("faust.agents").error("Agent crashed", exc_info=_a_decode_error())
    logging.getLogger("mode.services").error("Crashed reason=%r", _a_decode_error())
    structlog.get_logger("gemba.worker").debug("batch_taken", messages=3)

    lines = written.getvalue().splitlines()
    assert any("Agent crashed" in line and "ValueError" in line for line in lines)
    assert any(f"Cannot decode '<{len(RECORD)} bytes>'" in line for line in lines)
    assert any("batch_taken" in line for line in lines) is (level == "debug")
    assert MARKER not in written.getvalue()
    assert "hello" not in written.getvalue()


def test_an_asyncio_report_keeps_its_first_line_not_the_tasks_exception(
    log_at: Callable[[str], io.StringIO],
) -> None:
    written = log_at("debug")

    async def fails() -> None:
        raise ValueError(f"cannot read {RECORD!r}")

    async def scenario() -> None:
        task = asyncio.get_running_loop().create_task(fails())
        await asyncio.sleep(0)
        del task  # never awaited: asyncio reports it when it is collected

    asyncio.run(scenario())
    gc.collect()

    text = written.getvalue()
    assert "Task exception was never retrieved" in text
    assert MARKER not in text
