"""`gemba query`, `report`, `replay` and `audit`: the history archive, read-only, from the shell."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from streams.archive_access import reading
from streams.cli.common import (
    cell,
    command_policy,
    event_log,
    guarded,
    json_text,
    parse_as_of,
    percent,
    settings_of,
)
from streams.cli.terminal_text import LiteralTable, literal, literal_lines, printable
from streams.errors import GembaError
from streams.settings import Settings

if TYPE_CHECKING:
    from projections.archive import Replay, SqlReplay, ValueStreamReport
    from projections.policy.model import Policy

__all__ = ["audit", "query", "register", "replay", "report"]


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
    with reading(settings_of(ctx)) as connection:
        result = guarded(lambda: read_only_query(connection, sql))
    if fmt == "json":
        click.echo(json_text([dict(zip(result.columns, row, strict=True)) for row in result.rows]))
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
        table.add_row(*map(cell, row))
    return table


# --- report ----------------------------------------------------------------------------------


def _minutes(value: Any) -> str:
    return "" if value is None else f"{float(value):,.0f}"


def _example(example: dict[str, Any]) -> str:
    what = example.get("event_id") or example.get("owner_id")
    return f"{example['deal_id']} ({what}, {example['stage']}): {_minutes(example['minutes'])} min"


def _report_tables(report: ValueStreamReport) -> list[Any]:
    overall = report.overall
    head = (
        f"Value stream as of {report.as_of:%Y-%m-%d %H:%M} UTC, policy "
        f"{', '.join(report.policy_versions)}: {overall.get('deals', 0):,} deals, "
        f"PCE {percent(overall.get('pce'))} (value-added {_minutes(overall.get('value_added_min'))}"
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
            str(row["value"]), f"{row['deals']:,}", percent(row["pce"]),
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
            _minutes(line["minutes"]), percent(line["share"]),
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
            cell(change.current - change.previous)
            if change.current is not None and change.previous is not None
            else ""
        )
        changes.add_row(
            change.metric.replace("_", " "), cell(change.previous), cell(change.current), delta
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
    with reading(settings_of(ctx)) as connection:
        summary = guarded(lambda: value_stream_report(connection, period, top))
    if as_json:
        click.echo(json_text(asdict(summary)))
        return
    console = Console()
    for part in _report_tables(summary):
        console.print(part)


# --- replay ----------------------------------------------------------------------------------


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
    _echo(f"deals: {summary['deals']:,} ({statuses}); PCE {percent(summary['pce'])}")
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
        table.add_row(name, cell(figures_before[name]), cell(value))
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
            f"{name}: {cell(old)} -> {cell(new)}"
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
    settings = settings_of(ctx)
    moment = parse_as_of(as_of)
    rules = command_policy(settings, policy_file)
    other_rules = command_policy(settings, other_policy) if other_policy else None
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
        base = guarded(lambda: sql_replay(connection, rules, moment, prefix="rp_"))
        summary = _replay_summary(base, "duckdb", "sql")
        if other_rules is None:
            click.echo(json_text(summary)) if as_json else _print_summary(summary)
            return
        other = guarded(lambda: sql_replay(connection, other_rules, moment, prefix="rq_"))
        differences = guarded(lambda: sql_replay_diff(connection, base, other))
    _show_diff(summary, base, other, differences, "duckdb", "sql", top, as_json)


def _replay_in_python(
    settings: Settings, source: str, rules: Policy, other_rules: Policy | None,
    moment: datetime | None, top: int, as_json: bool,
) -> None:  # fmt: skip
    from projections.archive import replay as fold_log
    from projections.archive import replay_diff

    records = event_log(settings, source)
    base = guarded(lambda: fold_log(records, rules, moment))
    summary = _replay_summary(base, source, "python")
    if other_rules is None:
        click.echo(json_text(summary)) if as_json else _print_summary(summary)
        return
    other = guarded(lambda: fold_log(records, other_rules, moment))
    _show_diff(summary, base, other, replay_diff(base, other), source, "python", top, as_json)


def _show_diff(
    summary: dict[str, Any], base: Replay | SqlReplay, other: Replay | SqlReplay,
    differences: list[Any], source: str, engine: str, top: int, as_json: bool,
) -> None:  # fmt: skip
    if as_json:
        other_summary = _replay_summary(other, source, engine)
        deals = [asdict(difference) for difference in differences]
        click.echo(json_text({"base": summary, "other": other_summary, "deals": deals}))
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

    with reading(settings_of(ctx)) as connection:
        outcome = guarded(lambda: verify_archive(connection))
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

    with reading(settings_of(ctx)) as connection:
        manifest = guarded(lambda: export_archive(connection, directory))
    for name, entry in manifest["files"].items():
        click.echo(f"{name}: {entry['rows']:,} rows, sha256:{entry['sha256']}")
    click.echo(f"value streams content hash: sha256:{manifest['value_streams']['content_hash']}")
    click.echo(f"manifest: {directory / 'manifest.json'}")


def register(cli: click.Group) -> None:
    """Add `gemba query`, `report`, `replay` and `audit` to the command line."""
    for command in (query, report, replay, audit):
        cli.add_command(command)
