"""The worker's composition root: `build_worker` builds the Faust app and wires its parts.

The parts (the fold pipeline, stall alerts, campaign roll-ups, the history sink, the
broker watch, metrics) are built here, in order, each given the parts it plugs into;
none of them imports this module, and none is fetched back from the Faust app by name.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import faust

from streams.host_check import host_guard
from streams.kafka.clients import faust_broker_credentials
from streams.settings import WILDCARD_HOSTS, Settings
from streams.worker.alerts import StallAlertEngine, attach_stall_alerts
from streams.worker.broker_watch import BrokerReachability, attach_broker_watch
from streams.worker.campaigns import CampaignPipeline, attach_campaign_pipeline
from streams.worker.liveness import stop_when_an_agent_dies, stop_when_recovery_stalls
from streams.worker.metrics import MeasuredParts, attach_metrics
from streams.worker.pipeline import ValueStreamPipeline, attach_value_stream_pipeline
from streams.worker.rebalance import make_rebalance_safe
from streams.worker.sink import HistorySink, attach_history_sink
from streams.worker.value_streams import ValueStreamFolder

__all__ = ["Worker", "build_worker", "create_app"]


@dataclass(frozen=True)
class Worker:
    """The worker's parts, as `build_worker` wired them: nothing connects until `app` starts."""

    app: faust.App
    settings: Settings
    pipeline: ValueStreamPipeline
    alerts: StallAlertEngine
    campaigns: CampaignPipeline
    history: HistorySink | None
    """None when the worker runs without the history sink (GEMBA_HISTORY_SINK=false)."""
    broker: BrokerReachability


def _web_host(settings: Settings) -> str:
    """The host name in this worker's URL, by which the others forward a deal page's request
    to the worker holding the deal: the bind address, or the host name when it is every one."""
    bind = settings.worker_web_host
    if bind in WILDCARD_HOSTS:
        return socket.gethostname()
    return f"[{bind}]" if ":" in bind else bind  # an IPv6 address, as a URL writes it


def _own_host_names(app: faust.App, settings: Settings) -> set[str]:
    """The names this worker's web server answers to (streams.host_check): GEMBA_ALLOWED_HOSTS,
    the name the other workers forward deal pages by, and its canonical URL's host (e.g.
    NODE_CANONICAL_URL, the pod's IP, that probes and Prometheus ask)."""
    canonical = app.conf.canonical_url.host
    return set(settings.allowed_host_names) | {_web_host(settings)} | {canonical or ""}


def _faust_app(settings: Settings) -> faust.App:
    """The Faust app alone, configured from settings (no topics, tables or agents yet)."""
    # Read at the first request, once `app` (below) knows its canonical URL.
    guard = host_guard(lambda: _own_host_names(app, settings), "this worker")
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        broker_credentials=faust_broker_credentials(settings),
        store=settings.worker_store,
        datadir=str(settings.worker_dir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=True,
        web_bind=settings.worker_web_host,
        web_host=_web_host(settings),
        web_port=settings.worker_web_port,
        web_application_options={"middlewares": [guard]},
        # Every write is idempotent and acks follow the fold, so a stop need not wait
        # for unacked messages (they are replayed); waiting stalled shutdown ~30 s.
        stream_wait_empty=False,
    )
    return app


def build_worker(settings: Settings, folder: ValueStreamFolder | None = None) -> Worker:
    """Build the Faust app from settings and wire every part of the worker into it.

    Nothing connects until the worker starts. `folder` replaces the fold of the
    settings' policy (tests fold with their own).
    """
    app = _faust_app(settings)
    make_rebalance_safe(app)  # read every message of a partition given back (rebalance.py)
    stop_when_an_agent_dies(app)  # no agent dies silently (streams/worker/liveness.py)
    stop_when_recovery_stalls(app, settings.recovery_stall_timeout_s)  # nor table recovery
    pipeline = attach_value_stream_pipeline(
        app, settings, folder or ValueStreamFolder.from_settings(settings)
    )
    alerts = attach_stall_alerts(app, pipeline, settings)
    campaigns = attach_campaign_pipeline(app, pipeline, settings)
    history = attach_history_sink(app, settings, pipeline)
    broker = attach_broker_watch(app, [pipeline.source_topic])
    attach_metrics(app, MeasuredParts(pipeline, alerts, broker, history))
    return Worker(app, settings, pipeline, alerts, campaigns, history, broker)


def create_app(settings: Settings, folder: ValueStreamFolder | None = None) -> faust.App:
    """The worker's Faust app (`build_worker(...).app`): what Faust's Worker runs."""
    return build_worker(settings, folder).app
