"""`gemba query`, `report`, `replay` and `audit`: the history archive, read-only, from the shell."""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson
from rich.console import Console

from streams.cli.terminal_text import (
    LiteralTable,
    literal,
    literal_lines,
    printable,
    printable_json,
)
from streams.errors import GembaError
from streams.settings import Settings

if TYPE_CHECKING:
    from events import EventBase
    from projections.archive import Connection, Replay, SqlReplay, ValueStreamReport
    from projections.policy.model import Policy

__all__ = ["audit", "parse_as_of", "query", "register", "replay", "report"]

T = TypeVar("T")
BUSY_POLL_S = 0.1


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.find_root().obj
    return settings


@contextmanager
def reading(settings: Settings) -> Iterator[Connection]:
    """The archive opened for reading (`open_reader`: read-only, no file system, no
    extensions, settings locked), waiting while the sink holds it for a batch."""
    from projections.archive import ArchiveBusy, HistoryError, open_reader

    deadline = time.monotonic() + settings.duckdb_busy_timeout_s
    while True:
        try:
            connection = open_reader(settings.history_db_path)
            break
        except ArchiveBusy:
            if time.monotonic() >= deadline:
                raise GembaError(
                    f"the archive {settings.history_db_path} stayed busy for "
                    f"{settings.duckdb_busy_timeout_s:.0f}s (the worker is writing a batch); "
                    "try again, or raise GEMBA_DUCKDB_BUSY_TIMEOUT_S"
                ) from None
            time.sleep(BUSY_POLL_S)
        except HistoryError as exc:
            raise GembaError(str(exc)) from None
    try:
        yield connection
    finally:
        connection.close()


def _guarded(work: Callable[[], T]) -> T:
    """Run archive work; its errors become one-line messages."""
    from projections.archive import HistoryError

    try:
        return work()
    except HistoryError as exc:
        raise GembaError(str(exc)) from None


def wide_console() -> Console:
    """Wide tables stay whole when the output is a file or a pipe (rich assumes 80 columns)."""
    return Console() if sys.stdout.isatty() else Console(width=220)


def _json_default(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _json(document: Any) -> str:
    """Pretty JSON, with nothing in it a terminal would act on (see printable_json)."""
    return printable_json(
        orjson.dumps(
            document,
            default=_json_default,
            option=orjson.OPT_INDENT_2 | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS,
        ).decode()
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


# --- query -----------------------------------------------------------------------------------


@click.command()
@click.argument("sql")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
    show_default=True, help="How to print the rows.",
)  # fmt: skip
@click.option(
    "--raw-csv", "raw_csv", is_flag=True,
    help="With --format csv: print every cell as it is. By default a text cell starting "
    "with = + - @, a tab or a CR gets a ' in front, so a spreadsheet shows it instead of "
    "running it.",
)  # fmt: skip
@click.pass_context
def query(ctx: click.Context, sql: str, fmt: str, raw_csv: bool) -> None:
    """Run one read-only SQL query on the history archive and print the rows.

    Tables: events, alerts, dead_letters, duplicates, offsets. Views: deal_value_streams,
    touches, stage_intervals, value_stream_by, pce_by, lead_time_distribution,
    lead_time_percentiles, waste_pareto, cumulative_flow, flow_by_month, stalled_deals.
    The archive is read-only here: writing statements are refused, and a query reads
    the archive's tables and views only (no other file, no extension, no SET).
    """
    from projections.archive import read_only_query

    if raw_csv and fmt != "csv":
        raise click.UsageError(f"--raw-csv applies to csv only (--format csv), not to {fmt}")
    with reading(_settings(ctx)) as connection:
        result = _guarded(lambda: read_only_query(connection, sql))
    if fmt == "json":
        click.echo(_json([dict(zip(result.columns, row, strict=True)) for row in result.rows]))
    elif fmt == "csv":
        _print_csv(result.columns, result.rows, raw=raw_csv)
    else:
        Console().print(_rows_table(result.columns, result.rows))
        click.echo(f"{len(result.rows):,} row(s)")


def _print_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, raw: bool) -> None:
    """Rows as CSV on stdout; unless `raw`, cells neutralised for spreadsheets."""
    from events.exporters import neutralise_row

    def cells(row: Iterable[Any]) -> list[Any]:
        return list(row) if raw else neutralise_row(row)

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(cells(columns))
    writer.writerows(cells("" if v is None else v for v in row) for row in rows)


