"""Where the time went: additive totals for a deal, a stage, or a group of deals."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Self

from pydantic import BaseModel, ConfigDict

from projections.categories import WasteCategory
from projections.intervals import ZERO

__all__ = ["Totals", "TouchCounts", "Waste"]


class _Additive(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def __add__(self, other: Self) -> Self:
        return self.model_validate(
            {name: getattr(self, name) + getattr(other, name) for name in type(self).model_fields}
        )


class Waste(_Additive):
    """Process time that added nothing, by waste category (each minute counted once)."""

    rework: timedelta = ZERO
    chasing: timedelta = ZERO
    no_show: timedelta = ZERO
    over_processing: timedelta = ZERO
    overproduction: timedelta = ZERO

    @classmethod
    def of(cls, by_category: Mapping[WasteCategory, timedelta]) -> Waste:
        """From a mapping of touch-waste categories to time."""
        return cls.model_validate({str(category): time for category, time in by_category.items()})

    @property
    def total(self) -> timedelta:
        """All process-time waste."""
        return sum((getattr(self, name) for name in type(self).model_fields), ZERO)


class TouchCounts(_Additive):
    """How many touches of each kind (inbound ones included)."""

    call: int = 0
    email: int = 0
    meeting: int = 0
    quote: int = 0

    @property
    def total(self) -> int:
        """All touches."""
        return self.call + self.email + self.meeting + self.quote


class Totals(_Additive):
    """Time and counts of a deal, a stage, or a group: they add up across deals and stages.

    value_added + necessary_non_value_added + waste.total + wait == lead_time,
    exactly. waiting_on_us and inventory are parts of wait (they may overlap).
    """

    deals: int = 0
    lead_time: timedelta = ZERO
    value_added: timedelta = ZERO
    necessary_non_value_added: timedelta = ZERO
    waste: Waste = Waste()
    wait: timedelta = ZERO
    waiting_on_us: timedelta = ZERO
    inventory: timedelta = ZERO
    rework: int = 0
    touches: TouchCounts = TouchCounts()

    @property
    def waiting_on_customer(self) -> timedelta:
        """Wait in which the customer owes the next move."""
        return self.wait - self.waiting_on_us

    @property
    def process_cycle_efficiency(self) -> float | None:
        """PCE = value-added time / lead time; None when the lead time is zero."""
        return self.value_added / self.lead_time if self.lead_time else None
