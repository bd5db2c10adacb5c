"""Flow over time: the cumulative flow per stage per day, and throughput, WIP and lead time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from projections.archive.connection import Connection
from projections.archive.dashboard.filters import column_values
from projections.archive.opening import records

__all__ = ["FlowOverTime", "flow_over_time"]


@dataclass(frozen=True, slots=True)
class FlowOverTime:
    """The cumulative flow (deals per stage per day) and throughput, WIP and lead time by month.

    `stages` lists the open stages in flow order, then the closed states.
    """

    days: tuple[str, ...]
    stages: tuple[str, ...]
    deals: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    months: tuple[Mapping[str, Any], ...] = ()


def flow_over_time(connection: Connection) -> FlowOverTime:
    """The `cumulative_flow` view as one series per stage, and the `flow_by_month` view."""
    rows = connection.execute(
        "SELECT strftime(day, '%Y-%m-%d'), stage, deals FROM cumulative_flow"
    ).fetchall()
    days = tuple(
        map(
            str,
            column_values(connection, "SELECT strftime(day, '%Y-%m-%d') FROM flow_days ORDER BY 1"),
        )
    )
    order = column_values(
        connection,
        "SELECT stage FROM (SELECT stage, min(stage_rank) AS r FROM vs_stages GROUP BY stage) "
        "ORDER BY r NULLS LAST, stage",
    )
    seen = {str(stage) for _, stage, _ in rows}
    stages = [str(s) for s in order if str(s) in seen]
    stages += sorted(seen - set(stages))
    index = {day: position for position, day in enumerate(days)}
    series = {stage: [0] * len(days) for stage in stages}
    for day, stage, deals in rows:
        series[str(stage)][index[str(day)]] = int(deals)
    months = records(connection, "SELECT * FROM flow_by_month ORDER BY month")
    return FlowOverTime(
        days, tuple(stages), {stage: tuple(v) for stage, v in series.items()}, tuple(months)
    )
