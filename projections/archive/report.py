"""The value-stream report: what a sales leader reads, from the archive's tables and views."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from projections.archive.connection import Connection
from projections.archive.opening import records, scalar
from projections.archive.schema import DAY, MINUTE

__all__ = ["ReportChange", "ValueStreamReport", "value_stream_report"]


@dataclass(frozen=True, slots=True)
class ReportChange:
    """One figure in the previous period and in the current one."""

    metric: str
    previous: float | None
    current: float | None


@dataclass(frozen=True)
class ValueStreamReport:
    """What a sales leader reads: PCE overall and per stage, top wastes, stalls, changes."""

    as_of: datetime | None
    policy_versions: tuple[str, ...]
    overall: Mapping[str, Any]
    stages: Sequence[Mapping[str, Any]]
    wastes: Sequence[Mapping[str, Any]]
    stalled: Sequence[Mapping[str, Any]]
    period: timedelta
    changes: list[ReportChange]


def _waste_examples(
    connection: Connection, line: Mapping[str, Any], count: int
) -> list[dict[str, Any]]:
    if line["measured_as"] == "wait":
        column = f"{line['category']}_us"
        return records(
            connection,
            f"SELECT deal_id, owner_id, stage, {column} / {MINUTE} AS minutes FROM vs_deals "
            f"WHERE {column} > 0 ORDER BY {column} DESC, deal_id LIMIT {int(count)}",
        )
    return records(
        connection,
        "SELECT deal_id, event_id, kind, stage, minutes FROM touches WHERE waste = $waste "
        f"ORDER BY minutes DESC, event_id LIMIT {int(count)}",
        {"waste": line["category"]},
    )


_PERIOD_DEALS = f"""
    SELECT count(*) FILTER (WHERE opened_at > $lo AND opened_at <= $hi) AS deals_opened,
           count(*) FILTER (WHERE status = 'won' AND closed_at > $lo AND closed_at <= $hi)
               AS deals_won,
           count(*) FILTER (WHERE status = 'lost' AND closed_at > $lo AND closed_at <= $hi)
               AS deals_lost,
           median(lead_time_us) FILTER (WHERE closed_at > $lo AND closed_at <= $hi) / {DAY}
               AS median_lead_time_days_of_closed_deals,
           sum(value_added_us) FILTER (WHERE closed_at > $lo AND closed_at <= $hi)
               / nullif(sum(lead_time_us) FILTER (WHERE closed_at > $lo AND closed_at <= $hi), 0)
               AS pce_of_closed_deals
    FROM vs_deals"""
_PERIOD_TOUCHES = f"""
    SELECT sum(process_us) FILTER (WHERE touch_class = 'value_added') / {MINUTE}
               AS value_added_touch_minutes,
           sum(process_us) FILTER (WHERE touch_class = 'waste') / {MINUTE}
               AS waste_touch_minutes,
           (SELECT count(*) FROM vs_stalls WHERE started_at > $lo AND started_at <= $hi)
               AS stall_episodes_started
    FROM vs_touches WHERE started_at > $lo AND started_at <= $hi"""


def _period_figures(connection: Connection, lo: datetime, hi: datetime) -> dict[str, Any]:
    window = {"lo": lo, "hi": hi}
    figures = records(connection, _PERIOD_DEALS, window)[0]
    figures |= records(connection, _PERIOD_TOUCHES, window)[0]
    closed = (figures["deals_won"] or 0) + (figures["deals_lost"] or 0)
    figures["win_rate"] = figures["deals_won"] / closed if closed else None
    return figures


def value_stream_report(
    connection: Connection, period: timedelta = timedelta(days=30), top: int = 5
) -> ValueStreamReport:
    """The value-stream summary from the archive's tables, as of its latest event time."""
    as_of: datetime | None = scalar(connection, "SELECT max(occurred_at) FROM events")
    overall = records(connection, "SELECT * FROM pce_by WHERE dimension = 'all'")
    stages = records(
        connection,
        "SELECT p.* FROM pce_by p LEFT JOIN (SELECT DISTINCT stage, stage_rank FROM vs_stages) r "
        "ON r.stage = p.value WHERE p.dimension = 'stage' ORDER BY r.stage_rank NULLS LAST, value",
    )
    wastes = records(connection, f"SELECT * FROM waste_pareto ORDER BY rank LIMIT {int(top)}")
    for line in wastes:
        line["examples"] = _waste_examples(connection, line, 3)
    stalled = records(
        connection, f"SELECT * FROM stalled_deals ORDER BY silent_days DESC LIMIT {int(top)}"
    )
    changes: list[ReportChange] = []
    if as_of is not None:
        current = _period_figures(connection, as_of - period, as_of)
        previous = _period_figures(connection, as_of - 2 * period, as_of - period)
        changes = [ReportChange(name, previous[name], current[name]) for name in current]
    versions = connection.execute("SELECT DISTINCT policy_version FROM vs_deals ORDER BY 1")
    return ValueStreamReport(
        as_of=as_of,
        policy_versions=tuple(str(v) for (v,) in versions.fetchall()),
        overall=overall[0] if overall else {},
        stages=stages,
        wastes=wastes,
        stalled=stalled,
        period=period,
        changes=changes,
    )
