"""The policy is data: loaded from TOML, versioned by content, refused with line and key."""

from __future__ import annotations

import re
from datetime import timedelta
from importlib import resources
from pathlib import Path

import pytest
from pydantic import ValidationError

from projections import Policy, PolicyError, default_policy, load_policy, parse_policy

DEFAULT_VERSION = "default-8c143dd56219"


def default_text() -> str:
    return resources.files("projections.policy").joinpath("default.toml").read_text("utf-8")


def edited(old: str, new: str) -> str:
    text = default_text()
    assert text.count(old) == 1, f"{old!r} should occur once in the default policy"
    return text.replace(old, new)


def line_number(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


def refusal(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "team.toml")
    return caught.value


def test_the_default_policy_loads_with_the_domain_defaults() -> None:
    policy = default_policy()
    assert policy.stages.order == (
        "Prospecting",
        "Qualification",
        "Discovery",
        "Proposal",
        "Negotiation",
    )
    assert (policy.stages.won, policy.stages.lost) == ("Won", "Lost")
    minutes = policy.standard_minutes
    assert (minutes.email, minutes.reply, minutes.quote, minutes.quote_revision) == (5, 5, 45, 30)
    assert policy.rules.internal_meeting_allowance_per_stage == 2
    assert policy.rules.emails_before_chasing == 2
    assert policy.stall.threshold("Negotiation") == timedelta(days=21)
    assert policy.stall.learn_percentile == 80
    assert policy.stall.learn_min_won_deals == 30


def test_the_default_policy_has_a_stable_version() -> None:
    assert default_policy().version == DEFAULT_VERSION
    assert parse_policy(default_text()).version == DEFAULT_VERSION
    assert re.fullmatch(r"default-[0-9a-f]{12}", DEFAULT_VERSION)


def test_comments_and_layout_do_not_change_the_version() -> None:
    text = edited("email = 5           #", "email    =    5 # another comment\n#")
    assert parse_policy(text).version == DEFAULT_VERSION


def test_the_order_sets_are_written_in_does_not_change_the_version() -> None:
    text = edited('["Prospecting", "Qualification"]', '["Qualification", "Prospecting"]')
    assert parse_policy(text).version == DEFAULT_VERSION


def test_a_changed_value_changes_the_version() -> None:
    changed = parse_policy(edited("Negotiation = 21", "Negotiation = 30"))
    assert changed.version.startswith("default-")
    assert changed.version != DEFAULT_VERSION


def test_the_version_starts_with_the_policys_name() -> None:
    assert parse_policy(edited('name = "default"', 'name = "emea-2026"')).version.startswith(
        "emea-2026-"
    )


def test_a_toml_syntax_error_reports_its_line() -> None:
    text = edited("quote = 45", "quote = ")
    error = refusal(text)
    [problem] = error.problems
    assert problem.line == line_number(text, "quote = ")
    assert problem.reason.startswith("TOML syntax")
    assert f"team.toml: line {problem.line}" in str(error)


def test_a_negative_threshold_is_refused_with_its_key_and_line() -> None:
    text = edited("Proposal = 14", "Proposal = -3")
    [problem] = refusal(text).problems
    assert problem.key == "stall.threshold_days.Proposal"
    assert problem.line == line_number(text, "Proposal = -3")
    assert "greater than 0" in problem.reason


def test_an_unknown_stage_in_the_thresholds_is_refused_with_its_key_and_line() -> None:
    text = edited("Discovery = 10", "Discovery = 10\nDiscovry = 10")
    [problem] = refusal(text).problems
    assert problem.key == "stall.threshold_days.Discovry"
    assert problem.line == line_number(text, "Discovry = 10")
    assert "unknown stage 'Discovry'" in problem.reason


def test_an_unknown_stage_in_a_segment_override_is_refused() -> None:
    text = default_text() + "\n[stall.segments.Enterprise]\nClosing = 30\n"
    [problem] = refusal(text).problems
    assert problem.key == "stall.segments.Enterprise.Closing"
    assert problem.line == line_number(text, "Closing = 30")


def test_a_stage_without_a_threshold_is_refused() -> None:
    [problem] = refusal(edited("Prospecting = 14\n", "")).problems
    assert problem.key == "stall.threshold_days"
    assert "no threshold for stage 'Prospecting'" in problem.reason


def test_an_unknown_key_is_refused_with_its_line() -> None:
    text = edited("reply = 5", "reply = 5\ncall = 10")
    [problem] = refusal(text).problems
    assert problem.key == "standard_minutes.call"
    assert problem.line == line_number(text, "call = 10")


def test_a_missing_key_is_named() -> None:
    [problem] = refusal(edited("quote_revision = 30", "")).problems
    assert problem.key == "standard_minutes.quote_revision"
    assert problem.reason == "Field required"


def test_every_problem_is_reported_at_once() -> None:
    text = edited("email = 5 ", "email = -1 ").replace("reply = 5", "reply = 2.5")
    assert {problem.key for problem in refusal(text).problems} == {
        "standard_minutes.email",
        "standard_minutes.reply",
    }


def test_a_merge_order_must_name_every_class_once() -> None:
    text = edited('"necessary_non_value_added", "waste"]', '"waste"]')
    [problem] = refusal(text).problems
    assert problem.key == "merge.classes"
    assert problem.line == line_number(text, 'classes = ["value_added", "waste"]')


def test_an_internal_meeting_cannot_be_value_added() -> None:
    [problem] = refusal(edited('"demo", "negotiation"]', '"demo", "internal"]')).problems
    assert problem.key == "rules.value_added_meeting_kinds"


def test_load_policy_reads_a_file_and_names_it_in_errors(tmp_path: Path) -> None:
    good = tmp_path / "policy.toml"
    good.write_text(edited('name = "default"', 'name = "team"'), encoding="utf-8")
    assert load_policy(good).name == "team"
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"bad\.toml: line 1"):
        load_policy(bad)
    with pytest.raises(PolicyError, match="cannot read the file"):
        load_policy(tmp_path / "missing.toml")


