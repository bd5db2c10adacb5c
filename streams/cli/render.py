"""Text value-stream maps for the terminal: one deal's touches and gaps, then its totals."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from rich.console import Group, RenderableType
from rich.text import Text

from projections.categories import TouchClass
from projections.deal.totals import Totals
from projections.deal.touches import Touch
from projections.deal.value_stream import DealValueStream
from projections.portfolio.rollup import totals_from_vector
from streams.cli.terminal_text import LiteralTable, literal

__all__ = ["deal_timeline", "minutes", "rollup_table"]

STYLE = {
    TouchClass.VALUE_ADDED: "green",
    TouchClass.NECESSARY_NON_VALUE_ADDED: "yellow",
    TouchClass.WASTE: "red",
}
LABEL = {
    TouchClass.VALUE_ADDED: "value-added",
    TouchClass.NECESSARY_NON_VALUE_ADDED: "overhead (NNVA)",
    TouchClass.WASTE: "waste",
}


def minutes(span: timedelta) -> str:
    """A duration in whole minutes, with thousands separators."""
    return f"{span.total_seconds() / 60:,.0f}"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def _what(touch: Touch) -> str:
    detail = touch.meeting_kind or touch.outcome
    parts = [touch.direction.value, touch.kind, str(detail.value) if detail else ""]
    return " ".join(part for part in parts if part)


def _class_text(touch: Touch) -> Text:
    if touch.touch_class is None:
        return literal("ball in our court", style="cyan")
    label = LABEL[touch.touch_class]
    if touch.waste is not None:
        label = f"{label} ({touch.waste.value.replace('_', '-')})"
    return literal(label, style=STYLE[touch.touch_class])


def _timeline(stream: DealValueStream) -> LiteralTable:
    table = LiteralTable(title=f"Deal {stream.deal_id}: touches and gaps", title_justify="left")
    for column in ("when", "stage", "what", "class", "minutes"):
        table.add_column(column, justify="right" if column == "minutes" else "left")
    cursor = stream.opened_at
    for touch in sorted(stream.touches, key=lambda t: (t.started_at, t.event_id)):
        _gap(table, cursor, touch.started_at)
        table.add_row(_when(touch.started_at), touch.stage, _what(touch), _class_text(touch),
                      minutes(touch.process_time))  # fmt: skip
        cursor = max(cursor, touch.ended_at)
    _gap(table, cursor, stream.closed_at or stream.as_of)
    return table


def _gap(table: LiteralTable, start: datetime, end: datetime) -> None:
    if end > start:
        dim = "dim"
        table.add_row("", "", literal("... no one working on it", dim), literal("wait", dim),
                      literal(minutes(end - start), dim))  # fmt: skip


def _pce(totals: Totals) -> str:
    pce = totals.process_cycle_efficiency
    return "-" if pce is None else f"{pce:.2%}"


def _totals(stream: DealValueStream) -> LiteralTable:
    table = LiteralTable(title="Where the time went (minutes)", title_justify="left")
    for column in ("stage", "lead", "VA", "NNVA", "waste", "wait", "of which on us", "PCE"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    rows = [(each.stage, each.totals) for each in stream.stages] + [("deal", stream.totals)]
    for name, totals in rows:
        table.add_row(
            name, minutes(totals.lead_time), minutes(totals.value_added),
            minutes(totals.necessary_non_value_added), minutes(totals.waste.total),
            minutes(totals.wait), minutes(totals.waiting_on_us), _pce(totals),
            style="bold" if name == "deal" else None,
        )  # fmt: skip
    return table


def deal_timeline(stream: DealValueStream) -> RenderableType:
    """The whole text value-stream map of one deal."""
    closed = f", closed {_when(stream.closed_at)}" if stream.closed_at else ""
    header = Text.assemble(
        literal(stream.deal_id, "bold"),
        literal(
            f"  {stream.status.value} in {stream.stage}, owner {stream.owner_id}, opened "
            f"{_when(stream.opened_at)}{closed}; as of {_when(stream.as_of)}; "
            f"rework {stream.totals.rework}; policy {stream.policy_version}"
        ),
    )
    return Group(header, _timeline(stream), _totals(stream))


def rollup_table(
    dimension: str,
    month: str | None,
    rows: dict[str, dict[str, int]],
    flow_order: Sequence[str] = (),
) -> LiteralTable:
    """Roll-up totals per value of a dimension, in minutes, with PCE; stages in flow order."""
    title = f"Value stream by {dimension}" + (f", {month}" if month else "") + " (minutes)"
    table = LiteralTable(title=title, title_justify="left")
    for column in (dimension, "deals", "lead", "VA", "NNVA", "waste", "wait", "rework", "PCE"):
        table.add_column(column, justify="left" if column == dimension else "right")

    def position(item: tuple[str, dict[str, int]]) -> tuple[int, str]:
        value, _, bucket = item[0].rpartition("|")  # the value may hold a "|", the month not
        rank = flow_order.index(value) if value in flow_order else len(flow_order)
        return (rank, f"{bucket}|{value}")

    for name, flat in sorted(rows.items(), key=position):
        totals = totals_from_vector(flat)
        table.add_row(
            "  ".join(name.rpartition("|")[::2]), f"{totals.deals:,}", minutes(totals.lead_time),
            minutes(totals.value_added), minutes(totals.necessary_non_value_added),
            minutes(totals.waste.total), minutes(totals.wait), f"{totals.rework:,}", _pce(totals),
        )  # fmt: skip
    return table
