"""Campaign reports as plain documents (for JSON and the dashboard): rows, flow, comparisons."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from projections.campaigns.attribution import AttributionModel

__all__ = [
    "MODELS",
    "comparison_document",
    "flow_document",
    "not_opened_document",
    "row_document",
]

MODELS: tuple[str, ...] = tuple(model.value for model in AttributionModel)
"""The credit models by name, in the order they are listed and compared."""


def row_document(row: Any) -> dict[str, Any]:
    """One campaign's row of the table under one model; money as exact strings."""
    totals = row.value_stream
    return {
        "campaign_id": row.campaign_id,
        "responses": row.responses,
        "linked_responses": row.linked_responses,
        "accounts_reached": row.accounts_reached,
        "deals_influenced": row.deals_influenced,
        "deals_won": row.deals_won,
        "deals_stalled": row.deals_stalled,
        "pipeline": str(row.pipeline),
        "revenue": str(row.revenue),
        "cost": None if row.cost is None else str(row.cost),
        "roi": row.roi,
        "median_days_to_win": row.median_days_to_win,
        "pce": row.process_cycle_efficiency,
        "waste_share": row.waste_share,
        "influenced_lead_time_s": totals.lead_time.total_seconds(),
    }


def not_opened_document(not_opened: Mapping[str, int]) -> list[dict[str, Any]]:
    """The deals with events but no deal_opened yet: their ids and known event counts."""
    return [{"deal_id": deal_id, "events": count} for deal_id, count in sorted(not_opened.items())]


def flow_document(links: Any) -> list[dict[str, Any]]:
    """The Sankey links (campaign -> stages -> outcome) with their deals and value."""
    return [
        {
            "source": {"layer": str(link.source.layer), "name": link.source.name},
            "target": {"layer": str(link.target.layer), "name": link.target.name},
            "deals": link.deals,
            "value": str(link.value),
        }
        for link in links
    ]


def comparison_document(each: Any) -> dict[str, Any]:
    """One campaign's credit and rank under every model, with its findings."""
    return {
        "campaign_id": each.campaign_id,
        "credits": {str(model): str(amount) for model, amount in each.credits.items()},
        "ranks": {str(model): rank for model, rank in each.ranks.items()},
        "findings": list(each.findings),
    }
