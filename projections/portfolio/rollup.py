"""Roll-ups kept current as deals change: each deal's contribution, as flat integer vectors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from projections.deal.totals import Totals
from projections.deal.value_stream import DealValueStream

__all__ = [
    "DIMENSIONS",
    "Contribution",
    "RollupKey",
    "add_vectors",
    "contributions",
    "rollup_key",
    "totals_from_vector",
    "vector",
]

DIMENSIONS = ("stage", "owner", "segment", "product", "campaign")
"""What a roll-up groups by. Each is bucketed by month: the month the deal entered
the stage (for `stage`), or the month the deal opened (for the others)."""

RollupKey = str
"""`dimension|value|YYYY-MM`, e.g. `stage|Proposal|2026-03`."""

Contribution = dict[RollupKey, dict[str, int]]

_TIME_FIELDS = (
    "lead_time", "value_added", "necessary_non_value_added", "wait", "waiting_on_us", "inventory",
)  # fmt: skip


def rollup_key(dimension: str, value: str | None, moment: datetime) -> RollupKey:
    """The key of one roll-up bucket."""
    return f"{dimension}|{value if value is not None else '-'}|{moment:%Y-%m}"


def vector(totals: Totals) -> dict[str, int]:
    """Totals as whole seconds and counts, so that they can be added and subtracted exactly."""
    flat = {name: int(getattr(totals, name).total_seconds()) for name in _TIME_FIELDS}
    for name in type(totals.waste).model_fields:
        flat[f"waste.{name}"] = int(getattr(totals.waste, name).total_seconds())
    for name in type(totals.touches).model_fields:
        flat[f"touches.{name}"] = getattr(totals.touches, name)
    flat["deals"] = totals.deals
    flat["rework"] = totals.rework
    return flat


def totals_from_vector(flat: Mapping[str, int]) -> Totals:
    """The Totals a vector stands for."""
    waste = {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith("waste.")}
    touches = {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith("touches.")}
    return Totals.model_validate(
        {name: flat.get(name, 0) for name in (*_TIME_FIELDS, "deals", "rework")}
        | {"waste": waste, "touches": touches}
    )


def add_vectors(a: Mapping[str, int], b: Mapping[str, int], sign: int = 1) -> dict[str, int]:
    """a + sign * b, field by field."""
    return {name: a.get(name, 0) + sign * b.get(name, 0) for name in {*a, *b}}


def contributions(stream: DealValueStream, campaigns: Iterable[str] = ()) -> Contribution:
    """What one deal adds to every roll-up bucket it belongs to."""
    whole = vector(stream.totals)
    opened = stream.opened_at
    keys = [
        rollup_key("owner", stream.owner_id, opened),
        rollup_key("segment", stream.segment, opened),
        rollup_key("product", stream.product, opened),
        *(rollup_key("campaign", campaign, opened) for campaign in sorted(set(campaigns))),
    ]
    result: Contribution = {key: whole for key in keys}
    first_entry: dict[str, datetime] = {}
    for visit in stream.stage_history:
        first_entry.setdefault(visit.stage, visit.entered_at)
    for stage in stream.stages:
        key = rollup_key("stage", stage.stage, first_entry.get(stage.stage, opened))
        result[key] = vector(stage.totals)
    return result
