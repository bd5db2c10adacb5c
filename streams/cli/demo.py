"""`gemba demo`: broker, worker, simulated history, then a live stream, stopped cleanly."""

from __future__ import annotations

import os
import shutil
import signal
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from streams.cli.terminal_text import literal
from streams.errors import GembaError
from streams.kafka.broker import broker_status, start_broker, stop_broker
from streams.kafka.clients import kafka_client_options, open_publisher
from streams.kafka.processes import is_running, spawn, stop_process, wait_for_url
from streams.settings import Settings
from streams.simulator import (
    Pace,
    SimulationConfig,
    history_records,
    live_events,
    paced,
    silent_deal_ids,
)
from streams.worker.run import ensure_topics

__all__ = ["DemoOptions", "run_demo", "stop_demo"]

WORKER_MARKER = "streams worker"
DASHBOARD_MARKER = "streams serve"
DEMO_MARKER = "demo"
STATUS_EVERY_S = 10.0
DEMO_WORKER_ENV = {
    "GEMBA_LOG_FORMAT": "json",
    "GEMBA_MAX_FUTURE_SKEW_S": "inf",
    "GEMBA_ALERT_CLOCK": "event",
}
"""The demo runs on simulated time, days apart from the wall clock, on purpose: its worker
takes events from the simulated future, which a real worker refuses, and measures a deal's
silence to the simulated time its events carry (the live clock would measure it to the
wall clock, and stall every deal whose next simulated event has not been streamed yet)."""


@dataclass(frozen=True)
class DemoOptions:
    """What the user asked of the demo."""

    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    speed: float = 8640.0
    """Simulated seconds per real second in the live stream (8640: a day every 10 s)."""
    live_seconds: float | None = None
    """Stop the live stream after this long (None: until Ctrl-C or `gemba demo --stop`)."""
    fresh: bool = False


@dataclass
class DemoState:
    """What the demo started, so that a stop stops exactly that (kept in a JSON file)."""

    demo_pid: int | None = None
    worker_pid: int | None = None
    dashboard_pid: int | None = None
    started_broker: bool = False
    history: dict[str, Any] | None = None
    live_until: str | None = None

    @classmethod
    def load(cls, path: Path) -> DemoState:
        try:
            return cls(**orjson.loads(path.read_bytes()))
        except (FileNotFoundError, orjson.JSONDecodeError, TypeError):
            return cls()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2))


class _Stop(Exception):
    """SIGTERM (from `gemba demo --stop`) or Ctrl-C: leave the live loop and clean up."""


def _demo_dir(settings: Settings) -> Path:
    return settings.state_dir / "demo"


def _state_file(settings: Settings) -> Path:
    return _demo_dir(settings) / "state.json"


def _worker_log(settings: Settings) -> Path:
    return _demo_dir(settings) / "worker.log"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _dashboard_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.dashboard_port}/"


def _counts_url(settings: Settings) -> str:
    return f"{settings.worker_web_url}/gemba/counts/"


def worker_counts(settings: Settings) -> dict[str, int] | None:
    """The worker's consumed/processed/dead-lettered counters, or None if it does not answer."""
    try:
        with urllib.request.urlopen(_counts_url(settings), timeout=2) as response:
            counts: dict[str, int] = orjson.loads(response.read())
            return counts
    except OSError:
        return None