def _rows_table(columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> LiteralTable:
    table = LiteralTable(*columns)
    for row in rows:
        table.add_row(*map(_cell, row))
    return table


# --- report ----------------------------------------------------------------------------------


def _minutes(value: Any) -> str:
    return "" if value is None else f"{float(value):,.0f}"


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value) * 100:.2f}%"


def _example(example: dict[str, Any]) -> str:
    what = example.get("event_id") or example.get("owner_id")
    return f"{example['deal_id']} ({what}, {example['stage']}): {_minutes(example['minutes'])} min"


def _report_tables(report: ValueStreamReport) -> list[Any]:
    overall = report.overall
    head = (
        f"Value stream as of {report.as_of:%Y-%m-%d %H:%M} UTC, policy "
        f"{', '.join(report.policy_versions)}: {overall.get('deals', 0):,} deals, "
        f"PCE {_pct(overall.get('pce'))} (value-added {_minutes(overall.get('value_added_min'))}"
        f" of {_minutes(overall.get('lead_time_min'))} lead-time minutes)"
        if report.as_of
        else "The archive holds no events yet."
    )
    stages = LiteralTable(
        "stage",
        "deals",
        "PCE",
        "lead time min",
        "VA min",
        "waste min",
        "wait min",
        title="Per stage",
        title_justify="left",
    )
    for row in report.stages:
        stages.add_row(
            str(row["value"]), f"{row['deals']:,}", _pct(row["pce"]),
            _minutes(row["lead_time_min"]), _minutes(row["value_added_min"]),
            _minutes(row["waste_min"]), _minutes(row["wait_min"]),
        )  # fmt: skip
    wastes = LiteralTable(
        "waste",
        "measured as",
        "minutes",
        "share",
        "examples",
        title="Top wastes (minutes lost)",
        title_justify="left",
    )
    for line in report.wastes:
        wastes.add_row(
            str(line["category"]).replace("_", "-"), str(line["measured_as"]),
            _minutes(line["minutes"]), _pct(line["share"]),
            literal_lines(_example(example) for example in line["examples"]),
        )  # fmt: skip
    stalled = LiteralTable(
        "deal",
        "owner",
        "stage",
        "silent days",
        "threshold days",
        title="Stalled deals",
        title_justify="left",
    )
    for row in report.stalled:
        stalled.add_row(
            str(row["deal_id"]), str(row["owner_id"]), str(row["stage"]),
            f"{row['silent_days']:.1f}", f"{row['threshold_days']:.1f}",
        )  # fmt: skip
    days = report.period.days
    changes = LiteralTable(
        "figure",
        f"previous {days} d",
        f"last {days} d",
        "change",
        title="What changed since the previous period",
        title_justify="left",
    )
    for change in report.changes:
        delta = (
            _cell(change.current - change.previous)
            if change.current is not None and change.previous is not None
            else ""
        )
        changes.add_row(
            change.metric.replace("_", " "), _cell(change.previous), _cell(change.current), delta
        )
    return [literal(head), stages, wastes, stalled, changes]


