"""`gemba alerts`: open stall episodes, new alerts as they come, and alert quality per stage."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import click
import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from rich.console import Console

from projections.deal.alerts import AlertKind, StallAlert
from streams.cli.common import json_text, settings_of, worker_page
from streams.cli.terminal_text import LiteralTable, printable, printable_json
from streams.errors import GembaError
from streams.kafka.clients import kafka_client_options
from streams.settings import Settings

__all__ = ["alert_line", "alerts", "follow_alerts", "register"]

POLL_MS = 500


def _worker_json(settings: Settings, path: str) -> Any:
    return orjson.loads(worker_page(settings, path))


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def _span(span: timedelta) -> str:
    seconds = max(int(span.total_seconds()), 0)
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds // 60} min {seconds % 60} s"


def alert_line(alert: StallAlert) -> str:
    """One alert on one line, for `--follow`, its text shown literally (see printable)."""
    return printable(_describe(alert))


def _describe(alert: StallAlert) -> str:
    who = f"{alert.deal_id} (account {alert.account_id}, owner {alert.owner_id})"
    if alert.kind is AlertKind.STALLED:
        silent = _span(alert.occurred_at - alert.silent_since)
        return (
            f"{_when(alert.occurred_at)}  STALLED    {who} in {alert.stage}: silent {silent} "
            f"(threshold {_span(alert.threshold)}, {alert.threshold_basis.describe()})"
        )
    return (
        f"{_when(alert.occurred_at)}  UNSTALLED  {who} in {alert.stage}: "
        f"{(alert.ended_by or '').replace('_', ' ')} after {_span(alert.time_stalled)}, "
        f"waste while stalled {_span(alert.waste_while_stalled.total)}"
    )


def _open_table(document: dict[str, Any]) -> LiteralTable:
    watermarks = [datetime.fromisoformat(w) for w in document["watermarks"].values()]
    now = max(watermarks, default=None)
    table = LiteralTable(title="Open stall episodes", title_justify="left")
    for column in ("deal", "account", "owner", "stage", "stalled at", "stalled for", "threshold"):
        table.add_column(column)
    table.add_column("last value-added touch")
    for raw in document["open"]:
        alert = StallAlert.model_validate(raw)
        last = alert.last_value_added_id or "none"
        if alert.last_value_added_at is not None:
            last = f"{last} ({_when(alert.last_value_added_at)})"
        table.add_row(
            alert.deal_id,
            alert.account_id,
            alert.owner_id,
            alert.stage,
            _when(alert.stalled_at),
            _span(now - alert.stalled_at) if now else "?",
            f"{_span(alert.threshold)} ({alert.threshold_basis.describe()})",
            last,
        )
    return table


def _quality_table(document: dict[str, Any]) -> LiteralTable:
    table = LiteralTable(
        title=f"Stall alert quality over {document['closed_deals']:,} closed deals "
        f"(policy {document['policy_version']})",
        title_justify="left",
        caption="precision: share of alerts whose deal was then lost or slipped "
        "(won later than 80% of won deals)",
    )
    for column in ("stage", "alerts", "lost", "slipped", "precision"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for row in document["stages"]:
        precision = row["precision"]
        table.add_row(
            row["stage"],
            f"{row['alerts']:,}",
            f"{row['lost']:,}",
            f"{row['slipped']:,}",
            "-" if precision is None else f"{precision:.0%}",
        )
    return table


def follow_alerts(
    settings: Settings, ready: Callable[[], None] = lambda: None
) -> Iterator[StallAlert]:
    """Alerts published on `deal-alerts` from now on (from the end of every partition)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, group_id=None, enable_auto_commit=False,
        **kafka_client_options(settings),
    )  # fmt: skip
    try:
        partitions = _wait_for_partitions(consumer, settings.alerts_topic)
        assigned = [TopicPartition(settings.alerts_topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_end(*assigned)
        for partition in assigned:
            consumer.position(partition)  # resolve "end" now, before saying we are ready
        ready()
        while True:
            for records in consumer.poll(timeout_ms=POLL_MS).values():
                for record in records:
                    yield StallAlert.model_validate_json(record.value)
    finally:
        consumer.close()


def _wait_for_partitions(consumer: Any, topic: str) -> set[int]:
    said = False
    while True:
        consumer.topics()  # refreshes metadata
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        if not said:
            click.echo(f"waiting for topic {topic} (start a worker: `gemba worker`)", err=True)
            said = True
        time.sleep(1)


@click.command("alerts")
@click.option("--follow", is_flag=True, help="Print new alerts as they arrive (Ctrl-C stops).")
@click.option(
    "--quality", is_flag=True, help="Per stage: share of alerts whose deal was lost or slipped."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--count", type=int, default=None, help="With --follow: stop after COUNT alerts.")
@click.pass_context
def alerts(
    ctx: click.Context, follow: bool, quality: bool, as_json: bool, count: int | None
) -> None:
    """Stalled deals: the open stall episodes, as the running worker holds them.

    --follow prints every new deal-stalled / deal-unstalled alert from the
    `deal-alerts` topic; --quality shows, per stage, how often a stall alert
    pointed at a deal that was then lost or slipped, to tune thresholds on evidence.
    """
    settings = settings_of(ctx)
    if follow:
        _follow(settings, as_json, count)
        return
    document = _worker_json(settings, "/gemba/alerts/quality/" if quality else "/gemba/alerts/")
    if as_json:
        click.echo(json_text(document))
        return
    Console().print(_quality_table(document) if quality else _open_table(document))


def _follow(settings: Settings, as_json: bool, count: int | None) -> None:
    ready = lambda: click.echo(f"following {settings.alerts_topic} ...", err=True)  # noqa: E731
    seen = 0
    try:
        for alert in follow_alerts(settings, ready):
            click.echo(printable_json(alert.model_dump_json()) if as_json else alert_line(alert))
            seen += 1
            if count is not None and seen >= count:
                return
    except KeyboardInterrupt:
        return
    except KafkaError as exc:
        raise GembaError(
            f"cannot read {settings.alerts_topic} at {settings.bootstrap_servers} ({exc}); "
            "start the broker with `gemba broker start`"
        ) from None


def register(cli: click.Group) -> None:
    """Add `gemba alerts` to the command line."""
    cli.add_command(alerts)
