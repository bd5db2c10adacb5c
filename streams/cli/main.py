"""The `gemba` command line: broker, events in, and (as they land) the value stream out."""

from __future__ import annotations

import sys
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click
import orjson
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from events import EVENT_TYPES, PublishError, json_schema
from events.producer import publish_jsonl
from projections.portfolio.rollup import DIMENSIONS
from streams.cli.alerts import register as register_alerts
from streams.cli.assumptions import register as register_assumptions
from streams.cli.campaigns import register as register_campaigns
from streams.cli.common import settings_of, worker_page
from streams.cli.export import register as register_export
from streams.cli.history import register as register_history
from streams.cli.importing import register as register_import
from streams.cli.ingest import register as register_ingest
from streams.cli.progress import byte_progress
from streams.cli.serve import register as register_serve
from streams.cli.simulate import simulate
from streams.cli.terminal_text import literal, printable_json
from streams.errors import GembaError
from streams.kafka.broker import broker_status, start_broker, stop_broker
from streams.kafka.clients import ensure_topic_for, open_publisher
from streams.logs import configure_logging
from streams.settings import Settings

__all__ = ["cli", "main"]

err = Console(stderr=True)
"""Files at least this large show a progress bar (on a terminal)."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gemba")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Gemba: go and see where your sales deals' time really goes.

    Every customer touch and stage change is an immutable event on Kafka; Gemba folds
    them into value streams (value-added, overhead, waste, wait) per deal and stage.
    Settings come from GEMBA_* environment variables (and KAFKA_BOOTSTRAP_SERVERS).
    """
    try:
        settings = Settings()
    except ValidationError as exc:
        raise click.ClickException(f"bad setting in the environment:\n{exc}") from None
    configure_logging(settings.log_level, settings.log_format)
    ctx.obj = settings


@cli.group()
def broker() -> None:
    """Run the local single-node Apache Kafka broker (KRaft) on 127.0.0.1."""


@broker.command("start")
@click.pass_context
def broker_start(ctx: click.Context) -> None:
    """Start the broker (reusing a running one) and wait until it serves."""
    settings = settings_of(ctx)
    before = broker_status(settings)
    status = start_broker(settings, say=err.print)
    verb = "already running" if before.running else "started"
    click.echo(f"{verb}: {status.describe()}")


@broker.command("stop")
@click.pass_context
def broker_stop(ctx: click.Context) -> None:
    """Stop the broker cleanly."""
    stopped = stop_broker(settings_of(ctx))
    click.echo("broker stopped" if stopped else "no local broker was running")


@broker.command("status")
@click.pass_context
def broker_status_command(ctx: click.Context) -> None:
    """Say whether the broker runs, and where; exit 1 if it does not."""
    settings = settings_of(ctx)
    if not settings.local_broker:
        click.echo(f"using the cluster at {settings.bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS)")
        return
    status = broker_status(settings)
    click.echo(status.describe())
    if not status.running:
        sys.exit(1)


@cli.command()
@click.option("--type", "event_type", type=click.Choice(sorted(EVENT_TYPES)), default=None)
def schema(event_type: str | None) -> None:
    """Print the JSON Schema of every event type (or of one)."""
    document: dict[str, Any] = (
        EVENT_TYPES[event_type].model_json_schema() if event_type else json_schema()
    )
    click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())


@cli.command()
@click.argument("file", type=click.File("rb"))
@click.option("--topic", default=None, help="Topic to publish to (default: GEMBA_TOUCHES_TOPIC).")
@click.pass_context
def produce(ctx: click.Context, file: IO[bytes], topic: str | None) -> None:
    """Publish a JSON-lines FILE of events ('-' for stdin).

    Every line is validated first; bad lines are reported with their line number,
    field and reason, and are not published; good lines are. Events dated more than
    GEMBA_MAX_FUTURE_SKEW_S (a day) after the run began are refused as future-dated.
    Exits 1 if any line was refused.
    """
    settings = settings_of(ctx)
    topic = topic or settings.touches_topic
    ensure_topic_for(settings, topic)
    size = Path(file.name).stat().st_size if file.name not in {"-", "<stdin>"} else 0
    with (
        open_publisher(settings, topic) as publisher,
        byte_progress(size, "publishing", err) as advance,
    ):
        report = publish_jsonl(
            file, publisher, on_line=advance, future=settings.future_limit,
            recorded_at=datetime.now(UTC),
        )  # fmt: skip
    for refused in report.refused:
        err.print(Text.assemble(("refused", "red"), " ", literal(refused)), soft_wrap=True)
    click.echo(
        f"published {report.published:,} event(s) to {topic}; refused {len(report.refused):,}"
    )
    if report.refused:
        sys.exit(1)


