"""Every CLI table shows event text as itself: no markup read, no control character let through.

Each renderer gets arbitrary text (markup such as `[/x]`, `[bold]`, `[link=...]`, emoji codes,
ESC sequences, BEL, NUL, C1 and bidi controls) in every column that can hold event- or
user-given text. It must not raise, must show the text literally (control characters as
their escapes) and must print no control character but the newlines between its lines.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console, RenderableType

from events.importers.outcome import ImportTally, Refused, Skipped
from projections.archive import ReportChange, ValueStreamReport, replay, replay_diff
from projections.assumptions.evaluation import check_assumptions
from projections.assumptions.file import load_assumptions
from projections.campaigns.history import campaign_history
from projections.deal.alerts import StallThresholds, check_stalls
from projections.deal.value_stream import DealValueStream, deal_value_stream
from projections.policy.model import default_policy
from projections.portfolio.rollup import vector
from streams.cli import alerts as cli_alerts
from streams.cli import assumptions as cli_assumptions
from streams.cli import campaigns as cli_campaigns
from streams.cli import demo
from streams.cli import history as cli_history
from streams.cli import importing as cli_import
from streams.cli.demo import DemoOptions, DemoState
from streams.cli.render import deal_timeline, rollup_table
from streams.settings import Settings
from streams.simulator import SimulationConfig
from tests.support.deal_builders import DealScript, campaign_response, march
from tests.support.terminal_checks import assert_literal, untrusted


def printed(*renderables: RenderableType) -> str:
    console = Console(file=io.StringIO(), width=2000, color_system=None, legacy_windows=False)
    for renderable in renderables:
        console.print(renderable)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    return str(output)


ids = st.lists(
    st.sampled_from([":smile:", ":thumbs_up:", "deal", "@", "/", "="]), min_size=1, max_size=3
).map("".join)
"""Identifiers allow only [A-Za-z0-9._:@/+=-], which still spells emoji codes."""


def _deal(stage: str, next_stage: str, segment: str, deal_id: str = "deal-1") -> DealValueStream:
    script = DealScript(deal_id=deal_id).opened(march(2, 9), stage=stage, segment=segment)
    script.stage(march(3, 9), next_stage).call(march(20, 9), 20).won(march(25, 9))
    return deal_value_stream(script.events, default_policy(), march(26, 0))


@settings(max_examples=40, deadline=None)
@given(stage=untrusted, next_stage=untrusted, segment=untrusted, deal_id=ids)
def test_the_deal_map_shows_stage_names_and_deal_ids_literally(
    stage: str, next_stage: str, segment: str, deal_id: str
) -> None:
    stream = _deal(stage, next_stage, segment, deal_id)

    assert_literal(printed(deal_timeline(stream)), [stage, next_stage, f"Deal {deal_id}:"])


@settings(max_examples=40, deadline=None)
@given(values=st.lists(untrusted, min_size=1, max_size=3, unique=True), month=untrusted)
def test_the_rollups_table_shows_dimension_values_literally(values: list[str], month: str) -> None:
    flat = vector(_deal("Prospecting", "Proposal", "SMB").totals)
    rows = {f"{value}|2026-03": flat for value in values}

    assert_literal(printed(rollup_table("segment", month, rows, ())), [*values, month])


@settings(max_examples=40, deadline=None)
@given(texts=st.lists(untrusted, min_size=6, max_size=6))
def test_the_report_tables_show_stages_wastes_and_owners_literally(texts: list[str]) -> None:
    stage, measured_as, example_stage, owner, deal_stage, policy = texts
    report = ValueStreamReport(
        as_of=march(26, 0),
        policy_versions=(policy,),
        overall={"deals": 1, "pce": 0.5, "value_added_min": 10, "lead_time_min": 20},
        stages=[
            {
                "value": stage,
                "deals": 1,
                "pce": 0.5,
                "lead_time_min": 20,
                "value_added_min": 10,
                "waste_min": 0,
                "wait_min": 10,
            },
        ],
        wastes=[
            {
                "category": "chasing",
                "measured_as": measured_as,
                "minutes": 5,
                "share": 1.0,
                "examples": [
                    {"deal_id": "deal-1", "event_id": "e-1", "stage": example_stage, "minutes": 5}
                ],
            },
        ],
        stalled=[
            {
                "deal_id": "deal-1",
                "owner_id": owner,
                "stage": deal_stage,
                "silent_days": 20.0,
                "threshold_days": 14.0,
            },
        ],
        period=timedelta(days=30),
        changes=[ReportChange("pce", 0.4, 0.5)],
    )

    output = printed(*cli_history._report_tables(report))

    assert_literal(output, texts)


@settings(max_examples=40, deadline=None)
@given(columns=st.lists(untrusted, min_size=1, max_size=3), cells=st.lists(untrusted, max_size=3))
def test_the_query_table_shows_column_names_and_values_literally(
    columns: list[str], cells: list[str]
) -> None:
    row = tuple(cells[i] if i < len(cells) else None for i in range(len(columns)))

    output = printed(cli_history._rows_table(tuple(columns), [row]))

    assert_literal(output, [*columns, *cells[: len(columns)]])


def _alerts(stage: str) -> list[Any]:
    """A stall episode's two alerts, in a stage named `stage` (unknown stages never stall)."""
    script = DealScript(deal_id="acme-1", account_id="acme").opened(march(2, 9))
    script.call(march(20, 9), 20)
    stream = deal_value_stream(script.events, default_policy(), march(21, 0))
    alerts = check_stalls(stream, "acme", StallThresholds(default_policy())).alerts
    return [alert.model_copy(update={"stage": stage}) for alert in alerts]


