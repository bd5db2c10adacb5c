"""History archive: the writer's rows/s beside DuckDB's own Parquet bulk load, while a reader
process queries the archive in a loop; replay events/s.

    .venv/bin/python bench/bench_history.py [--deals N] [--batch B] [--rounds R]

Archiving: the writer as the worker runs it (projections.archive.HistoryWriter.append with
the records, the events the worker decoded and the value streams it folded for the deals
each batch touched: dedupe by event_id, hash chain, offsets, fold facts, value-stream rows,
Parquet segments and one catalog commit per batch), from an empty archive. Beside it: the
log alone (no value streams), and the refold path for callers without a fold (the writer
decoding and refolding every touched deal itself). The fold's own work (decoding, folding)
is done before the clock starts: bench_worker.py measures it.

The peer is DuckDB loading the very same event rows from a Parquet file into a table with
the archive's primary key: the fastest a row can get into a DuckDB file.

While the writers run, a reader process opens the archive (`open_reader`: a snapshot of the
last commit) and asks it two questions in a loop; printed: the writer's waits (a commit
refused because the archive was busy: the target is zero), the reader's queries and their
p95 latency, and the reader's failures.

Replay: events/s to rebuild every deal's value stream from the archive, beside its two
parts measured alone (reading and decoding the events; folding events already in memory)
and beside DuckDB reading the raw payloads. Rounds alternate the order; the best round of
each is reported (the machine is shared: read the ratios).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import timedelta
from multiprocessing.synchronize import Event as StopSignal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb
import pyarrow.parquet as pq

from events import EventBase, decode
from projections import default_policy
from projections.archive import (
    ArchiveBatch,
    ArchiveBusy,
    HistoryError,
    HistoryWriter,
    LogRecord,
    archived_events,
    open_archive,
    open_reader,
    replay,
)
from projections.archive.schema import SCHEMA
from projections.deal.value_stream import DealValueStream, deal_value_stream
from projections.errors import DealNotOpened
from streams.simulator import SimulationConfig, history_records
from streams.worker.sink import REFOLD_DEALS

PARTITIONS = 6
READER_QUESTIONS = (
    "SELECT count(*), max(recorded_at) FROM events",
    "SELECT * FROM pce_by WHERE dimension = 'all'",
)


class Batch:
    """One batch as the worker's sink hands it over: records, decoded events, value streams."""

    def __init__(
        self, records: list[LogRecord], events: list[EventBase], streams: list[DealValueStream]
    ) -> None:
        self.records, self.events, self.streams = records, events, streams


def make_log(deals: int) -> list[LogRecord]:
    records = list(history_records(SimulationConfig(seed=42, deals=deals)))
    offsets = [0] * PARTITIONS
    log = []
    for record in records:
        partition = zlib.crc32(record.key.encode()) % PARTITIONS
        recorded_at = record.occurred_at + timedelta(seconds=1)
        log.append(LogRecord("touches", partition, offsets[partition], recorded_at, record.line))
        offsets[partition] += 1
    return log


def folded_batches(log: list[LogRecord], size: int) -> list[Batch]:
    """The log in batches, each with its decoded events and the value streams of the deals
    it touched, folded from every event so far (what the worker's fold holds)."""
    policy = default_policy()
    by_deal: dict[str, list[EventBase]] = defaultdict(list)
    batches = []
    for start in range(0, len(log), size):
        records = log[start : start + size]
        events = [decode(record.value) for record in records]
        touched = set()
        for event in events:
            if event.deal_id is not None:
                by_deal[event.deal_id].append(event)
                touched.add(event.deal_id)
        streams = []
        for deal_id in sorted(touched):
            try:
                streams.append(deal_value_stream(by_deal[deal_id], policy))
            except DealNotOpened:
                continue
        batches.append(Batch(records, events, streams))
    return batches


class Waits:
    """Commits the writer could not make because the archive was busy."""

    count = 0


def _append(writer: HistoryWriter, store: Any, batch: ArchiveBatch, waits: Waits) -> Any:
    while True:
        try:
            return writer.append(store, batch, refresh=False)
        except ArchiveBusy:
            waits.count += 1
            time.sleep(0.01)


def archive_folded(batches: Sequence[Batch], path: Path, waits: Waits) -> None:
    """As the worker's sink will run: decoded events and folded value streams given; the
    latest stream of each deal stored once the batches stop (the sink: once quiet)."""
    writer = HistoryWriter(default_policy())
    with open_archive(path) as store:
        for b in batches:
            batch = ArchiveBatch(events=b.records, decoded=b.events, value_streams=b.streams)
            _append(writer, store, batch, waits)
        while writer.refresh(store, REFOLD_DEALS).deals_to_refresh:
            pass


def archive_log(batches: Sequence[Batch], path: Path, waits: Waits) -> None:
    """The log only: decoded events given, no value streams."""
    writer = HistoryWriter(default_policy(), value_streams=False)
    with open_archive(path) as store:
        for b in batches:
            _append(writer, store, ArchiveBatch(events=b.records, decoded=b.events), waits)


