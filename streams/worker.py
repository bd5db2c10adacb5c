"""Running the Faust worker in-process, with Gemba's logging instead of Faust's."""

from __future__ import annotations

import faust
from faust.worker import Worker

from events.producer import check_reachable, ensure_topic
from streams.app import create_app
from streams.settings import Settings

__all__ = ["ensure_topics", "run_worker"]


def ensure_topics(settings: Settings) -> None:
    """Create the event log and dead-letter topics (infinite retention) if missing."""
    for topic in (settings.touches_topic, settings.dead_letter_topic):
        ensure_topic(settings.bootstrap_servers, topic, settings.topic_partitions)


def run_worker(settings: Settings, app: faust.App | None = None) -> None:
    """Start the worker and block until it is stopped (SIGTERM or Ctrl-C)."""
    check_reachable(settings.bootstrap_servers)
    ensure_topics(settings)
    settings.worker_dir.mkdir(parents=True, exist_ok=True)
    worker = Worker(
        app or create_app(settings),
        loglevel=settings.log_level,
        quiet=True,
        override_logging=False,
        redirect_stdouts=False,
        workdir=str(settings.worker_dir),
    )
    worker.execute_from_commandline()
