"""A deterministic B2B sales simulator: history to a file, then live events, with ground truth."""

from __future__ import annotations

from streams.simulator.config import DEFAULT_HISTORY_END, SimulationConfig, SimulatorError
from streams.simulator.generate import (
    EventStream,
    SimulatedEvent,
    ground_truth,
    history_events,
    history_lines,
    history_records,
    live_events,
    silent_deal_ids,
)
from streams.simulator.groundtruth import GroundTruth
from streams.simulator.jsonl import WriteProgress, write_jsonl
from streams.simulator.pacing import Pace, paced, seconds_to_sleep

__all__ = [
    "DEFAULT_HISTORY_END",
    "EventStream",
    "GroundTruth",
    "Pace",
    "SimulatedEvent",
    "SimulationConfig",
    "SimulatorError",
    "WriteProgress",
    "ground_truth",
    "history_events",
    "history_lines",
    "history_records",
    "live_events",
    "paced",
    "seconds_to_sleep",
    "silent_deal_ids",
    "write_jsonl",
]
