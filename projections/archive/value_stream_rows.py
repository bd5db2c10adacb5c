"""A folded deal as rows of the value-stream tables (vs_deals, vs_stages, vs_visits, ...)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from projections.archive.schema import COUNT_FIELDS, TIME_FIELDS, totals_value
from projections.deal.totals import Totals
from projections.deal.value_stream import DealValueStream
from projections.intervals import MICROSECOND
from projections.policy.model import Policy

__all__ = ["VALUE_STREAM_TABLES", "value_stream_rows"]

VALUE_STREAM_TABLES = ("vs_deals", "vs_stages", "vs_visits", "vs_touches", "vs_stalls")
"""The value-stream tables, refreshed from the pure fold for each deal a batch touches."""


def _totals_row(totals: Totals) -> dict[str, int]:
    row = {f"{name}_us": totals_value(totals, path) // MICROSECOND for name, path in TIME_FIELDS}
    return row | {name: int(totals_value(totals, path)) for name, path in COUNT_FIELDS}


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def value_stream_rows(stream: DealValueStream, policy: Policy) -> dict[str, list[dict[str, Any]]]:
    """A folded deal as rows of the value-stream tables."""
    current = stream.stage_history[-1]
    threshold = policy.stall.threshold(current.stage, stream.segment)
    last_va = stream.last_value_added_at
    deal = {
        "deal_id": stream.deal_id,
        "policy_version": stream.policy_version,
        "status": str(stream.status),
        "stage": stream.stage,
        "owner_id": stream.owner_id,
        "segment": stream.segment,
        "product": stream.product,
        "amount": stream.amount,
        "currency": stream.currency,
        "opened_at": stream.opened_at,
        "closed_at": stream.closed_at,
        "as_of": stream.as_of,
        "silent_since": max(current.entered_at, last_va or current.entered_at),
        "stall_threshold_us": None if threshold is None else threshold // MICROSECOND,
        "stall_episodes": len(stream.stalls),
        "last_value_added_at": last_va,
        **_totals_row(stream.totals),
        "value_stream": stream.model_dump_json(),
    }
    first_entry: dict[str, datetime] = {}
    for visit in stream.stage_history:
        first_entry.setdefault(visit.stage, visit.entered_at)
    return {
        "vs_deals": [deal],
        "vs_stages": [
            {
                "deal_id": stream.deal_id,
                "stage": each.stage,
                "stage_rank": policy.stages.rank(each.stage),
                "visits": each.visits,
                "first_entered_at": first_entry.get(each.stage, stream.opened_at),
                **_totals_row(each.totals),
            }
            for each in stream.stages
        ],
        "vs_visits": [
            {"deal_id": stream.deal_id, "visit": number, **visit.model_dump()}
            for number, visit in enumerate(stream.stage_history)
        ],
        "vs_touches": [
            {
                "deal_id": stream.deal_id,
                "event_id": touch.event_id,
                "kind": touch.kind,
                "direction": str(touch.direction),
                "started_at": touch.started_at,
                "ended_at": touch.ended_at,
                "process_us": touch.process_time // MICROSECOND,
                "stage": touch.stage,
                "touch_class": _text(touch.touch_class),
                "waste": _text(touch.waste),
                "rule": touch.rule,
                "outcome": _text(touch.outcome),
                "meeting_kind": _text(touch.meeting_kind),
            }
            for touch in stream.touches
        ],
        "vs_stalls": [
            {
                "deal_id": stream.deal_id,
                "stage": stall.stage,
                "started_at": stall.started_at,
                "ended_at": stall.ended_at,
                "threshold_us": stall.threshold // MICROSECOND,
            }
            for stall in stream.stalls
        ],
    }