@settings(max_examples=40, deadline=None)
@given(stage=untrusted, policy=untrusted)
def test_the_alert_tables_and_lines_show_stages_literally(stage: str, policy: str) -> None:
    stalled, unstalled = _alerts(stage)
    open_page = {
        "watermarks": {"0": march(18, 9).isoformat()},
        "open": [stalled.model_dump(mode="json")],
    }
    quality_page = {
        "closed_deals": 3,
        "policy_version": policy,
        "stages": [{"stage": stage, "alerts": 2, "lost": 1, "slipped": 0, "precision": 0.5}],
    }

    output = printed(cli_alerts._open_table(open_page), cli_alerts._quality_table(quality_page))
    lines = "\n".join(cli_alerts.alert_line(alert) for alert in (stalled, unstalled))

    assert_literal(output, [stage, policy])
    assert_literal(lines, [stage])


@settings(max_examples=25, deadline=None)
@given(stage=untrusted, next_stage=untrusted, head=untrusted)
def test_the_campaign_tables_show_stages_and_heads_literally(
    stage: str, next_stage: str, head: str
) -> None:
    script = DealScript().opened(march(2, 9), stage=stage)
    script.stage(march(3, 9), next_stage).call(march(20, 9), 20).won(march(25, 9))
    events = [campaign_response(march(1, 9)), *script.events]
    history = campaign_history([(e, e.occurred_at) for e in events], default_policy())

    output = printed(
        cli_campaigns._campaign_table(history.table("linear", {"c-1": Decimal(1)}), "linear", head),
        cli_campaigns._comparison_table(history.compare(3)),
        cli_campaigns._flow_table(history.flow()),
    )

    assert_literal(output, [stage, head])  # the stage a deal opened in is a node of the flow


def _output_of(work: Callable[[], None]) -> str:
    captured = io.StringIO()
    with redirect_stderr(captured), redirect_stdout(captured):
        work()
    return captured.getvalue()


