"""The event log out, in formats process-mining and analytics tools read: XES, OCEL 2.0,
Parquet and CSV."""

from __future__ import annotations

from events.exporters.csv_cells import neutralise_cell, neutralise_row
from events.exporters.ocel import write_ocel
from events.exporters.tables import EVENT_COLUMNS, write_csv, write_parquet
from events.exporters.xes import activity, case_of, write_xes

__all__ = [
    "EVENT_COLUMNS",
    "activity",
    "case_of",
    "neutralise_cell",
    "neutralise_row",
    "write_csv",
    "write_ocel",
    "write_parquet",
    "write_xes",
]
