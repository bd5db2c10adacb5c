"""The classes a minute of a deal's life falls into, and the seven wastes."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["TOUCH_WASTES", "WAIT_WASTES", "DealStatus", "TouchClass", "WasteCategory"]


class TouchClass(StrEnum):
    """The class of a touch's process time; wait is whatever no touch covers."""

    VALUE_ADDED = "value_added"
    NECESSARY_NON_VALUE_ADDED = "necessary_non_value_added"
    WASTE = "waste"


class WasteCategory(StrEnum):
    """The seven wastes, read for sales."""

    REWORK = "rework"
    CHASING = "chasing"
    NO_SHOW = "no_show"
    OVER_PROCESSING = "over_processing"
    OVERPRODUCTION = "overproduction"
    WAITING_ON_US = "waiting_on_us"
    INVENTORY = "inventory"


TOUCH_WASTES = frozenset(
    {
        WasteCategory.REWORK,
        WasteCategory.CHASING,
        WasteCategory.NO_SHOW,
        WasteCategory.OVER_PROCESSING,
        WasteCategory.OVERPRODUCTION,
    }
)
"""Wastes that are process time: a touch of ours that adds nothing."""

WAIT_WASTES = frozenset({WasteCategory.WAITING_ON_US, WasteCategory.INVENTORY})
"""Wastes measured as wait time and reported apart from it."""


class DealStatus(StrEnum):
    """Where a deal stands: still flowing, or closed one way or the other."""

    OPEN = "open"
    WON = "won"
    LOST = "lost"