@settings(max_examples=40, deadline=None)
@given(texts=st.lists(untrusted, min_size=4, max_size=4))
def test_the_import_report_shows_sources_and_reasons_literally(texts: list[str]) -> None:
    source, refused_reason, skipped_reason, where = texts
    tally = ImportTally(keep=5)
    tally.count(Refused(source, "line 2", refused_reason))
    tally.count(Skipped(source, "line 3", skipped_reason))

    output = _output_of(lambda: cli_import._summary(tally, where, 5, dry_run=True))

    assert_literal(output, texts)


def _toml_string(text: str) -> str:
    """A TOML basic string holding `text` exactly (every non-ASCII or control as an escape)."""
    escaped = (
        c if c.isascii() and c.isprintable() and c not in '"\\' else f"\\U{ord(c):08x}"
        for c in text
    )
    return '"' + "".join(escaped) + '"'


def _assumptions_file(title: str, segment: str) -> Path:
    text = f"""
title = {_toml_string(title)}
[evaluation]
bootstrap = 100
permutations = 100
[[claims]]
name = "segment_wins"
statement = "Deals of the segment win more often."
metric = "win_rate"
expect = "higher"
min_effect = 1
min_sample = 2
[claims.cohort]
field = "segment"
op = "in"
value = [{_toml_string(segment)}, "smb"]
"""
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as handle:
        handle.write(text)
    return Path(handle.name)


def _deals_in(segment: str) -> list[tuple[Any, Any]]:
    events = []
    for number, (in_segment, won) in enumerate([(1, 1), (1, 0), (0, 1), (0, 0)]):
        script = DealScript(deal_id=f"deal-{number}", account_id=f"acct-{number}")
        script.opened(march(2, 9), segment=segment if in_segment else "Enterprise")
        (script.won if won else script.lost)(march(20, 9))
        events.extend(script.events)
    return [(event, event.occurred_at) for event in events]


no_surrogates = untrusted.filter(lambda text: not any(0xD800 <= ord(c) < 0xE000 for c in text))
"""TOML, like JSON, cannot hold a lone surrogate."""


@settings(max_examples=15, deadline=None)
@given(title=no_surrogates, segment=no_surrogates)
def test_the_assumptions_tables_show_titles_and_cohort_values_literally(
    title: str, segment: str
) -> None:
    path = _assumptions_file(title, segment)
    try:
        claims = load_assumptions(path)
    finally:
        path.unlink()
    report = check_assumptions(_deals_in(segment), claims, default_policy(), code_version="test")

    output = printed(
        cli_assumptions._claims_table(report),
        cli_assumptions._trend_table("segment_wins", (report,)),
    )

    assert_literal(output, [title, segment, "smb"])


@settings(max_examples=25, deadline=None)
@given(deal_id=ids, stage=untrusted)
def test_the_replay_diff_tables_show_deal_ids_literally(deal_id: str, stage: str) -> None:
    script = DealScript(deal_id=deal_id).opened(march(2, 9), stage=stage)
    script.email(march(3, 9)).call(march(4, 9), 20)
    records = [(event, event.occurred_at) for event in script.events]
    base_policy = default_policy()
    minutes = base_policy.standard_minutes.model_copy(update={"email": 30})
    other_policy = base_policy.model_copy(
        update={"name": "longer-emails", "standard_minutes": minutes}
    )
    base, other = replay(records, base_policy), replay(records, other_policy)

    output = printed(*cli_history._diff_tables(base, other, replay_diff(base, other), top=5))

    assert_literal(output, [deal_id, "longer-emails"])


def test_the_demo_summary_shows_a_state_directory_literally(tmp_path: Path) -> None:
    state_dir = tmp_path / "[/x] \x1b[2J"
    settings = Settings(state_dir=state_dir)
    options = DemoOptions(SimulationConfig(seed=1, deals=5, accounts=3, months=1))

    output = printed(demo._describe(settings, options, DemoState(worker_pid=1)))

    assert "Gemba demo is running" in output
    assert_literal(output, [str(state_dir)])
