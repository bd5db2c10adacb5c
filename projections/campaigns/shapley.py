"""Shapley attribution: each campaign's share of the wins of the coalitions it belongs to.

The game is played over the closed journeys. The worth v(S) of a coalition S
of campaigns is the number of won journeys whose set of campaigns (ignoring
order and repeats) lies within S; a lost journey adds to no coalition, and
v(empty set) = 0. A won deal's revenue is split over the campaigns of its own
set S in proportion to their Shapley values in the game restricted to the
subsets of S: the average, over every order in which the campaigns of S could
join, of what a campaign adds to v when it joins. Computed exactly over all
2^|S| subsets, so a journey with more than MAX_CAMPAIGNS distinct campaigns is
refused.

Counting a coalition's worth straight from the observed journeys, without a
model of what the journeys would have done otherwise, is the "simplified
Shapley value" of Zhao, Mahboobi and Bagheri (2018), in the line of the
cooperative-game view of attribution that Dalessandro et al. (2012) brought to
online advertising. With this v a campaign's value equals the sum, over the
won journeys whose set lies within S and contains the campaign, of one over
the size of that journey's set: each win is shared evenly by its campaigns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from math import factorial

from projections.campaigns.journeys import Journey
from projections.categories import DealStatus
from projections.errors import TooManyCampaigns

__all__ = ["MAX_CAMPAIGNS", "ShapleyModel", "fit_shapley"]

MAX_CAMPAIGNS = 16
"""The most distinct campaigns one journey may have for its exact Shapley values (2^16 subsets)."""


@dataclass(frozen=True, slots=True)
class ShapleyModel:
    """How many won journeys there are of each set of campaigns: all the game needs."""

    wins: Mapping[frozenset[str], int] = field(default_factory=dict)

    def worth(self, coalition: Iterable[str]) -> int:
        """v(S): the number of won journeys whose campaigns all belong to the coalition."""
        members = frozenset(coalition)
        return sum(count for campaigns, count in self.wins.items() if campaigns <= members)

    def weights(self, campaigns: Iterable[str]) -> dict[str, Fraction]:
        """The exact Shapley value of each campaign in the game over subsets of `campaigns`."""
        players = list(dict.fromkeys(campaigns))
        size = len(players)
        if size > MAX_CAMPAIGNS:
            raise TooManyCampaigns(
                f"a journey with {size} distinct campaigns is too many for exact Shapley values "
                f"(at most {MAX_CAMPAIGNS}: 2^n coalitions); use another model for it"
            )
        worth = self._worths(players)
        whole = 1 << size
        values = {}
        for bit, player in enumerate(players):
            mine = 1 << bit
            total = sum(
                factorial(coalition.bit_count())
                * factorial(size - coalition.bit_count() - 1)
                * (worth[coalition | mine] - worth[coalition])
                for coalition in range(whole)
                if not coalition & mine
            )
            values[player] = Fraction(total, factorial(size))
        return values

    def _worths(self, players: list[str]) -> list[int]:
        """v of every subset of `players`, indexed by bit mask."""
        bits = {player: 1 << index for index, player in enumerate(players)}
        worth = [0] * (1 << len(players))
        if len(worth) < len(self.wins):  # fewer subsets to look up than sets to scan
            for coalition in range(1, len(worth)):
                members = frozenset(p for p, bit in bits.items() if coalition & bit)
                worth[coalition] = self.wins.get(members, 0)
        else:
            for campaigns, count in self.wins.items():
                if campaigns and campaigns <= bits.keys():
                    worth[sum(bits[campaign] for campaign in campaigns)] += count
        for bit in bits.values():  # sum over subsets: v(S) = sum of wins of sets within S
            for coalition in range(len(worth)):
                if coalition & bit:
                    worth[coalition] += worth[coalition ^ bit]
        return worth


def fit_shapley(journeys: Iterable[Journey]) -> ShapleyModel:
    """Count the won journeys (with responses) by their set of campaigns; see the module doc."""
    wins = Counter(
        frozenset(journey.campaigns)
        for journey in journeys
        if journey.deal.status is DealStatus.WON and journey.responses
    )
    return ShapleyModel(dict(wins))
