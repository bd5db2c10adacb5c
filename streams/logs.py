"""structlog set up once: JSON when not on a terminal, readable on one."""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure_logging"]


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
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Client libraries retry on their own and log every attempt; keep their chatter for debug,
    # but never below INFO: at DEBUG kafka-python logs every record's value (message bodies).
    quiet = logging.DEBUG if numeric <= logging.DEBUG else logging.CRITICAL
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(max(quiet, logging.INFO))
    # Faust's producer backpressure ("producer buffer full") and mode's "timer is
    # overlapping" are normal while the worker catches up; nothing to act on.
    for expected in ("faust.transport.producer", "mode.timers"):
        logging.getLogger(expected).setLevel(quiet if quiet == logging.DEBUG else logging.ERROR)
