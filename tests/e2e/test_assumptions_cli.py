"""`gemba assumptions` as a user runs it, on a real DuckDB archive file (no Kafka)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

import orjson
import pytest

from events import decode
from projections import default_policy
from projections.assumptions.evaluation import check_assumptions
from projections.assumptions.file import load_assumptions
from streams.simulator import SimulationConfig, history_lines
from tests.support.archives import RECORDED_AFTER, archive_of

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

CONFIG = SimulationConfig(seed=21, deals=240, accounts=64)
CLAIMS = """
title = "e2e claims"

[evaluation]
bootstrap = 500
permutations = 500
seed = 9

[[claims]]
name = "early_discovery_wins"
statement = "Deals with a held discovery meeting within 14 days win more often."
metric = "win_rate"
expect = "higher"
cohort = { field = "first_discovery_days", op = "<=", value = 14 }

[[claims]]
name = "requoter_reworks_less"
statement = "rep-02's deals need less rework."
metric = "mean_rework"
expect = "lower"
min_sample = 15
cohort = { field = "owner_id", op = "==", value = "rep-02" }

[[claims]]
name = "one_product_line"
statement = "A made-up product sells better."
metric = "win_rate"
expect = "higher"
cohort = { field = "product", op = "==", value = "No such product" }
"""


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated history archived as the sink archives it, recorded a minute after each."""
    path = archive_of(
        tmp_path_factory.mktemp("assumptions") / "gemba.duckdb", history_lines(CONFIG)
    )
    (path.parent / "claims.toml").write_text(CLAIMS, encoding="utf-8")
    return path


def gemba(archive: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEMBA_")}
    env |= {"GEMBA_DUCKDB_PATH": str(archive), "GEMBA_STATE_DIR": str(archive.parent)}
    return subprocess.run(
        [sys.executable, "-m", "streams", "assumptions", *args],
        check=False, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_check_gives_the_pure_cores_figures_and_what_they_were_computed_from(
    archive: Path,
) -> None:
    done = gemba(archive, "check", str(archive.parent / "claims.toml"), "--json")

    assert done.returncode == 0, done.stderr
    document = orjson.loads(done.stdout)
    records = [(e, e.occurred_at + RECORDED_AFTER) for e in map(decode, history_lines(CONFIG))]
    expected = check_assumptions(
        records, load_assumptions(archive.parent / "claims.toml"), default_policy()
    )
    for claim, result in zip(document["claims"], expected.results, strict=True):
        assert claim["name"] == result.claim.name
        assert claim["effect"] == result.effect
        assert claim["interval"] == (None if result.interval is None else list(result.interval))
        assert (claim["adjusted_p"], claim["verdict"]) == (result.adjusted_p, result.verdict)
    verdicts = [claim["verdict"] for claim in document["claims"]]
    assert verdicts == ["supported", "refuted", "inconclusive"]
    stated = document["reproducibility"]
    position = expected.reproducibility.position
    assert stated["event_ids_sha256"] == position.event_ids_sha256
    assert stated["events_read"] == stated["events_known"] == position.events_read
    assert (stated["seed"], stated["policy_version"]) == (9, default_policy().version)
    assert stated["code_version"].startswith(metadata.version("gemba"))
    assert document["claims"][0]["reproducibility"] == stated


def test_as_of_trend_and_html_give_a_report_an_auditor_can_file(
    archive: Path, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    done = gemba(
        archive, "check", str(archive.parent / "claims.toml"), "--as-of", "2026-09-15",
        "--trend", "--html", str(page), "--json", "--seed", "4",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    document = orjson.loads(done.stdout)
    periods = [point["period"] for point in document["trend"]]
    assert periods[-3:] == ["2026-07", "2026-08", "as of 2026-09-15T00:00:00+00:00"]
    assert document["trend"][-1]["claims"] == document["claims"]
    assert document["reproducibility"]["as_of"] == "2026-09-15T00:00:00+00:00"
    assert document["reproducibility"]["seed"] == 4
    known = document["reproducibility"]["events_known"]
    as_of = datetime(2026, 9, 15, tzinfo=UTC)
    records = [decode(line) for line in history_lines(CONFIG)]
    assert known == sum(e.occurred_at + timedelta(minutes=1) <= as_of for e in records)
    html = page.read_text(encoding="utf-8")
    assert all(name in html for name in ("early_discovery_wins", "one_product_line"))
    assert "Reproducibility" in html and "Trend" in html and "Holm" in html
    assert not any(outside in html for outside in ("<script", "src=", "href=", "@import"))


def test_the_table_names_each_claim_its_verdict_and_how_to_rerun_it(archive: Path) -> None:
    done = gemba(archive, "check", str(archive.parent / "claims.toml"))

    assert done.returncode == 0, done.stderr
    for text in ("early_discovery_wins", "supported", "refuted", "inconclusive", "Holm p"):
        assert text in done.stdout
    assert "rerun: gemba assumptions check" in done.stdout
    assert "event ids sha256:" in done.stdout


def test_a_claim_over_an_unknown_field_is_refused_with_its_line_and_the_choices(
    archive: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(CLAIMS.replace('"first_discovery_days"', '"discovery_days"'), encoding="utf-8")

    done = gemba(archive, "check", str(bad))

    assert done.returncode == 2
    message = " ".join(done.stderr.split())
    assert "line 14: claim 'early_discovery_wins' cohort.field: unknown field" in message
    assert "valid fields:" in message and "first_discovery_days" in message


def test_fields_lists_every_fact_and_metric(archive: Path) -> None:
    done = gemba(archive, "fields", "--json")

    assert done.returncode == 0, done.stderr
    document = orjson.loads(done.stdout)
    names = {field["name"] for field in document["fields"]}
    assert {"first_discovery_days", "owner_id", "responded_campaigns", "won"} <= names
    assert {metric["name"] for metric in document["metrics"]} == {
        "win_rate", "revenue_per_deal", "median_lead_time_days", "mean_pce", "waste_share",
        "mean_rework",
    }  # fmt: skip
