"""structlog set up once: JSON when not on a terminal, readable on one.

What reaches the logs: Gemba's own events (structlog, any level), which name counts,
ids, topics, partitions and offsets, never an event's text or a secret; and, from the
libraries (Faust, aiokafka, kafka-python, aiohttp, asyncio: stdlib logging), only their
INFO and higher records, with every exception shown by its class and place, never its
message, and no bytes. Library debug lines quote Kafka records (`faust.topics` "send:
... v=", aiokafka "Sending (key= value=)") and parser errors quote the request bytes
they choked on (a bearer token, a body): they never reach the log, at any
GEMBA_LOG_LEVEL (see `LibraryRecordPolicy`).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import structlog

__all__ = ["LibraryRecordPolicy", "configure_logging"]


KAFKA_LOGGERS = ("kafka", "aiokafka")
KAFKA_REPEAT_S = 30.0


class OncePer(logging.Filter):
    """Lets each kind of message (logger and template) of the named loggers through once per
    `seconds`: a client retrying every 100 ms says so once, not hundreds of times."""

    def __init__(self, seconds: float, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.seconds = seconds
        self.prefixes = prefixes
        self._last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes) or record.levelno <= logging.DEBUG:
            return True
        kind = (record.name, str(record.msg))
        now = time.monotonic()
        if now - self._last.get(kind, -self.seconds) < self.seconds:
            return False
        self._last[kind] = now
        return True


class LibraryRecordPolicy(logging.Filter):
    """What a library's log record may carry into Gemba's log: personal data and secrets never.

    - Records under INFO are dropped: that is where libraries quote Kafka records and
      request bytes.
    - An exception is shown by its class (and its causes' classes) and where it was raised,
      never by its message: aiohttp's parser errors quote the header or chunk they refused,
      a codec error the value it could not read.
    - Arguments that are bytes show as their length, exceptions as their class.
    - asyncio's reports keep their first line only: the rest are reprs of a task, its
      coroutine's arguments and its exception.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            return False
        if isinstance(record.args, tuple):
            record.args = tuple(_harmless(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _harmless(arg) for key, arg in record.args.items()}
        if record.name == "asyncio" or record.name.startswith("asyncio."):
            record.msg, record.args = record.getMessage().split("\n", 1)[0][:200], ()
        if record.exc_info and record.exc_info[1] is not None:
            record.msg, record.args = f"{record.getMessage()} [{_where(record.exc_info[1])}]", ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def _harmless(arg: object) -> object:
    """An argument of a library's log call, with nothing of a payload in it."""
    if isinstance(arg, bytes | bytearray | memoryview):
        return f"<{len(arg)} bytes>"
    if isinstance(arg, BaseException):
        return _where(arg)
    return arg


def _where(exc: BaseException) -> str:
    """An exception by its class, its causes' classes, and the place it was raised."""
    names: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(names) < 5:
        names.append(type(seen).__name__)
        seen = seen.__cause__ or seen.__context__
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    place = f" at {Path(frame.tb_frame.f_code.co_filename).name}:{frame.tb_lineno}" if frame else ""
    return " from ".join(names) + place


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog and stdlib logging (Faust, aiokafka) to one stream, stderr."""
    numeric = logging.getLevelName(level.upper())
    pretty = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if pretty else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Client libraries retry on their own and log every attempt: keep their warnings (a broker
    # going away must show), each kind once per KAFKA_REPEAT_S, and their chatter for debug,
    # never below INFO: at DEBUG kafka-python logs every record's value (message bodies).
    quiet = logging.DEBUG if numeric <= logging.DEBUG else logging.CRITICAL
    for noisy in KAFKA_LOGGERS:
        logging.getLogger(noisy).setLevel(max(min(quiet, logging.WARNING), logging.INFO))
    handler.addFilter(OncePer(KAFKA_REPEAT_S, KAFKA_LOGGERS))
    handler.addFilter(LibraryRecordPolicy())  # after OncePer, which counts kinds by template
    # Faust's producer backpressure ("producer buffer full") and mode's "timer is
    # overlapping" are normal while the worker catches up; nothing to act on.
    for expected in ("faust.transport.producer", "mode.timers"):
        logging.getLogger(expected).setLevel(quiet if quiet == logging.DEBUG else logging.ERROR)
