"""Revenue credit: how a won deal's revenue is split over the campaigns of its journey.

Every model gives each linked response of a won journey a fractional weight
(exact, as a Fraction); the weights are summed per campaign and the revenue
is split into cents in proportion to them by the largest-remainder method, so
the credits of a deal always add up to its revenue to the cent. A deal that is
not won, or a won deal without any linked response, gets no credit ({}): the
revenue of the latter is unattributed. Every campaign of a won journey is a
key of its credit, with 0.00 where the model gives it nothing.

Milestones of a journey (its responses sorted by time, then event id):

- first touch: the first response;
- lead-creation touch: the last response at or before the deal opened, or the
  first response if none came before the open;
- opportunity-creation touch: the last response at or before `qualified_at`
  (the first entry into the policy's opportunity stage); the lead-creation
  touch when the deal was never qualified or no response came by then;
- closed-won touch: the last response.

Position-based models give each milestone its share (U-shaped: 40% first, 40%
lead creation; W-shaped: 30% each to first, lead and opportunity creation;
full path: 22.5% each to those three and closed-won) and spread the rest (20%,
10%, 10%) evenly over the responses that are none of the model's milestones.
Milestones on the same response add up on it; with no other response, the
rest goes to the milestones in proportion to their shares. One response gets
all of the revenue under every model. Time decay weighs a response by
2^(-d / half_life), d its time before the close; the data-driven models
(Markov, Shapley) are described in projections.campaigns.markov and projections.campaigns.shapley.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from math import floor
from typing import TypeVar

from projections.campaigns.journeys import Journey
from projections.campaigns.markov import MarkovModel, fit_markov
from projections.campaigns.shapley import ShapleyModel, fit_shapley
from projections.categories import DealStatus
from projections.errors import AttributionError

__all__ = [
    "DATA_DRIVEN",
    "DEFAULT_HALF_LIFE",
    "RULE_BASED",
    "AttributionModel",
    "MarkovModel",
    "Milestones",
    "ShapleyModel",
    "credit",
    "fit_markov",
    "fit_shapley",
    "milestones",
    "split_cents",
]

K = TypeVar("K", bound=Hashable)

DEFAULT_HALF_LIFE = timedelta(days=7)
CENT = Decimal("0.01")


class AttributionModel(StrEnum):
    """The ways to split a won deal's revenue over the campaigns that touched it."""

    FIRST_TOUCH = "first_touch"
    LAST_TOUCH = "last_touch"
    LINEAR = "linear"
    U_SHAPED = "u_shaped"
    W_SHAPED = "w_shaped"
    FULL_PATH = "full_path"
    TIME_DECAY = "time_decay"
    MARKOV = "markov"
    SHAPLEY = "shapley"

    @classmethod
    def _missing_(cls, value: object) -> AttributionModel:
        names = ", ".join(cls)
        raise AttributionError(f"unknown attribution model {value!r}; use one of {names}")


DATA_DRIVEN = frozenset({AttributionModel.MARKOV, AttributionModel.SHAPLEY})
"""Models fitted to all the closed journeys; the others are rule-based."""
RULE_BASED = frozenset(AttributionModel) - DATA_DRIVEN


@dataclass(frozen=True, slots=True)
class Milestones:
    """Positions, in the journey's responses, of the touches position-based models reward."""

    first: int
    lead_creation: int
    opportunity_creation: int
    closed_won: int


def milestones(journey: Journey) -> Milestones:
    """The milestone touches of a journey with at least one response (see the module doc)."""
    times = [response.occurred_at for response in journey.responses]
    if not times:
        raise AttributionError(f"deal {journey.deal.deal_id} has no response: no milestones")
    lead = _last_at_or_before(times, journey.deal.opened_at)
    lead = 0 if lead is None else lead
    qualified = journey.deal.qualified_at
    opportunity = None if qualified is None else _last_at_or_before(times, qualified)
    return Milestones(
        first=0,
        lead_creation=lead,
        opportunity_creation=lead if opportunity is None else opportunity,
        closed_won=len(times) - 1,
    )


def _last_at_or_before(times: Sequence[datetime], moment: datetime) -> int | None:
    found = [index for index, time in enumerate(times) if time <= moment]
    return found[-1] if found else None


_POSITION_SHARES: dict[AttributionModel, tuple[tuple[Fraction, ...], Fraction]] = {
    # (shares of first, lead creation, opportunity creation, closed won), share of the rest
    AttributionModel.U_SHAPED: ((Fraction(2, 5), Fraction(2, 5)), Fraction(1, 5)),
    AttributionModel.W_SHAPED: ((Fraction(3, 10),) * 3, Fraction(1, 10)),
    AttributionModel.FULL_PATH: ((Fraction(9, 40),) * 4, Fraction(1, 10)),
}


