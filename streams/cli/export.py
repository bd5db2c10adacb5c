"""`gemba export`: the archived event log out as XES, OCEL 2.0, Parquet or CSV."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import IO, cast

import click

from streams.archive_access import reading
from streams.cli.common import guarded, parse_as_of, settings_of
from streams.settings import Settings

__all__ = ["export", "register"]

FORMATS = ("xes", "ocel", "parquet", "csv")


def _archived(settings: Settings, as_of: datetime | None) -> list[tuple[object, datetime]]:
    from projections.archive import archived_events

    with reading(settings) as connection:
        return guarded(lambda: list(archived_events(connection, as_of)))


@click.command()
@click.argument("fmt", metavar="FORMAT", type=click.Choice(FORMATS))
@click.option(
    "--out", required=True, type=click.Path(path_type=Path, dir_okay=False),
    help="File to write (.xes.gz is compressed).",
)  # fmt: skip
@click.option(
    "--as-of", "as_of", default=None,
    help="Only events that occurred and were recorded by then (ISO; UTC without an offset).",
)  # fmt: skip
@click.option(
    "--raw-csv", "raw_csv", is_flag=True,
    help="csv: write every cell as it is. By default a text cell starting with = + - @, "
    "a tab or a CR gets a ' in front, so a spreadsheet shows it instead of running it.",
)  # fmt: skip
@click.pass_context
def export(ctx: click.Context, fmt: str, out: Path, as_of: str | None, raw_csv: bool) -> None:
    """Write the archived event log as FORMAT: xes, ocel (OCEL 2.0 JSON), parquet or csv.

    \b
    xes:     one trace per deal (deal-less events: one per account), activity names such
             as `call connected` or `stage Proposal`, times with their own UTC offsets;
             each event also carries itself whole, so `gemba import xes` reads it back
    ocel:    events related to deals, accounts, reps, contacts and campaigns
    parquet, csv: one row per event, with its payload as JSON; csv cells that a
             spreadsheet would run as formulas start with ' (unless --raw-csv)

    Reads the history archive (GEMBA_DUCKDB_PATH) read-only.
    """
    if raw_csv and fmt != "csv":
        raise click.UsageError(f"--raw-csv applies to csv only, not to {fmt}")
    import gzip

    from events import EventBase
    from events.exporters import write_csv, write_ocel, write_parquet, write_xes

    records = [
        (event, recorded_at)
        for event, recorded_at in _archived(settings_of(ctx), parse_as_of(as_of))
        if isinstance(event, EventBase)
    ]
    events = [event for event, _ in records]
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        rows = write_parquet(records, out)
        click.echo(f"wrote {rows:,} event(s) to {out}")
        return
    opener = gzip.open if out.suffix == ".gz" else open
    with opener(out, "wb") as opened:
        sink = cast(IO[bytes], opened)
        if fmt == "xes":
            cases, written = write_xes(events, sink)
            message = f"wrote {cases:,} trace(s), {written:,} event(s) to {out}"
        elif fmt == "ocel":
            objects, written = write_ocel(events, sink)
            message = f"wrote {written:,} event(s), {objects:,} object(s) to {out}"
        else:
            written = write_csv(records, sink, raw=raw_csv)
            message = f"wrote {written:,} event(s) to {out}"
    click.echo(message)


def register(cli: click.Group) -> None:
    """Add `gemba export` to the command line."""
    cli.add_command(export)
