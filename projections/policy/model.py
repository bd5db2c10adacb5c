"""The policy: the operational definitions as versioned data, loaded from TOML."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import timedelta
from functools import cache, cached_property
from importlib import resources
from os import PathLike
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from events.models import MeetingKind
from events.toml_text import TomlUnreadable, parse_toml
from projections.categories import TOUCH_WASTES, TouchClass, WasteCategory
from projections.errors import PolicyError, PolicyProblem
from projections.policy.text import key_lines, line_of

__all__ = [
    "AttributionPolicy",
    "MergePolicy",
    "Policy",
    "StagePolicy",
    "StallPolicy",
    "StandardMinutes",
    "TouchRules",
    "WasteLabels",
    "default_policy",
    "load_policy",
    "parse_policy",
]

Name = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=500)]
Count = Annotated[int, Field(strict=True, ge=0, le=10_000)]
Minutes = Annotated[int, Field(strict=True, ge=0, le=24 * 60)]
Days = Annotated[float, Field(strict=True, gt=0, le=3650, allow_inf_nan=False)]
DaysOrZero = Annotated[float, Field(strict=True, ge=0, le=3650, allow_inf_nan=False)]
MeetingKinds = Annotated[
    tuple[MeetingKind, ...], AfterValidator(lambda kinds: tuple(sorted(set(kinds))))
]
StageNames = Annotated[tuple[Name, ...], AfterValidator(lambda names: tuple(sorted(set(names))))]
"""Sets, kept sorted so that the order they are written in does not change the version."""


class _KeyProblems(ValueError):
    """Problems found across fields, each with its key path (relative to the model)."""

    def __init__(self, problems: list[tuple[tuple[str, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(path)}: {reason}" for path, reason in problems))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StagePolicy(_Frozen):
    """The open stages in flow order, and the names of the two closed states."""

    order: tuple[Name, ...] = Field(min_length=1)
    won: Name
    lost: Name

    @model_validator(mode="after")
    def _names_are_distinct(self) -> Self:
        names = [name.casefold() for name in (*self.order, self.won, self.lost)]
        if len(set(names)) != len(names):
            raise _KeyProblems([(("order",), "stage names (open, won, lost) must all differ")])
        return self

    def rank(self, stage: str) -> int | None:
        """Position of an open stage in the flow, or None for a stage the policy does not list."""
        return self.order.index(stage) if stage in self.order else None


class StandardMinutes(_Frozen):
    """Process time of touches that carry no duration: emails and quotes."""

    email: Minutes
    reply: Minutes
    quote: Minutes
    quote_revision: Minutes


class TouchRules(_Frozen):
    """Parameters of the default touch rules (DOMAIN.md, rules 1-8)."""

    internal_meeting_allowance_per_stage: Count
    value_added_meeting_kinds: MeetingKinds
    rework_when_repeated: MeetingKinds
    emails_before_chasing: Count
    overproduction_stages: StageNames

    @model_validator(mode="after")
    def _internal_is_never_value_added(self) -> Self:
        if MeetingKind.INTERNAL in self.value_added_meeting_kinds:
            reason = "an internal meeting is never value-added"
            raise _KeyProblems([(("value_added_meeting_kinds",), reason)])
        return self


class MergePolicy(_Frozen):
    """Which class, and which waste, a minute covered by overlapping touches goes to."""

    classes: tuple[TouchClass, ...]
    wastes: tuple[WasteCategory, ...]

    @model_validator(mode="after")
    def _are_orders(self) -> Self:
        problems: list[tuple[tuple[str, ...], str]] = []
        if sorted(self.classes) != sorted(TouchClass):
            problems.append((("classes",), f"list each of {', '.join(TouchClass)} once"))
        if sorted(self.wastes) != sorted(TOUCH_WASTES):
            problems.append((("wastes",), f"list each of {', '.join(sorted(TOUCH_WASTES))} once"))
        if problems:
            raise _KeyProblems(problems)
        return self


class WasteLabels(_Frozen):
    """How reports name the seven wastes."""

    rework: Label
    chasing: Label
    no_show: Label
    over_processing: Label
    overproduction: Label
    waiting_on_us: Label
    inventory: Label


class StallPolicy(_Frozen):
    """When an open deal counts as stalled: thresholds per stage, per segment, or learned.

    The `learn_*` fields are read in one place: `projections.deal.stall.learned_stall_threshold`.
    """

    learn_from_history: bool = Field(strict=True)
    learn_percentile: int = Field(strict=True, ge=1, le=100)
    learn_min_won_deals: int = Field(strict=True, ge=1)
    threshold_days: dict[Name, Days]
    segments: dict[Name, dict[Name, Days]] = Field(default_factory=dict)

    def threshold(
        self,
        stage: str,
        segment: str | None = None,
        learned: Mapping[str, timedelta] | None = None,
    ) -> timedelta | None:
        """A stage's threshold: the segment's override, else the learned one, else the default.

        None for a stage the policy has no threshold for: it never stalls.

        SQL twin: projections.archive.fold_sql.policy_sql.PolicySql.thresholds (no learned ones).
        """
        override = self.segments.get(segment, {}) if segment is not None else {}
        if stage in override:
            return timedelta(days=override[stage])
        if learned is not None and stage in learned:
            return learned[stage]
        days = self.threshold_days.get(stage)
        return None if days is None else timedelta(days=days)


class AttributionPolicy(_Frozen):
    """How campaign responses link to deals, and the parameters of the credit models."""

    lookback_days: DaysOrZero
    time_decay_half_life_days: Days
    opportunity_stage: Name

    @property
    def lookback(self) -> timedelta:
        """How long before a deal opened a response of its account still counts for it."""
        return timedelta(days=self.lookback_days)

    @property
    def time_decay_half_life(self) -> timedelta:
        """How far before the close a response's time-decay weight is halved."""
        return timedelta(days=self.time_decay_half_life_days)


