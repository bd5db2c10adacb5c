"""Replay from the archive: the fold in DuckDB SQL beside the Python fold and the Faust path.

    .venv/bin/python bench/bench_replay.py [--events N] [--base M] [--faust-events F]

1. Simulates M events (default 500,000) and archives them as the worker's sink does
   (projections.archive.HistoryWriter: decode, hash chain, offsets, fold facts), in
   batches, on six partitions.
2. Peers measured on those M events in this run: the Python fold, deal by deal
   (`gemba replay --engine python`: read and decode the archive, fold every deal), and
   the SQL fold (`gemba replay`, projections.archive.sql_replay); both print their
   content hash, which must be equal.
3. Grows the archive to N events (default 10,000,000) by copying the M events as new
   deals, whole copies (new event and deal ids; the copies' payloads still name the
   original deal, which the fold does not read: it reads the fold facts) and replays it
   in SQL.
4. The Faust path in this run: a real broker and `gemba worker` folding the first F
   events (default 30,000) of the same history from offset 0, timed by its counters
   page, as bench/bench_worker.py does.

Prints events/s of each and the ratios (issue 6 target: the SQL replay of 10,000,000
events at >= 1,000,000 events/s and >= 10x the Faust path). Timings include writing
the content hash (the SQL replay's hash is most of a third of its time).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb

from bench._broker import benchmark_broker
from bench.bench_worker import simulated_messages, worker_pipeline
from projections import default_policy
from projections.archive import (
    ArchiveBatch,
    HistoryWriter,
    LogRecord,
    archived_events,
    open_archive,
    recorded_at_from_ms,
    replay,
    sql_replay,
)
from tests.support.worker_harness import WorkerSetup, publish

PARTITIONS = 6
RECORDED_MS = 1_800_000_000_000
BATCH = 20_000


def build_archive(messages: list[tuple[bytes, bytes]], path: Path) -> None:
    """Archive the messages as the sink does, batch by batch, each recorded a second on."""
    offsets = [0] * PARTITIONS
    writer = HistoryWriter(default_policy(), value_streams=False)
    began = time.perf_counter()
    for start in range(0, len(messages), BATCH):
        records = []
        for key, line in messages[start : start + BATCH]:
            partition = zlib.crc32(key) % PARTITIONS
            recorded = recorded_at_from_ms(RECORDED_MS + start)  # after every simulated event
            records.append(LogRecord("touches", partition, offsets[partition], recorded, line))
            offsets[partition] += 1
        connection = open_archive(path)
        try:
            writer.append(connection, ArchiveBatch(events=records), refresh=False)
        finally:
            connection.close()
        done = min(start + BATCH, len(messages))
        print(
            f"\r  archived {done:,} of {len(messages):,} events "
            f"({done / (time.perf_counter() - began):,.0f}/s)",
            end="",
            flush=True,
        )
    print()


def grow(path: Path, target: int) -> int:
    """Copy the archive's events as new deals, whole copies, to about `target` events."""
    with duckdb.connect(str(path)) as connection:
        held = connection.execute("SELECT count(*) FROM events").fetchall()[0][0]
        top = connection.execute("SELECT max(deal_no) FROM deal_numbers").fetchall()[0][0]
        copies = max(round(target / held) - 1, 0)
        suffix = "'-c' || c"
        connection.execute(
            f"""INSERT INTO deal_numbers
            SELECT n.deal_id || {suffix}, n.deal_no + c * {top}
            FROM (SELECT * FROM deal_numbers) n, range(1, {copies + 1}) AS copies(c)"""
        )
        connection.execute(
            f"""INSERT INTO events
            SELECT e.* REPLACE (e.event_id || {suffix} AS event_id,
                                e.deal_id || {suffix} AS deal_id)
            FROM (SELECT * FROM events) e, range(1, {copies + 1}) AS copies(c)"""
        )
        connection.execute(
            f"""INSERT INTO fold_facts
            SELECT f.* REPLACE (f.event_id || {suffix} AS event_id,
                                f.deal_no + c * {top} AS deal_no)
            FROM (SELECT * FROM fold_facts) f, range(1, {copies + 1}) AS copies(c)"""
        )
        return int(connection.execute("SELECT count(*) FROM events").fetchall()[0][0])


def sql_rate(path: Path) -> tuple[float, str, int]:
    connection = open_archive(path, read_only=True)
    try:
        began = time.perf_counter()
        replayed = sql_replay(connection, default_policy())
        elapsed = time.perf_counter() - began
    finally:
        connection.close()
    return replayed.events_read / elapsed, replayed.content_hash, replayed.deals


def python_rate(path: Path) -> tuple[float, str, int]:
    connection = open_archive(path, read_only=True)
    try:
        began = time.perf_counter()
        replayed = replay(archived_events(connection), default_policy())
        elapsed = time.perf_counter() - began
    finally:
        connection.close()
    return replayed.events_read / elapsed, replayed.content_hash, replayed.deals


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--base", type=int, default=500_000)
    parser.add_argument("--faust-events", type=int, default=30_000)
    args = parser.parse_args()

    began = time.perf_counter()
    messages = simulated_messages(args.base)
    print(f"simulated {len(messages):,} events in {time.perf_counter() - began:.0f}s")
    with tempfile.TemporaryDirectory(prefix="gemba-bench-replay-") as tmp:
        path = Path(tmp) / "archive.duckdb"
        build_archive(messages, path)

        print(f"replaying {args.base:,} events in Python (peer) ...", flush=True)
        python, python_hash, deals = python_rate(path)
        print(f"replaying {args.base:,} events in SQL ...", flush=True)
        sql_small, sql_hash, sql_deals = sql_rate(path)
        if (sql_hash, sql_deals) != (python_hash, deals):
            raise SystemExit(f"the two folds disagree: {sql_hash} vs {python_hash}")

        print(f"growing the archive to {args.events:,} events ...", flush=True)
        began = time.perf_counter()
        held = grow(path, args.events)
        print(f"  {held:,} events in {time.perf_counter() - began:.0f}s; replaying in SQL ...")
        sql_big, _, big_deals = sql_rate(path)

        print(f"the Faust path: gemba worker on {args.faust_events:,} events ...", flush=True)
        with benchmark_broker() as settings:
            setup = WorkerSetup.fresh(settings, Path(tmp) / "gemba", fast_rejoin=False)
            setup.create_touches_topic()
            publish(setup.bootstrap_servers, setup.touches_topic, messages[: args.faust_events])
            worker, _ = worker_pipeline(setup, args.faust_events, Path(tmp) / "w.log", None)

    faust = worker.per_second
    print(f"\nreplay rates (same run; content hashes of the {args.base:,}-event archive equal)")
    print(f"  SQL fold, {held:>12,} events ({big_deals:,} deals): {sql_big:>12,.0f} events/s "
          f"({sql_big / faust:,.0f}x the Faust path; target 1,000,000/s and 10x)")  # fmt: skip
    print(
        f"  SQL fold, {args.base:>12,} events ({sql_deals:,} deals): {sql_small:>12,.0f} events/s"
    )
    print(f"  Python fold, {args.base:>9,} events (peer)      : {python:>12,.0f} events/s "
          f"(SQL is {sql_small / python:,.1f}x)")  # fmt: skip
    print(f"  Faust path (gemba worker), {args.faust_events:>7,} events : {faust:>12,.0f} events/s")


if __name__ == "__main__":
    main()
