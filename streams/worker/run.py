"""Running the Faust worker in-process, with Gemba's logging instead of Faust's."""

from __future__ import annotations

import faust
from faust.worker import Worker

from events.producer import check_reachable
from streams.kafka.clients import ensure_topic_for
from streams.settings import Settings
from streams.worker.app import create_app
from streams.worker.campaigns import ACCOUNT_TOPIC_CONFIG

__all__ = ["ensure_topics", "run_worker"]


COMPACTED = {"cleanup.policy": "compact"}


def ensure_topics(settings: Settings, app: faust.App | None = None) -> None:
    """Create every topic the worker uses, before it starts, if missing.

    The event log and dead letters keep everything; the value streams and the
    tables' changelogs are compacted; the by-account copy of deal and response
    events (streams.worker.campaigns) keeps a week. Creating the changelogs here, rather
    than letting Faust declare them at start-up, avoids a race on a fresh broker
    in which a table is first written before its changelog's metadata is known.
    """
    for topic in (settings.touches_topic, settings.dead_letter_topic):
        ensure_topic_for(settings, topic)
    ensure_topic_for(settings, settings.value_streams_topic, COMPACTED)
    ensure_topic_for(settings, settings.touches_by_account_topic, ACCOUNT_TOPIC_CONFIG)
    for table in app.tables.values() if app is not None else ():
        ensure_topic_for(settings, table.changelog_topic.get_topic_name(), COMPACTED)


def run_worker(settings: Settings, app: faust.App | None = None) -> None:
    """Start the worker and block until it is stopped (SIGTERM or Ctrl-C)."""
    check_reachable(settings.bootstrap_servers)
    app = app or create_app(settings)
    ensure_topics(settings, app)
    settings.worker_dir.mkdir(parents=True, exist_ok=True)
    worker = Worker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        override_logging=False,
        redirect_stdouts=False,
        workdir=str(settings.worker_dir),
    )
    worker.execute_from_commandline()
