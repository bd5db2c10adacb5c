"""Markov-chain attribution: each campaign's removal effect, fitted over the closed journeys.

The chain is fitted once over every closed journey (won or lost) with at least
one linked response; open deals have no outcome yet and journeys without
responses hold no campaign to learn about. A journey is the path
start -> its campaigns in response order (a campaign repeated in a row counted
once) -> conversion (won) or null (lost). The probability of moving from one
state to the next is the share of the moves out of the state that go there.

P(conversion) is the probability that a walk from start ends in conversion.
Removing campaign c sends every move into c to null instead; the removal
effect is RE_c = 1 - P(conversion without c) / P(conversion): the share of
conversions that would be lost without c. All of it is computed exactly, in
fractions. Without c, a walk converts exactly when, in the full chain, it
converts without ever reaching c; so P(conversion without c) =
P(conversion) - h_c * x_c, with h_c
the probability of ever reaching c from start and x_c the probability of
converting from c; both come from the fundamental matrix N = (I - Q)^-1 of the
chain (Q: moves between campaigns), found once by fraction-free Gauss-Jordan
elimination: x = N b (b: the chance of converting straight from each
campaign), and h_c = (expected visits to c from start) / N[c][c].
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import pairwise

from projections.campaigns.journeys import Journey
from projections.categories import DealStatus

__all__ = ["MarkovModel", "fit_markov"]


@dataclass(frozen=True, slots=True)
class MarkovModel:
    """The removal effect of every campaign seen on a closed journey, and P(conversion)."""

    removal_effects: Mapping[str, Fraction] = field(default_factory=dict)
    conversion_probability: Fraction = Fraction(0)
    paths: int = 0

    def weights(self, campaigns: Iterable[str]) -> dict[str, Fraction]:
        """The removal effects of these campaigns (0 for a campaign the model never saw)."""
        return {campaign: self.removal_effects.get(campaign, Fraction(0)) for campaign in campaigns}


@dataclass
class _Moves:
    """Counts of the moves between the states of the chain, campaigns numbered 0..n-1."""

    starts: Counter[int] = field(default_factory=Counter)
    between: Counter[tuple[int, int]] = field(default_factory=Counter)
    conversions: Counter[int] = field(default_factory=Counter)
    leaving: Counter[int] = field(default_factory=Counter)


def _count_moves(paths: list[tuple[tuple[int, ...], bool]]) -> _Moves:
    moves = _Moves()
    for path, won in paths:
        moves.starts[path[0]] += 1
        for here, there in pairwise(path):
            moves.between[here, there] += 1
            moves.leaving[here] += 1
        moves.leaving[path[-1]] += 1
        moves.conversions[path[-1]] += won
    return moves


def _adjugate(matrix: list[list[int]]) -> tuple[int, list[list[int]]]:
    """d and d * A^-1 of an invertible integer matrix (d = +-det A), by fraction-free Gauss-Jordan.

    Bareiss elimination: every division is exact, so it stays in integers (much
    faster than fractions) and the result is exact.
    """
    size = len(matrix)
    rows = [[*row, *(int(i == j) for j in range(size))] for i, row in enumerate(matrix)]
    previous = 1
    for column in range(size):
        pivot = next(r for r in range(column, size) if rows[r][column] != 0)
        rows[column], rows[pivot] = rows[pivot], rows[column]
        pivot_row = rows[column]
        lead = pivot_row[column]
        for r in range(size):
            if r != column:
                row, factor = rows[r], rows[r][column]
                rows[r] = [
                    (lead * value - factor * p) // previous
                    for value, p in zip(row, pivot_row, strict=True)
                ]
        previous = lead
    return previous, [row[size:] for row in rows]


def fit_markov(journeys: Iterable[Journey]) -> MarkovModel:
    """Fit the chain over the closed journeys with responses; see the module doc."""
    closed = [
        (journey.path, journey.deal.status is DealStatus.WON)
        for journey in journeys
        if journey.deal.status is not DealStatus.OPEN and journey.responses
    ]
    if not closed:
        return MarkovModel()
    campaigns = sorted({campaign for path, _ in closed for campaign in path})
    number = {campaign: index for index, campaign in enumerate(campaigns)}
    size = len(campaigns)
    moves = _count_moves([(tuple(number[c] for c in path), won) for path, won in closed])
    # A = D (I - Q), D the moves out of each campaign: integers. N = (I - Q)^-1 = A^-1 D.
    scaled = [[moves.leaving[i] * int(i == j) for j in range(size)] for i in range(size)]
    for (here, there), count in moves.between.items():
        scaled[here][there] -= count
    det, adjugate = _adjugate(scaled)  # A^-1 = adjugate / det
    # x_i = sum_j N[i][j] * conversions_j / leaving_j = sum_j A^-1[i][j] * conversions_j
    converts = [
        Fraction(sum(row[j] * moves.conversions[j] for j in range(size)), det) for row in adjugate
    ]
    conversion = sum(
        (Fraction(moves.starts[i], len(closed)) * converts[i] for i in range(size)), Fraction(0)
    )
    effects = {}
    for j, campaign in enumerate(campaigns):
        # h_j = (expected visits to j from start) / N[j][j]; the leaving_j factors cancel.
        reached = sum(moves.starts[i] * adjugate[i][j] for i in range(size))
        hit = Fraction(reached, len(closed) * adjugate[j][j])
        effects[campaign] = hit * converts[j] / conversion if conversion else Fraction(0)
    return MarkovModel(effects, conversion, len(closed))
