"""Running the Faust worker in-process, with Gemba's logging instead of Faust's."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import faust
import structlog
from faust.worker import Worker

from events.producer import check_reachable
from streams.kafka.clients import ensure_topic_for
from streams.settings import Settings
from streams.worker.app import create_app
from streams.worker.campaigns import ACCOUNT_TOPIC_CONFIG

__all__ = ["CLEAN_STOP_MARK", "ensure_topics", "new_event_loop", "run_worker", "trust_local_tables"]

log = structlog.get_logger("gemba.worker")


COMPACTED = {"cleanup.policy": "compact"}
CLEAN_STOP_MARK = ".stopped-cleanly"
"""Left in the tables' directory by a worker that stopped cleanly, taken away at start."""


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


def new_event_loop(settings: Settings) -> asyncio.AbstractEventLoop:
    """The worker's event loop (GEMBA_WORKER_LOOP), made the current one of this thread."""
    if settings.worker_loop == "uvloop":
        import uvloop  # a dependency; imported here so that other commands do not load it

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop


def trust_local_tables(tables: Path) -> bool:
    """Keep the tables the last run left on disk if it stopped cleanly; delete them if not.

    A table write reaches the local RocksDB store at once, its changelog record and what
    goes out with it (an alert, a value stream) only when the producer sends them. A worker
    killed in between leaves local rows that Kafka never saw: an alert recorded as sent but
    never sent would not be sent again by the replay that follows, and the changelog would
    lack rows that another worker restores from. After such a stop the tables are rebuilt
    from their changelogs (as the memory store always is); after a clean one, recovery
    reads only the changelog records written since. True when they are kept.
    """
    mark = tables / CLEAN_STOP_MARK
    if not tables.exists():
        return False
    if mark.exists():
        mark.unlink()
        return True
    shutil.rmtree(tables)
    log.warning(
        "worker_tables_rebuilt_from_changelogs",
        reason="the last run did not stop cleanly (killed or crashed): its local tables may "
        "hold writes that never reached Kafka",
        path=str(tables),
    )
    return False


def _mark_clean_stop(app: faust.App, tables: Path, code: object) -> None:
    """After the worker stopped: mark its local tables as whole (a clean exit only)."""
    if code in {0, None} and not app.crashed and tables.exists():
        (tables / CLEAN_STOP_MARK).touch()


def run_worker(settings: Settings, app: faust.App | None = None) -> None:
    """Start the worker and block until it is stopped (SIGTERM or Ctrl-C)."""
    check_reachable(settings.bootstrap_servers)
    loop = new_event_loop(settings)  # before the app, whose services take the current loop
    app = app or create_app(settings)
    ensure_topics(settings, app)
    settings.worker_dir.mkdir(parents=True, exist_ok=True)
    tables = Path(app.conf.tabledir)
    on_disk = not settings.worker_store.startswith("memory:")
    kept = trust_local_tables(tables) if on_disk else False
    log.info(
        "worker_starting", store=settings.worker_store, event_loop=type(loop).__module__,
        tables=str(tables), local_tables_kept=kept,
    )  # fmt: skip
    worker = Worker(
        app,
        loop=loop,
        loglevel=settings.log_level,
        quiet=True,
        override_logging=False,
        redirect_stdouts=False,
        workdir=str(settings.worker_dir),
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as stopped:
        if on_disk:
            _mark_clean_stop(app, tables, stopped.code)
        raise
