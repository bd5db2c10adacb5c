"""Dashboard: each view's API and page load time beside the same question asked of DuckDB directly.

    .venv/bin/python bench/bench_dashboard.py [--deals N] [--rounds R] [--no-browser]

Builds the simulator's history (default 1,500 deals, about 50,000 events) into a
real archive file with its value-stream tables, starts `gemba serve` on a free
port as a user would, and measures for each view:

- api first: the view's JSON endpoint(s) the first time, over HTTP on 127.0.0.1 (the
  server opens the archive read-only, asks, closes);
- api: the same again (median of R rounds): answered from memory while the archive file
  has not changed (with a worker writing, every batch makes it ask the file again);
- page: a fresh page in headless Chromium (Debian's /usr/bin/chromium, driven by
  Playwright) from navigation until the view is drawn (main[data-ready]), assets and
  API calls included, timed by the test driver (median of R rounds); drawn: the same
  as the page itself times it (performance.now() when drawn, from its navigation);
- peer: the same figures straight from the archive, as `gemba query` gets them: open the
  file read-only, run the view's SQL, close (median of R rounds). For campaigns and
  assumptions, whose documents are computed once per archive state, the peer is the
  direct computation (`gemba campaigns` / `gemba assumptions check` without process
  start), and the dashboard's own first computation is reported too.

The target is under 1 s per view (api and page). No broker is started: the alerts
feed retries against a closed port on 127.0.0.1 (its live path is tested in
tests/e2e/test_dashboard.py). The machine is shared: read the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from bench._broker import free_port
from projections import default_policy
from projections.archive import (
    ArchiveBatch,
    HistoryWriter,
    LogRecord,
    archived_events,
    open_archive,
    read_only_query,
)
from streams.simulator import SimulationConfig, history_records

PARTITIONS = 6
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
TARGET_S = 1.0


def build_archive(path: Path, deals: int) -> int:
    """The simulated history archived as the worker's sink archives it; returns the events."""
    records = list(history_records(SimulationConfig(seed=42, deals=deals)))
    offsets = [0] * PARTITIONS
    log = []
    for record in records:
        partition = zlib.crc32(record.key.encode()) % PARTITIONS
        recorded_at = record.occurred_at + timedelta(seconds=1)
        log.append(LogRecord("touches", partition, offsets[partition], recorded_at, record.line))
        offsets[partition] += 1
    connection = open_archive(path)
    try:
        HistoryWriter(default_policy()).append(connection, ArchiveBatch(events=log))
    finally:
        connection.close()
    return len(log)


def serve_command(port: int) -> list[str]:
    """`gemba serve` as a user runs it (registering the command if streams/cli/main.py does not)."""
    from streams.cli.main import cli

    if "serve" in cli.commands:
        return [sys.executable, "-m", "streams", "serve", "--port", str(port)]
    bootstrap = (
        "from streams.cli.main import cli, main; from streams.cli.serve import register; "
        "register(cli); main()"
    )
    return [sys.executable, "-c", bootstrap, "serve", "--port", str(port)]


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=120) as response:
        return response.status, response.read()


def wait_ready(base: str, seconds: float = 300.0) -> dict[str, Any]:
    """Wait until the server answers and its derived views are computed; its health then."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            health: dict[str, Any] = orjson.loads(get(f"{base}/api/health")[1])
        except OSError:
            time.sleep(0.3)
            continue
        if all(view["ready"] or view["error"] for view in health["views"].values()):
            return health
        time.sleep(0.5)
    raise SystemExit("the dashboard did not get ready in time")


def median_ms(work: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def sql_peer(path: Path, statements: list[str]) -> Callable[[], object]:
    def ask() -> object:
        connection = open_archive(path, read_only=True)
        try:
            return [read_only_query(connection, sql).rows for sql in statements]
        finally:
            connection.close()

    return ask


def campaigns_peer(path: Path) -> Callable[[], object]:
    from projections.campaigns.history import campaign_history

    def compute() -> object:
        connection = open_archive(path, read_only=True)
        try:
            records = archived_events(connection)
        finally:
            connection.close()
        return campaign_history(records, default_policy()).table("linear")

    return compute


def assumptions_peer(path: Path, file: Path) -> Callable[[], object]:
    from projections.assumptions.evaluation import check_assumptions
    from projections.assumptions.file import load_assumptions

    def compute() -> object:
        connection = open_archive(path, read_only=True)
        try:
            records = archived_events(connection)
        finally:
            connection.close()
        return check_assumptions(records, load_assumptions(file), default_policy())

    return compute


def views(path: Path, deal_id: str, month: str) -> list[dict[str, Any]]:
    """Each view: its page route, its API calls, and the peer's SQL."""
    return [
        {
            "view": "value stream",
            "route": "vsm",
            "api": ["/api/value-stream", "/api/filters"],
            "peer": sql_peer(path, ["SELECT * FROM pce_by WHERE dimension = 'stage'"]),
        },
        {
            "view": "value stream, month filter",
            "route": f"vsm?month={month}",
            "api": [f"/api/value-stream?month={month}"],
            "peer": sql_peer(
                path,
                [f"SELECT * FROM value_stream_by WHERE dimension = 'stage' AND month = '{month}'"],
            ),
        },
        {
            "view": "deal timeline",
            "route": f"deal/{deal_id}",
            "api": [f"/api/deals/{deal_id}"],
            "peer": sql_peer(
                path,
                [
                    f"SELECT * FROM deal_value_streams WHERE deal_id = '{deal_id}'",
                    f"SELECT * FROM touches WHERE deal_id = '{deal_id}' ORDER BY started_at",
                ],
            ),
        },
        {
            "view": "waste pareto",
            "route": "waste",
            "api": ["/api/waste"],
            "peer": sql_peer(path, ["SELECT * FROM waste_pareto ORDER BY rank"]),
        },
        {
            "view": "waste drill-down",
            "route": "waste/chasing",
            "api": ["/api/waste/chasing/deals"],
            "peer": sql_peer(
                path,
                [
                    "SELECT deal_id, sum(minutes) FROM touches WHERE waste = 'chasing' "
                    "GROUP BY deal_id ORDER BY 2 DESC LIMIT 50"
                ],
            ),
        },
        {
            "view": "flow",
            "route": "flow",
            "api": ["/api/flow"],
            "peer": sql_peer(
                path, ["SELECT * FROM cumulative_flow", "SELECT * FROM flow_by_month"]
            ),
        },
        {
            "view": "stalled deals",
            "route": "stalled",
            "api": ["/api/stalled"],
            "peer": sql_peer(path, ["SELECT * FROM stalled_deals"]),
        },
        {
            "view": "campaigns (cached)",
            "route": "campaigns",
            "api": ["/api/campaigns?model=linear"],
            "peer": campaigns_peer(path),
            "peer_rounds": 1,
        },
        {
            "view": "assumptions (cached)",
            "route": "assumptions",
            "api": ["/api/assumptions"],
            "peer": assumptions_peer(path, Path("docs/assumptions.example.toml")),
            "peer_rounds": 1,
        },
    ]