@cli.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run the Faust worker: fold `touches` into deal value streams until stopped.

    Bad messages go to the dead-letter topic with the reason; counts are served
    at http://127.0.0.1:6066/gemba/counts/ (GEMBA_WORKER_WEB_HOST, GEMBA_WORKER_WEB_PORT).
    """
    from streams.worker.run import run_worker  # Faust loads only for the commands that need it

    run_worker(settings_of(ctx))


@cli.command()
@click.argument("deal_id")
@click.option("--json", "as_json", is_flag=True, help="Print the value stream as JSON.")
@click.pass_context
def deal(ctx: click.Context, deal_id: str, as_json: bool) -> None:
    """Print one deal's value stream: each touch and gap with its class, then totals and PCE."""
    from projections.deal.value_stream import DealValueStream
    from streams.cli.render import deal_timeline

    body = worker_page(settings_of(ctx), f"/gemba/deals/{urllib.parse.quote(deal_id)}/")
    if as_json:
        click.echo(printable_json(body.decode()))
        return
    Console().print(deal_timeline(DealValueStream.model_validate_json(body)))


@cli.command()
@click.argument("dimension", type=click.Choice(DIMENSIONS))
@click.option("--month", default=None, help="Only this month, YYYY-MM.")
@click.option("--json", "as_json", is_flag=True, help="Print the roll-ups as JSON.")
@click.pass_context
def rollups(ctx: click.Context, dimension: str, month: str | None, as_json: bool) -> None:
    """Value-stream totals per stage, rep (owner), segment, product or campaign, from state.

    Buckets are months: the month a deal entered the stage (for stage), or the month it
    opened (for the others). Answers "what is PCE in Proposal this month" without a rescan.
    """
    from streams.cli.render import rollup_table
    from streams.worker.value_streams import ValueStreamFolder

    query = f"?month={urllib.parse.quote(month)}" if month else ""
    body = worker_page(settings_of(ctx), f"/gemba/rollups/{dimension}/{query}")
    if as_json:
        click.echo(printable_json(body.decode()))
        return
    stages = ValueStreamFolder.from_settings(settings_of(ctx)).policy.stages.order
    Console().print(rollup_table(dimension, month, orjson.loads(body), stages))


@cli.command()
@click.option("--stop", is_flag=True, help="Stop a running demo and what it started.")
@click.option("--fresh", is_flag=True, help="Wipe the local broker, worker and demo state first.")
@click.option("--seed", default=42, show_default=True, help="Simulation seed.")
@click.option("--deals", default=1500, show_default=True, help="Deals in the simulated history.")
@click.option("--accounts", default=400, show_default=True)
@click.option("--months", default=6, show_default=True, help="Months of simulated history.")
@click.option(
    "--speed", default=8640.0, show_default=True,
    help="Live stream: simulated seconds per real second (8640 = a day every 10 s).",
)  # fmt: skip
@click.option(
    "--live-seconds", type=float, default=None,
    help="Stop the live stream after this many seconds (default: run until stopped).",
)  # fmt: skip
@click.pass_context
def demo(
    ctx: click.Context, stop: bool, fresh: bool, seed: int, deals: int, accounts: int,
    months: int, speed: float, live_seconds: float | None,
) -> None:  # fmt: skip
    """The main job: local broker, worker, months of simulated history, then a live stream.

    Safe to re-run: it reuses what is running and loads the same history only once.
    Ctrl-C (or `gemba demo --stop`) stops everything it started and nothing else.
    """
    from streams.cli.demo import DemoOptions, run_demo, stop_demo
    from streams.simulator import SimulationConfig, SimulatorError

    settings = settings_of(ctx)
    if stop:
        stop_demo(settings, say=click.echo)
        return
    try:
        simulation = SimulationConfig(seed=seed, deals=deals, accounts=accounts, months=months)
    except SimulatorError as exc:
        raise click.BadParameter(str(exc)) from None
    if speed <= 0:
        raise click.BadParameter("--speed must be positive")
    options = DemoOptions(simulation, speed=speed, live_seconds=live_seconds, fresh=fresh)
    run_demo(settings, options, Console())


cli.add_command(simulate)
register_alerts(cli)
register_history(cli)
register_campaigns(cli)
register_assumptions(cli)
register_import(cli)
register_export(cli)
register_ingest(cli)
register_serve(cli)


def main() -> None:
    """Entry point: run the CLI, turning known errors into a one-line message."""
    try:
        cli(standalone_mode=True)
    except (GembaError, PublishError) as exc:
        err.print(Text.assemble(("error:", "bold red"), " ", literal(exc)), soft_wrap=True)
        sys.exit(2)
