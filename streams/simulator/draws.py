"""Fast random draws from a caller's own `random.Random`: lognormal and counts."""

from __future__ import annotations

import math
import random
from functools import cache
from statistics import NormalDist

__all__ = ["geometric", "lognormal", "lognormal_table", "poisson"]

_NORMAL_STEPS = 4_096


@cache
def _normal_quantiles() -> tuple[float, ...]:
    """Standard normal quantiles at the midpoints of 4,096 equal slices, built once."""
    unit = NormalDist()
    return tuple(unit.inv_cdf((step + 0.5) / _NORMAL_STEPS) for step in range(_NORMAL_STEPS))


def lognormal(rng: random.Random, median: float, sigma: float) -> float:
    """A lognormal draw with the given median: heavy-tailed, always positive.

    One uniform draw looks up a normal quantile: much faster than
    `Random.lognormvariate` and as good for a simulation.
    """
    z = _normal_quantiles()[int(rng.random() * _NORMAL_STEPS)]
    return median * math.exp(sigma * z)


@cache
def lognormal_table(median: float, sigma: float, low: int, high: int) -> tuple[int, ...]:
    """Whole-number lognormal quantiles clipped to [low, high]: draw one with
    `table[int(rng.random() * len(table))]`, the fastest draw there is."""
    return tuple(
        min(max(int(median * math.exp(sigma * z)), low), high) for z in _normal_quantiles()
    )


def geometric(rng: random.Random, mean: float) -> int:
    """A count with the given mean: 0 most often, a long tail of more."""
    keep_going, count = mean / (1 + mean), 0
    while rng.random() < keep_going:
        count += 1
    return count


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count; a normal approximation once the mean is large."""
    if mean > 30:
        return max(
            0,
            round(mean + math.sqrt(mean) * _normal_quantiles()[int(rng.random() * _NORMAL_STEPS)]),
        )
    limit, product, count = math.exp(-mean), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count
