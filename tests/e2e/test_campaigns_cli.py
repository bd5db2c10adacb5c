"""`gemba campaigns` as a user runs it, on a real DuckDB archive file."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from events import decode
from projections import default_policy
from projections.campaigns.history import campaign_history
from streams.simulator import SimulationConfig, ground_truth, history_lines
from tests.support.archives import RECORDED_AFTER, archive_of

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

CONFIG = SimulationConfig(seed=21, deals=60, accounts=30)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated history archived as the sink archives it, recorded a minute after each."""
    return archive_of(tmp_path_factory.mktemp("campaigns") / "gemba.duckdb", history_lines(CONFIG))


def gemba(archive: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEMBA_")}
    env |= {"GEMBA_DUCKDB_PATH": str(archive), "GEMBA_STATE_DIR": str(archive.parent)}
    return subprocess.run(
        [sys.executable, "-m", "streams", "campaigns", *args],
        check=False, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def _expected(as_of: str | None = None) -> dict[str, Decimal]:
    from streams.cli.common import parse_as_of

    records = [
        (event, event.occurred_at + RECORDED_AFTER) for event in map(decode, history_lines(CONFIG))
    ]
    history = campaign_history(records, default_policy(), parse_as_of(as_of))
    return {row.campaign_id: row.revenue for row in history.table("w_shaped")}


def test_the_campaign_table_from_the_archive_equals_the_pure_computation(archive: Path) -> None:
    done = gemba(archive, "--model", "w_shaped", "--json")

    assert done.returncode == 0, done.stderr
    document = orjson.loads(done.stdout)
    credited = {row["campaign_id"]: Decimal(row["revenue"]) for row in document["campaigns"]}
    assert credited == _expected()
    assert document["model"] == "w_shaped"


def test_as_of_gives_the_table_as_it_stood_then(archive: Path) -> None:
    done = gemba(archive, "--model", "w_shaped", "--as-of", "2026-08-15", "--json")

    assert done.returncode == 0, done.stderr
    credited = {
        row["campaign_id"]: Decimal(row["revenue"])
        for row in orjson.loads(done.stdout)["campaigns"]
    }
    assert credited == _expected("2026-08-15")
    assert credited != _expected()


def test_costs_give_roi_and_the_money_losing_campaign_shows_it(
    archive: Path, tmp_path: Path
) -> None:
    costs = tmp_path / "campaigns.csv"
    made = subprocess.run(
        [sys.executable, "-m", "streams", "simulate", "--seed", "21", "--deals", "60",
         "--accounts", "30", "--campaigns-out", str(costs)],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr

    done = gemba(archive, "--costs", str(costs), "--json")

    rows = {row["campaign_id"]: row for row in orjson.loads(done.stdout)["campaigns"]}
    assert rows[ground_truth(CONFIG).negative_roi_campaign_id]["roi"] < 0


def test_compare_and_flow_print_every_model_and_the_sankey_links(archive: Path) -> None:
    compared = gemba(archive, "--compare", "--json")
    flow = gemba(archive, "--flow", "--json")

    assert compared.returncode == 0, compared.stderr
    first = orjson.loads(compared.stdout)[0]
    assert set(first["credits"]) == {
        "first_touch", "last_touch", "linear", "u_shaped", "w_shaped", "full_path",
        "time_decay", "markov", "shapley",
    }  # fmt: skip
    links = orjson.loads(flow.stdout)
    assert {link["source"]["layer"] for link in links} == {"campaign", "opened", "furthest"}


def test_a_missing_archive_says_what_to_do(tmp_path: Path) -> None:
    done = gemba(tmp_path / "none.duckdb")

    assert done.returncode != 0
    assert "archive" in (done.stderr + done.stdout).lower()


def test_a_deal_with_touches_but_no_deal_opened_is_listed_as_not_opened(tmp_path: Path) -> None:
    call = (
        b'{"type": "call", "event_id": "early-call-1", "occurred_at": "2026-03-02T10:00:00Z",'
        b' "account_id": "acct-early", "deal_id": "deal-early", "direction": "outbound",'
        b' "outcome": "connected", "duration_seconds": 60}'
    )
    lines = [*history_lines(SimulationConfig(seed=4, deals=8, accounts=4)), call]
    archive = archive_of(tmp_path / "gemba.duckdb", lines)

    table = gemba(archive)
    document = gemba(archive, "--json")

    assert table.returncode == 0, table.stderr
    assert "1 deal(s) not opened" in table.stdout
    assert "deal-early (1 event)" in table.stdout
    assert document.returncode == 0, document.stderr
    assert orjson.loads(document.stdout)["not_opened"] == [{"deal_id": "deal-early", "events": 1}]
