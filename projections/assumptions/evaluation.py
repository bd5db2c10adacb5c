"""Strategy assumptions as testable claims: evaluate each over history, give a verdict.

A claim (see projections.assumptions.file) compares a metric between two
cohorts of deals (projections.assumptions.cohorts) as known at an as-of time.
The metric uses closed deals only (projections.assumptions.stats); the cohort
sizes below count those deals.

effect = metric(cohort) - metric(other), with a bootstrap confidence interval
[low, high], a two-sided permutation p-value, and the p-value adjusted for
multiple testing with the Holm-Bonferroni method over the claims of the file
that got a p-value. Write `s` for the expected sign (+1 for `expect =
"higher"`, -1 for "lower"), `m` for `min_effect` (0 when not given), and
[L, H] for the interval turned towards the expectation (s*low and s*high,
smaller first). The verdict is the first rule that applies:

1. **inconclusive**: either cohort has fewer than `min_sample` closed deals
   (no interval or p-value is computed; the claim takes no part in the Holm
   adjustment);
2. **inconclusive**: the interval spans zero (L <= 0 <= H);
3. **inconclusive**: the adjusted p-value is at least `alpha` (0.05);
4. **refuted**: the interval lies wholly on the other side (H < 0): the
   effect goes the opposite way;
5. **refuted**: the interval lies wholly on the expected side, but wholly
   below the minimum effect (0 < L <= H < m): real, but too small to matter;
6. **supported**: the interval lies wholly on the expected side (L > 0) and
   the effect itself reaches the minimum (s*effect >= m);
7. **inconclusive**: otherwise (L > 0, s*effect < m <= H): the effect is
   real, but may or may not be large enough to matter.

Every report states what it took to compute it: the policy, code and
assumptions versions, the as-of time, the position in the event log and the
seed. Given the same records, policy, file, as-of time and seed, every number
is the same, on any machine with the same Python version.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from events.models import EventBase
from projections.assumptions.facts import DealProfile
from projections.assumptions.file import Assumptions, Claim, Evaluation
from projections.assumptions.log import (
    FoldCache,
    LogPosition,
    deal_profiles,
    known_log,
    month_ends,
)
from projections.assumptions.stats import (
    METRICS,
    bootstrap_interval,
    holm_adjusted,
    permutation_p_value,
)
from projections.policy.model import Policy

__all__ = [
    "AssumptionsReport",
    "ClaimResult",
    "CohortFigures",
    "Reproducibility",
    "Verdict",
    "assumption_trend",
    "check_assumptions",
    "evaluate_claims",
    "verdict",
]


_STREAMS = ("bootstrap", "permutation")
"""Each claim draws from two random streams, seeded from the run's seed and its name."""


class Verdict(StrEnum):
    """What the history says about a claim."""

    SUPPORTED = "supported"
    REFUTED = "refuted"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True)
class CohortFigures:
    """One side of a claim: deals matching it, closed deals the metric used, the metric."""

    deals: int
    measured: int
    value: float | None


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """A claim's evidence and verdict; interval and p-values are None for too few deals."""

    claim: Claim
    cohort: CohortFigures
    other: CohortFigures
    overlap: int
    effect: float | None
    interval: tuple[float, float] | None
    p_value: float | None
    adjusted_p: float | None
    verdict: Verdict
    reason: str


@dataclass(frozen=True, slots=True)
class Reproducibility:
    """What a report was computed from; the same inputs give the same numbers."""

    policy_version: str
    code_version: str
    assumptions_version: str
    as_of: datetime | None
    position: LogPosition
    seed: int
    evaluation: Evaluation


@dataclass(frozen=True, slots=True)
class AssumptionsReport:
    """Every claim of a file evaluated as of one time, with how to reproduce it."""

    title: str
    results: tuple[ClaimResult, ...]
    reproducibility: Reproducibility


def verdict(
    claim: Claim,
    sizes: tuple[int, int],
    effect: float | None,
    interval: tuple[float, float] | None,
    adjusted_p: float | None,
    alpha: float,
) -> tuple[Verdict, str]:
    """The verdict and its reason, by the rules of this module's docstring."""
    if min(sizes) < claim.min_sample or effect is None or interval is None or adjusted_p is None:
        return Verdict.INCONCLUSIVE, (
            f"too few closed deals: {sizes[0]} and {sizes[1]}, "
            f"need {claim.min_sample} in each cohort"
        )
    sign = claim.expect.sign
    low, high = sorted((sign * interval[0], sign * interval[1]))
    floor = claim.min_effect
    if low <= 0 <= high:
        return Verdict.INCONCLUSIVE, "the interval spans zero"
    if adjusted_p >= alpha:
        return Verdict.INCONCLUSIVE, f"not significant: adjusted p {adjusted_p:.3g} >= {alpha:g}"
    if high < 0:
        return Verdict.REFUTED, "the effect goes the other way"
    if high < floor:
        return Verdict.REFUTED, f"too small to matter: the whole interval is below {floor:g}"
    if sign * effect >= floor:
        return Verdict.SUPPORTED, "the interval lies on the expected side" + (
            f" and the effect reaches {floor:g}" if floor else ""
        )
    return Verdict.INCONCLUSIVE, f"real, but the effect may be below the minimum {floor:g}"


