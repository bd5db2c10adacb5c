"""The dashboard's questions of a real archive file: the same figures as the archive's views."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from events import decode
from projections import default_policy
from projections.archive import ArchiveBatch, HistoryWriter, LogRecord, open_archive
from projections.archive.dashboard import (
    DashboardQueryError,
    Filters,
    deal_timeline,
    open_stall_alerts,
    stalled_deals,
    value_stream_map,
    waste_deals,
    waste_pareto,
)
from projections.deal.alerts import AlertKind
from streams.simulator import SimulationConfig, history_lines
from tests.unit.test_dashboard import _alert

pytestmark = pytest.mark.integration

CONFIG = SimulationConfig(seed=5, deals=80, accounts=40)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dashboard-queries") / "gemba.duckdb"
    records = [
        LogRecord("touches", 0, offset, decode(line).occurred_at + timedelta(minutes=1), line)
        for offset, line in enumerate(history_lines(CONFIG))
    ]
    sent = [_alert(), _alert(deal_id="deal-2"), _alert(AlertKind.UNSTALLED, "deal-2")]
    alerts = [
        LogRecord("deal-alerts", 0, offset, records[-1].recorded_at, a.model_dump_json().encode())
        for offset, a in enumerate(sent)
    ]
    connection = open_archive(path)
    try:
        HistoryWriter(default_policy()).append(
            connection, ArchiveBatch(events=records, alerts=alerts)
        )
    finally:
        connection.close()
    return path


@pytest.fixture
def connection(archive: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    opened = open_archive(archive, read_only=True)
    yield opened
    opened.close()


def _rows(connection: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[object, ...]]:
    return connection.execute(sql).fetchall()


def test_the_unfiltered_map_is_the_pce_by_view_per_stage_in_flow_order(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    chart = value_stream_map(connection)

    expected = {
        str(stage): (deals, pce)
        for stage, deals, pce in _rows(
            connection, "SELECT value, deals, pce FROM pce_by WHERE dimension = 'stage'"
        )
    }
    assert {box.stage for box in chart.stages} == set(expected)
    for box in chart.stages:
        assert box.deals == expected[box.stage][0]
        assert box.pce == pytest.approx(expected[box.stage][1])
    order = list(default_policy().stages.order)
    assert [box.stage for box in chart.stages] == sorted(expected, key=order.index)
    overall = _rows(connection, "SELECT pce FROM pce_by WHERE dimension = 'all'")[0][0]
    assert chart.pce == pytest.approx(overall)


def test_a_month_alone_gives_the_value_stream_by_view_of_that_month(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    month = _rows(connection, "SELECT max(month) FROM value_stream_by WHERE dimension = 'stage'")
    chosen = str(month[0][0])

    chart = value_stream_map(connection, Filters(month=chosen))

    expected = _rows(
        connection,
        f"SELECT value, deals, wait_min FROM value_stream_by "
        f"WHERE dimension = 'stage' AND month = '{chosen}'",
    )
    by_stage = {str(stage): (deals, wait) for stage, deals, wait in expected}
    assert {box.stage for box in chart.stages} == set(by_stage)
    for box in chart.stages:
        assert box.deals == by_stage[box.stage][0]
        assert box.wait_min == pytest.approx(by_stage[box.stage][1])


def test_a_hostile_filter_value_matches_nothing_and_changes_nothing(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    chart = value_stream_map(connection, Filters(segment="x'; DROP TABLE events; --"))

    assert chart.stages == () and chart.deals == 0
    assert _rows(connection, "SELECT count(*) FROM events")[0][0] > 0


def test_the_unfiltered_pareto_is_the_waste_pareto_view_row_for_row(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    lines = waste_pareto(connection)

    expected = _rows(
        connection,
        "SELECT rank, category, measured_as, minutes, deals, touches FROM waste_pareto "
        "ORDER BY rank",
    )
    assert [(w.rank, w.category, w.measured_as) for w in lines] == [row[:3] for row in expected]
    assert [(w.deals, w.touches) for w in lines] == [row[4:] for row in expected]
    assert [w.minutes for w in lines] == pytest.approx([row[3] for row in expected])


def test_a_waste_s_deals_add_up_to_its_line_of_the_pareto(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    for line in waste_pareto(connection):
        total, deals = waste_deals(connection, line.category, limit=1000)

        assert total == line.deals
        assert sum(deal.minutes for deal in deals) == pytest.approx(line.minutes)


def test_an_unknown_waste_category_is_refused_with_the_list_of_categories(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    with pytest.raises(DashboardQueryError, match="chasing"):
        waste_deals(connection, "laziness")


def test_every_deal_s_gaps_add_up_to_its_wait(connection: duckdb.DuckDBPyConnection) -> None:
    for (deal_id,) in _rows(connection, "SELECT deal_id FROM vs_deals"):
        timeline = deal_timeline(connection, str(deal_id))

        assert timeline is not None
        gaps = sum(gap.minutes for gap in timeline.gaps)
        assert gaps == pytest.approx(timeline.deal["wait_min"], abs=1e-6), deal_id
    assert deal_timeline(connection, "no-such-deal") is None


def test_stalled_deals_are_the_view_s_with_their_evidence(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    stalled = stalled_deals(connection)

    expected = {str(d) for (d,) in _rows(connection, "SELECT deal_id FROM stalled_deals")}
    assert {deal.deal_id for deal in stalled} == expected
    for deal in stalled:
        assert deal.stalled_days == pytest.approx(deal.silent_days - deal.threshold_days)
        assert deal.waste_accrued_min >= deal.stalled_days * 24 * 60 - 1e-6


def test_only_archived_episodes_without_an_unstalled_alert_are_open(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    open_alerts = open_stall_alerts(connection)

    assert [a for a in open_alerts if '"deal_id":"deal-1"' in a] and not [
        a for a in open_alerts if '"deal_id":"deal-2"' in a
    ]
