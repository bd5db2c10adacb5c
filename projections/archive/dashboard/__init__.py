"""The dashboard's questions to the history archive: SQL over its tables and views, values bound.

Every function takes an open (read-only) archive connection and returns plain frozen
data. No value a user gives reaches SQL text: filters, deal ids and waste categories
are bound as parameters, and the only names put into SQL text come from these
modules' own constants. Figures are minutes (floats) and shares, as in the archive's
views (`projections.archive.schema`), so that the dashboard shows exactly what
`gemba query` gives for the same question.

Periods: a stage's figures are bucketed by the month the deal first entered the
stage, a deal's figures by the month it opened, as in the `value_stream_by` view.
One module per view: `stages` (the value-stream map), `timeline`, `waste`, `flow`,
`stalls`, and `overview` (what every view states); callers import from this package.
"""

from projections.archive.dashboard.filters import DashboardQueryError, Filters
from projections.archive.dashboard.flow import FlowOverTime, flow_over_time
from projections.archive.dashboard.overview import (
    ArchiveStamp,
    FilterOptions,
    archive_position,
    archive_stamp,
    filter_options,
)
from projections.archive.dashboard.stages import StageBox, ValueStreamMap, value_stream_map
from projections.archive.dashboard.stalls import StalledDeal, open_stall_alerts, stalled_deals
from projections.archive.dashboard.timeline import (
    DealTimeline,
    TimelineGap,
    deal_timeline,
    find_deals,
)
from projections.archive.dashboard.waste import (
    WASTE_CATEGORIES,
    WasteDeal,
    WasteLine,
    waste_deals,
    waste_details,
    waste_pareto,
)
from projections.archive.schema import PROCESS_WASTES, WAIT_WASTES

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
