"""`gemba simulate`: simulated sales history and live events, to a file or to Kafka."""

from __future__ import annotations

import csv
import dataclasses
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from streams.cli.common import settings_of
from streams.cli.terminal_text import literal, printable
from streams.kafka.clients import ensure_topic_for, open_publisher
from streams.settings import Settings
from streams.simulator import (
    DEFAULT_HISTORY_END,
    Pace,
    SimulatedEvent,
    SimulationConfig,
    SimulatorError,
    WriteProgress,
    ground_truth,
    history_records,
    live_events,
    paced,
    write_jsonl,
)

__all__ = ["simulate"]

err = Console(stderr=True)


def say(line: str) -> None:
    """A line on stderr, its text (file names, topics) shown literally."""
    err.print(literal(line), soft_wrap=True)


def _progress_bar(label: str) -> Progress:
    shown = printable(label).replace("{", "{{").replace("}", "}}")  # a format, of a file name
    return Progress(
        TextColumn(shown, markup=False), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[events]:,} events"), TimeElapsedColumn(),
        console=err, disable=not err.is_terminal,
    )  # fmt: skip


def _write_history(config: SimulationConfig, out: Path) -> int:
    started = time.perf_counter()
    with _progress_bar(f"writing {out}") as bar:
        task = bar.add_task("history", total=config.deals, events=0)

        def report(progress: WriteProgress) -> None:
            bar.update(task, completed=progress.deals, events=progress.events)

        written = write_jsonl(out, config, progress=report)
    seconds = time.perf_counter() - started
    say(
        f"wrote {written.events:,} events ({written.bytes / 1e6:,.1f} MB) to {out} "
        f"in {seconds:.1f} s ({written.events / max(seconds, 1e-9):,.0f} events/s)"
    )
    return written.events


def _publish(records: Iterable[SimulatedEvent], settings: Settings, label: str) -> int:
    count = 0
    with open_publisher(settings) as publisher:
        for record in records:
            publisher.publish_encoded(record.key, record.line)
            count += 1
    say(f"{label}: published {count:,} events to {settings.touches_topic}")
    return count


def _history_to_kafka(config: SimulationConfig, settings: Settings) -> Iterator[SimulatedEvent]:
    span = (config.end - config.start).total_seconds()
    with _progress_bar("publishing history") as bar:
        task = bar.add_task("history", total=span, events=0)
        for count, record in enumerate(history_records(config), start=1):
            if count % 5000 == 0:
                done = (record.occurred_at - config.start).total_seconds()
                bar.update(task, completed=done, events=count)
            yield record


def _until(records: Iterable[SimulatedEvent], seconds: float | None) -> Iterator[SimulatedEvent]:
    deadline = None if seconds is None else time.monotonic() + seconds
    for record in records:
        if deadline is not None and time.monotonic() >= deadline:
            return
        yield record


def _write_lines(records: Iterable[SimulatedEvent], out: Path | None) -> None:
    """JSON lines to stdout ('-') or appended to a file, each flushed as it comes."""
    with open(out, "ab") if out is not None and str(out) != "-" else sys.stdout.buffer as target:
        for record in records:
            target.write(record.line + b"\n")
            target.flush()


def _write_campaigns(config: SimulationConfig, path: Path) -> None:
    """The simulated campaigns with their costs (not events: costs come from a file)."""
    truth = ground_truth(config)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["campaign_id", "name", "cost"])
        for campaign_id in sorted(truth.campaign_costs):
            name = truth.campaign_names.get(campaign_id, "")
            writer.writerow([campaign_id, name, f"{truth.campaign_costs[campaign_id]}.00"])
    say(f"wrote {len(truth.campaign_costs)} campaigns with their costs to {path}")


@click.command()
@click.option("--seed", default=42, show_default=True)
@click.option("--accounts", default=400, show_default=True)
@click.option("--reps", default=8, show_default=True)
@click.option("--campaigns", default=6, show_default=True)
@click.option("--deals", default=1500, show_default=True)
@click.option("--months", default=6, show_default=True, help="Months of history.")
@click.option(
    "--end", default=DEFAULT_HISTORY_END.isoformat(), show_default=True,
    help="End of history (timezone-aware ISO time); live events continue from it.",
)  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write history as JSON lines to this file ('-' for stdout).")  # fmt: skip
@click.option("--kafka", is_flag=True, help="Publish to the touches topic instead.")
@click.option("--live", is_flag=True, help="After history, keep producing live events.")
@click.option("--no-history", is_flag=True, help="Only live events (with --live).")
@click.option("--rate", type=float, default=None, help="Live: events per second.")
@click.option(
    "--speed", type=float, default=None,
    help="Live: simulated seconds per real second (86400 = a day per second).",
)  # fmt: skip
@click.option("--duration", type=float, default=None, help="Live: stop after this many seconds.")
@click.option("--truth", is_flag=True, help="Print the planted ground truth as JSON and exit.")
@click.option(
    "--campaigns-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Also write the campaigns (id, name, cost) as CSV, for `gemba campaigns --costs`.",
)  # fmt: skip
@click.pass_context
def simulate(
    ctx: click.Context, seed: int, accounts: int, reps: int, campaigns: int, deals: int,
    months: int, end: str, out: Path | None, kafka: bool, live: bool, no_history: bool,
    rate: float | None, speed: float | None, duration: float | None, truth: bool,
    campaigns_out: Path | None,
) -> None:  # fmt: skip
    """Simulate a B2B sales organisation: history, then (with --live) a live stream.

    Deterministic from --seed: the same options give the same events, byte for byte.
    The planted patterns (which rep re-quotes, which campaign loses money, which deals
    go silent) are documented in docs/simulator.md and printed by --truth.

    Simulated time is not the wall clock: a live stream at --speed soon runs ahead of
    it, and a worker dead-letters events dated more than GEMBA_MAX_FUTURE_SKEW_S after
    they were published; run the worker with GEMBA_MAX_FUTURE_SKEW_S=inf to follow a
    simulation into the future, and with GEMBA_ALERT_CLOCK=event so that stall alerts
    measure silence to simulated time, not to the wall clock (`gemba demo` does both).
    """
    try:
        config = SimulationConfig(
            seed=seed, accounts=accounts, reps=reps, campaigns=campaigns, deals=deals,
            months=months, end=datetime.fromisoformat(end).astimezone(UTC),
        )  # fmt: skip
        pace = Pace.rate(rate) if rate else Pace.accelerated(speed or 86_400.0)
    except (SimulatorError, ValueError) as exc:
        raise click.BadParameter(str(exc)) from None
    if truth:
        document = dataclasses.asdict(ground_truth(config))
        click.echo(orjson.dumps(document, default=sorted, option=orjson.OPT_INDENT_2).decode())
        return
    if campaigns_out is not None:
        _write_campaigns(config, campaigns_out)
        if not kafka and out is None:
            return
    if not kafka and out is None:
        raise click.UsageError("say where the events go: --out FILE (or -) or --kafka")
    settings = settings_of(ctx)
    if kafka:
        ensure_topic_for(settings, settings.touches_topic)
    if not no_history:
        if kafka:
            _publish(_history_to_kafka(config, settings), settings, "history")
        elif out is not None and str(out) != "-":
            _write_history(config, out)
        else:
            _write_lines(history_records(config), None)
    if live:
        records = _until(paced(live_events(config), pace, simulated_start=config.end), duration)
        try:
            if kafka:
                _publish(records, settings, "live")
            else:
                _write_lines(records, out)
        except KeyboardInterrupt:
            err.print("live stream stopped")