def _position_weights(journey: Journey, model: AttributionModel) -> list[Fraction]:
    shares, rest = _POSITION_SHARES[model]
    marks = milestones(journey)
    places = (marks.first, marks.lead_creation, marks.opportunity_creation, marks.closed_won)
    weights = [Fraction(0)] * len(journey.responses)
    for place, share in zip(places, shares, strict=False):
        weights[place] += share
    others = [index for index, weight in enumerate(weights) if weight == 0]
    if not others:
        total = sum(weights, Fraction(0))
        return [weight / total for weight in weights]
    for index in others:
        weights[index] = rest / len(others)
    return weights


def _time_decay_weights(journey: Journey, half_life: timedelta) -> list[Fraction]:
    # 2^(-d/h) up to a common factor: measured from the last response, not the close,
    # so that old journeys do not underflow; the factor 2^(-d_last/h) cancels out.
    last = journey.responses[-1].occurred_at
    return [
        Fraction(2.0 ** (-((last - response.occurred_at) / half_life)))
        for response in journey.responses
    ]


def _response_weights(
    journey: Journey, model: AttributionModel, half_life: timedelta
) -> list[Fraction]:
    count = len(journey.responses)
    if model is AttributionModel.FIRST_TOUCH:
        return [Fraction(1)] + [Fraction(0)] * (count - 1)
    if model is AttributionModel.LAST_TOUCH:
        return [Fraction(0)] * (count - 1) + [Fraction(1)]
    if model is AttributionModel.TIME_DECAY:
        return _time_decay_weights(journey, half_life)
    if model in _POSITION_SHARES:
        return _position_weights(journey, model)
    return [Fraction(1, count)] * count


def _campaign_weights(
    journey: Journey,
    model: AttributionModel,
    half_life: timedelta,
    markov: MarkovModel | None,
    shapley: ShapleyModel | None,
) -> dict[str, Fraction]:
    weights = dict.fromkeys(journey.campaigns, Fraction(0))
    if model is AttributionModel.MARKOV:
        if markov is None:
            raise AttributionError("the markov model needs markov=fit_markov(journeys)")
        weights |= markov.weights(journey.campaigns)
    elif model is AttributionModel.SHAPLEY:
        if shapley is None:
            raise AttributionError("the shapley model needs shapley=fit_shapley(journeys)")
        weights |= shapley.weights(journey.campaigns)
    if any(weights.values()):
        return weights
    # Rule-based models, and the fallback of a data-driven one that values no campaign here.
    rule = AttributionModel.LINEAR if model in DATA_DRIVEN else model
    for response, weight in zip(
        journey.responses, _response_weights(journey, rule, half_life), strict=True
    ):
        weights[response.campaign_id] += weight
    return weights


def credit(
    journey: Journey,
    model: AttributionModel | str,
    *,
    half_life: timedelta = DEFAULT_HALF_LIFE,
    markov: MarkovModel | None = None,
    shapley: ShapleyModel | None = None,
) -> dict[str, Decimal]:
    """The revenue credit of each campaign of a won journey, in cents, adding up to the revenue.

    {} for a deal that is not won, and for a won deal without responses (its
    revenue is unattributed). The Markov and Shapley models need the model
    fitted over all closed journeys (`fit_markov`, `fit_shapley`); when it
    values none of the journey's campaigns, the revenue is split linearly.
    """
    chosen = AttributionModel(model)
    if half_life <= timedelta(0):
        raise AttributionError(f"the time-decay half-life must be positive, got {half_life}")
    deal = journey.deal
    if deal.status is not DealStatus.WON or deal.revenue is None or not journey.responses:
        return {}
    weights = _campaign_weights(journey, chosen, half_life, markov, shapley)
    return split_cents(deal.revenue, list(weights.items()))


def split_cents(amount: Decimal, weights: Sequence[tuple[K, Fraction]]) -> dict[K, Decimal]:
    """Split `amount` (whole cents) in proportion to `weights`, exactly, to the cent.

    Each key first gets the whole cents of its exact share; the cents left over
    go one each to the largest fractional remainders, a tie to the key listed
    first (callers list campaigns by their first response: earlier time, then
    lower event id). The parts add up to `amount` exactly.
    """
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise AttributionError(f"{amount} is not a whole number of cents")
    if any(weight < 0 for _, weight in weights):
        raise AttributionError("credit weights must not be negative")
    total = sum((weight for _, weight in weights), Fraction(0))
    if total == 0:
        raise AttributionError("credit weights must not all be zero")
    exact = [Fraction(int(cents)) * weight / total for _, weight in weights]
    parts = [floor(share) for share in exact]
    left = int(cents) - sum(parts)
    by_remainder = sorted(range(len(exact)), key=lambda i: (parts[i] - exact[i], i))
    for index in by_remainder[:left]:
        parts[index] += 1
    return {
        key: (Decimal(part) / 100).quantize(CENT)
        for (key, _), part in zip(weights, parts, strict=True)
    }
