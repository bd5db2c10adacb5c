"""`gemba serve` in a real browser: every view draws the archive's figures, alerts arrive live.

The archive is a real DuckDB file of simulated history with its value-stream tables; the
server runs as a user runs it, following an alerts topic of its own on the test broker;
Debian's Chromium (/usr/bin/chromium, installed by .ci/install-chromium) is driven by
Playwright. Screenshots of every view go to <pytest basetemp>/dashboard-screenshots/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from events import decode
from events.producer import ensure_topic
from projections import default_policy
from projections.archive import (
    ArchiveBatch,
    HistoryWriter,
    LogRecord,
    open_archive,
    read_only_query,
)
from projections.assumptions.evaluation import check_assumptions
from projections.assumptions.file import load_assumptions
from projections.campaigns.history import campaign_history
from projections.deal.alerts import AlertKind, StallAlert, ThresholdBasis, ThresholdChoice
from streams.reports.assumptions import figure
from streams.settings import Settings
from streams.simulator import SimulationConfig, history_lines
from tests.support.worker_harness import free_port

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
CONFIG = SimulationConfig(seed=7, deals=150, accounts=60)
VIEWS = ("vsm", "deal", "waste", "flow", "stalled", "campaigns", "assumptions")
READY_MS = 30_000

if not CHROMIUM.exists():
    pytest.skip(
        "no /usr/bin/chromium on this machine: run .ci/install-chromium (Debian's chromium "
        "package) to run the dashboard's browser tests",
        allow_module_level=True,
    )


# --- the archive, the server, the browser ----------------------------------------------------


@pytest.fixture(scope="module")
def history() -> list[tuple[Any, datetime]]:
    """The simulated history as (event, recorded_at), recorded a minute after each event."""
    return [
        (event, event.occurred_at + timedelta(minutes=1))
        for event in map(decode, history_lines(CONFIG))
    ]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real archive file with the value-stream tables filled, as the worker's sink leaves it."""
    path = tmp_path_factory.mktemp("dashboard") / "gemba.duckdb"
    records = [
        LogRecord("touches", 0, offset, decode(line).occurred_at + timedelta(minutes=1), line)
        for offset, line in enumerate(history_lines(CONFIG))
    ]
    connection = open_archive(path)
    try:
        HistoryWriter(default_policy()).append(connection, ArchiveBatch(events=records))
    finally:
        connection.close()
    return path


@pytest.fixture(scope="module")
def claims_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example assumptions, with fewer resamples so the test stays quick."""
    text = Path("docs/assumptions.example.toml").read_text()
    text = text.replace("bootstrap = 2000", "bootstrap = 200")
    text = text.replace("permutations = 2000", "permutations = 200")
    path = tmp_path_factory.mktemp("claims") / "assumptions.toml"
    path.write_text(text)
    return path


def ask(archive: Path, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The archive queried directly, read-only, as `gemba query` does."""
    connection = open_archive(archive, read_only=True)
    try:
        if parameters:
            relation = connection.execute(sql, parameters)
            names = [column[0] for column in relation.description or ()]
            return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]
        result = read_only_query(connection, sql)
        return [dict(zip(result.columns, row, strict=True)) for row in result.rows]
    finally:
        connection.close()


def _gemba(*args: str) -> list[str]:
    from streams.cli.main import cli

    if args[0] != "serve" or "serve" in cli.commands:
        return [sys.executable, "-m", "streams", *args]
    # Until streams/cli/main.py registers `serve` (streams.cli.serve.register), register it here.
    bootstrap = (
        "from streams.cli.main import cli, main; from streams.cli.serve import register; "
        "register(cli); main()"
    )
    return [sys.executable, "-c", bootstrap, *args]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return orjson.loads(response.read())


@pytest.fixture(scope="module")
def alerts_topic(kafka_settings: Settings) -> str:
    topic = f"alerts-{uuid.uuid4().hex[:10]}"
    ensure_topic(kafka_settings.bootstrap_servers, topic, 1)
    return topic


