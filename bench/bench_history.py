"""History archive: the sink's rows/s beside DuckDB's own Parquet bulk load; replay events/s.

    .venv/bin/python bench/bench_history.py [--deals N] [--batch B] [--rounds R]

Sink: the sink's write path (projections.archive.HistoryWriter, as the worker runs
it: decode, dedupe by event_id, hash chain, offsets, Arrow append, one transaction and
one open/close of the file per batch), first archiving the log only, then also refolding
the value-stream tables of every deal the batches touched, as the worker's sink does
while history catches up (each deal once, when the stream is quiet). The peer is DuckDB
loading the very same rows (the events table the sink wrote, with its primary key) from
a Parquet file: the fastest a row can get into the file.

Replay: events/s to rebuild every deal's value stream from the archive, beside its two
parts measured alone (reading and decoding the events; folding events already in memory)
and beside DuckDB reading the raw payloads. Kafka is not involved: the sink's Kafka side
is the worker's consumer, measured by bench_worker.py. Rounds alternate the order; the
best round of each is reported (the machine is shared: read the ratios).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb

from projections import default_policy
from projections.archive import (
    ArchiveBatch,
    HistoryWriter,
    LogRecord,
    archived_events,
    open_archive,
    replay,
)
from streams.simulator import SimulationConfig, history_records
from streams.worker.sink import REFOLD_DEALS

PARTITIONS = 6


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


def sink(log: list[LogRecord], path: Path, batch: int, value_streams: bool) -> None:
    """As the worker's sink catches up: batches appended, then the marked deals refolded."""
    writer = HistoryWriter(default_policy(), value_streams=value_streams)
    for start in range(0, len(log), batch):
        connection = open_archive(path)
        writer.append(connection, ArchiveBatch(events=log[start : start + batch]), refresh=False)
        connection.close()
    while value_streams:
        connection = open_archive(path)
        outcome = writer.refresh(connection, REFOLD_DEALS)
        connection.close()
        if not outcome.deals_to_refresh:
            break


def bulk_load(parquet: Path, path: Path) -> None:
    connection = open_archive(path)  # the same schema: events with its primary key
    connection.execute(f"INSERT INTO events SELECT * FROM '{parquet}'")
    connection.close()


def timed(run: Callable[[], object], count: int) -> float:
    began = time.perf_counter()
    run()
    return count / (time.perf_counter() - began)


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
    parser.add_argument("--batch", type=int, default=20_000, help="messages per transaction")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    log = make_log(args.deals)
    n = len(log)
    best: dict[str, float] = {}

    def keep(name: str, rate: float) -> None:
        best[name] = max(best.get(name, 0.0), rate)

    with tempfile.TemporaryDirectory(prefix="gemba-bench-history-") as tmp:
        root = Path(tmp)
        archive, parquet = root / "archive.duckdb", root / "events.parquet"
        sink(log, archive, args.batch, value_streams=True)
        with duckdb.connect(str(archive), read_only=True) as connection:
            connection.execute(f"COPY events TO '{parquet}' (FORMAT parquet)")

        for round_number in range(args.rounds):
            runs: dict[str, Callable[[], object]] = {
                "bulk": lambda r=round_number: bulk_load(parquet, root / f"bulk-{r}.duckdb"),
                "log": lambda r=round_number: sink(
                    log, root / f"log-{r}.duckdb", args.batch, value_streams=False
                ),
                "sink": lambda r=round_number: sink(
                    log, root / f"sink-{r}.duckdb", args.batch, value_streams=True
                ),
            }
            order = list(runs) if round_number % 2 == 0 else list(reversed(runs))
            for name in order:
                keep(name, timed(runs[name], n))

            for name, rate in replay_rates(archive, n).items():
                keep(name, rate)

    print(f"events: {n:,} ({args.deals:,} deals), batch {args.batch:,}, best of {args.rounds}")
    print(
        f"  DuckDB bulk load of the same rows from Parquet : {best['bulk']:>10,.0f} rows/s (peer)"
    )
    for name, label in [
        ("log", "sink, archiving the log only"),
        ("sink", "sink, with value streams refolded"),
    ]:
        print(f"  {label:<47}: {best[name]:>10,.0f} rows/s  ({best[name] / best['bulk']:.3f}x)")
    print(f"  DuckDB reading the raw payloads                : {best['raw']:>10,.0f} rows/s (peer)")
    print(f"  replay: read + decode events                   : {best['read']:>10,.0f} events/s")
    print(f"  replay: fold events already in memory          : {best['fold']:>10,.0f} events/s")
    ratio = best["replay"] / best["raw"]
    label = "replay from DuckDB, end to end"
    print(f"  {label:<47}: {best['replay']:>10,.0f} events/s  ({ratio:.3f}x)")


if __name__ == "__main__":
    main()
