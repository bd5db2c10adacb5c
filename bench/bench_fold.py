"""The incremental fold (DealFold) beside the batch fold the worker runs today, same run.

    .venv/bin/python bench/bench_fold.py [--events N] [--batches 1,100,5000] [--deals-memory D]
                                         [--profile]

A simulated history (`streams.simulator.history_records`, decoded once beforehand:
decoding is not measured) is cut into batches of B events, as the worker's pipeline
gathers them. After each batch every deal the batch touched is folded once, and what
the worker publishes is made of it: the value stream, its JSON document
(`model_dump_json`) and its roll-up contribution. Two ways, on the same batches:

- DealFold: each event is `add`ed to its deal's fold; the fold gives the value stream;
- peer, as today: each deal's events are kept (decoded, and encoded as the worker's
  table stores them), and the batch fold (`deal_value_stream`) refolds all of them.
  DealFold encodes each event it takes too (the worker may pass the bytes it has).

Then the stall check's refold: every open deal at a watermark a week after the end,
from its DealFold (no decode), beside today's path (decode the stored JSON, batch fold).
Then memory: tracemalloc's bytes per deal held as a DealFold with two events (an open
and a touch), D deals, beside the same events as the worker's table holds them today
(encoded JSON strings in a dict per deal). Prints µs per event and ratios; the machine
is shared, so read the ratios. `--profile` prints cProfile's top functions of the
DealFold run at B=1.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from events import EventBase, decode, encode
from projections import default_policy
from projections.deal.fold import DealFold
from projections.deal.value_stream import DealValueStream, deal_value_stream
from projections.errors import DealNotOpened
from projections.policy.model import Policy
from projections.portfolio.rollup import contributions
from streams.simulator import SimulationConfig, history_records

__all__ = ["main"]

EVENTS_PER_DEAL = 25


def _history(count: int) -> list[EventBase]:
    config = SimulationConfig(seed=11, deals=max(1, count // EVENTS_PER_DEAL))
    events: list[EventBase] = []
    for record in history_records(config):
        event = decode(record.line)
        if event.deal_id is not None:
            events.append(event)
        if len(events) == count:
            break
    return events


def _publish(stream: DealValueStream, campaigns: tuple[str, ...] | list[str]) -> int:
    document = stream.model_dump_json().encode()
    contributions(stream, campaigns)
    return len(document)


def run_fold(events: list[EventBase], batch: int, policy: Policy) -> dict[str, DealFold]:
    folds: dict[str, DealFold] = {}
    for start in range(0, len(events), batch):
        touched: dict[str, DealFold] = {}
        for event in events[start : start + batch]:
            deal_id = str(event.deal_id)
            fold = folds.get(deal_id)
            if fold is None:
                fold = folds[deal_id] = DealFold(deal_id, policy)
            fold.add(event)
            touched[deal_id] = fold
        for fold in touched.values():
            try:
                stream = fold.value_stream()
            except DealNotOpened:
                continue
            _publish(stream, fold.campaign_ids)
    return folds


def run_batch_fold(events: list[EventBase], batch: int, policy: Policy) -> None:
    held: dict[str, dict[str, EventBase]] = {}
    stored: dict[str, dict[str, str]] = {}
    for start in range(0, len(events), batch):
        touched = set()
        for event in events[start : start + batch]:
            deal_id = str(event.deal_id)
            held.setdefault(deal_id, {})[event.event_id] = event
            stored.setdefault(deal_id, {})[event.event_id] = encode(event).decode()
            touched.add(deal_id)
        for deal_id in sorted(touched):
            mine = list(held[deal_id].values())
            try:
                stream = deal_value_stream(mine, policy)
            except DealNotOpened:
                continue
            _publish(stream, [e.campaign_id for e in mine if e.campaign_id is not None])


def _timed(work: Callable[[], object]) -> tuple[float, object]:
    gc.collect()
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def _stall_checks(folds: dict[str, DealFold], policy: Policy) -> None:
    latest = max(fold.latest_event_time for fold in folds.values() if fold.latest_event_time)
    later = latest + timedelta(days=7)
    open_folds = []
    for fold in folds.values():
        try:
            if fold.value_stream().closed_at is None:
                open_folds.append(fold)
        except DealNotOpened:
            continue
    stored = {fold.deal_id: [encode(e).decode() for e in fold.events] for fold in open_folds}
    mine, _ = _timed(lambda: [fold.value_stream(later) for fold in open_folds])
    peer, _ = _timed(
        lambda: [
            deal_value_stream([decode(raw) for raw in stored[f.deal_id]], policy, later)
            for f in open_folds
        ]
    )
    print(
        f"stall check of {len(open_folds)} open deals a week on: DealFold "
        f"{mine / len(open_folds) * 1e6:8.1f} µs/deal, peer (decode + batch fold) "
        f"{peer / len(open_folds) * 1e6:8.1f} µs/deal, ratio {peer / mine:5.2f}x"
    )


def _memory(deals: int, policy: Policy) -> None:
    gc.collect()
    tracemalloc.start()
    events = _two_event_deals(deals)
    decoded = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    folds = {}
    for opened, touch in events:
        fold = DealFold(str(opened.deal_id), policy)
        fold.add(opened)
        fold.add(touch)
        folds[fold.deal_id] = fold
    hot = tracemalloc.get_traced_memory()[0] - before
    for fold in folds.values():
        fold.compact()
    gc.collect()
    mine = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del folds
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    encoded = [(encode(a).decode(), encode(b).decode(), a, b) for a, b in events]
    table = {str(a.deal_id): {a.event_id: ra, b.event_id: rb} for ra, rb, a, b in encoded}
    del encoded
    peer = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del table
    print(
        f"memory, {deals} deals of 2 events: DealFold compacted {mine / deals:7.0f} B/deal, "
        f"hot {(hot + decoded) / deals:7.0f} B/deal (with its decoded events), "
        f"peer (encoded JSON in a dict per deal) {peer / deals:7.0f} B/deal"
    )


def _two_event_deals(deals: int) -> list[tuple[EventBase, EventBase]]:
    pairs: dict[str, list[EventBase]] = {}
    for record in history_records(SimulationConfig(seed=5, deals=deals)):
        event = decode(record.line)
        if event.deal_id is None:
            continue
        mine = pairs.setdefault(event.deal_id, [])
        if len(mine) < 2:
            mine.append(event)
    return [(pair[0], pair[1]) for pair in pairs.values() if len(pair) == 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batches", default="1,100,5000")
    parser.add_argument("--deals-memory", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    policy = default_policy()
    events = _history(args.events)
    deals = len({e.deal_id for e in events})
    print(f"{len(events)} deal events of {deals} deals (simulated history, seed 11)")
    folds: dict[str, DealFold] = {}
    for batch in [int(b) for b in args.batches.split(",")]:
        mine, folds = _timed(lambda b=batch: run_fold(events, b, policy))  # type: ignore[assignment]
        peer, _ = _timed(lambda b=batch: run_batch_fold(events, b, policy))
        n = len(events)
        print(
            f"batch {batch:>5}: DealFold {mine / n * 1e6:8.1f} µs/event, "
            f"peer (batch fold per touched deal) {peer / n * 1e6:8.1f} µs/event, "
            f"ratio {peer / mine:5.2f}x"
        )
    _stall_checks(folds, policy)
    _memory(args.deals_memory, policy)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run_fold, events, 1, policy)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
