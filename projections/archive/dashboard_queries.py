"""The dashboard's questions to the history archive: SQL over its tables and views, values bound.

Every function takes an open (read-only) DuckDB connection and returns plain frozen
data. No value a user gives reaches SQL text: filters, deal ids and waste categories
are bound as parameters, and the only names put into SQL text come from this
module's own constants. Figures are minutes (floats) and shares, as in the
archive's views (`projections.archive.history_db`), so that the dashboard shows exactly
what `gemba query` gives for the same question.

Periods: a stage's figures are bucketed by the month the deal first entered the
stage, a deal's figures by the month it opened, as in the `value_stream_by` view.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

import duckdb

from projections.archive.history_db import records
from projections.errors import ProjectionError

__all__ = [
    "PROCESS_WASTES",
    "WAIT_WASTES",
    "WASTE_CATEGORIES",
    "ArchiveStamp",
    "DashboardQueryError",
    "DealTimeline",
    "FilterOptions",
    "Filters",
    "FlowOverTime",
    "StageBox",
    "StalledDeal",
    "TimelineGap",
    "ValueStreamMap",
    "WasteDeal",
    "WasteLine",
    "archive_position",
    "archive_stamp",
    "deal_timeline",
    "filter_options",
    "find_deals",
    "flow_over_time",
    "open_stall_alerts",
    "stalled_deals",
    "value_stream_map",
    "waste_deals",
    "waste_details",
    "waste_pareto",
]

MINUTE_US = 60_000_000
PROCESS_WASTES = ("rework", "chasing", "no_show", "over_processing", "overproduction")
"""Wastes of process time: their minutes are touches' time (vs_deals.waste_<name>_us)."""
WAIT_WASTES = ("waiting_on_us", "inventory")
"""Wastes measured as wait: waiting-on-us and the time deals sit stalled (vs_deals.<name>_us)."""
WASTE_CATEGORIES = PROCESS_WASTES + WAIT_WASTES
_WASTE_COLUMN = {name: f"waste_{name}_us" for name in PROCESS_WASTES} | {
    name: f"{name}_us" for name in WAIT_WASTES
}
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_UTC_MONTH = "strftime(timezone('UTC', {0}), '%Y-%m')"


class DashboardQueryError(ProjectionError):
    """A dashboard question that cannot be asked as given (a bad month, an unknown waste)."""


# --- filters ---------------------------------------------------------------------------------


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
            clauses.append(f"{_UTC_MONTH.format(month_of)} = $month")
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


def _column(connection: duckdb.DuckDBPyConnection, sql: str) -> list[Any]:
    return [row[0] for row in connection.execute(sql).fetchall()]


# --- the archive as a whole ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArchiveStamp:
    """What every view states with its figures: the archive's event time and policy versions."""

    as_of: datetime | None
    policy_versions: tuple[str, ...]
    deals: int
    deals_to_refresh: int


def archive_stamp(connection: duckdb.DuckDBPyConnection) -> ArchiveStamp:
    """The latest event time, the policy versions of the value streams, and how many deals."""
    as_of, deals, dirty = connection.execute(
        "SELECT (SELECT max(occurred_at) FROM events), (SELECT count(*) FROM vs_deals), "
        "(SELECT count(*) FROM dirty_deals)"
    ).fetchall()[0]
    versions = _column(connection, "SELECT DISTINCT policy_version FROM vs_deals ORDER BY 1")
    return ArchiveStamp(as_of, tuple(map(str, versions)), int(deals), int(dirty))


def archive_position(connection: duckdb.DuckDBPyConnection) -> tuple[tuple[str, int, int], ...]:
    """Every (topic, partition, next offset) the archive holds: it changes with every batch."""
    rows = connection.execute(
        "SELECT topic, source_partition, next_offset FROM offsets ORDER BY ALL"
    ).fetchall()
    return tuple((str(topic), int(partition), int(offset)) for topic, partition, offset in rows)


@dataclass(frozen=True, slots=True)
class FilterOptions:
    """The values each filter can take, as the archive holds them."""

    months: tuple[str, ...]
    segments: tuple[str, ...]
    owners: tuple[str, ...]
    products: tuple[str, ...]
    campaigns: tuple[str, ...]


def filter_options(connection: duckdb.DuckDBPyConnection) -> FilterOptions:
    """Months (of stage entries and openings), segments, reps, products and campaigns."""
    months = _column(
        connection,
        f"SELECT DISTINCT {_UTC_MONTH.format('first_entered_at')} FROM vs_stages "
        f"UNION SELECT DISTINCT {_UTC_MONTH.format('opened_at')} FROM vs_deals ORDER BY 1",
    )

    def distinct(expression: str) -> tuple[str, ...]:
        return tuple(map(str, _column(connection, f"SELECT DISTINCT {expression} ORDER BY 1")))

    return FilterOptions(
        months=tuple(map(str, months)),
        segments=distinct("coalesce(segment, '-') FROM vs_deals"),
        owners=distinct("owner_id FROM vs_deals"),
        products=distinct("coalesce(product, '-') FROM vs_deals"),
        campaigns=distinct(
            "campaign_id FROM events WHERE type = 'campaign_response' AND campaign_id IS NOT NULL"
        ),
    )


