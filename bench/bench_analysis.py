"""Analysis at scale: DuckDB beside pm4py on the same event log, same run, outputs compared.

    .venv/bin/python bench/bench_analysis.py [--events N] [--rounds R]

Writes N deal events (default 10,000,000: one million simulated, repeated as new
cases; each deal a case) to a Parquet file sorted by case, time and event id, then
times, on that same file:

- DuckDB: the directly-follows graph with the count and mean duration of every
  (activity, next activity) pair, and the stage-level value-stream query (deals
  entering, and mean and total days in, each stage, from the stage changes);
- pm4py (the peer; AGPL, a dev-only dependency): reading the file with pandas,
  `format_dataframe`, `discover_dfg` and `discover_performance_dfg` (mean).

The two DFGs are compared pair by pair (counts equal, means within 1e-6 s). Prints
both times and their ratio (issue 6 target: DuckDB at most 10% of pm4py's time).
Activities: the event type, with the outcome or kind of a touch and the stage a
change moves to (e.g. `call:connected`, `meeting:discovery:held`, `stage:Proposal`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from streams.simulator import SimulationConfig, history_records

EVENTS_PER_DEAL = 25
SIMULATED = 1_000_000
"""Events simulated at most; a larger log repeats them as new cases."""
CHUNK = 500_000
SCHEMA = pa.schema(
    [
        ("case_id", pa.string()),
        ("event_id", pa.string()),
        ("activity", pa.string()),
        ("ts", pa.string()),
        ("stage", pa.string()),
    ]
)


def _activity(event: dict[str, Any]) -> tuple[str, str | None]:
    kind = event["type"]
    if kind == "call":
        return f"call:{event['outcome']}", None
    if kind == "meeting":
        return f"meeting:{event['kind']}:{event['outcome']}", None
    if kind == "email":
        return f"email:{event['direction']}", None
    if kind == "stage_changed":
        return f"stage:{event['to_stage']}", event["to_stage"]
    if kind == "deal_opened":
        return kind, event.get("stage", "Prospecting")
    if kind in {"deal_won", "deal_lost"}:
        return kind, kind
    return kind, None


def _rows(count: int) -> Iterator[dict[str, Any]]:
    config = SimulationConfig(seed=17, deals=max(1, count // EVENTS_PER_DEAL))
    made = 0
    for record in history_records(config):
        event = orjson.loads(record.line)
        if event.get("deal_id") is None:
            continue
        activity, stage = _activity(event)
        yield {
            "case_id": event["deal_id"],
            "event_id": event["event_id"],
            "activity": activity,
            "ts": event["occurred_at"],
            "stage": stage,
        }
        made += 1
        if made == count:
            return
    if made < count:
        raise SystemExit(f"the simulation made only {made:,} deal events; lower --events")


def write_log(count: int, directory: Path) -> Path:
    """The log as Parquet, sorted by case, time and event id (both tools read this file).

    Up to SIMULATED events come from the simulator; a larger log repeats them with the
    case ids suffixed (-r1, -r2, ...), so that every copy is a case of its own.
    """
    raw = directory / "raw.parquet"
    simulated = min(count, SIMULATED)
    with pq.ParquetWriter(raw, SCHEMA) as writer:
        chunk: list[dict[str, Any]] = []
        for row in _rows(simulated):
            chunk.append(row)
            if len(chunk) == CHUNK:
                writer.write_table(_table(chunk))
                chunk = []
        if chunk:
            writer.write_table(_table(chunk))
    sorted_log = directory / "log.parquet"
    duckdb.sql(
        "COPY (SELECT CASE WHEN copy = 0 THEN case_id ELSE case_id || '-r' || copy END "
        "AS case_id, event_id, activity, CAST(ts AS TIMESTAMPTZ) AS ts, stage "
        f"FROM read_parquet('{raw}'), range({-(-count // simulated)}) AS copies(copy) "
        f"ORDER BY copy, case_id, 4, event_id LIMIT {count}) "
        f"TO '{sorted_log}' (FORMAT parquet)"
    )
    raw.unlink()
    return sorted_log


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    columns = {name: [row[name] for row in rows] for name in SCHEMA.names}
    return pa.table(columns, schema=SCHEMA)


DFG_SQL = """
WITH here AS (SELECT case_id, activity, ts FROM read_parquet($log)),
     after AS (
         SELECT case_id AS next_case, activity AS next_activity, ts AS next_ts
         FROM read_parquet($log) OFFSET 1
     )
