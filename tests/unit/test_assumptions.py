"""Strategy assumptions: the file format, the cohort language, the statistics and the verdicts."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import fmean, median

import pytest

from events import EventBase, decode
from events.models import CampaignResponded, MeetingKind, MeetingOutcome, ResponseKind
from projections import default_policy
from projections.assumptions.evaluation import (
    AssumptionsReport,
    Verdict,
    assumption_trend,
    check_assumptions,
    verdict,
)
from projections.assumptions.facts import FIELDS
from projections.assumptions.file import (
    Assumptions,
    AssumptionsError,
    load_assumptions,
    parse_assumptions,
)
from projections.assumptions.log import deal_profiles, known_log, month_ends
from projections.assumptions.stats import holm_adjusted, permutation_p_value, quantile
from streams.simulator import SimulationConfig, ground_truth, history_lines
from tests.support.deal_builders import DealScript

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "assumptions.example.toml"
START = datetime(2026, 1, 5, 9, tzinfo=UTC)
Records = list[tuple[EventBase, datetime]]


def _deal(number: int, segment: str, won: bool, *, discovery_day: int | None = None) -> DealScript:
    opened = START + timedelta(days=number % 40)
    script = DealScript(deal_id=f"deal-{number:03d}", account_id=f"acct-{number:03d}")
    script.opened(opened, segment=segment)
    script.call(opened + timedelta(days=1), 20)
    if discovery_day is not None:
        at = opened + timedelta(days=discovery_day)
        script.meeting(at, at + timedelta(hours=1), MeetingKind.DISCOVERY)
    closed = opened + timedelta(days=30)
    return script.won(closed) if won else script.lost(closed)


def _market(wins: dict[str, tuple[int, int]]) -> Records:
    """Closed deals per segment, (won, lost) of each, recorded a minute after they happened."""
    records: Records = []
    number = 0
    for segment, (won, lost) in wins.items():
        for outcome in [True] * won + [False] * lost:
            number += 1
            records += [
                (e, e.occurred_at + timedelta(minutes=1))
                for e in _deal(number, segment, outcome).events
            ]
    return records


def _claims(*claims: str, evaluation: str = "bootstrap = 400\npermutations = 400") -> Assumptions:
    return parse_assumptions(f"[evaluation]\n{evaluation}\n" + "\n".join(claims))


def _claim(name: str, cohort: str, expect: str = "higher", extra: str = "") -> str:
    return (
        f'[[claims]]\nname = "{name}"\nstatement = "{name}"\nmetric = "win_rate"\n'
        f'expect = "{expect}"\nmin_sample = 10\ncohort = {cohort}\n{extra}'
    )


SMB = '{ field = "segment", op = "==", value = "SMB" }'
MARKET = {"SMB": (32, 8), "Enterprise": (10, 30), "Mid-Market": (2, 3)}


def _verdicts(report: AssumptionsReport) -> dict[str, Verdict]:
    return {result.claim.name: result.verdict for result in report.results}


# --- verdicts -----------------------------------------------------------------------------


def test_a_claim_true_by_construction_is_supported_and_its_opposite_refuted() -> None:
    claims = _claims(_claim("smb_wins", SMB), _claim("smb_loses", SMB, expect="lower"))

    report = check_assumptions(_market(MARKET), claims, default_policy())

    assert _verdicts(report) == {"smb_wins": Verdict.SUPPORTED, "smb_loses": Verdict.REFUTED}
    smb = report.results[0]
    assert (smb.cohort.measured, smb.other.measured) == (40, 45)
    assert smb.cohort.value == pytest.approx(80.0)
    assert smb.effect == pytest.approx(80.0 - 12 / 45 * 100)
    assert smb.interval is not None and smb.effect is not None
    assert 0 < smb.interval[0] < smb.effect < smb.interval[1]


def test_a_tiny_cohort_is_inconclusive_without_an_interval_or_p_value() -> None:
    tiny = '{ field = "segment", op = "==", value = "Mid-Market" }'
    report = check_assumptions(_market(MARKET), _claims(_claim("mm", tiny)), default_policy())

    (result,) = report.results
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "too few closed deals: 5 and 80" in result.reason
    assert result.interval is None and result.p_value is None and result.adjusted_p is None


def test_an_effect_below_the_minimum_that_matters_is_refuted_as_too_small() -> None:
    claims = _claims(_claim("smb_wins_big", SMB, extra="min_effect = 90\n"))

    (result,) = check_assumptions(_market(MARKET), claims, default_policy()).results

    assert result.verdict is Verdict.REFUTED
    assert result.reason.startswith("too small to matter")


@pytest.mark.parametrize(
    ("interval", "p", "minimum", "expected", "why"),
    [
        ((-1.0, 5.0), 0.001, 0.0, Verdict.INCONCLUSIVE, "spans zero"),
        ((1.0, 5.0), 0.05, 0.0, Verdict.INCONCLUSIVE, "not significant"),
        ((-5.0, -1.0), 0.001, 0.0, Verdict.REFUTED, "other way"),
        ((1.0, 5.0), 0.001, 6.0, Verdict.REFUTED, "too small"),
        ((1.0, 5.0), 0.001, 3.0, Verdict.SUPPORTED, "reaches 3"),
        ((1.0, 9.0), 0.001, 4.0, Verdict.INCONCLUSIVE, "may be below"),
    ],
)
def test_the_verdict_rules_apply_in_order(
    interval: tuple[float, float], p: float, minimum: float, expected: Verdict, why: str
) -> None:
    claim = replace(_claims(_claim("c", SMB)).claims[0], min_effect=minimum)

    said, reason = verdict(claim, (50, 50), 3.0 if interval[0] > 0 else -3.0, interval, p, 0.05)

    assert (said, why in reason) == (expected, True)


def test_expecting_lower_turns_the_interval_around() -> None:
    claim = _claims(_claim("c", SMB, expect="lower")).claims[0]

    assert verdict(claim, (50, 50), -3.0, (-5.0, -1.0), 0.01, 0.05)[0] is Verdict.SUPPORTED
    assert verdict(claim, (50, 50), 3.0, (1.0, 5.0), 0.01, 0.05)[0] is Verdict.REFUTED


# --- statistics ---------------------------------------------------------------------------


def test_holm_adjusts_three_p_values_as_done_by_hand() -> None:
    # sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> raised to 0.06 (monotone)
    adjusted = holm_adjusted([0.01, 0.04, None, 0.03])

    assert adjusted[0] == pytest.approx(0.03)
    assert adjusted[1] == pytest.approx(0.06)
    assert adjusted[2] is None
    assert adjusted[3] == pytest.approx(0.06)
    assert holm_adjusted([0.5, 0.9]) == [1.0, 1.0]


def test_the_permutation_p_value_counts_the_observed_split_and_never_reaches_zero() -> None:
    rng = random.Random(3)
    same = permutation_p_value([1.0, 2.0, 3.0] * 10, [1.0, 2.0, 3.0] * 10, median, rng, 199)
    apart = permutation_p_value([10.0] * 30, [0.0] * 30, fmean, rng, 199)

    assert same == 1.0
    assert apart == pytest.approx(1 / 200)


def test_quantiles_interpolate_between_order_statistics() -> None:
    assert quantile([0.0, 10.0, 20.0, 30.0, 40.0], 0.25) == 10.0
    assert quantile([0.0, 10.0], 0.975) == pytest.approx(9.75)


# --- reproducibility and as-of --------------------------------------------------------------


def test_the_same_inputs_give_the_same_numbers_in_any_order_with_duplicates() -> None:
    claims = _claims(_claim("smb_wins", SMB))
    records = _market(MARKET)
    shuffled = records + records[:50]
    random.Random(7).shuffle(shuffled)

    first = check_assumptions(records, claims, default_policy(), seed=11, code_version="t")
    again = check_assumptions(shuffled, claims, default_policy(), seed=11, code_version="t")
    other_seed = check_assumptions(records, claims, default_policy(), seed=12, code_version="t")

    assert again.results == first.results
    assert again.reproducibility.position.event_ids_sha256 == (
        first.reproducibility.position.event_ids_sha256
    )
    assert again.reproducibility.position.events_read == len(records) + 50
    assert other_seed.results[0].interval != first.results[0].interval
    assert other_seed.results[0].effect == first.results[0].effect


def test_the_report_states_what_it_was_computed_from() -> None:
    claims = _claims(_claim("smb_wins", SMB))
    as_of = START + timedelta(days=100)

    stated = check_assumptions(
        _market(MARKET), claims, default_policy(), as_of=as_of, seed=5, code_version="0.1.0+git.x"
    ).reproducibility

    assert (stated.policy_version, stated.code_version) == (default_policy().version, "0.1.0+git.x")
    assert (stated.as_of, stated.seed, stated.assumptions_version) == (as_of, 5, claims.version)
    assert stated.position.events_known == stated.position.distinct_events > 0
    assert len(stated.position.event_ids_sha256) == 64


def test_as_of_ignores_what_happened_or_was_recorded_later() -> None:
    claims = _claims(_claim("smb_wins", SMB))
    as_of = START + timedelta(days=75)  # every deal of MARKET has closed by then
    early = _market(MARKET)
    shift = timedelta(days=90)  # these happen after as_of; they would flip the verdict
    later = [(moved(e, "late", shift), at + shift) for e, at in _market({"SMB": (0, 40)})]
    recorded_late = [  # these happened in time, but were recorded after as_of
        (moved(e, "rec"), as_of + timedelta(seconds=1)) for e, _ in _market({"SMB": (0, 30)})
    ]

    seen = check_assumptions(early + later + recorded_late, claims, default_policy(), as_of=as_of)
    alone = check_assumptions(early, claims, default_policy(), as_of=as_of)

    assert seen.results == alone.results
    assert seen.reproducibility.position.events_known == len(early)
    assert seen.results[0].verdict is Verdict.SUPPORTED


def moved(event: EventBase, prefix: str, shift: timedelta = timedelta(0)) -> EventBase:
    """The same fact for another deal, `shift` later (for deals without meetings)."""
    assert event.deal_id is not None
    return event.model_copy(
        update={
            "event_id": f"{prefix}-{event.event_id}",
            "deal_id": f"{prefix}-{event.deal_id}",
            "occurred_at": event.occurred_at + shift,
        }
    )


def test_the_trend_gives_at_each_month_end_what_a_check_as_of_then_gives() -> None:
    claims = _claims(_claim("smb_wins", SMB))
    records = _market(MARKET)

    trend = assumption_trend(records, claims, default_policy(), seed=3)

    ends = [report.reproducibility.as_of for report in trend]
    assert ends == [datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC), None]
    for report in trend:
        as_of = report.reproducibility.as_of
        assert report == check_assumptions(records, claims, default_policy(), as_of=as_of, seed=3)


def test_month_ends_are_the_first_instants_of_the_following_months() -> None:
    start = datetime(2026, 11, 20, tzinfo=UTC)

    assert month_ends(start, datetime(2027, 2, 1, tzinfo=UTC)) == [
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    ]


# --- deal facts and the cohort language -----------------------------------------------------


def test_deal_facts_measure_the_discovery_meeting_and_the_campaign_responses() -> None:
    script = _deal(1, "SMB", True, discovery_day=9)
    response = CampaignResponded(
        event_id="cr-1", occurred_at=START - timedelta(days=10), account_id="acct-001",
        campaign_id="camp-07", kind=ResponseKind.WEBINAR,
    )  # fmt: skip
    records = [(e, e.occurred_at) for e in [*script.events, response]]

    (profile,) = deal_profiles(known_log(records), default_policy())

    facts = profile.facts
    assert facts["first_discovery_days"] == pytest.approx(9.0)
    assert (facts["held_meetings"], facts["won"], facts["closed"]) == (1.0, True, True)
    assert facts["responded_campaigns"] == frozenset({"camp-07"})
    assert (facts["campaign_responses"], facts["first_campaign"]) == (1.0, "camp-07")
    assert facts["revenue"] == 24000.0 and facts["lead_time_days"] == pytest.approx(30.0)
    assert set(facts) == set(FIELDS)


def test_a_deal_without_a_held_discovery_meeting_has_no_first_discovery_days() -> None:
    script = _deal(1, "SMB", False)
    at = START + timedelta(days=3)
    script.meeting(at, at + timedelta(hours=1), MeetingKind.DISCOVERY, MeetingOutcome.NO_SHOW)

    (profile,) = deal_profiles(
        known_log([(e, e.occurred_at) for e in script.events]), default_policy()
    )

    assert profile.facts["first_discovery_days"] is None
    assert profile.facts["no_shows"] == 1.0


@pytest.mark.parametrize(
    ("cohort", "members"),
    [
        ('{ field = "first_discovery_days", op = "<=", value = 14 }', {"deal-001"}),
        ('{ field = "first_discovery_days", op = "exists", value = false }', {"deal-003"}),
        (
            '{ field = "first_discovery_days", op = "!=", value = 5 }',
            {"deal-001", "deal-002", "deal-003"},
        ),
        (
            '{ field = "segment", op = "in", value = ["SMB", "Enterprise"] }',
            {"deal-001", "deal-002"},
        ),
        ('{ not = { field = "won", op = "==", value = true } }', {"deal-002", "deal-003"}),
        (
            '{ any = [{ field = "segment", op = "==", value = "Mid-Market" }, { all = ['
            '{ field = "won", op = "==", value = true }, { field = "rework", op = "<", value = 1 }'
            "] }] }",
            {"deal-001", "deal-003"},
        ),
    ],
)
def test_the_cohort_language_selects_the_deals_it_says(cohort: str, members: set[str]) -> None:
    scripts = [
        _deal(1, "SMB", True, discovery_day=4),
        _deal(2, "Enterprise", False, discovery_day=20),
        _deal(3, "Mid-Market", False),
    ]
    records = [(e, e.occurred_at) for script in scripts for e in script.events]
    claim = _claims(_claim("c", cohort)).claims[0]

    profiles = deal_profiles(known_log(records), default_policy())

    assert {p.deal_id for p in profiles if claim.cohort.matches(p.facts)} == members


def test_an_other_cohort_that_overlaps_leaves_shared_deals_in_the_cohort() -> None:
    other = '\n[claims.other]\nfield = "segment"\nop = "in"\nvalue = ["SMB", "Enterprise"]\n'
    claims = _claims(_claim("smb", SMB, extra=other))

    (result,) = check_assumptions(_market(MARKET), claims, default_policy()).results

    assert (result.cohort.deals, result.other.deals, result.overlap) == (40, 40, 40)


# --- errors -------------------------------------------------------------------------------


def test_an_unknown_field_is_named_with_the_claim_the_line_and_the_valid_choices() -> None:
    text = _claim("first", SMB) + _claim(
        "second", '{ field = "first_discovery_day", op = "<=", value = 14 }'
    )

    with pytest.raises(AssumptionsError) as caught:
        parse_assumptions(text, "mine.toml")

    (problem,) = caught.value.problems
    assert (problem.claim, problem.key, problem.line) == ("second", "cohort.field", 14)
    assert "unknown field 'first_discovery_day'" in problem.reason
    assert "first_discovery_days" in problem.reason and "owner_id" in problem.reason
    assert "mine.toml: line 14: claim 'second' cohort.field: unknown field" in str(caught.value)


def test_an_unknown_metric_and_a_bad_operator_name_the_valid_choices_on_their_lines() -> None:
    text = (
        '[[claims]]\nname = "c"\nstatement = "s"\nmetric = "win_ratio"\nexpect = "higher"\n'
        '[claims.cohort]\nall = [\n  { field = "segment", op = "==", value = "SMB" },\n'
        '  { field = "segment", op = "<", value = "SMB" },\n]\n'
    )

    with pytest.raises(AssumptionsError) as caught:
        parse_assumptions(text)

    metric, operator = caught.value.problems
    assert (metric.line, metric.key) == (4, "metric")
    assert "valid choices: win_rate, revenue_per_deal, median_lead_time_days" in metric.reason
    assert (operator.line, operator.key) == (9, "cohort.all[1].op")
    assert "does not apply to the text field 'segment'" in operator.reason


def test_errors_in_table_form_cohorts_point_at_the_line_of_the_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    lines = text.splitlines()
    field_line = lines.index('field = "first_discovery_days"') + 1
    other_line = max(i for i, line in enumerate(lines) if '"!=", value = "rep-01"' in line) + 1
    broken = text.replace('\nfield = "first_discovery_days"\n', '\nfield = "discovery"\n').replace(
        'op = "!=", value = "rep-01"', 'op = "contains", value = "rep-01"'
    )

    with pytest.raises(AssumptionsError) as caught:
        parse_assumptions(broken)

    field, operator = caught.value.problems
    assert (field.claim, field.key, field.line) == (
        "early_discovery_wins",
        "cohort.field",
        field_line,
    )
    assert (operator.claim, operator.key) == ("early_booker_closes_better", "other.all[0].op")
    assert operator.line == other_line


def test_a_toml_syntax_error_gives_its_line() -> None:
    with pytest.raises(AssumptionsError) as caught:
        parse_assumptions('[[claims]]\nname = "c"\nmetric = win_rate\n')

    (problem,) = caught.value.problems
    assert problem.line == 3
    assert problem.reason.startswith("TOML syntax")


def test_a_value_of_the_wrong_kind_and_a_missing_statement_are_both_reported() -> None:
    text = _claim("c", '{ field = "won", op = "==", value = "yes" }').replace(
        'statement = "c"\n', ""
    )

    with pytest.raises(AssumptionsError) as caught:
        parse_assumptions(text)

    reasons = [problem.reason for problem in caught.value.problems]
    assert "required: a non-empty string" in reasons
    assert any("takes a flag, got 'yes'" in reason for reason in reasons)


# --- the shipped example on simulated history -------------------------------------------------


def test_the_example_file_finds_the_planted_pattern_and_refutes_the_false_beliefs() -> None:
    config = SimulationConfig(seed=42, deals=600, accounts=160)
    truth = ground_truth(config)
    records = [(e, e.occurred_at) for e in map(decode, history_lines(config))]
    example = load_assumptions(EXAMPLE)

    report = check_assumptions(records, example, default_policy())

    verdicts = _verdicts(report)
    assert verdicts["early_discovery_wins"] is Verdict.SUPPORTED
    assert verdicts["chaser_wastes_more"] is Verdict.SUPPORTED
    assert verdicts["requoter_quotes_carefully"] is Verdict.REFUTED
    assert verdicts["paid_social_brings_big_deals"] is Verdict.REFUTED
    assert verdicts["stalled_deals_lose"] is Verdict.INCONCLUSIVE
    early = report.results[0]
    assert early.cohort.value == pytest.approx(truth.early_discovery_win_rate * 100, abs=8)
    assert early.other.value == pytest.approx(truth.late_discovery_win_rate * 100, abs=6)
    assert truth.rework_rep_id == "rep-02" and truth.chasing_rep_id == "rep-03"
    assert truth.negative_roi_campaign_id == "camp-01"


def test_an_assumptions_file_nested_thousands_of_levels_deep_is_refused_as_too_deep() -> None:
    text = '[[claims]]\nname = "c"\ncohort = ' + "[" * 5000 + "]" * 5000 + "\n"

    with pytest.raises(AssumptionsError, match="nested too deep") as caught:
        parse_assumptions(text, "deep.toml")

    assert "assumptions file deep.toml refused" in str(caught.value)