def archive_refolding(batches: Sequence[Batch], path: Path, waits: Waits) -> None:
    """A caller without a fold: the writer decodes, marks, and refolds the deals itself."""
    writer = HistoryWriter(default_policy())
    with open_archive(path) as store:
        for b in batches:
            _append(writer, store, ArchiveBatch(events=b.records), waits)
        while writer.refresh(store, REFOLD_DEALS).deals_to_refresh:
            pass


def bulk_load(parquet: Path, path: Path) -> None:
    with duckdb.connect(str(path)) as connection:  # the same schema: events with its key
        connection.execute(SCHEMA)
        connection.execute(f"INSERT INTO events SELECT * FROM '{parquet}'")


def timed(run: Callable[[], object], count: int) -> float:
    began = time.perf_counter()
    run()
    return count / (time.perf_counter() - began)


def reader_loop(root: str, stop: StopSignal, results: Any) -> None:
    """Query whichever archive under `root` exists, in a loop, until `stop`; latencies out."""
    latencies: list[float] = []
    failures = 0
    while not stop.is_set():
        live = sorted(Path(root).glob("*.archive"), key=lambda p: p.stat().st_mtime)
        if not live:
            time.sleep(0.01)
            continue
        began = time.perf_counter()
        try:
            connection = open_reader(live[-1])
            try:
                for question in READER_QUESTIONS:
                    connection.execute(question).fetchall()
            finally:
                connection.close()
        except HistoryError:
            failures += 1
            continue
        latencies.append(time.perf_counter() - began)
    results.put((latencies, failures))


def replay_rates(archive: Path, count: int) -> dict[str, float]:
    """Replay end to end, its two parts alone, and DuckDB reading the raw payloads."""
    reader = open_archive(archive, read_only=True)
    try:
        events = archived_events(reader)
        return {
            "raw": timed(lambda: reader.execute("SELECT payload FROM events").fetchall(), count),
            "read": timed(lambda: archived_events(reader), count),
            "fold": timed(lambda: replay(events, default_policy()), count),
            "replay": timed(lambda: replay(archived_events(reader), default_policy()), count),
        }
    finally:
        reader.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--deals", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=5_000, help="messages per commit")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    log = make_log(args.deals)
    n = len(log)
    batches = folded_batches(log, args.batch)
    best: dict[str, float] = {}
    waits = Waits()

    def keep(name: str, rate: float) -> None:
        best[name] = max(best.get(name, 0.0), rate)

    with tempfile.TemporaryDirectory(prefix="gemba-bench-history-") as tmp:
        root = Path(tmp)
        archive, parquet = root / "first.archive", root / "events.parquet"
        archive_folded(batches, archive, waits)
        with open_archive(archive) as store:
            pq.write_table(store.reader().sql("FROM events").to_arrow_table(), parquet)

        context = multiprocessing.get_context("spawn")
        stop, results = context.Event(), context.Queue()
        reader = context.Process(target=reader_loop, args=(tmp, stop, results))
        reader.start()
        time.sleep(2.0)  # the reader's imports
        for round_number in range(args.rounds):
            runs: dict[str, Callable[[], object]] = {
                "bulk": lambda r=round_number: bulk_load(parquet, root / f"bulk-{r}.duckdb"),
                "folded": lambda r=round_number: archive_folded(
                    batches, root / f"folded-{r}.archive", waits
                ),
                "log": lambda r=round_number: archive_log(
                    batches, root / f"log-{r}.archive", waits
                ),
                "refold": lambda r=round_number: archive_refolding(
                    batches, root / f"refold-{r}.archive", waits
                ),
            }
            order = list(runs) if round_number % 2 == 0 else list(reversed(runs))
            for name in order:
                keep(name, timed(runs[name], n))
        stop.set()
        latencies, failures = results.get(timeout=60)
        reader.join(timeout=30)

        for _ in range(args.rounds):
            for name, rate in replay_rates(archive, n).items():
                keep(name, rate)

    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan")
    print(f"events: {n:,} ({args.deals:,} deals), batch {args.batch:,}, best of {args.rounds}")
    print(
        f"  DuckDB bulk load of the same rows from Parquet : {best['bulk']:>10,.0f} rows/s (peer)"
    )
    for name, label in [
        ("folded", "archiving, value streams from the fold"),
        ("log", "archiving the log only"),
        ("refold", "archiving, writer refolding (no fold given)"),
    ]:
        print(f"  {label:<47}: {best[name]:>10,.0f} rows/s  ({best[name] / best['bulk']:.3f}x)")
    print(f"  writer waits (archive busy)                    : {waits.count:>10,}")
    print(
        f"  reader process meanwhile                       : {len(latencies):>10,} queries, "
        f"p95 {p95 * 1000:,.1f} ms, {failures} failed"
    )
    print(f"  DuckDB reading the raw payloads                : {best['raw']:>10,.0f} rows/s (peer)")
    print(f"  replay: read + decode events                   : {best['read']:>10,.0f} events/s")
    print(f"  replay: fold events already in memory          : {best['fold']:>10,.0f} events/s")
    ratio = best["replay"] / best["raw"]
    label = "replay from the archive, end to end"
    print(f"  {label:<47}: {best['replay']:>10,.0f} events/s  ({ratio:.3f}x)")


if __name__ == "__main__":
    main()
