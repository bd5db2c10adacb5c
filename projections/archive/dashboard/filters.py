"""Which deals a dashboard view covers: filters as a WHERE condition with bound parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from projections.archive.connection import Connection
from projections.archive.schema import UTC_MONTH
from projections.errors import ProjectionError

__all__ = ["ANY_DEAL", "DashboardQueryError", "Filters", "column_values"]

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class DashboardQueryError(ProjectionError):
    """A dashboard question that cannot be asked as given (a bad month, an unknown waste)."""


@dataclass(frozen=True, slots=True)
class Filters:
    """Which deals a view covers; None means any.

    `segment` and `product` match '-' for deals without one (as in the views).
    `deal_ids` restricts to given deals (a campaign's linked deals); an empty set
    matches none.
    """

    month: str | None = None
    segment: str | None = None
    owner: str | None = None
    product: str | None = None
    deal_ids: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.month is not None and not _MONTH.match(self.month):
            raise DashboardQueryError(f"month {self.month!r} is not YYYY-MM (e.g. 2026-08)")

    @property
    def any(self) -> bool:
        """Whether any filter is set."""
        return any(
            value is not None
            for value in (self.month, self.segment, self.owner, self.product, self.deal_ids)
        )

    def where(self, month_of: str, deal: str = "d") -> tuple[str, dict[str, Any]]:
        """A WHERE condition over `deal` (an alias of vs_deals) and its bound parameters.

        `month_of` is the (constant) SQL expression whose UTC month the period filter
        matches: a stage's first entry, or the deal's opening.
        """
        clauses = ["TRUE"]
        parameters: dict[str, Any] = {}
        if self.month is not None:
            clauses.append(f"{UTC_MONTH.format(month_of)} = $month")
            parameters["month"] = self.month
        if self.segment is not None:
            clauses.append(f"coalesce({deal}.segment, '-') = $segment")
            parameters["segment"] = self.segment
        if self.owner is not None:
            clauses.append(f"{deal}.owner_id = $owner")
            parameters["owner"] = self.owner
        if self.product is not None:
            clauses.append(f"coalesce({deal}.product, '-') = $product")
            parameters["product"] = self.product
        if self.deal_ids is not None:
            clauses.append(f"list_contains($deal_ids, {deal}.deal_id)")
            parameters["deal_ids"] = sorted(self.deal_ids)
        return " AND ".join(clauses), parameters


ANY_DEAL = Filters()
"""No filter: every deal."""


def column_values(connection: Connection, sql: str) -> list[Any]:
    """The first column of a query's rows."""
    return [row[0] for row in connection.execute(sql).fetchall()]
