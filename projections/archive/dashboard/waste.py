"""Waste: the Pareto of categories, the deals that lost time to one, and the evidence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from projections.archive.connection import Connection
from projections.archive.dashboard.filters import ANY_DEAL, DashboardQueryError, Filters
from projections.archive.opening import records
from projections.archive.schema import MINUTE_US, PROCESS_WASTES, WAIT_WASTES

__all__ = [
    "WASTE_CATEGORIES",
    "WasteDeal",
    "WasteLine",
    "waste_deals",
    "waste_details",
    "waste_pareto",
]

WASTE_CATEGORIES = PROCESS_WASTES + WAIT_WASTES
_WASTE_COLUMN = {name: f"waste_{name}_us" for name in PROCESS_WASTES} | {
    name: f"{name}_us" for name in WAIT_WASTES
}


@dataclass(frozen=True, slots=True)
class WasteLine:
    """One waste category in the Pareto: its minutes, deals, touches and shares."""

    rank: int
    category: str
    measured_as: str
    minutes: float
    deals: int
    touches: int
    share: float | None
    cumulative_share: float | None


def _category(category: str) -> str:
    if category not in _WASTE_COLUMN:
        raise DashboardQueryError(
            f"no waste category {category!r}; the categories are {', '.join(WASTE_CATEGORIES)}"
        )
    return _WASTE_COLUMN[category]


def waste_pareto(connection: Connection, filters: Filters = ANY_DEAL) -> list[WasteLine]:
    """Waste categories ranked by minutes lost, over the deals the filters select.

    With no filter this is the `waste_pareto` view, row for row.
    """
    where, parameters = filters.where("d.opened_at")
    lost = " UNION ALL ".join(
        f"SELECT '{name}' AS category, '{measured}' AS measured_as, "
        f"coalesce(sum({_WASTE_COLUMN[name]}), 0) AS us, "
        f"count(*) FILTER (WHERE {_WASTE_COLUMN[name]} > 0) AS deals FROM chosen"
        for names, measured in ((PROCESS_WASTES, "process time"), (WAIT_WASTES, "wait"))
        for name in names
    )
    rows = records(
        connection,
        f"""
        WITH chosen AS (SELECT * FROM vs_deals d WHERE {where}),
        touched AS (
            SELECT waste, count(*) AS touches FROM vs_touches
            WHERE waste IS NOT NULL AND deal_id IN (SELECT deal_id FROM chosen) GROUP BY waste),
        lost AS ({lost})
        SELECT row_number() OVER (ORDER BY us DESC, category) AS rank, category, measured_as,
               us / {MINUTE_US} AS minutes, deals, coalesce(t.touches, 0) AS touches,
               us / nullif(sum(us) OVER (), 0) AS share,
               sum(us) OVER (ORDER BY us DESC, category ROWS UNBOUNDED PRECEDING)
                   / nullif(sum(us) OVER (), 0) AS cumulative_share
        FROM lost LEFT JOIN touched t ON t.waste = lost.category ORDER BY rank""",
        parameters,
    )
    return [
        WasteLine(
            rank=int(row["rank"]),
            category=str(row["category"]),
            measured_as=str(row["measured_as"]),
            minutes=float(row["minutes"]),
            deals=int(row["deals"]),
            touches=int(row["touches"]),
            share=None if row["share"] is None else float(row["share"]),
            cumulative_share=(
                None if row["cumulative_share"] is None else float(row["cumulative_share"])
            ),
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class WasteDeal:
    """A deal that lost time to one waste: how much, and in how many touches."""

    deal_id: str
    owner_id: str
    segment: str | None
    stage: str
    status: str
    minutes: float
    touches: int


def waste_deals(
    connection: Connection,
    category: str,
    filters: Filters = ANY_DEAL,
    limit: int = 50,
) -> tuple[int, list[WasteDeal]]:
    """How many deals lost time to `category`, and the `limit` that lost the most."""
    column = _category(category)
    where, parameters = filters.where("d.opened_at")
    chosen = f"FROM vs_deals d WHERE d.{column} > 0 AND {where}"
    total = connection.execute(f"SELECT count(*) {chosen}", parameters).fetchall()[0][0]
    parameters |= {"category": category, "limit": max(1, min(int(limit), 1000))}
    rows = records(
        connection,
        f"SELECT d.deal_id, d.owner_id, d.segment, d.stage, d.status, "
        f"d.{column} / {MINUTE_US} AS minutes, "
        "(SELECT count(*) FROM vs_touches t WHERE t.deal_id = d.deal_id "
        f"AND t.waste = $category) AS touches {chosen} "
        "ORDER BY minutes DESC, d.deal_id LIMIT $limit",
        parameters,
    )
    return int(total), [WasteDeal(**row) for row in rows]


def waste_details(connection: Connection, category: str, deal_id: str) -> list[dict[str, Any]]:
    """The evidence of one deal's waste in `category`.

    Process-time waste: its touches of that waste. Inventory: its stall episodes.
    Waiting-on-us: the inbound touches that put the ball in our court.
    """
    _category(category)
    if category == "inventory":
        return records(
            connection,
            f"SELECT stage, started_at, ended_at, threshold_us / {MINUTE_US} AS threshold_min "
            "FROM vs_stalls WHERE deal_id = $deal ORDER BY started_at",
            {"deal": deal_id},
        )
    touches = (
        "SELECT event_id, kind, direction, stage, touch_class, waste, rule, outcome, "
        f"meeting_kind, started_at, ended_at, process_us / {MINUTE_US} AS minutes "
        "FROM vs_touches WHERE deal_id = $deal AND "
    )
    if category == "waiting_on_us":
        return records(
            connection,
            touches + "touch_class IS NULL ORDER BY started_at, event_id",
            {"deal": deal_id},
        )
    return records(
        connection,
        touches + "waste = $category ORDER BY started_at, event_id",
        {"deal": deal_id, "category": category},
    )