SELECT activity, next_activity, count(*) AS n,
       avg(epoch_us(next_ts) - epoch_us(ts)) / 1e6 AS mean_s
FROM here POSITIONAL JOIN after WHERE case_id = next_case GROUP BY ALL
"""
"""The file is sorted by case and time: each row's successor is the next row of the same
case, so the graph is a positional join of the log with itself shifted by one row."""
STAGES_SQL = """
WITH moves AS (
    SELECT case_id, stage, ts, lead(ts) OVER w AS left_at
    FROM read_parquet($log) WHERE stage IS NOT NULL
    WINDOW w AS (PARTITION BY case_id ORDER BY file_row_number)
)
SELECT stage, count(DISTINCT case_id) AS deals,
       avg(epoch_us(left_at) - epoch_us(ts)) / 86400e6 AS mean_days,
       sum(epoch_us(left_at) - epoch_us(ts)) / 86400e6 AS total_days
FROM moves WHERE stage NOT IN ('deal_won', 'deal_lost') AND left_at IS NOT NULL
GROUP BY stage ORDER BY stage
"""


def duckdb_analysis(log: Path) -> tuple[float, float, dict[tuple[str, str], tuple[int, float]]]:
    """Seconds for the DFG and for the stage query, and the DFG."""
    connection = duckdb.connect()
    began = time.perf_counter()
    rows = connection.execute(DFG_SQL.replace("$log", f"'{log}'")).fetchall()
    dfg_s = time.perf_counter() - began
    began = time.perf_counter()
    connection.execute(
        STAGES_SQL.replace("read_parquet($log)", f"read_parquet('{log}', file_row_number=true)")
    ).fetchall()
    stages_s = time.perf_counter() - began
    connection.close()
    return dfg_s, stages_s, {(a, b): (int(n), float(mean)) for a, b, n, mean in rows}


def pm4py_analysis(log: Path) -> tuple[float, dict[tuple[str, str], tuple[int, float]]]:
    """Seconds for pandas + pm4py to read the file and discover the DFG with mean times."""
    import pandas as pd
    import pm4py

    began = time.perf_counter()
    frame = pd.read_parquet(log, columns=["case_id", "activity", "ts"])
    frame = pm4py.format_dataframe(
        frame, case_id="case_id", activity_key="activity", timestamp_key="ts"
    )
    counts = pm4py.discover_dfg(frame)[0]
    performance = pm4py.discover_performance_dfg(frame)[0]
    elapsed = time.perf_counter() - began
    dfg = {pair: (int(n), float(_mean(performance[pair]))) for pair, n in counts.items()}
    return elapsed, dfg


def _mean(measure: Any) -> float:
    return float(measure["mean"]) if isinstance(measure, dict) else float(measure)


def differences(
    ours: dict[tuple[str, str], tuple[int, float]], theirs: dict[tuple[str, str], tuple[int, float]]
) -> list[str]:
    found = []
    for pair in sorted(ours.keys() | theirs.keys()):
        a, b = ours.get(pair), theirs.get(pair)
        if a is None or b is None or a[0] != b[0] or abs(a[1] - b[1]) > 1e-6 * max(1, abs(b[1])):
            found.append(f"{pair}: duckdb {a} pm4py {b}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gemba-ba-") as tmp:
        began = time.perf_counter()
        log = write_log(args.events, Path(tmp))
        size = log.stat().st_size / 1e6
        print(f"wrote {args.events:,} deal events ({size:,.0f} MB Parquet) in "
              f"{time.perf_counter() - began:.0f}s")  # fmt: skip
        best_duck = best_stages = best_pm = float("inf")
        for _ in range(args.rounds):
            dfg_s, stages_s, ours = duckdb_analysis(log)
            pm_s, theirs = pm4py_analysis(log)
            best_duck, best_stages = min(best_duck, dfg_s), min(best_stages, stages_s)
            best_pm = min(best_pm, pm_s)
        wrong = differences(ours, theirs)
    print(f"  DuckDB directly-follows graph (count, mean) : {best_duck:8.2f} s")
    print(f"  DuckDB stage-level value-stream query       : {best_stages:8.2f} s")
    print(f"  pm4py DFG + performance DFG (peer)          : {best_pm:8.2f} s")
    print(f"  DuckDB DFG / pm4py: {best_duck / best_pm:.1%} (target <= 10%); "
          f"{len(ours):,} pairs, outputs {'equal' if not wrong else 'DIFFER'}")  # fmt: skip
    for line in wrong[:20]:
        print("   ", line)
    if wrong:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
