"""`gemba import`: CRM exports, mapped CSV and XES logs in, as events on the touches topic."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Protocol

import click
from rich.console import Console
from rich.text import Text

from events import EventBase
from events.codec import encode
from events.importers import KINDS, ImporterError, ImportRequest, ImportTally, import_file
from events.importers.outcome import refuse_future_dated
from events.producer import KafkaEventPublisher
from streams.cli.common import settings_of
from streams.cli.progress import byte_progress
from streams.cli.terminal_text import literal, printable
from streams.errors import GembaError
from streams.kafka.clients import ensure_topic_for, open_publisher
from streams.settings import Settings

__all__ = ["EXIT_REFUSED", "import_command", "register"]

err = Console(stderr=True)
"""Files at least this large show a progress bar (on a terminal)."""
EXIT_REFUSED = 1
"""Exit status when rows were refused (the rest went in); 2 is for errors that stop it."""


class _Destination(Protocol):
    """Where imported events go: the topic, a JSON-lines file, or nowhere (dry run)."""

    def publish(self, event: EventBase) -> None: ...

    def flush(self) -> None: ...


class _LinesOut:
    """Writes events as JSON lines, the format `gemba produce` reads."""

    def __init__(self, sink: IO[bytes]) -> None:
        self._sink = sink

    def publish(self, event: EventBase) -> None:
        self._sink.write(encode(event) + b"\n")

    def flush(self) -> None:
        self._sink.flush()


class _Nowhere:
    """A dry run: every event validated and counted, none written."""

    def publish(self, event: EventBase) -> None:
        pass

    def flush(self) -> None:
        pass


def _destination(
    stack: ExitStack, settings: Settings, out: Path | None, dry_run: bool, topic: str
) -> _Destination:
    if dry_run:
        return _Nowhere()
    if out is not None:
        return _LinesOut(stack.enter_context(out.open("wb")))
    ensure_topic_for(settings, topic)
    publisher: KafkaEventPublisher = stack.enter_context(open_publisher(settings, topic))
    return publisher


def _summary(tally: ImportTally, where: str, show: int, dry_run: bool) -> None:
    shown = tally.first_refused[:show]
    for refused in shown:
        err.print(Text.assemble(("refused", "red"), " ", literal(refused)), soft_wrap=True)
    if tally.refused > len(shown):
        err.print(f"... and {tally.refused - len(shown):,} more refused", highlight=False)
    for reason, count in tally.refused_by_reason.most_common():
        err.print(literal(f"refused {count:,}: {reason}"), soft_wrap=True)
    for reason, count in tally.skipped.most_common():
        err.print(literal(f"skipped {count:,}: {reason}"), soft_wrap=True)
    types = ", ".join(f"{kind} {count:,}" for kind, count in sorted(tally.by_type.items()))
    verb = "would import" if dry_run else "imported"
    click.echo(
        printable(
            f"{verb} {tally.imported:,} event(s){f' ({types})' if types else ''} {where}; "
            f"skipped {tally.total_skipped:,}; refused {tally.refused:,}"
        )
    )


@click.command("import")
@click.argument("kind", metavar="KIND", type=click.Choice(list(KINDS)))
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--mapping", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
    help="TOML mapping: columns and values (csv, needed), activities (xes), names (CRMs).",
)  # fmt: skip
@click.option(
    "--lookup", "--contacts", "lookups", multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Salesforce export giving accounts (Opportunity, Contact, Lead) or campaign types "
    "(Campaign); repeatable.",
)  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Read and validate everything; write nothing.")
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
    help="Write the events as JSON lines to this file instead of publishing them.",
)  # fmt: skip
@click.option("--topic", default=None, help="Topic to publish to (default: GEMBA_TOUCHES_TOPIC).")
@click.option("--show", default=20, show_default=True, help="Refused rows to list one by one.")
@click.pass_context
def import_command(
    ctx: click.Context, kind: str, path: Path, mapping: Path | None, lookups: tuple[Path, ...],
    dry_run: bool, out: Path | None, topic: str | None, show: int,
) -> None:  # fmt: skip
    """Import existing data as events: KIND is one of the formats below, PATH the file.

    \b
    salesforce-opportunities|history|tasks|events|campaign-members: Salesforce CSV exports
    hubspot-deals|engagements|submissions: HubSpot CSV exports
    csv: any CSV with --mapping (e.g. deploy/mappings/maven_crm.toml)
    xes: an XES event log (.xes or .xes.gz) with --mapping of its activities

    Events go to the touches topic (or to --out as JSON lines; --dry-run writes
    nothing). Rows that cannot be mapped are listed with their line (or trace) and
    reason and counted, never dropped silently; so are events dated more than
    GEMBA_MAX_FUTURE_SKEW_S (a day) after the import runs (old data is welcome). Ids
    come from the source, so importing a file again adds nothing. Exits 1 if any row
    was refused, 2 on an error that stopped the import (unreadable file or mapping, no
    broker).
    """
    settings = settings_of(ctx)
    topic = topic or settings.touches_topic
    request = ImportRequest(kind, path, mapping, lookups)
    tally = ImportTally(keep=max(show, 0))
    bar: list[Callable[[int], None]] = []
    try:
        # The mapping and lookup files are read here, before any connection is made.
        items = import_file(request, on_bytes=lambda n: bar[0](n) if bar else None)
        if settings.future_limit is not None:
            items = refuse_future_dated(
                items, path.name, settings.future_limit, recorded_at=datetime.now(UTC)
            )
        with ExitStack() as stack:
            destination = _destination(stack, settings, out, dry_run, topic)
            bar.append(
                stack.enter_context(
                    byte_progress(path.stat().st_size, f"importing {path.name}", err)
                )
            )
            for item in items:
                tally.count(item)
                if isinstance(item, EventBase):
                    destination.publish(item)
            destination.flush()
    except ImporterError as exc:
        raise GembaError(str(exc)) from None
    where = (
        "(dry run: nothing written)"
        if dry_run
        else f"written to {out}"
        if out is not None
        else f"published to {topic}"
    )
    _summary(tally, where, show, dry_run)
    if tally.refused:
        sys.exit(EXIT_REFUSED)


def register(cli: click.Group) -> None:
    """Add `gemba import` to the command line."""
    cli.add_command(import_command)