def stop_demo(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Stop what the demo started (the demo itself, its worker, its broker) and nothing else."""
    state = DemoState.load(_state_file(settings))
    if is_running(state.demo_pid, DEMO_MARKER) and state.demo_pid is not None:
        say(f"stopping the running demo (pid {state.demo_pid})...")
        stop_process(state.demo_pid, DEMO_MARKER, timeout_s=60)
        state = DemoState.load(_state_file(settings))
    _stop_started(settings, state, say)


def _stop_started(settings: Settings, state: DemoState, say: Callable[[str], None]) -> None:
    if stop_process(state.dashboard_pid, DASHBOARD_MARKER):
        say(f"stopped the dashboard (pid {state.dashboard_pid})")
    state.dashboard_pid = None
    if stop_process(state.worker_pid, WORKER_MARKER):
        say(f"stopped the worker (pid {state.worker_pid})")
    state.worker_pid = None
    if state.started_broker and settings.local_broker and stop_broker(settings):
        say("stopped the Kafka broker")
    state.started_broker = False
    state.demo_pid = None
    state.save(_state_file(settings))


def _start_over(settings: Settings, say: Callable[[str], None]) -> None:
    if not settings.local_broker:
        raise GembaError(
            "--fresh wipes the local broker's data; with KAFKA_BOOTSTRAP_SERVERS set, start "
            "over by choosing new topic names (GEMBA_TOUCHES_TOPIC, ...) and GEMBA_APP_ID."
        )
    stop_demo(settings, say)
    stop_broker(settings)
    for path in (settings.broker_data_dir, settings.worker_dir, _demo_dir(settings)):
        shutil.rmtree(path, ignore_errors=True)
    say("starting over: broker data, worker state and demo state removed")


def _ensure_broker(settings: Settings, state: DemoState, say: Callable[[str], None]) -> None:
    if not settings.local_broker:
        return
    if broker_status(settings).running:
        return
    say("starting the Kafka broker...")
    start_broker(settings, say)
    state.started_broker = True


def _ensure_worker(settings: Settings, state: DemoState, say: Callable[[str], None]) -> None:
    if is_running(state.worker_pid, WORKER_MARKER):
        return
    if worker_counts(settings) is not None:
        say(
            f"a worker already answers on port {settings.worker_web_port}; using it (unless it "
            "runs with GEMBA_MAX_FUTURE_SKEW_S=inf, it dead-letters the live stream's events "
            "once they run more than a day ahead of the clock)"
        )
        return
    say("starting the worker...")
    log = _worker_log(settings)
    pid = spawn(["worker"], log, env=DEMO_WORKER_ENV)
    state.worker_pid = pid
    wait_for_url(_counts_url(settings), pid, WORKER_MARKER, log)


def _ensure_dashboard(settings: Settings, state: DemoState, say: Callable[[str], None]) -> None:
    if is_running(state.dashboard_pid, DASHBOARD_MARKER):
        return
    if _answers(_dashboard_url(settings) + "api/health"):
        say(f"a dashboard already answers on port {settings.dashboard_port}; using it")
        return
    say("starting the dashboard...")
    log = _demo_dir(settings) / "dashboard.log"
    pid = spawn(["serve"], log, env={"GEMBA_LOG_FORMAT": "json"})
    state.dashboard_pid = pid
    wait_for_url(_dashboard_url(settings) + "api/health", pid, DASHBOARD_MARKER, log)


def _history_key(config: SimulationConfig) -> dict[str, Any]:
    return {k: v for k, v in asdict(config).items() if k != "end"} | {"end": config.end.isoformat()}


def _load_history(
    settings: Settings, options: DemoOptions, state: DemoState, console: Console
) -> None:
    config = options.simulation
    wanted = _history_key(config)
    if state.history is not None and state.history.get("config") == wanted:
        return
    span = (config.end - config.start).total_seconds()
    columns = (
        TextColumn("loading simulated history"), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[events]:,} events"), TimeElapsedColumn(),
    )  # fmt: skip
    count, first_deal = 0, None
    with (
        open_publisher(settings) as publisher,
        Progress(*columns, console=console, transient=True) as progress,
    ):
        task = progress.add_task("history", total=span, events=0)
        for record in history_records(config):
            publisher.publish_encoded(record.key, record.line)
            count += 1
            if first_deal is None and b'"deal_opened"' in record.line:
                first_deal = record.key
            if count % 2000 == 0:
                done = (record.occurred_at - config.start).total_seconds()
                progress.update(task, completed=done, events=count)
    state.history = {"config": wanted, "events": count, "first_deal": first_deal}
    state.live_until = config.end.isoformat()
    state.save(_state_file(settings))
    console.print(f"loaded {count:,} events of simulated history")


def _topic_size(settings: Settings) -> int:
    """How many messages the event log holds (sum of end offsets; nothing is deleted)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, **kafka_client_options(settings)
    )
    try:
        partitions = consumer.partitions_for_topic(settings.touches_topic) or set()
        ends = consumer.end_offsets([TopicPartition(settings.touches_topic, p) for p in partitions])
        return sum(ends.values())
    finally:
        consumer.close()


def _wait_for_worker(settings: Settings, console: Console, timeout_s: float = 1800) -> None:
    """Show the worker folding the history until it has caught up with the log."""
    size = _topic_size(settings)
    columns = (
        TextColumn("worker folding history"), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} events"), TimeElapsedColumn(),
    )  # fmt: skip
    deadline = time.monotonic() + timeout_s
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("fold", total=size)
        while time.monotonic() < deadline:
            consumed = (worker_counts(settings) or {}).get("consumed", 0)
            progress.update(task, completed=min(consumed, size))
            if consumed >= size:
                console.print(f"the worker has folded all {size:,} events of the log")
                return
            time.sleep(0.5)
    console.print("the worker is still catching up; the live stream starts anyway")