class Policy(_Frozen):
    """Every definition a projection depends on; `version` is stamped on its results."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
    stages: StagePolicy
    standard_minutes: StandardMinutes
    rules: TouchRules
    merge: MergePolicy
    waste: WasteLabels
    stall: StallPolicy
    attribution: AttributionPolicy

    @model_validator(mode="after")
    def _stages_are_known(self) -> Self:
        known = set(self.stages.order)
        problems: list[tuple[tuple[str, ...], str]] = [
            (("rules", "overproduction_stages"), f"unknown stage {stage!r}")
            for stage in self.rules.overproduction_stages
            if stage not in known
        ]
        problems += [
            (("stall", "threshold_days", stage), f"unknown stage {stage!r}")
            for stage in self.stall.threshold_days
            if stage not in known
        ]
        problems += [
            (("stall", "threshold_days"), f"no threshold for stage {stage!r}")
            for stage in self.stages.order
            if stage not in self.stall.threshold_days
        ]
        problems += [
            (("stall", "segments", segment, stage), f"unknown stage {stage!r}")
            for segment, thresholds in self.stall.segments.items()
            for stage in thresholds
            if stage not in known
        ]
        if self.attribution.opportunity_stage not in known:
            stage = self.attribution.opportunity_stage
            problems.append((("attribution", "opportunity_stage"), f"unknown stage {stage!r}"))
        if problems:
            raise _KeyProblems(problems)
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy; its version is computed afresh (a changed copy is another policy)."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("version", None)
        return copy

    @cached_property
    def version(self) -> str:
        """The name plus a short sha256 of the canonical content (not of layout or comments).

        Computed once per (frozen) policy: folds read it for every deal."""
        canonical = json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return f"{self.name}-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


def _syntax_problem(error: TomlUnreadable) -> PolicyProblem:
    return PolicyProblem(error.reason, line=error.line, column=error.column)


def _validation_problems(error: ValidationError, text: str) -> list[PolicyProblem]:
    lines = key_lines(text)
    problems = []
    for item in error.errors(include_url=False):
        cause = item.get("ctx", {}).get("error")
        base = tuple(str(part) for part in item["loc"])
        if isinstance(cause, _KeyProblems):
            for path, reason in cause.problems:
                full = base + path
                problems.append(PolicyProblem(reason, ".".join(full), line_of(lines, full)))
            continue
        reason = item["msg"].removeprefix("Value error, ")
        key = ".".join(str(part) for part in item["loc"]) or "(policy)"
        problems.append(PolicyProblem(reason, key, line_of(lines, item["loc"])))
    return problems


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Read a policy from TOML text; raise PolicyError naming the line, key and reason."""
    try:
        document: Mapping[str, Any] = parse_toml(text)
    except TomlUnreadable as exc:
        raise PolicyError(source, [_syntax_problem(exc)]) from None
    try:
        return Policy.model_validate(document)
    except ValidationError as exc:
        raise PolicyError(source, _validation_problems(exc, text)) from None


def load_policy(path: str | PathLike[str]) -> Policy:
    """Load a policy file; raise PolicyError if it cannot be read or is not a valid policy."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(str(path), [PolicyProblem(f"cannot read the file: {exc}")]) from None
    return parse_policy(text, str(path))


@cache
def default_policy() -> Policy:
    """The policy shipped with Gemba: the defaults of DOMAIN.md."""
    text = resources.files("projections.policy").joinpath("default.toml").read_text("utf-8")
    return parse_policy(text, "projections/policy/default.toml")