def _measure(
    claim: Claim, profiles: Sequence[DealProfile], evaluation: Evaluation, seed: int
) -> ClaimResult:
    """The claim's figures, interval and p-value; the verdict comes with the Holm adjustment."""
    metric = METRICS[claim.metric]
    inside = [p for p in profiles if claim.cohort.matches(p.facts)]
    outside = [p for p in profiles if not claim.cohort.matches(p.facts)]
    others = (
        outside if claim.other is None else [p for p in outside if claim.other.matches(p.facts)]
    )
    overlap = 0 if claim.other is None else sum(claim.other.matches(p.facts) for p in inside)
    mine, theirs = (
        [v for p in group if (v := metric.value(p)) is not None] for group in (inside, others)
    )
    figures = [
        CohortFigures(len(group), len(vals), metric.statistic(vals) if vals else None)
        for group, vals in ((inside, mine), (others, theirs))
    ]
    effect = None
    if figures[0].value is not None and figures[1].value is not None:
        effect = figures[0].value - figures[1].value
    interval = p_value = None
    if min(len(mine), len(theirs)) >= claim.min_sample:
        label = f"gemba-assumptions:{seed}:{claim.name}"
        bootstrap, permutation = (random.Random(f"{label}:{use}") for use in _STREAMS)
        interval = bootstrap_interval(
            mine, theirs, metric.statistic, bootstrap, evaluation.bootstrap, evaluation.confidence
        )
        p_value = permutation_p_value(
            mine, theirs, metric.statistic, permutation, evaluation.permutations
        )
    return ClaimResult(
        claim, figures[0], figures[1], overlap, effect, interval, p_value,
        adjusted_p=None, verdict=Verdict.INCONCLUSIVE, reason="",
    )  # fmt: skip


def evaluate_claims(
    profiles: Sequence[DealProfile], assumptions: Assumptions, seed: int
) -> tuple[ClaimResult, ...]:
    """Every claim measured over the deal profiles, Holm-adjusted, with its verdict."""
    evaluation = assumptions.evaluation
    measured = [_measure(claim, profiles, evaluation, seed) for claim in assumptions.claims]
    adjusted = holm_adjusted([each.p_value for each in measured])
    results = []
    for each, p in zip(measured, adjusted, strict=True):
        sizes = (each.cohort.measured, each.other.measured)
        said, why = verdict(each.claim, sizes, each.effect, each.interval, p, evaluation.alpha)
        results.append(replace(each, adjusted_p=p, verdict=said, reason=why))
    return tuple(results)


def _report(
    records: Sequence[tuple[EventBase, datetime]],
    assumptions: Assumptions,
    policy: Policy,
    as_of: datetime | None,
    seed: int,
    code_version: str,
    cache: FoldCache,
) -> AssumptionsReport:
    log = known_log(records, as_of)
    profiles = deal_profiles(log, policy, cache)
    results = evaluate_claims(profiles, assumptions, seed)
    stated = Reproducibility(
        policy_version=policy.version,
        code_version=code_version,
        assumptions_version=assumptions.version,
        as_of=as_of,
        position=log.position,
        seed=seed,
        evaluation=assumptions.evaluation,
    )
    return AssumptionsReport(assumptions.title, results, stated)


def check_assumptions(
    records: Iterable[tuple[EventBase, datetime]],
    assumptions: Assumptions,
    policy: Policy,
    *,
    as_of: datetime | None = None,
    seed: int | None = None,
    code_version: str = "unknown",
) -> AssumptionsReport:
    """Evaluate every claim over the (event, recorded_at) pairs known at `as_of`.

    `seed` defaults to the file's; `code_version` is stated in the report as given.
    """
    chosen = assumptions.evaluation.seed if seed is None else seed
    return _report(list(records), assumptions, policy, as_of, chosen, code_version, {})


def assumption_trend(
    records: Iterable[tuple[EventBase, datetime]],
    assumptions: Assumptions,
    policy: Policy,
    *,
    as_of: datetime | None = None,
    seed: int | None = None,
    code_version: str = "unknown",
) -> tuple[AssumptionsReport, ...]:
    """The claims evaluated at every month end of the history, then at `as_of` (or on all).

    A month end is the first instant (UTC) of the next month. Each report is
    exactly what check_assumptions gives as of that time.
    """
    pairs = list(records)
    chosen = assumptions.evaluation.seed if seed is None else seed
    known = known_log(pairs, as_of)
    times = [event.occurred_at for deal in known.deals.values() for event in deal]
    times += [response.occurred_at for response in known.responses]
    ends: list[datetime | None] = []
    if times and known.watermark is not None:
        ends += month_ends(min(times), known.watermark)
    ends.append(as_of)
    cache: FoldCache = {}
    return tuple(
        _report(pairs, assumptions, policy, end, chosen, code_version, cache) for end in ends
    )