@pytest.fixture(scope="module")
def env(archive: Path, kafka_settings: Settings, alerts_topic: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GEMBA_")}
    return environment | {
        "GEMBA_DUCKDB_PATH": str(archive),
        "GEMBA_STATE_DIR": str(archive.parent),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "GEMBA_ALERTS_TOPIC": alerts_topic,
        "GEMBA_LOG_FORMAT": "json",
    }


@pytest.fixture(scope="module")
def server(env: dict[str, str], claims_file: Path, archive: Path) -> Iterator[str]:
    """`gemba serve` on a free port, once it follows the alerts topic and its views are ready."""
    port = free_port()
    log = archive.parent / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            _gemba("serve", "--port", str(port), "--assumptions", str(claims_file)),
            env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log.read_text()
            try:
                health = _get(f"{base}/api/health")
                views = health["views"].values()
                if health["alerts"]["state"] == "following" and all(v["ready"] for v in views):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"server not ready: {log.read_text()[-2000:]}"
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    """A fresh page (own context) that records every request it makes and every script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.requested = []
    opened.errors = []
    opened.on("request", lambda request: opened.requested.append(request.url))
    opened.on("pageerror", lambda error: opened.errors.append(str(error)))
    yield opened
    context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.getbasetemp() / "dashboard-screenshots"
    path.mkdir(exist_ok=True)
    return path


def drawn(page: Any) -> None:
    """Wait until the view of the page's current address is drawn (not the one before it)."""
    page.wait_for_function(
        "() => { const main = document.querySelector('main');"
        " return main.dataset.ready && main.dataset.hash === location.hash; }",
        timeout=READY_MS,
    )


def show(page: Any, server: str, route: str) -> None:
    """Open a route and wait until its view is drawn."""
    page.goto(f"{server}/#{route}")
    drawn(page)
    view = route.split("?", maxsplit=1)[0].split("/", maxsplit=1)[0]
    assert page.get_attribute("main", "data-ready") == view


def value(page: Any, selector: str) -> float:
    return float(page.get_attribute(selector, "data-value"))


@pytest.fixture(scope="module")
def busiest_deal(archive: Path) -> str:
    rows = ask(archive, "SELECT deal_id FROM deal_value_streams ORDER BY touches DESC LIMIT 1")
    return str(rows[0]["deal_id"])


# --- every view ------------------------------------------------------------------------------


def test_every_view_renders_from_this_server_alone_and_is_screenshotted(
    page: Any, server: str, shots: Path, busiest_deal: str
) -> None:
    routes = {
        "vsm": "vsm",
        "deal": f"deal/{busiest_deal}",
        "waste": "waste",
        "flow": "flow",
        "stalled": "stalled",
        "campaigns": "campaigns",
        "assumptions": "assumptions",
    }
    assert set(routes) == set(VIEWS)
    for name, route in routes.items():
        show(page, server, route)
        assert page.locator("main svg, main .stage-box, main .card, main .claim").count() > 0
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    assert page.errors == []
    assert all(url.startswith(server + "/") for url in page.requested), page.requested
    assert {f"{name}.png" for name in VIEWS} <= {shot.name for shot in shots.iterdir()}


def test_the_value_stream_map_shows_the_figures_gemba_query_gives(
    page: Any, server: str, env: dict[str, str]
) -> None:
    sql = (
        "SELECT dimension, value, deals, pce, value_added_min, waste_min, wait_min "
        "FROM pce_by WHERE dimension IN ('stage', 'all')"
    )
    done = subprocess.run(
        _gemba("query", sql, "--format", "json"),
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = orjson.loads(done.stdout)
    stages = {row["value"]: row for row in rows if row["dimension"] == "stage"}

    show(page, server, "vsm")

    shown = page.eval_on_selector_all("li.stage-box", "boxes => boxes.map(b => b.dataset.stage)")
    assert set(shown) == set(stages)
    assert shown == sorted(shown, key=list(default_policy().stages.order).index)
    for stage, row in stages.items():
        box = f'li.stage-box[data-stage="{stage}"]'
        assert page.inner_text(f'{box} [data-figure="deals"]') == f"{row['deals']:,}"
        assert value(page, f'{box} [data-figure="pce"]') == pytest.approx(row["pce"], rel=1e-12)
        line = f'table.stage-figures tr[data-stage="{stage}"]'
        for name in ("value_added_min", "waste_min", "wait_min"):
            assert value(page, f'{line} [data-figure="{name}"]') == pytest.approx(row[name])
    overall = next(row for row in rows if row["dimension"] == "all")
    assert value(page, '.headline [data-figure="pce"]') == pytest.approx(overall["pce"])
    assert page.inner_text('.headline [data-figure="pce"]') == f"{overall['pce'] * 100:.2f}%"


def test_a_filter_changes_the_figures_to_those_of_the_period_and_segment(
    page: Any, server: str, archive: Path
) -> None:
    show(page, server, "vsm")
    everything = value(page, '.headline [data-figure="deals"]')
    month = ask(archive, "SELECT max(month) AS m FROM value_stream_by WHERE dimension = 'stage'")
    chosen = str(month[0]["m"])

    page.select_option('select[name="month"]', chosen)
    page.wait_for_function(f"() => location.hash.includes('month={chosen}')")
    drawn(page)

    expected = ask(
        archive,
        "SELECT value, deals, pce FROM value_stream_by WHERE dimension = 'stage' AND month = $m",
        {"m": chosen},
    )
    for row in expected:
        box = f'li.stage-box[data-stage="{row["value"]}"]'
        assert int(value(page, f'{box} [data-figure="deals"]')) == row["deals"]
        assert value(page, f'{box} [data-figure="pce"]') == pytest.approx(row["pce"])
    assert value(page, '.headline [data-figure="deals"]') < everything

    page.select_option('select[name="segment"]', "SMB")
    page.wait_for_function("() => location.hash.includes('segment=SMB')")
    drawn(page)
    narrowed = ask(
        archive,
        "SELECT s.stage, sum(s.deals) AS deals FROM vs_stages s JOIN vs_deals d USING (deal_id) "
        "WHERE strftime(timezone('UTC', s.first_entered_at), '%Y-%m') = $m AND d.segment = 'SMB' "
        "GROUP BY s.stage",
        {"m": chosen},
    )
    for row in narrowed:
        box = f'li.stage-box[data-stage="{row["stage"]}"]'
        assert int(value(page, f'{box} [data-figure="deals"]')) == row["deals"]


def test_the_waste_pareto_drills_down_to_deals_and_then_touches(
    page: Any, server: str, archive: Path
) -> None:
    show(page, server, "waste")
    pareto = ask(archive, "SELECT * FROM waste_pareto ORDER BY rank")
    shown = page.eval_on_selector_all(
        "table.pareto-table tbody tr", "rows => rows.map(r => r.dataset.category)"
    )
    assert shown == [row["category"] for row in pareto]
    for row in pareto:
        line = f'table.pareto-table tr[data-category="{row["category"]}"]'
        assert value(page, f'{line} [data-figure="minutes"]') == pytest.approx(row["minutes"])
        assert int(value(page, f'{line} [data-figure="deals"]')) == row["deals"]

    page.click('table.pareto-table tr[data-category="chasing"]')
    page.wait_for_function("() => location.hash.startsWith('#waste/chasing')")
    drawn(page)
    chasing = next(row for row in pareto if row["category"] == "chasing")
    assert int(value(page, '[data-figure="total"]')) == chasing["deals"]
    first = page.get_attribute("table.waste-deals tbody tr", "data-deal")

    page.click(f'table.waste-deals tr[data-deal="{first}"]')
    page.wait_for_function(f"() => location.hash.includes('{first}')")
    drawn(page)
    touches = ask(
        archive,
        "SELECT event_id FROM touches WHERE deal_id = $d AND waste = 'chasing'",
        {"d": first},
    )
    shown_events = page.eval_on_selector_all(
        "table.waste-touches tbody tr", "rows => rows.map(r => r.dataset.event)"
    )
    assert sorted(shown_events) == sorted(row["event_id"] for row in touches)


def test_a_deal_timeline_draws_every_touch_and_its_gaps_add_up_to_its_wait(
    page: Any, server: str, archive: Path, busiest_deal: str
) -> None:
    show(page, server, f"deal/{busiest_deal}")

    touches = ask(archive, "SELECT event_id FROM touches WHERE deal_id = $d", {"d": busiest_deal})
    deal = ask(archive, "SELECT * FROM deal_value_streams WHERE deal_id = $d", {"d": busiest_deal})
    drawn = page.eval_on_selector_all("[data-touch]", "marks => marks.map(m => m.dataset.touch)")
    assert sorted(drawn) == sorted(row["event_id"] for row in touches)
    gaps = page.eval_on_selector_all(
        "rect[data-gap]", "gaps => gaps.reduce((sum, g) => sum + Number(g.dataset.minutes), 0)"
    )
    assert gaps == pytest.approx(deal[0]["wait_min"], rel=1e-9)
    assert value(page, '[data-figure="lead_time_min"]') == pytest.approx(deal[0]["lead_time_min"])
    hover = page.text_content(f'[data-touch="{drawn[0]}"] title')
    assert drawn[0] in hover and "rule" in hover


def test_the_flow_view_shows_each_stage_and_the_monthly_figures_of_flow_by_month(
    page: Any, server: str, archive: Path
) -> None:
    show(page, server, "flow")

    stages = ask(archive, "SELECT DISTINCT stage FROM cumulative_flow")
    bands = page.eval_on_selector_all("svg.cfd polygon", "bands => bands.map(b => b.dataset.stage)")
    assert sorted(bands) == sorted(row["stage"] for row in stages)
    for row in ask(archive, "SELECT * FROM flow_by_month"):
        line = f'table.flow-months tr[data-month="{row["month"]}"]'
        assert int(value(page, f'{line} [data-figure="closed"]')) == row["closed"]
        assert value(page, f'{line} [data-figure="avg_wip"]') == pytest.approx(row["avg_wip"])


def _alert(kind: AlertKind, deal_id: str, now: datetime) -> StallAlert:
    silent_since = now - timedelta(days=15)
    return StallAlert(
        alert_id=f"{deal_id}-{kind}",
        episode_id=f"{deal_id}-episode",
        kind=kind,
        deal_id=deal_id,
        account_id="acct-e2e",
        owner_id="rep-e2e",
        segment="SMB",
        stage="Proposal",
        threshold=timedelta(days=14),
        threshold_basis=ThresholdBasis(choice=ThresholdChoice.FIXED),
        silent_since=silent_since,
        stalled_at=silent_since + timedelta(days=14),
        occurred_at=now,
        time_stalled=timedelta(days=1) if kind is AlertKind.STALLED else timedelta(days=2),
        ended_by=None if kind is AlertKind.STALLED else "value_added_touch",
        last_value_added_id="touch-e2e",
        last_value_added_at=silent_since,
        policy_version="e2e",
    )


def test_a_stall_alert_published_now_appears_on_the_board_without_a_reload(
    page: Any, server: str, kafka_settings: Settings, alerts_topic: str
) -> None:
    from kafka import KafkaProducer

    show(page, server, "stalled")
    page.evaluate("window.__sameDocument = true")
    deal_id = f"deal-live-{uuid.uuid4().hex[:6]}"
    now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    producer = KafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers)
    try:
        producer.send(
            alerts_topic, _alert(AlertKind.STALLED, deal_id, now).model_dump_json().encode()
        ).get(timeout=10)
        card = f'article.card[data-deal="{deal_id}"][data-source="live"]'
        page.wait_for_selector(card, timeout=15_000)

        assert page.evaluate("window.__sameDocument") is True
        assert page.get_attribute(f"section.column:has({card})", "data-stage") == "Proposal"
        assert value(page, f'{card} [data-figure="threshold_days"]') == 14
        assert value(page, f'{card} [data-figure="silent_days"]') == 15
        assert "touch-e2e" in page.inner_text(f'{card} [data-figure="last_value_added"]')
        assert int(value(page, '[data-figure="received"]')) >= 1

        later = now + timedelta(days=1)
        producer.send(
            alerts_topic, _alert(AlertKind.UNSTALLED, deal_id, later).model_dump_json().encode()
        ).get(timeout=10)
        page.wait_for_selector(card, state="detached", timeout=15_000)
        assert deal_id in page.inner_text("ul.feed")
        assert page.evaluate("window.__sameDocument") is True
    finally:
        producer.close()


def test_the_campaign_view_draws_the_flow_and_credits_revenue_under_the_chosen_model(
    page: Any, server: str, history: list[tuple[Any, datetime]]
) -> None:
    expected = campaign_history(history, default_policy())

    show(page, server, "campaigns")

    assert page.locator("svg.sankey path.band").count() == len(expected.flow())
    for model in ("linear", "markov"):
        if model != "linear":
            page.select_option('select[name="model"]', model)
            page.wait_for_function(f"() => location.hash.includes('model={model}')")
            drawn(page)
        for row in expected.table(model):
            line = f'table.attribution tr[data-campaign="{row.campaign_id}"]'
            cell = f'{line} [data-figure="revenue"]'
            assert Decimal(page.get_attribute(cell, "data-value")) == row.revenue


def test_the_assumptions_view_gives_each_claim_the_verdict_and_effect_of_a_direct_check(
    page: Any, server: str, history: list[tuple[Any, datetime]], claims_file: Path
) -> None:
    from streams.cli.assumptions import code_version

    report = check_assumptions(
        history, load_assumptions(claims_file), default_policy(), code_version=code_version()
    )

    show(page, server, "assumptions")

    for result in report.results:
        claim = f'article.claim[data-claim="{result.claim.name}"]'
        assert page.get_attribute(claim, "data-verdict") == str(result.verdict)
        shown = page.inner_text(f'{claim} [data-figure="effect"]')
        assert shown == figure(result.effect, result.claim.metric, effect=True)
    assert page.locator("svg.trend g[data-period]").count() >= len(report.results)


def test_a_phone_sized_screen_shows_every_view_without_sideways_scrolling(
    browser: Any, server: str, shots: Path, busiest_deal: str
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone = context.new_page()
    try:
        for route in ("vsm", f"deal/{busiest_deal}", "waste", "stalled", "campaigns"):
            show(phone, server, route)
            name = route.split("/")[0]
            phone.screenshot(path=str(shots / f"phone-{name}.png"), full_page=True)
            overflow = phone.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 1, f"{route} is {overflow}px wider than the phone's screen"
    finally:
        context.close()
