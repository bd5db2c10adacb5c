"""`gemba campaigns`: what each campaign really produced, under each credit model."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click

from streams.cli.common import (
    command_policy,
    event_log,
    guarded,
    json_text,
    parse_as_of,
    percent,
    settings_of,
    wide_console,
)
from streams.cli.terminal_text import LiteralTable, printable
from streams.errors import GembaError
from streams.reports.campaigns import (
    MODELS,
    comparison_document,
    flow_document,
    not_opened_document,
    row_document,
)

__all__ = ["campaigns", "load_costs", "register"]


def load_costs(path: Path) -> dict[str, Decimal]:
    """Campaign costs from a CSV file with the columns `campaign_id` and `cost` (others ignored)."""
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise GembaError(f"cannot read the costs file {path}: {exc.strerror}") from None
    costs: dict[str, Decimal] = {}
    for line, row in enumerate(rows, start=2):
        campaign_id, cost = (row.get("campaign_id") or "").strip(), (row.get("cost") or "").strip()
        if not campaign_id or not cost:
            raise GembaError(
                f"{path}:{line}: each row needs a campaign_id and a cost "
                "(header: campaign_id,cost[,name])"
            )
        try:
            amount = Decimal(cost)
        except InvalidOperation:
            raise GembaError(f"{path}:{line}: cost {cost!r} is not a number") from None
        if not amount.is_finite() or amount < 0:
            raise GembaError(f"{path}:{line}: cost {cost!r} must be zero or more")
        costs[campaign_id] = amount.quantize(Decimal("0.01"))
    return costs


def _money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _days(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _echo_not_opened(not_opened: Mapping[str, int], shown: int = 20) -> None:
    if not not_opened:
        return
    listed = ", ".join(
        f"{deal_id} ({count:,} event{'s' if count != 1 else ''})"
        for deal_id, count in sorted(not_opened.items())[:shown]
    )
    more = f", and {len(not_opened) - shown:,} more" if len(not_opened) > shown else ""
    click.echo(
        printable(
            f"{len(not_opened):,} deal(s) not opened (events but no deal_opened), so on no "
            f"journey: {listed}{more}. Send their deal_opened events to count them "
            "(--json lists all)."
        )
    )


def _campaign_table(rows: Any, model: str, head: str) -> LiteralTable:
    table = LiteralTable(
        "campaign", "responses", "accounts", "deals", "won", "stalled", "pipeline",
        f"revenue ({model})", "cost", "ROI", "days to win", "PCE", "waste",
        title=head,
    )  # fmt: skip
    for row in rows:
        table.add_row(
            row.campaign_id, f"{row.responses:,}", f"{row.accounts_reached:,}",
            f"{row.deals_influenced:,}", f"{row.deals_won:,}", f"{row.deals_stalled:,}",
            _money(row.pipeline), _money(row.revenue), _money(row.cost),
            percent(row.roi), _days(row.median_days_to_win),
            percent(row.process_cycle_efficiency), percent(row.waste_share),
        )  # fmt: skip
    return table


def _comparison_table(comparisons: Any) -> LiteralTable:
    table = LiteralTable("campaign", *MODELS, "finding", title="Credit (and rank) under each model")
    for each in comparisons:
        cells = [
            f"{_money(each.credits.get(model))} (#{each.ranks.get(model, '-')})" for model in MODELS
        ]
        table.add_row(each.campaign_id, *cells, "; ".join(each.findings) or "-")
    return table


def _print_comparison(comparisons: Any) -> None:
    wide_console().print(_comparison_table(comparisons))
    flagged = [each.campaign_id for each in comparisons if each.flagged]
    if flagged:
        click.echo(
            printable(
                f"{len(flagged)} campaign(s) whose credit depends on the model: "
                f"{', '.join(flagged)}. Treat their credit as a finding to investigate, not a fact."
            )
        )


def _flow_table(links: Any) -> LiteralTable:
    table = LiteralTable("from", "to", "deals", "value", title="Campaign flow (Sankey links)")
    for link in links:
        table.add_row(
            f"{link.source.layer}: {link.source.name}", f"{link.target.layer}: {link.target.name}",
            f"{link.deals:,}", _money(link.value),
        )  # fmt: skip
    return table


@click.command()
@click.option(
    "--model", type=click.Choice(MODELS), default="linear", show_default=True,
    help="How a won deal's revenue is credited to the campaigns on its journey.",
)  # fmt: skip
@click.option("--as-of", "as_of", help="Only what had happened and was recorded by then.")
@click.option(
    "--compare", is_flag=True, help="Every model side by side; flag campaigns whose rank moves."
)
@click.option("--flow", is_flag=True, help="Sankey links: campaign, stages reached, outcome.")
@click.option(
    "--costs", type=click.Path(path_type=Path, dir_okay=False),
    help="CSV of campaign costs (campaign_id,cost[,name]); gives ROI.",
)  # fmt: skip
@click.option(
    "--policy", "policy_file", type=click.Path(path_type=Path, dir_okay=False),
    help="Policy file (lookback window, time-decay half-life); default: the settings' policy.",
)  # fmt: skip
@click.option(
    "--from", "source", type=click.Choice(["duckdb", "kafka"]), default="duckdb",
    show_default=True, help="Read the history archive, or the touches topic from offset 0.",
)  # fmt: skip
@click.option("--rank-shift", default=3, show_default=True, help="Rank change that is flagged.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def campaigns(
    ctx: click.Context, model: str, as_of: str | None, compare: bool, flow: bool,
    costs: Path | None, policy_file: Path | None, source: str, rank_shift: int, as_json: bool,
) -> None:  # fmt: skip
    """What each campaign produced: reach, deals, pipeline, credited revenue, ROI, value stream.

    Responses are linked to deals through their account, within the policy's
    lookback window before the deal opened and up to its close. Credit models:
    first_touch, last_touch, linear, u_shaped, w_shaped, full_path, time_decay,
    and the data-driven markov (removal effect) and shapley, fitted over every
    closed deal. With --compare, campaigns whose credit depends on the model are
    flagged. With --flow, the Sankey links from campaigns through stages to outcome.
    """
    from projections.campaigns.history import campaign_history

    settings = settings_of(ctx)
    policy = command_policy(settings, policy_file)
    moment = parse_as_of(as_of)
    spend = load_costs(costs) if costs else {}
    history = guarded(lambda: campaign_history(event_log(settings, source), policy, moment))
    when = "all history" if moment is None else f"as of {moment.isoformat()}"
    head = (
        f"Campaigns, {when}, policy {policy.version}: {len(history.journeys):,} deals, "
        f"{len(history.responses):,} responses, {len(history.not_opened):,} not opened ({source})"
    )
    if compare:
        comparisons = history.compare(rank_shift)
        if as_json:
            click.echo(json_text([comparison_document(each) for each in comparisons]))
        else:
            click.echo(printable(head))
            _print_comparison(comparisons)
            _echo_not_opened(history.not_opened)
        return
    if flow:
        links = history.flow()
        if as_json:
            click.echo(json_text(flow_document(links)))
        else:
            click.echo(printable(head))
            wide_console().print(_flow_table(links))
            _echo_not_opened(history.not_opened)
        return
    rows = history.table(model, spend)
    if as_json:
        click.echo(
            json_text(
                {
                    "policy_version": policy.version,
                    "as_of": moment,
                    "model": model,
                    "campaigns": [row_document(row) for row in rows],
                    "not_opened": not_opened_document(history.not_opened),
                }
            )
        )
        return
    wide_console().print(_campaign_table(rows, model, head))
    unattributed = sum(
        (j.deal.revenue or Decimal(0) for j in history.journeys if j.deal.revenue and not j.path),
        Decimal(0),
    )
    click.echo(
        f"Won revenue with no campaign on its journey (unattributed): {_money(unattributed)}"
    )
    _echo_not_opened(history.not_opened)


def register(cli: click.Group) -> None:
    """Add `gemba campaigns` to the command line."""
    cli.add_command(campaigns)
