"""The metrics a claim compares, and the seeded statistics behind a verdict.

Metrics (each uses only the deals that are **closed**, won or lost, as of the
evaluation time; an open deal's outcome, revenue and lead time are not known
yet):

- `win_rate`: won / closed, in percent; an effect is in percentage points.
- `revenue_per_deal`: mean revenue per closed deal (a lost deal counts 0), in
  the deals' currency (amounts are not converted).
- `median_lead_time_days`: median days from opening to close.
- `mean_pce`: mean of each deal's process cycle efficiency, percent (closed
  deals with a lead time above zero).
- `waste_share`: mean of each deal's waste time / lead time, percent (closed
  deals with a lead time above zero).
- `mean_rework`: mean rework count per closed deal.

Statistics, all driven by one `random.Random` per claim, seeded from the run's
seed and the claim's name (so adding a claim changes no other claim's
numbers), over the deals sorted by id:

- effect = metric(cohort) - metric(other);
- confidence interval: percentile bootstrap; each cohort is resampled with
  replacement on its own, `resamples` times; the bounds are the (1-c)/2 and
  (1+c)/2 quantiles of the resampled effects, interpolated linearly between
  order statistics (Hyndman-Fan type 7);
- p-value: two-sided permutation test; the pooled deals are split at random
  into groups of the cohorts' sizes `permutations` times, p = (k + 1) / (N + 1)
  with k the splits whose |effect| is at least the observed |effect| (within a
  relative 1e-9, so float rounding cannot hide a tie);
- multiple testing: Holm-Bonferroni step-down over the claims that got a
  p-value: sorted ascending, adjusted p(i) = max over j <= i of
  min(1, (m - j + 1) p(j)), m the number of such claims.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean, median
from types import MappingProxyType

from projections.assumptions.facts import DealProfile

__all__ = [
    "METRICS",
    "Metric",
    "bootstrap_interval",
    "holm_adjusted",
    "permutation_p_value",
    "quantile",
]

Statistic = Callable[[Sequence[float]], float]


@dataclass(frozen=True, slots=True)
class Metric:
    """A figure computed over a cohort's closed deals: per-deal values, then mean or median."""

    name: str
    meaning: str
    unit: str
    effect_unit: str
    fact: str
    summary: str  # "mean" or "median"
    scale: float = 1.0

    def value(self, profile: DealProfile) -> float | None:
        """This deal's contribution (its fact, times the scale), or None if it is not used."""
        value = profile.facts[self.fact]
        if not profile.facts["closed"] or not isinstance(value, int | float):
            return None
        return float(value) * self.scale  # a flag counts 1 or 0

    @property
    def statistic(self) -> Statistic:
        """The function from a cohort's per-deal values to the metric."""
        return median if self.summary == "median" else fmean


def _metrics(*metrics: Metric) -> Mapping[str, Metric]:
    return MappingProxyType({metric.name: metric for metric in metrics})


METRICS: Mapping[str, Metric] = _metrics(
    Metric("win_rate", "won / closed deals", "%", "pp", fact="won", summary="mean", scale=100),
    Metric(
        "revenue_per_deal", "mean revenue per closed deal (lost = 0)", "", "",
        fact="revenue", summary="mean",
    ),
    Metric(
        "median_lead_time_days", "median days from opening to close", "d", "d",
        fact="lead_time_days", summary="median",
    ),
    Metric(
        "mean_pce", "mean process cycle efficiency per deal", "%", "pp",
        fact="pce", summary="mean",
    ),
    Metric(
        "waste_share", "mean waste time / lead time per deal", "%", "pp",
        fact="waste_share", summary="mean",
    ),
    Metric("mean_rework", "mean rework count per deal", "", "", fact="rework", summary="mean"),
)  # fmt: skip
"""The metrics a claim may compare, by name; every one uses closed deals only."""


def quantile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values, interpolated linearly between order statistics."""
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def bootstrap_interval(
    cohort: Sequence[float],
    other: Sequence[float],
    statistic: Statistic,
    rng: random.Random,
    resamples: int,
    confidence: float,
) -> tuple[float, float]:
    """Percentile bootstrap interval of statistic(cohort) - statistic(other)."""
    effects = sorted(
        statistic(rng.choices(cohort, k=len(cohort))) - statistic(rng.choices(other, k=len(other)))
        for _ in range(resamples)
    )
    tail = (1 - confidence) / 2
    return quantile(effects, tail), quantile(effects, 1 - tail)


def _as_large(effect: float, observed: float) -> bool:
    return abs(effect) >= abs(observed) - 1e-9 * max(1.0, abs(observed))


def permutation_p_value(
    cohort: Sequence[float],
    other: Sequence[float],
    statistic: Statistic,
    rng: random.Random,
    permutations: int,
) -> float:
    """Two-sided permutation p-value of statistic(cohort) - statistic(other), (k + 1) / (N + 1)."""
    observed = statistic(cohort) - statistic(other)
    pooled = [*cohort, *other]
    size = len(cohort)
    extreme = 0
    if statistic is fmean:  # a mean needs only the sum of one side
        total, rest = math.fsum(pooled), len(other)
        for _ in range(permutations):
            drawn = math.fsum(rng.sample(pooled, size))
            extreme += _as_large(drawn / size - (total - drawn) / rest, observed)
    else:
        for _ in range(permutations):
            rng.shuffle(pooled)
            extreme += _as_large(statistic(pooled[:size]) - statistic(pooled[size:]), observed)
    return (extreme + 1) / (permutations + 1)


def holm_adjusted(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values, in the given order; None (not tested) stays None."""
    tested = sorted(
        (p, index) for index, p in enumerate(p_values) if p is not None
    )  # ties keep file order
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[index] = running
    return adjusted