def page_timer(
    base: str,
) -> tuple[Callable[[str], tuple[float, float]], Callable[[], None]] | None:
    """A function timing a fresh page of a route until it is drawn, and a closer; or None."""
    if not CHROMIUM.exists():
        return None
    from playwright.sync_api import sync_playwright

    driver = sync_playwright().start()
    browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def load(route: str) -> tuple[float, float]:
        page = context.new_page()
        try:
            started = time.perf_counter()
            page.goto(f"{base}/#{route}")
            page.wait_for_selector("main[data-ready]", timeout=60_000)
            wall = (time.perf_counter() - started) * 1000
            return wall, float(page.get_attribute("main", "data-drawn-ms") or "nan")
        finally:
            page.close()

    def close() -> None:
        browser.close()
        driver.stop()

    return load, close


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true", help="API and peer only.")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gemba-bench-dashboard-") as tmp:
        archive = Path(tmp) / "gemba.duckdb"
        started = time.perf_counter()
        events = build_archive(archive, arguments.deals)
        print(
            f"archive: {arguments.deals:,} deals, {events:,} events, value streams folded "
            f"({time.perf_counter() - started:.1f} s)"
        )
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GEMBA_")}
        env |= {
            "GEMBA_DUCKDB_PATH": str(archive),
            "GEMBA_STATE_DIR": tmp,
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "GEMBA_LOG_FORMAT": "json",
        }
        server = subprocess.Popen(
            serve_command(port), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        base = f"http://127.0.0.1:{port}"
        try:
            started = time.perf_counter()
            health = wait_ready(base)
            waited = time.perf_counter() - started
            print(f"server ready, derived views computed ({waited:.1f} s):")
            for name, view in health["views"].items():
                seconds = view["seconds"] or 0.0
                print(f"  {name}: first computation {seconds:.1f} s in a child process")
            measure(base, archive, arguments)
        finally:
            server.terminate()
            server.wait(timeout=30)


def measure(base: str, archive: Path, arguments: argparse.Namespace) -> None:
    connection = open_archive(archive, read_only=True)
    try:
        deal_id = connection.execute(
            "SELECT deal_id FROM vs_deals ORDER BY touches_call + touches_email DESC LIMIT 1"
        ).fetchall()[0][0]
        month = connection.execute(
            "SELECT max(month) FROM value_stream_by WHERE dimension = 'stage'"
        ).fetchall()[0][0]
    finally:
        connection.close()
    timer = None if arguments.no_browser else page_timer(base)
    rounds = arguments.rounds
    print("milliseconds; api first: cold, api: repeated (unchanged archive), page: to drawn")
    header = (
        f"{'view':<28} {'api first':>9} {'api':>7} {'page':>7} {'drawn':>7} {'peer':>8} "
        f"{'first/peer':>10}  target (page < 1 s)"
    )
    print(header + "\n" + "-" * len(header))
    try:
        for view in views(archive, deal_id, month):
            started = time.perf_counter()
            for path in view["api"]:
                status, _ = get(base + path)
                assert status == 200, f"{path}: HTTP {status}"
            first = (time.perf_counter() - started) * 1000
            api = median_ms(lambda view=view: [get(base + p) for p in view["api"]], rounds)
            page = drawn = None
            if timer is not None:
                loads = [timer[0](view["route"]) for _ in range(rounds)]
                page = statistics.median(wall for wall, _ in loads)
                drawn = statistics.median(inside for _, inside in loads)
            peer = median_ms(view["peer"], view.get("peer_rounds", rounds))
            slowest = max(first, page or 0.0) / 1000
            verdict = "ok" if slowest < TARGET_S else "OVER"
            page_text = "-" if page is None else f"{page:7.0f}"
            drawn_text = "-" if drawn is None else f"{drawn:7.0f}"
            print(
                f"{view['view']:<28} {first:9.1f} {api:7.1f} {page_text:>7} {drawn_text:>7} "
                f"{peer:8.1f} {first / peer:10.2f}  {verdict}"
            )
    finally:
        if timer is not None:
            timer[1]()
    if timer is None:
        print("page: not measured (--no-browser, or no /usr/bin/chromium: .ci/install-chromium)")


if __name__ == "__main__":
    main()
