"""The value-stream map: per stage, in flow order, minutes by class, waste and PCE."""

from __future__ import annotations

from dataclasses import dataclass

from projections.archive.connection import Connection
from projections.archive.dashboard.filters import ANY_DEAL, Filters
from projections.archive.opening import records
from projections.archive.schema import MINUTE_US, PROCESS_WASTES

__all__ = ["StageBox", "ValueStreamMap", "value_stream_map"]


@dataclass(frozen=True, slots=True)
class StageBox:
    """One stage of the map: its deals' time in minutes, summed, and PCE.

    process = value-added + necessary non-value-added + process-time waste;
    process + wait = lead time. `waiting_on_us` and `inventory` are parts of wait.
    """

    stage: str
    deals: int
    visits: int
    lead_time_min: float
    value_added_min: float
    necessary_non_value_added_min: float
    waste_min: float
    wait_min: float
    waiting_on_us_min: float
    inventory_min: float
    rework: int
    pce: float | None

    @property
    def process_min(self) -> float:
        """Time someone worked on the deals in this stage."""
        return self.value_added_min + self.necessary_non_value_added_min + self.waste_min

    def per_deal(self, minutes: float) -> float | None:
        """A figure of this stage averaged over its deals."""
        return minutes / self.deals if self.deals else None


@dataclass(frozen=True, slots=True)
class ValueStreamMap:
    """The stages in flow order under the filters, and the deals they cover."""

    filters: Filters
    stages: tuple[StageBox, ...]
    deals: int

    @property
    def pce(self) -> float | None:
        """Value-added over lead time of all the boxes together (stage totals add up to deals')."""
        lead = sum(box.lead_time_min for box in self.stages)
        return sum(box.value_added_min for box in self.stages) / lead if lead else None


_STAGE_SUMS = ", ".join(
    [
        *(
            f"sum(s.{name}_us) / {MINUTE_US} AS {name}_min"
            for name in (
                "lead_time",
                "value_added",
                "necessary_non_value_added",
                "wait",
                "waiting_on_us",
                "inventory",
            )
        ),
        "(" + " + ".join(f"sum(s.waste_{name}_us)" for name in PROCESS_WASTES) + f") / {MINUTE_US}"
        " AS waste_min",
        "sum(s.rework) AS rework",
        "sum(s.value_added_us) / nullif(sum(s.lead_time_us), 0) AS pce",
    ]
)


def value_stream_map(connection: Connection, filters: Filters = ANY_DEAL) -> ValueStreamMap:
    """Per stage, in flow order: deals, visits, minutes by class, waste and PCE, under filters.

    With no filter the boxes equal `SELECT * FROM pce_by WHERE dimension = 'stage'`;
    with only a month, `value_stream_by WHERE dimension = 'stage' AND month = ...`.
    """
    where, parameters = filters.where("s.first_entered_at")
    rows = records(
        connection,
        f"SELECT s.stage, sum(s.deals) AS deals, sum(s.visits) AS visits, {_STAGE_SUMS} "
        f"FROM vs_stages s JOIN vs_deals d USING (deal_id) WHERE {where} "
        "GROUP BY s.stage ORDER BY min(s.stage_rank) NULLS LAST, s.stage",
        parameters,
    )
    deals = connection.execute(
        f"SELECT count(DISTINCT s.deal_id) FROM vs_stages s JOIN vs_deals d USING (deal_id) "
        f"WHERE {where}",
        parameters,
    ).fetchall()[0][0]
    boxes = tuple(
        StageBox(
            stage=str(row["stage"]),
            deals=int(row["deals"]),
            visits=int(row["visits"]),
            lead_time_min=float(row["lead_time_min"]),
            value_added_min=float(row["value_added_min"]),
            necessary_non_value_added_min=float(row["necessary_non_value_added_min"]),
            waste_min=float(row["waste_min"]),
            wait_min=float(row["wait_min"]),
            waiting_on_us_min=float(row["waiting_on_us_min"]),
            inventory_min=float(row["inventory_min"]),
            rework=int(row["rework"]),
            pce=None if row["pce"] is None else float(row["pce"]),
        )
        for row in rows
    )
    return ValueStreamMap(filters, boxes, int(deals))