def test_a_segment_override_wins_over_the_stage_threshold() -> None:
    text = default_text() + "\n[stall.segments.Enterprise]\nNegotiation = 30\n"
    stall = parse_policy(text).stall
    assert stall.threshold("Negotiation", "Enterprise") == timedelta(days=30)
    assert stall.threshold("Negotiation", "SMB") == timedelta(days=21)
    assert stall.threshold("Proposal", "Enterprise") == timedelta(days=14)
    assert stall.threshold("Legal review") is None


def test_a_policy_is_frozen() -> None:
    with pytest.raises(ValidationError):
        default_policy().name = "changed"  # type: ignore[misc]
    assert isinstance(default_policy(), Policy)


def test_the_default_policy_links_campaigns_over_ninety_days_and_halves_credit_weekly() -> None:
    attribution = default_policy().attribution
    assert attribution.lookback == timedelta(days=90)
    assert attribution.time_decay_half_life == timedelta(days=7)
    assert attribution.opportunity_stage == "Discovery"


def test_an_unknown_opportunity_stage_is_refused_with_its_key_and_line() -> None:
    text = edited('opportunity_stage = "Discovery"', 'opportunity_stage = "Demo"')
    [problem] = refusal(text).problems
    assert problem.key == "attribution.opportunity_stage"
    assert problem.line == line_number(text, 'opportunity_stage = "Demo"')
    assert "unknown stage 'Demo'" in problem.reason


@pytest.mark.parametrize(
    "text",
    [
        "x = " + "[" * 5000 + "]" * 5000,
        "x = " + "{ a = " * 5000 + "1" + " }" * 5000,
        "[" + ".".join(["a"] * 5000) + "]\nx = 1",
    ],
    ids=["arrays", "inline-tables", "table-header"],
)
def test_a_policy_nested_thousands_of_levels_deep_is_refused_as_too_deep(text: str) -> None:
    with pytest.raises(PolicyError, match="nested too deep") as caught:
        parse_policy(text, "deep.toml")

    assert "policy deep.toml refused" in str(caught.value)


def test_toml_nested_up_to_the_limit_is_read_and_one_level_more_is_refused() -> None:
    from events.errors import TomlUnreadable
    from events.toml_text import MAX_DEPTH, parse_toml

    def nested(levels: int) -> str:  # the document is one level, `x` holds the rest
        return "x = " + "[" * (levels - 1) + "]" * (levels - 1)

    assert parse_toml(nested(MAX_DEPTH))["x"] is not None
    with pytest.raises(TomlUnreadable, match="nested too deep"):
        parse_toml(nested(MAX_DEPTH + 1))
