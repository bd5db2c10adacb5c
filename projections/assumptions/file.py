"""The assumptions file: strategy claims as operational definitions, read from TOML.

```toml
title = "Sales playbook, 2026"        # optional

[evaluation]                          # optional; these are the defaults
alpha = 0.05                          # significance level, after the Holm adjustment
confidence = 0.95                     # of the bootstrap interval
bootstrap = 2000                      # bootstrap resamples
permutations = 2000                   # permutation-test splits
seed = 1                              # `--seed` overrides it

[[claims]]
name = "early_discovery_wins"         # unique; letters, digits, . _ -
statement = "Deals with a held discovery meeting within 14 days of opening win more often."
metric = "win_rate"                   # see projections.assumptions.stats.METRICS
expect = "higher"                     # the cohort's metric is higher (or lower) than the other's
min_effect = 10                       # optional, in the metric's unit (percentage points here)
min_sample = 30                       # optional (default 30): closed deals needed per cohort

[claims.cohort]                       # the cohort language: projections.assumptions.cohorts
field = "first_discovery_days"
op = "<="
value = 14

# other = "rest" is the default: every deal not in the cohort. Or a cohort table:
# [claims.other]
# field = "first_discovery_days"
# op = "exists"
# value = false
```

When `other` is a cohort table, a deal matching both stays in the cohort only.
Any mistake is reported with its line, the claim's name and the reason; an
unknown field, operator or metric names the valid choices.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from os import PathLike
from typing import Any

from events.toml_text import TomlUnreadable, parse_toml
from projections.assumptions.cohorts import Cohort, Problems, parse_cohort
from projections.assumptions.stats import METRICS
from projections.assumptions.text import Path, key_lines, line_of
from projections.errors import ProjectionError

__all__ = [
    "REST",
    "Assumptions",
    "AssumptionsError",
    "AssumptionsProblem",
    "Claim",
    "Evaluation",
    "Expectation",
    "load_assumptions",
    "parse_assumptions",
]

REST = "rest"
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_CLAIM_KEYS = (
    "name", "statement", "metric", "expect", "cohort", "other", "min_effect", "min_sample",
)  # fmt: skip


class Expectation(StrEnum):
    """Which way the claim expects the cohort's metric to differ from the other's."""

    HIGHER = "higher"
    LOWER = "lower"

    @property
    def sign(self) -> int:
        """+1 for higher, -1 for lower."""
        return 1 if self is Expectation.HIGHER else -1


@dataclass(frozen=True, slots=True)
class Claim:
    """One assumption: two cohorts, a metric, the expected direction and what would matter."""

    name: str
    statement: str
    metric: str
    expect: Expectation
    cohort: Cohort
    other: Cohort | None  # None: the rest of the deals
    min_effect: float = 0.0
    min_sample: int = 30

    def describe_other(self) -> str:
        """The other cohort in one line."""
        if self.other is None:
            return f"the rest: not ({self.cohort.describe()})"
        return self.other.describe()


@dataclass(frozen=True, slots=True)
class Evaluation:
    """How the claims are tested: significance level, interval, resamples and seed."""

    alpha: float = 0.05
    confidence: float = 0.95
    bootstrap: int = 2000
    permutations: int = 2000
    seed: int = 1


@dataclass(frozen=True, slots=True)
class Assumptions:
    """A parsed assumptions file; `version` is a short hash of its content (not its layout)."""

    title: str
    claims: tuple[Claim, ...]
    evaluation: Evaluation
    version: str


@dataclass(frozen=True, slots=True)
class AssumptionsProblem:
    """One reason an assumptions file was refused: where (line, claim, key) and why."""

    reason: str
    key: str | None = None
    line: int | None = None
    claim: str | None = None

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "line unknown"
        claim = f" claim {self.claim!r}" if self.claim else ""
        key = f" {self.key}" if self.key else ""
        return f"{where}:{claim}{key}: {self.reason}"


class AssumptionsError(ProjectionError):
    """An assumptions file could not be read or is not valid; `problems` say where and why."""

    def __init__(self, source: str, problems: list[AssumptionsProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        details = "\n".join(f"  {source}: {problem}" for problem in problems)
        super().__init__(f"assumptions file {source} refused; fix it and try again:\n{details}")


def _number(raw: Any, path: Path, low: float, high: float, problems: Problems) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not low <= raw <= high:
        problems.append((path, f"must be a number from {low:g} to {high:g}, got {raw!r}"))
        return None
    return float(raw)


def _evaluation(raw: Any, problems: Problems) -> Evaluation:
    if raw is None:
        return Evaluation()
    if not isinstance(raw, dict):
        problems.append((("evaluation",), "must be a table"))
        return Evaluation()
    known = ("alpha", "confidence", "bootstrap", "permutations", "seed")
    for key in sorted(set(raw) - set(known)):
        problems.append((("evaluation", key), f"unknown key; valid keys: {', '.join(known)}"))
    values: dict[str, Any] = {}
    for key, (low, high) in {"alpha": (1e-6, 0.5), "confidence": (0.5, 0.999)}.items():
        if key in raw:
            values[key] = _number(raw[key], ("evaluation", key), low, high, problems)
    for key, (least, most) in {"bootstrap": (100, 10**6), "permutations": (100, 10**6)}.items():
        if key in raw:
            values[key] = _whole(raw[key], ("evaluation", key), least, most, problems)
    if "seed" in raw:
        values["seed"] = _whole(raw["seed"], ("evaluation", "seed"), 0, 2**63, problems)
    return Evaluation(**{k: v for k, v in values.items() if v is not None})


def _whole(raw: Any, path: Path, least: int, most: int, problems: Problems) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, int) or not least <= raw <= most:
        problems.append((path, f"must be a whole number from {least:,} to {most:,}, got {raw!r}"))
        return None
    return raw


def _text(raw: Mapping[str, Any], key: str, path: Path, problems: Problems) -> str | None:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        problems.append(((*path, key), "required: a non-empty string"))
        return None
    return value.strip()


def _choice(raw: Mapping[str, Any], key: str, choices: Any, path: Path, problems: Problems) -> Any:
    value = raw.get(key)
    if value not in choices:
        problems.append(
            ((*path, key), f"unknown {key} {value!r}; valid choices: {', '.join(choices)}")
        )
        return None
    return value


def _claim(raw: Any, path: Path, problems: Problems) -> Claim | None:
    if not isinstance(raw, dict):
        problems.append((path, "each claim is a table ([[claims]])"))
        return None
    before = len(problems)
    for key in sorted(set(raw) - set(_CLAIM_KEYS)):
        problems.append(((*path, key), f"unknown key; valid keys: {', '.join(_CLAIM_KEYS)}"))
    name, statement = _text(raw, "name", path, problems), _text(raw, "statement", path, problems)
    if name is not None and not _NAME.match(name):
        problems.append(((*path, "name"), "use 1 to 64 letters, digits, '.', '_' or '-'"))
    metric = _choice(raw, "metric", tuple(METRICS), path, problems)
    expect = _choice(raw, "expect", tuple(Expectation), path, problems)
    cohort = parse_cohort(raw.get("cohort"), (*path, "cohort"), problems)
    other_raw = raw.get("other", REST)
    other = None
    if isinstance(other_raw, str) and other_raw != REST:
        problems.append(((*path, "other"), f'give "{REST}" or a cohort table, not {other_raw!r}'))
    elif other_raw != REST:
        other = parse_cohort(other_raw, (*path, "other"), problems)
    min_effect = _number(raw.get("min_effect", 0), (*path, "min_effect"), 0, 1e15, problems)
    min_sample = _whole(raw.get("min_sample", 30), (*path, "min_sample"), 2, 10**9, problems)
    if name is None or statement is None or cohort is None or min_sample is None:
        return None
    if len(problems) > before:
        return None
    return Claim(
        name, statement, metric, Expectation(expect), cohort, other, min_effect or 0.0, min_sample
    )


def _claims(raw: Any, problems: Problems) -> tuple[Claim, ...]:
    if not isinstance(raw, list) or not raw:
        problems.append((("claims",), "list at least one claim, each under [[claims]]"))
        return ()
    claims = [_claim(each, ("claims", index), problems) for index, each in enumerate(raw)]
    seen: set[str] = set()
    for index, claim in enumerate(claims):
        if claim is not None and claim.name in seen:
            problems.append((("claims", index, "name"), f"the name {claim.name!r} is used twice"))
        if claim is not None:
            seen.add(claim.name)
    return tuple(claim for claim in claims if claim is not None)


def _located(
    problems: Problems, text: str, document: Mapping[str, Any]
) -> list[AssumptionsProblem]:
    lines = key_lines(text)
    located = []
    for path, reason in problems:
        claim, key = None, path
        if len(path) >= 2 and path[0] == "claims" and isinstance(path[1], int):
            raw = document["claims"][path[1]]
            name = raw.get("name") if isinstance(raw, dict) else None
            claim = name if isinstance(name, str) and name else f"#{path[1] + 1}"
            key = path[2:]
        located.append(
            AssumptionsProblem(reason, _dotted(key) or None, line_of(lines, path), claim)
        )
    return located


def _dotted(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def _version(document: Mapping[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return f"assumptions-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


def parse_assumptions(text: str, source: str = "<assumptions>") -> Assumptions:
    """Read an assumptions file from TOML text; raise AssumptionsError naming line and reason."""
    try:
        document: dict[str, Any] = parse_toml(text)
    except TomlUnreadable as exc:
        raise AssumptionsError(source, [_syntax_problem(exc)]) from None
    problems: Problems = []
    for key in sorted(set(document) - {"title", "evaluation", "claims"}):
        problems.append(((key,), "unknown key; valid keys: title, evaluation, claims"))
    title = document.get("title", "")
    if not isinstance(title, str):
        problems.append((("title",), "must be a string"))
    evaluation = _evaluation(document.get("evaluation"), problems)
    claims = _claims(document.get("claims"), problems)
    if problems:
        raise AssumptionsError(source, _located(problems, text, document))
    return Assumptions(str(title), claims, evaluation, _version(document))


def _syntax_problem(error: TomlUnreadable) -> AssumptionsProblem:
    column = "" if error.column is None else f" (column {error.column})"
    return AssumptionsProblem(f"{error.reason}{column}", line=error.line)


def load_assumptions(path: str | PathLike[str]) -> Assumptions:
    """Load an assumptions file; raise AssumptionsError if it cannot be read or is invalid."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        problem = AssumptionsProblem(f"cannot read the file: {exc}")
        raise AssumptionsError(str(path), [problem]) from None
    return parse_assumptions(text, str(path))
