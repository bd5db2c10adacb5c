"""Stalled deals with the evidence of each stall, and the stall alerts still open."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from projections.archive.connection import Connection
from projections.archive.dashboard.filters import column_values
from projections.archive.opening import records
from projections.archive.schema import MINUTE_US

__all__ = ["StalledDeal", "open_stall_alerts", "stalled_deals"]


@dataclass(frozen=True, slots=True)
class StalledDeal:
    """A deal the archive's value streams show stalled at its watermark, with the evidence.

    `stalled_days` runs from the threshold crossing (`stalled_at`) to `as_of`; the
    waste accrued is that time sitting stalled (inventory) plus the process-time
    waste of touches since the crossing.
    """

    deal_id: str
    account_id: str | None
    owner_id: str
    segment: str | None
    stage: str
    silent_since: datetime
    stalled_at: datetime
    as_of: datetime
    silent_days: float
    threshold_days: float
    stalled_days: float
    last_value_added_id: str | None
    last_value_added_at: datetime | None
    waste_accrued_min: float


def stalled_deals(connection: Connection) -> list[StalledDeal]:
    """The `stalled_deals` view, longest stalled first, with each stall's evidence."""
    rows = records(
        connection,
        f"""
        WITH stalled AS (
            SELECT s.*, s.silent_since + to_microseconds(d.stall_threshold_us) AS stalled_at
            FROM stalled_deals s JOIN vs_deals d USING (deal_id))
        SELECT s.deal_id,
               (SELECT min(e.account_id) FROM events e
                WHERE e.deal_id = s.deal_id AND e.type = 'deal_opened') AS account_id,
               s.owner_id, s.segment, s.stage, s.silent_since, s.stalled_at, s.as_of,
               s.silent_days, s.threshold_days, s.silent_days - s.threshold_days AS stalled_days,
               (SELECT max_by(t.event_id, t.started_at) FROM vs_touches t
                WHERE t.deal_id = s.deal_id AND t.touch_class = 'value_added'
                  AND t.started_at = s.last_value_added_at) AS last_value_added_id,
               s.last_value_added_at,
               ((epoch_us(s.as_of) - epoch_us(s.stalled_at))
                + coalesce((SELECT sum(t.process_us) FROM vs_touches t
                            WHERE t.deal_id = s.deal_id AND t.touch_class = 'waste'
                              AND t.started_at >= s.stalled_at), 0)) / {MINUTE_US}
                   AS waste_accrued_min
        FROM stalled s ORDER BY stalled_days DESC, s.deal_id""",
    )
    return [StalledDeal(**row) for row in rows]


def open_stall_alerts(connection: Connection) -> list[str]:
    """The archived deal-stalled alerts (JSON) whose episode has no deal-unstalled alert yet."""
    return [
        str(payload)
        for payload in column_values(
            connection,
            """
            WITH a AS (SELECT kind, occurred_at, alert_id, payload,
                              json_extract_string(payload, '$.episode_id') AS episode_id
                       FROM alerts)
            SELECT payload FROM a
            WHERE kind = 'deal-stalled' AND episode_id NOT IN (
                SELECT episode_id FROM a WHERE kind = 'deal-unstalled' AND episode_id IS NOT NULL)
            ORDER BY occurred_at, alert_id""",
        )
    ]
