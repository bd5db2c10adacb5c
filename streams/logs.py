"""structlog set up once: JSON when not on a terminal, readable on one."""

from __future__ import annotations

import logging
import sys
import time

import structlog

__all__ = ["configure_logging"]


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
    # Faust's producer backpressure ("producer buffer full") and mode's "timer is
    # overlapping" are normal while the worker catches up; nothing to act on.
    for expected in ("faust.transport.producer", "mode.timers"):
        logging.getLogger(expected).setLevel(quiet if quiet == logging.DEBUG else logging.ERROR)