def _describe(settings: Settings, options: DemoOptions, state: DemoState) -> Text:
    """What runs where and how to look at it; settings and paths shown literally."""
    config = options.simulation
    history = state.history or {}
    broker = (
        f"Kafka broker  {settings.bootstrap_servers}"
        + (" (started by the demo)" if state.started_broker else " (already running)")
        if settings.local_broker
        else f"Kafka cluster {settings.bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS)"
    )
    day_every = 86_400 / options.speed
    silent = min(silent_deal_ids(config), default=None)
    example = silent or history.get("first_deal") or "<deal id>"
    why = "a deal that went silent: see its wait" if silent else "the first deal opened"
    last_month = f"{config.end - timedelta(days=1):%Y-%m}"
    lines = [
        "Gemba demo is running",
        f"  {broker}",
        f"  worker        pid {state.worker_pid}, folding `{settings.touches_topic}` into deal "
        f"value streams (log {_worker_log(settings)})",
        f"  history       {history.get('events', 0):,} events: {config.deals:,} deals, "
        f"{config.accounts:,} accounts, {config.reps} reps, {config.months} months "
        f"(seed {config.seed})",
        f"  live stream   one simulated day every {day_every:g} s into `{settings.touches_topic}`",
        "Where to look",
        f"  dashboard     {_dashboard_url(settings)}   (value-stream map, stalled deals live, "
        "campaigns, assumptions)",
        f"  counters      {_counts_url(settings)}",
        f"  one deal      gemba deal {example}   ({why})",
        f"  roll-ups      gemba rollups stage   |   gemba rollups owner --month {last_month}",
        f"  topics        value streams `{settings.value_streams_topic}`, "
        f"bad events `{settings.dead_letter_topic}`",
        "Stop: Ctrl-C here, or `gemba demo --stop` from another terminal.",
    ]  # fmt: skip
    headings = {"Gemba demo is running", "Where to look", "Stop"}
    return Text("\n").join(
        literal(line, "bold" if line.partition(":")[0] in headings else "") for line in lines
    )


def _run_live(settings: Settings, options: DemoOptions, state: DemoState, console: Console) -> int:
    since = datetime.fromisoformat(state.live_until or options.simulation.end.isoformat())
    deadline = None if options.live_seconds is None else time.monotonic() + options.live_seconds
    published, last_status = 0, time.monotonic()
    with open_publisher(settings) as publisher:
        live = paced(live_events(options.simulation, since=since), Pace.accelerated(options.speed))
        for event in live:
            if deadline is not None and time.monotonic() >= deadline:
                break
            publisher.publish_encoded(event.key, event.line)
            published += 1
            state.live_until = event.occurred_at.isoformat()
            if time.monotonic() - last_status >= STATUS_EVERY_S:
                publisher.flush()
                state.save(_state_file(settings))
                counts = worker_counts(settings) or {}
                console.print(
                    f"live: {published:,} events published, simulated time "
                    f"{event.occurred_at:%Y-%m-%d %H:%M}; worker consumed "
                    f"{counts.get('consumed', 0):,}, "
                    f"dead-lettered {counts.get('dead_lettered', 0):,}"
                )
                last_status = time.monotonic()
    state.save(_state_file(settings))
    return published


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def run_demo(settings: Settings, options: DemoOptions, console: Console) -> None:
    """The main job: reuse or start everything, load history once, then stream live events."""
    say = console.print
    if options.fresh:
        _start_over(settings, say)
    state = DemoState.load(_state_file(settings))
    if is_running(state.demo_pid, DEMO_MARKER) and state.demo_pid != os.getpid():
        say(f"a demo is already running (pid {state.demo_pid}); stop it with `gemba demo --stop`")
        return
    state.demo_pid = os.getpid()
    state.save(_state_file(settings))
    # Ctrl-C and `gemba demo --stop` (SIGTERM) both end the live loop and clean up,
    # even where SIGINT was inherited as ignored (a job started in the background).
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        _ensure_broker(settings, state, say)
        ensure_topics(settings)
        _ensure_worker(settings, state, say)
        state.save(_state_file(settings))
        _ensure_dashboard(settings, state, say)
        state.save(_state_file(settings))
        _load_history(settings, options, state, console)
        _wait_for_worker(settings, console)
        say(_describe(settings, options, state))
        published = _run_live(settings, options, state, console)
        say(f"live stream ended after {published:,} events")
    except (KeyboardInterrupt, _Stop):
        say("stopping...")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        counts = worker_counts(settings)
        if counts is not None:
            say(
                f"worker counters: consumed {counts.get('consumed', 0):,}, processed "
                f"{counts.get('processed', 0):,}, dead-lettered {counts.get('dead_lettered', 0):,}"
            )
        _stop_started(settings, state, say)
        say("demo stopped; everything it started has been stopped")
