"""`gemba alerts`: one line per followed alert, tables of open episodes and of alert quality."""

from __future__ import annotations

from typing import Any

import click
import pytest
from click.testing import CliRunner

from projections.deal.alerts import StallThresholds, check_stalls
from projections.deal.value_stream import deal_value_stream
from projections.policy.model import default_policy
from streams.cli import alerts as cli_alerts
from streams.settings import Settings
from tests.support.deal_builders import DealScript, march


def alerts_of_one_episode() -> list[Any]:
    script = DealScript(deal_id="acme-1", account_id="acme").opened(march(2, 9))
    script.call(march(20, 9), 20)
    stream = deal_value_stream(script.events, default_policy(), march(21, 0))
    return list(check_stalls(stream, "acme", StallThresholds(default_policy())).alerts)


def test_a_followed_alert_prints_as_one_line_saying_what_happened() -> None:
    stalled, unstalled = alerts_of_one_episode()

    assert cli_alerts.alert_line(stalled) == (
        "2026-03-16 09:00  STALLED    acme-1 (account acme, owner rep-1) in Prospecting: "
        "silent 14.0 d (threshold 14.0 d, fixed)"
    )
    assert cli_alerts.alert_line(unstalled).startswith(
        "2026-03-20 09:00  UNSTALLED  acme-1 (account acme, owner rep-1) in Prospecting: "
        "value added touch after 4.0 d"
    )


@click.group()
@click.pass_context
def gemba(ctx: click.Context) -> None:
    ctx.obj = Settings()


cli_alerts.register(gemba)


@pytest.fixture
def pages(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    served: dict[str, Any] = {}
    monkeypatch.setattr(cli_alerts, "_worker_json", lambda settings, path: served[path])
    return served


def test_the_open_episodes_table_shows_each_stalled_deal_and_for_how_long(
    pages: dict[str, Any],
) -> None:
    stalled, _ = alerts_of_one_episode()
    pages["/gemba/alerts/"] = {
        "watermarks": {"0": march(18, 9).isoformat()},
        "open": [stalled.model_dump(mode="json")],
    }

    result = CliRunner(env={"COLUMNS": "200"}).invoke(gemba, ["alerts"])

    assert result.exit_code == 0, result.output
    assert "acme-1" in result.output
    assert "2026-03-16 09:00" in result.output
    assert "2.0 d" in result.output


def test_the_quality_table_shows_precision_per_stage(pages: dict[str, Any]) -> None:
    pages["/gemba/alerts/quality/"] = {
        "policy_version": "default-abc",
        "closed_deals": 12,
        "stages": [
            {"stage": "Proposal", "alerts": 4, "lost": 1, "slipped": 2, "precision": 0.75},
            {"stage": "Negotiation", "alerts": 0, "lost": 0, "slipped": 0, "precision": None},
        ],
    }

    result = CliRunner(env={"COLUMNS": "200"}).invoke(gemba, ["alerts", "--quality"])

    assert result.exit_code == 0, result.output
    assert "12 closed deals" in result.output
    assert "75%" in result.output
