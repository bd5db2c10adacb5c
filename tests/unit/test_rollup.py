"""Roll-ups: a deal's contribution adds and subtracts exactly, bucketed by dimension and month."""

from __future__ import annotations

from projections import deal_value_stream, default_policy
from projections.portfolio.rollup import add_vectors, contributions, totals_from_vector, vector
from tests.unit.test_worked_example import worked_example


def worked_example_events() -> list:  # type: ignore[type-arg]
    return list(worked_example().events)


def test_a_vector_stands_for_its_totals_exactly() -> None:
    stream = deal_value_stream(worked_example_events(), default_policy())
    assert totals_from_vector(vector(stream.totals)) == stream.totals


def test_adding_then_subtracting_a_contribution_leaves_nothing() -> None:
    stream = deal_value_stream(worked_example_events(), default_policy())
    flat = vector(stream.totals)
    assert set(add_vectors(add_vectors({}, flat), flat, sign=-1).values()) == {0}


def test_a_deal_contributes_to_each_stage_in_the_month_it_entered_it() -> None:
    stream = deal_value_stream(worked_example_events(), default_policy())
    parts = contributions(stream, campaigns=["spring-webinar"])
    proposal = totals_from_vector(parts["stage|Proposal|2026-03"])
    assert proposal.value_added.total_seconds() == 45 * 60
    assert proposal.lead_time.total_seconds() == 2880 * 60
    assert totals_from_vector(parts["campaign|spring-webinar|2026-03"]) == stream.totals
    assert totals_from_vector(parts[f"owner|{stream.owner_id}|2026-03"]) == stream.totals
