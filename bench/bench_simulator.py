"""Benchmark: the simulator writing history to a file, beside writing pre-built JSON lines."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from streams.simulator import SimulationConfig, write_jsonl

__all__ = ["main"]

_BUFFER = 1 << 20


def _best_seconds(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    """The fastest wall-clock and CPU seconds of `repeat` runs: the least disturbed ones."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        wall_started, cpu_started = time.perf_counter(), time.process_time()
        run()
        wall = min(wall, time.perf_counter() - wall_started)
        cpu = min(cpu, time.process_time() - cpu_started)
    return wall, cpu


def _write_lines(path: Path, lines: list[bytes]) -> None:
    """The peer: the same lines, already made, written the same way (one write each)."""
    with path.open("wb", buffering=_BUFFER) as sink:
        write = sink.write
        for line in lines:
            write(line)


def _row(name: str, events: int, seconds: tuple[float, float], note: str) -> str:
    wall, cpu = seconds
    return (
        f"{name:<10}: {events / wall:>12,.0f} events/s wall ({wall:.3f} s), "
        f"{events / cpu:>12,.0f} events/s CPU; {note}"
    )


def main(argv: list[str] | None = None) -> None:
    """Time `write_jsonl` and the peer; print both rates and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deals", type=int, default=10_000, help="deals of history (10,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, best kept (3)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    accounts = max(10, args.deals * 400 // 1_500)
    config = SimulationConfig(seed=args.seed, accounts=accounts, deals=args.deals)
    with tempfile.TemporaryDirectory(prefix="gemba-bench-") as folder:
        simulated, peer = Path(folder) / "simulated.jsonl", Path(folder) / "peer.jsonl"
        simulator = _best_seconds(lambda: write_jsonl(simulated, config), args.repeat)
        lines = simulated.read_bytes().splitlines(keepends=True)
        writer = _best_seconds(lambda: _write_lines(peer, lines), 3 * args.repeat)
        size = simulated.stat().st_size
    events = len(lines)
    print(f"config    : {args.deals:,} deals, {accounts:,} accounts, seed {args.seed}, 6 months")
    print(f"events    : {events:,} ({size / events:.0f} bytes each, {size / 1e6:.1f} MB)")
    print(_row("simulator", events, simulator, f"best of {args.repeat}"))
    print(_row("peer", events, writer, f"pre-built lines, best of {3 * args.repeat}"))
    print(f"ratio     : {writer[0] / simulator[0]:.3f} (simulator / peer, wall)")


if __name__ == "__main__":
    main()
