"""What every `gemba` command shares: its settings, its errors, JSON and tables for the
terminal, times and policies from the command line, and the event log it reads."""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson
from rich.console import Console

from streams.archive_access import reading
from streams.cli.terminal_text import printable_json
from streams.errors import GembaError
from streams.settings import Settings

if TYPE_CHECKING:
    from events import EventBase
    from projections.policy.model import Policy

__all__ = [
    "cell",
    "command_policy",
    "event_log",
    "guarded",
    "json_text",
    "parse_as_of",
    "percent",
    "settings_of",
    "wide_console",
    "worker_page",
]

T = TypeVar("T")


def settings_of(ctx: click.Context) -> Settings:
    """The Settings the `gemba` group read from the environment for this run."""
    settings: Settings = ctx.find_root().obj
    return settings


def guarded(work: Callable[[], T]) -> T:
    """Run archive work; its errors become one-line messages."""
    from projections.archive import HistoryError

    try:
        return work()
    except HistoryError as exc:
        raise GembaError(str(exc)) from None


def command_policy(settings: Settings, path: Path | None = None) -> Policy:
    """The policy a command runs under (see policy_of); a bad file is a one-line message."""
    from projections.errors import PolicyError
    from streams.policy_loading import policy_of

    try:
        return policy_of(settings, path)
    except PolicyError as exc:
        raise GembaError(str(exc)) from None


def parse_as_of(text: str | None) -> datetime | None:
    """A point in time from the command line: ISO date or time; without an offset, UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO date or time (e.g. 2026-03-01 or 2026-03-01T12:00:00Z)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def worker_page(settings: Settings, path: str) -> bytes:
    """GET a page of the running worker's web server, or say how to start it."""
    url = f"{settings.worker_web_url}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        detail = orjson.loads(exc.read() or b"{}").get("error", exc.reason)
        raise GembaError(str(detail)) from None
    except OSError:
        raise GembaError(
            f"no worker answers at {url}: start one with `gemba worker` (or `make demo`)"
        ) from None


# --- output ----------------------------------------------------------------------------------


def wide_console() -> Console:
    """Wide tables stay whole when the output is a file or a pipe (rich assumes 80 columns)."""
    return Console() if sys.stdout.isatty() else Console(width=220)


def _json_default(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def json_text(document: Any) -> str:
    """Pretty JSON, with nothing in it a terminal would act on (see printable_json)."""
    return printable_json(
        orjson.dumps(
            document,
            default=_json_default,
            option=orjson.OPT_INDENT_2 | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS,
        ).decode()
    )


def cell(value: Any) -> str:
    """A figure as a table cell: blank for none, 4 significant digits below 1, else 2 decimals."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def percent(value: Any) -> str:
    """A share as a percentage with two decimals; `-` for none."""
    return "-" if value is None else f"{float(value) * 100:.2f}%"


# --- the event log ---------------------------------------------------------------------------


def _kafka_log(settings: Settings, idle_s: float = 10.0) -> list[tuple[EventBase, datetime]]:
    """Every event on the touches topic from offset 0 up to its end now, with its timestamp."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    from events import EventRejected, decode
    from projections.archive import recorded_at_from_ms
    from streams.kafka.clients import kafka_client_options

    topic, future = settings.touches_topic, settings.future_limit
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers, group_id=None,
            enable_auto_commit=False, auto_offset_reset="earliest",
            **kafka_client_options(settings),
        )  # fmt: skip
    except KafkaError as exc:
        raise GembaError(f"cannot reach Kafka at {settings.bootstrap_servers} ({exc})") from None
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            raise GembaError(f"no topic {topic!r} at {settings.bootstrap_servers}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        left = {tp for tp in tps if ends[tp] > consumer.position(tp)}
        records: list[tuple[EventBase, datetime]] = []
        quiet_since = time.monotonic()
        while left:
            polled = consumer.poll(timeout_ms=500, max_records=20_000)
            if not polled and time.monotonic() - quiet_since > idle_s:
                raise GembaError(f"reading {topic} stalled with {len(left)} partition(s) left")
            for tp, batch in polled.items():
                quiet_since = time.monotonic()
                for record in batch:
                    if record.offset >= ends[tp]:
                        continue
                    try:
                        event = decode(record.value or b"")
                    except EventRejected:
                        continue  # a dead letter: not an event
                    recorded_at = recorded_at_from_ms(record.timestamp)
                    if future is not None and future.is_future(event, recorded_at):
                        continue  # the worker dead-letters it too
                    records.append((event, recorded_at))
                if consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
        return records
    finally:
        consumer.close()


def event_log(settings: Settings, source: str) -> list[tuple[EventBase, datetime]]:
    """The events with their recorded_at: from the archive (`duckdb`), or from the
    touches topic at offset 0 (`kafka`)."""
    from projections.archive import archived_events

    if source == "kafka":
        return _kafka_log(settings)
    with reading(settings) as connection:
        return guarded(lambda: archived_events(connection))