# --- the value-stream map --------------------------------------------------------------------


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


def value_stream_map(
    connection: duckdb.DuckDBPyConnection, filters: Filters = Filters()
) -> ValueStreamMap:
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


# --- one deal's timeline ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimelineGap:
    """A stretch of the deal's life in which no one worked on it (wait)."""

    started_at: datetime
    ended_at: datetime
    stage: str

    @property
    def minutes(self) -> float:
        """Its length in minutes."""
        return (self.ended_at - self.started_at).total_seconds() / 60


@dataclass(frozen=True, slots=True)
class DealTimeline:
    """A deal's life: its figures, stage visits, classified touches and the gaps between them.

    The gaps are the parts of its life no touch covers; they add up to its wait.
    """

    deal: Mapping[str, Any]
    visits: tuple[Mapping[str, Any], ...]
    touches: tuple[Mapping[str, Any], ...]
    gaps: tuple[TimelineGap, ...]
    stalls: tuple[Mapping[str, Any], ...]


_DEAL_COLUMNS = (
    "deal_id, status, stage, owner_id, segment, product, amount, currency, opened_at, "
    "closed_at, as_of, policy_version, lead_time_min, value_added_min, "
    "necessary_non_value_added_min, waste_min, wait_min, waiting_on_us_min, inventory_min, "
    "rework, pce, touches, stall_episodes"
)


def _stage_at(visits: Sequence[Mapping[str, Any]], moment: datetime) -> str:
    stage = str(visits[0]["stage"]) if visits else ""
    for visit in visits:
        if visit["entered_at"] <= moment:
            stage = str(visit["stage"])
    return stage


def _gaps(
    start: datetime,
    end: datetime,
    touches: Sequence[Mapping[str, Any]],
    visits: Sequence[Mapping[str, Any]],
) -> tuple[TimelineGap, ...]:
    """The parts of [start, end) that no touch with process time covers, split at stage entries."""
    gaps: list[TimelineGap] = []
    cursor = start
    spans = sorted(
        (max(t["started_at"], start), min(t["ended_at"], end))
        for t in touches
        if t["ended_at"] > t["started_at"]
    )
    for begin, finish in [*spans, (end, end)]:
        if begin > cursor:
            gaps.extend(_split_at_stages(cursor, begin, visits))
        cursor = max(cursor, finish)
    return tuple(gaps)


def _split_at_stages(
    start: datetime, end: datetime, visits: Sequence[Mapping[str, Any]]
) -> list[TimelineGap]:
    cuts = sorted({v["entered_at"] for v in visits if start < v["entered_at"] < end})
    bounds = [start, *cuts, end]
    return [
        TimelineGap(begin, finish, _stage_at(visits, begin)) for begin, finish in pairwise(bounds)
    ]


def deal_timeline(connection: duckdb.DuckDBPyConnection, deal_id: str) -> DealTimeline | None:
    """One deal's timeline, or None when the archive holds no value stream for it."""
    deals = records(
        connection,
        f"SELECT {_DEAL_COLUMNS} FROM deal_value_streams WHERE deal_id = $deal",
        {"deal": deal_id},
    )
    if not deals:
        return None
    deal = deals[0]
    visits = records(
        connection,
        "SELECT visit, stage, entered_at, left_at, regression, event_id FROM vs_visits "
        "WHERE deal_id = $deal ORDER BY visit",
        {"deal": deal_id},
    )
    touches = records(
        connection,
        "SELECT event_id, kind, direction, stage, touch_class, waste, rule, outcome, "
        f"meeting_kind, started_at, ended_at, process_us / {MINUTE_US} AS minutes "
        "FROM vs_touches WHERE deal_id = $deal ORDER BY started_at, event_id",
        {"deal": deal_id},
    )
    stalls = records(
        connection,
        f"SELECT stage, started_at, ended_at, threshold_us / {MINUTE_US} AS threshold_min "
        "FROM vs_stalls WHERE deal_id = $deal ORDER BY started_at",
        {"deal": deal_id},
    )
    end = deal["closed_at"] or deal["as_of"]
    gaps = _gaps(deal["opened_at"], max(end, deal["opened_at"]), touches, visits)
    return DealTimeline(deal, tuple(visits), tuple(touches), gaps, tuple(stalls))


def find_deals(
    connection: duckdb.DuckDBPyConnection, text: str, limit: int = 20
) -> list[dict[str, Any]]:
    """Deals whose id contains `text` (any case), stalled and open ones first."""
    return records(
        connection,
        "SELECT deal_id, status, stage, owner_id FROM vs_deals "
        "WHERE contains(lower(deal_id), lower($text)) "
        "ORDER BY status <> 'open', deal_id LIMIT $limit",
        {"text": text, "limit": max(1, min(int(limit), 200))},
    )


