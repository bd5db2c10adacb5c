"""The dashboard's JSON documents: figures from the archive and alerts, ready for the browser."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson

from projections.archive.dashboard import (
    ArchiveStamp,
    DealTimeline,
    StageBox,
    StalledDeal,
    ValueStreamMap,
)
from projections.deal.alerts import StallAlert

__all__ = [
    "alert_card",
    "json_bytes",
    "map_document",
    "stalled_card",
    "stamp_document",
    "timeline_document",
]

DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, frozenset | set):
        return sorted(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def json_bytes(document: Any) -> bytes:
    """A document as compact JSON: times in ISO 8601, money as exact strings."""
    return orjson.dumps(document, default=_default, option=orjson.OPT_NON_STR_KEYS)


def stamp_document(stamp: ArchiveStamp) -> dict[str, Any]:
    """What the figures were computed from: the archive's event time and policy versions."""
    return asdict(stamp)


def _box_document(box: StageBox) -> dict[str, Any]:
    return asdict(box) | {
        "process_min": box.process_min,
        "per_deal": {
            "process_min": box.per_deal(box.process_min),
            "value_added_min": box.per_deal(box.value_added_min),
            "waste_min": box.per_deal(box.waste_min),
            "wait_min": box.per_deal(box.wait_min),
            "lead_time_min": box.per_deal(box.lead_time_min),
        },
    }


def map_document(chart: ValueStreamMap, campaign: str | None) -> dict[str, Any]:
    """The value-stream map: stage boxes in flow order, and the lead-time ladder's totals.

    The ladder follows an average deal through every stage: per stage its wait and
    its process time (each stage's total over its deals), summed at the end.
    """
    boxes = [_box_document(box) for box in chart.stages]
    ladder = {
        name: sum(box["per_deal"][name] or 0.0 for box in boxes)
        for name in ("process_min", "value_added_min", "waste_min", "wait_min", "lead_time_min")
    }
    ladder["pce"] = (
        ladder["value_added_min"] / ladder["lead_time_min"] if ladder["lead_time_min"] else None
    )
    filters = {
        "month": chart.filters.month,
        "segment": chart.filters.segment,
        "owner": chart.filters.owner,
        "product": chart.filters.product,
        "campaign": campaign,
    }
    return {
        "filters": filters,
        "deals": chart.deals,
        "pce": chart.pce,
        "stages": boxes,
        "ladder": ladder,
    }


def timeline_document(timeline: DealTimeline) -> dict[str, Any]:
    """One deal's life: figures, stage visits, touches, the gaps between them, stall episodes."""
    return {
        "deal": dict(timeline.deal),
        "visits": [dict(visit) for visit in timeline.visits],
        "touches": [dict(touch) for touch in timeline.touches],
        "gaps": [asdict(gap) | {"minutes": gap.minutes} for gap in timeline.gaps],
        "stalls": [dict(stall) for stall in timeline.stalls],
    }


def alert_card(alert: StallAlert, source: str) -> dict[str, Any]:
    """A stall alert as a card of the board, with its evidence in days and minutes."""
    return {
        "kind": str(alert.kind),
        "source": source,
        "alert_id": alert.alert_id,
        "episode_id": alert.episode_id,
        "deal_id": alert.deal_id,
        "account_id": alert.account_id,
        "owner_id": alert.owner_id,
        "segment": alert.segment,
        "stage": alert.stage,
        "threshold_days": alert.threshold / DAY,
        "threshold_basis": alert.threshold_basis.describe(),
        "silent_since": alert.silent_since,
        "stalled_at": alert.stalled_at,
        "evidence_at": alert.occurred_at,
        "silent_days": (alert.occurred_at - alert.silent_since) / DAY,
        "stalled_days": alert.time_stalled / DAY,
        "last_value_added_id": alert.last_value_added_id,
        "last_value_added_at": alert.last_value_added_at,
        "waste_accrued_min": alert.waste_while_stalled.total / MINUTE,
        "ended_by": None if alert.ended_by is None else str(alert.ended_by),
        "policy_version": alert.policy_version,
    }


def stalled_card(deal: StalledDeal, policy_versions: tuple[str, ...]) -> dict[str, Any]:
    """A deal the archive's value streams show stalled, as a card of the same shape."""
    return {
        "kind": "deal-stalled",
        "source": "archive",
        "alert_id": None,
        "episode_id": None,
        "deal_id": deal.deal_id,
        "account_id": deal.account_id,
        "owner_id": deal.owner_id,
        "segment": deal.segment,
        "stage": deal.stage,
        "threshold_days": deal.threshold_days,
        "threshold_basis": "policy",
        "silent_since": deal.silent_since,
        "stalled_at": deal.stalled_at,
        "evidence_at": deal.as_of,
        "silent_days": deal.silent_days,
        "stalled_days": deal.stalled_days,
        "last_value_added_id": deal.last_value_added_id,
        "last_value_added_at": deal.last_value_added_at,
        "waste_accrued_min": deal.waste_accrued_min,
        "ended_by": None,
        "policy_version": ", ".join(policy_versions),
    }
