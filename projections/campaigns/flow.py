"""Campaign flow for a Sankey diagram: campaign -> opening stage -> furthest stage -> outcome."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from itertools import pairwise

from projections.campaigns.journeys import Journey
from projections.categories import DealStatus

__all__ = ["OUTCOMES", "FlowLayer", "FlowLink", "FlowNode", "campaign_flow"]

OUTCOMES = {DealStatus.WON: "Won", DealStatus.LOST: "Lost", DealStatus.OPEN: "Open"}
"""The names of the outcome nodes, in the order they are listed."""


class FlowLayer(StrEnum):
    """The columns of the diagram, left to right."""

    CAMPAIGN = "campaign"
    OPENED = "opened"
    FURTHEST = "furthest"
    OUTCOME = "outcome"


@dataclass(frozen=True, slots=True)
class FlowNode:
    """A box of the diagram: a campaign, a stage in one of the two stage columns, or an outcome."""

    layer: FlowLayer
    name: str

    def __str__(self) -> str:
        return f"{self.layer}:{self.name}"


@dataclass(frozen=True, slots=True)
class FlowLink:
    """A band of the diagram: how many deals, worth how much, went from `source` to `target`.

    A deal is counted once per campaign that influenced it (see campaign_flow).
    """

    source: FlowNode
    target: FlowNode
    deals: int
    value: Decimal


def campaign_flow(journeys: Iterable[Journey], stage_order: Sequence[str]) -> list[FlowLink]:
    """The links campaign -> stage opened in -> furthest stage reached -> Won, Lost or Open.

    Only deals with linked responses flow. A deal influenced by several
    campaigns flows once per campaign, in every column, so that what enters a
    box also leaves it; sum the campaign column's links, not the deals, for a
    deal count only when each deal has one campaign. A deal's value is its
    revenue when won, else its expected amount (0 when unknown). Links are
    listed column by column, stages in `stage_order` (others after, by name).
    """
    bands: defaultdict[tuple[FlowNode, FlowNode], list[Decimal]] = defaultdict(list)
    seen: set[str] = set()
    for journey in journeys:
        deal = journey.deal
        if deal.deal_id in seen:
            continue
        seen.add(deal.deal_id)
        for campaign in journey.campaigns:
            nodes = (
                FlowNode(FlowLayer.CAMPAIGN, campaign),
                FlowNode(FlowLayer.OPENED, deal.opened_stage),
                FlowNode(FlowLayer.FURTHEST, deal.furthest_stage),
                FlowNode(FlowLayer.OUTCOME, OUTCOMES[deal.status]),
            )
            for source, target in pairwise(nodes):
                bands[source, target].append(deal.value)
    return [
        FlowLink(source, target, len(values), sum(values, Decimal(0)))
        for (source, target), values in sorted(
            bands.items(),
            key=lambda band: (_place(band[0][0], stage_order), _place(band[0][1], stage_order)),
        )
    ]


def _place(node: FlowNode, stage_order: Sequence[str]) -> tuple[int, int, str]:
    """Where a node is listed: its column, then its place in the column, then its name."""
    if node.layer is FlowLayer.OUTCOME:
        rank = list(OUTCOMES.values()).index(node.name)
    elif node.layer is FlowLayer.CAMPAIGN:
        rank = 0
    else:
        rank = stage_order.index(node.name) if node.name in stage_order else len(stage_order)
    return (list(FlowLayer).index(node.layer), rank, node.name)