# --- waste -----------------------------------------------------------------------------------


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


def waste_pareto(
    connection: duckdb.DuckDBPyConnection, filters: Filters = Filters()
) -> list[WasteLine]:
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
    connection: duckdb.DuckDBPyConnection,
    category: str,
    filters: Filters = Filters(),
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


def waste_details(
    connection: duckdb.DuckDBPyConnection, category: str, deal_id: str
) -> list[dict[str, Any]]:
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


# --- flow over time --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowOverTime:
    """The cumulative flow (deals per stage per day) and throughput, WIP and lead time by month.

    `stages` lists the open stages in flow order, then the closed states.
    """

    days: tuple[str, ...]
    stages: tuple[str, ...]
    deals: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    months: tuple[Mapping[str, Any], ...] = ()


def flow_over_time(connection: duckdb.DuckDBPyConnection) -> FlowOverTime:
    """The `cumulative_flow` view as one series per stage, and the `flow_by_month` view."""
    rows = connection.execute(
        "SELECT strftime(day, '%Y-%m-%d'), stage, deals FROM cumulative_flow"
    ).fetchall()
    days = tuple(
        map(str, _column(connection, "SELECT strftime(day, '%Y-%m-%d') FROM flow_days ORDER BY 1"))
    )
    order = _column(
        connection,
        "SELECT stage FROM (SELECT stage, min(stage_rank) AS r FROM vs_stages GROUP BY stage) "
        "ORDER BY r NULLS LAST, stage",
    )
    seen = {str(stage) for _, stage, _ in rows}
    stages = [str(s) for s in order if str(s) in seen]
    stages += sorted(seen - set(stages))
    index = {day: position for position, day in enumerate(days)}
    series = {stage: [0] * len(days) for stage in stages}
    for day, stage, deals in rows:
        series[str(stage)][index[str(day)]] = int(deals)
    months = records(connection, "SELECT * FROM flow_by_month ORDER BY month")
    return FlowOverTime(
        days, tuple(stages), {stage: tuple(v) for stage, v in series.items()}, tuple(months)
    )


# --- stalled deals ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StalledDeal:
    """A deal the archive's value streams show stalled at its watermark, with the evidence.

    `stalled_days` runs from the threshold crossing (`stalled_at`) to `as_of`; the
    waste accrued is that time sitting stalled (inventory) plus the process-time
    waste of touches since the crossing.
    """

    deal_id: str
    account_id: str | None
    owner_id: str
    segment: str | None
    stage: str
    silent_since: datetime
    stalled_at: datetime
    as_of: datetime
    silent_days: float
    threshold_days: float
    stalled_days: float
    last_value_added_id: str | None
    last_value_added_at: datetime | None
    waste_accrued_min: float


def stalled_deals(connection: duckdb.DuckDBPyConnection) -> list[StalledDeal]:
    """The `stalled_deals` view, longest stalled first, with each stall's evidence."""
    rows = records(
        connection,
        f"""
        WITH stalled AS (
            SELECT s.*, s.silent_since + to_microseconds(d.stall_threshold_us) AS stalled_at
            FROM stalled_deals s JOIN vs_deals d USING (deal_id))
        SELECT s.deal_id,
               (SELECT min(e.account_id) FROM events e
                WHERE e.deal_id = s.deal_id AND e.type = 'deal_opened') AS account_id,
               s.owner_id, s.segment, s.stage, s.silent_since, s.stalled_at, s.as_of,
               s.silent_days, s.threshold_days, s.silent_days - s.threshold_days AS stalled_days,
               (SELECT max_by(t.event_id, t.started_at) FROM vs_touches t
                WHERE t.deal_id = s.deal_id AND t.touch_class = 'value_added'
                  AND t.started_at = s.last_value_added_at) AS last_value_added_id,
               s.last_value_added_at,
               ((epoch_us(s.as_of) - epoch_us(s.stalled_at))
                + coalesce((SELECT sum(t.process_us) FROM vs_touches t
                            WHERE t.deal_id = s.deal_id AND t.touch_class = 'waste'
                              AND t.started_at >= s.stalled_at), 0)) / {MINUTE_US}
                   AS waste_accrued_min
        FROM stalled s ORDER BY stalled_days DESC, s.deal_id""",
    )
    return [StalledDeal(**row) for row in rows]


def open_stall_alerts(connection: duckdb.DuckDBPyConnection) -> list[str]:
    """The archived deal-stalled alerts (JSON) whose episode has no deal-unstalled alert yet."""
    return [
        str(payload)
        for payload in _column(
            connection,
            """
            WITH a AS (SELECT kind, occurred_at, alert_id, payload,
                              json_extract_string(payload, '$.episode_id') AS episode_id
                       FROM alerts)
            SELECT payload FROM a
            WHERE kind = 'deal-stalled' AND episode_id NOT IN (
                SELECT episode_id FROM a WHERE kind = 'deal-unstalled' AND episode_id IS NOT NULL)
            ORDER BY occurred_at, alert_id""",
        )
    ]