@click.command()
@click.option("--period-days", default=30, show_default=True, help="Length of a period.")
@click.option("--top", default=5, show_default=True, help="Wastes and stalled deals to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def report(ctx: click.Context, period_days: int, top: int, as_json: bool) -> None:
    """The value-stream summary: PCE overall and per stage, top wastes with examples,
    stalled deals, and what changed since the previous period."""
    from projections.archive import value_stream_report

    period = timedelta(days=period_days)
    with reading(_settings(ctx)) as connection:
        summary = _guarded(lambda: value_stream_report(connection, period, top))
    if as_json:
        click.echo(_json(asdict(summary)))
        return
    console = Console()
    for part in _report_tables(summary):
        console.print(part)


# --- replay ----------------------------------------------------------------------------------


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


def _policy(path: Path | None, settings: Settings) -> Policy:
    from projections.errors import PolicyError
    from projections.policy.model import default_policy, load_policy

    chosen = path or settings.policy_file
    try:
        return load_policy(chosen) if chosen else default_policy()
    except PolicyError as exc:
        raise GembaError(str(exc)) from None


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


def _log(settings: Settings, source: str) -> list[tuple[EventBase, datetime]]:
    """The events with their recorded_at: from the archive, or from the topic at offset 0."""
    from projections.archive import archived_events

    if source == "kafka":
        return _kafka_log(settings)
    with reading(settings) as connection:
        return _guarded(lambda: archived_events(connection))


def _replay_summary(replayed: Replay | SqlReplay, source: str, engine: str) -> dict[str, Any]:
    totals = replayed.totals
    return {
        "source": source,
        "engine": engine,
        "as_of": replayed.as_of.isoformat() if replayed.as_of else None,
        "policy_version": replayed.policy_version,
        "events_read": replayed.events_read,
        "events_known": replayed.events_known,
        "deals": replayed.deals,
        "deals_by_status": replayed.deals_by_status,
        "pce": totals.process_cycle_efficiency,
        "minutes": {
            "lead_time": totals.lead_time.total_seconds() / 60,
            "value_added": totals.value_added.total_seconds() / 60,
            "necessary_non_value_added": totals.necessary_non_value_added.total_seconds() / 60,
            "waste": totals.waste.total.total_seconds() / 60,
            "wait": totals.wait.total_seconds() / 60,
        },
        "content_hash": f"sha256:{replayed.content_hash}",
    }


def _echo(line: str) -> None:
    """One line of a summary, its text shown literally (see printable)."""
    click.echo(printable(line))


def _print_summary(summary: dict[str, Any]) -> None:
    known = (
        f" ({summary['events_known']:,} known as of {summary['as_of']})" if summary["as_of"] else ""
    )
    minutes = summary["minutes"]
    statuses = ", ".join(f"{k} {v:,}" for k, v in summary["deals_by_status"].items())
    _echo(
        f"replayed {summary['events_read']:,} events from {summary['source']}{known} "
        f"under policy {summary['policy_version']} ({summary['engine']} fold)"
    )
    _echo(f"deals: {summary['deals']:,} ({statuses}); PCE {_pct(summary['pce'])}")
    _echo(
        "minutes: " + ", ".join(f"{k.replace('_', ' ')} {_minutes(v)}" for k, v in minutes.items())
    )
    _echo(f"content hash: {summary['content_hash']}")


def _print_diff(
    base: Replay | SqlReplay, other: Replay | SqlReplay, differences: list[Any], top: int
) -> None:
    _echo(
        f"{len(differences):,} of {base.deals:,} deals change from policy "
        f"{base.policy_version} to {other.policy_version}"
    )
    console = Console()
    for table in _diff_tables(base, other, differences, top):
        console.print(table)


def _diff_tables(
    base: Replay | SqlReplay, other: Replay | SqlReplay, differences: list[Any], top: int
) -> list[LiteralTable]:
    """All deals' figures under both policies, then the deals that change most."""
    table = LiteralTable(
        "figure", base.policy_version, other.policy_version, title="All deals", title_justify="left"
    )
    figures_before = _figure_row(base.totals)
    for name, value in _figure_row(other.totals).items():
        table.add_row(name, _cell(figures_before[name]), _cell(value))
    ranked = sorted(differences, key=lambda d: -abs(_change(d, "waste")))[:top]
    deals = LiteralTable(
        "deal",
        "figure: before -> after",
        "touches reclassified",
        title=f"Deals that change most (top {top})",
        title_justify="left",
    )
    for difference in ranked:
        lines = [
            f"{name}: {_cell(old)} -> {_cell(new)}"
            for name, (old, new) in sorted(difference.figures.items())
        ]
        reclassified = str(difference.touches_reclassified)
        deals.add_row(difference.deal_id, literal_lines(lines), reclassified)
    return [table, deals]


def _figure_row(totals: Any) -> dict[str, Any]:
    return {
        "PCE": totals.process_cycle_efficiency,
        "value-added min": totals.value_added.total_seconds() / 60,
        "overhead (NNVA) min": totals.necessary_non_value_added.total_seconds() / 60,
        "waste min": totals.waste.total.total_seconds() / 60,
        "wait min": totals.wait.total_seconds() / 60,
        "rework": totals.rework,
    }


def _change(difference: Any, name: str) -> float:
    old, new = difference.figures.get(name, (0.0, 0.0))
    return float(new or 0.0) - float(old or 0.0)


@click.command()
@click.option(
    "--as-of",
    "as_of",
    default=None,
    help="Only events that occurred and were "
    "recorded by then (ISO date or time; UTC without an offset).",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Policy TOML (default: GEMBA_POLICY_FILE or the shipped one).",
)
@click.option(
    "--from",
    "source",
    type=click.Choice(["duckdb", "kafka"]),
    default="duckdb",
    show_default=True,
    help="Replay the archive, or the touches topic from offset 0.",
)
@click.option(
    "--diff",
    "other_policy",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also replay under this policy and show what changes.",
)
@click.option("--top", default=20, show_default=True, help="Deals to list with --diff.")
@click.option(
    "--engine",
    type=click.Choice(["sql", "python"]),
    default=None,
    help="sql: the whole fold vectorised in DuckDB (the default with --from duckdb); "
    "python: deal by deal, the streaming worker's own fold (the only one with --from kafka). "
    "Both give the same content hash.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def replay(
    ctx: click.Context, as_of: str | None, policy_file: Path | None, source: str,
    other_policy: Path | None, top: int, engine: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Rebuild every deal's value stream from the log, as the world looked at a time.

    Prints a summary and the content hash of the rebuilt value streams: the same
    events and policy give the same hash on any machine, and equal the worker's.
    """
    settings = _settings(ctx)
    moment = parse_as_of(as_of)
    rules = _policy(policy_file, settings)
    other_rules = _policy(other_policy, settings) if other_policy else None
    engine = engine or ("sql" if source == "duckdb" else "python")
    if engine == "sql" and source == "kafka":
        raise GembaError(
            "the sql fold reads the DuckDB archive: use --from duckdb, or --engine python "
            "to replay the topic"
        )
    if engine == "sql":
        _replay_in_sql(settings, rules, other_rules, moment, top, as_json)
        return
    _replay_in_python(settings, source, rules, other_rules, moment, top, as_json)


def _replay_in_sql(
    settings: Settings, rules: Policy, other_rules: Policy | None, moment: datetime | None,
    top: int, as_json: bool,
) -> None:  # fmt: skip
    from projections.archive import sql_replay, sql_replay_diff

    with reading(settings) as connection:
        base = _guarded(lambda: sql_replay(connection, rules, moment, prefix="rp_"))
        summary = _replay_summary(base, "duckdb", "sql")
        if other_rules is None:
            click.echo(_json(summary)) if as_json else _print_summary(summary)
            return
        other = _guarded(lambda: sql_replay(connection, other_rules, moment, prefix="rq_"))
        differences = _guarded(lambda: sql_replay_diff(connection, base, other))
    _show_diff(summary, base, other, differences, "duckdb", "sql", top, as_json)


def _replay_in_python(
    settings: Settings, source: str, rules: Policy, other_rules: Policy | None,
    moment: datetime | None, top: int, as_json: bool,
) -> None:  # fmt: skip
    from projections.archive import replay as fold_log
    from projections.archive import replay_diff

    records = _log(settings, source)
    base = _guarded(lambda: fold_log(records, rules, moment))
    summary = _replay_summary(base, source, "python")
    if other_rules is None:
        click.echo(_json(summary)) if as_json else _print_summary(summary)
        return
    other = _guarded(lambda: fold_log(records, other_rules, moment))
    _show_diff(summary, base, other, replay_diff(base, other), source, "python", top, as_json)


def _show_diff(
    summary: dict[str, Any], base: Replay | SqlReplay, other: Replay | SqlReplay,
    differences: list[Any], source: str, engine: str, top: int, as_json: bool,
) -> None:  # fmt: skip
    if as_json:
        other_summary = _replay_summary(other, source, engine)
        deals = [asdict(difference) for difference in differences]
        click.echo(_json({"base": summary, "other": other_summary, "deals": deals}))
        return
    _print_summary(summary)
    _print_diff(base, other, differences, top)


# --- audit -----------------------------------------------------------------------------------


@click.group()
def audit() -> None:
    """Check the archive's hash chain, or export it with a manifest of hashes."""


@audit.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Recompute the hash chain of every partition; name any event changed, removed,
    inserted or reordered. Exits 1 if anything is wrong."""
    from projections.archive import verify_archive

    with reading(_settings(ctx)) as connection:
        outcome = _guarded(lambda: verify_archive(connection))
    for finding in outcome.findings:
        _echo(str(finding))
    verdict = "intact" if outcome.intact else f"{len(outcome.findings)} problem(s)"
    click.echo(
        f"verified {outcome.events:,} events in {outcome.partitions} partition chain(s): {verdict}"
    )
    if not outcome.intact:
        sys.exit(1)


@audit.command("export")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.pass_context
def audit_export(ctx: click.Context, directory: Path) -> None:
    """Write the events and value streams as Parquet to DIRECTORY, with manifest.json."""
    from projections.archive import export_archive

    with reading(_settings(ctx)) as connection:
        manifest = _guarded(lambda: export_archive(connection, directory))
    for name, entry in manifest["files"].items():
        click.echo(f"{name}: {entry['rows']:,} rows, sha256:{entry['sha256']}")
    click.echo(f"value streams content hash: sha256:{manifest['value_streams']['content_hash']}")
    click.echo(f"manifest: {directory / 'manifest.json'}")


def register(cli: click.Group) -> None:
    """Add `gemba query`, `report`, `replay` and `audit` to the command line."""
    for command in (query, report, replay, audit):
        cli.add_command(command)
