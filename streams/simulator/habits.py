"""Planted rates spread evenly over deals, so that even a short history shows them as planted."""

from __future__ import annotations

from collections import defaultdict

__all__ = ["RateLedger"]


class RateLedger:
    """How much of each planted rate is still owed, paid out deal by deal.

    A rate of 0.25 a deal shows in every fourth deal that could have it, rather
    than in a random quarter of them: measured rates (a rep's rework, a cohort's
    wins) come out close to the planted ones instead of scattering around them.
    Deals are always simulated in the order they open, so a deal gets the same
    answer in history, in live mode and in the ground truth.
    """

    def __init__(self) -> None:
        self._owed: defaultdict[tuple[str, str], float] = defaultdict(lambda: 0.5)

    def take(self, who: str, what: str, rate: float) -> int:
        """How many times `what` happens in this deal of `who` (a rep, a cohort), at `rate`."""
        owed = self._owed[who, what] + rate
        times = int(owed)
        self._owed[who, what] = owed - times
        return times
